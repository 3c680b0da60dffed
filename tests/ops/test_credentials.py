"""Passwords come from the environment, `.env` or the OS credential store (a real keyring backend here)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import keyring
import keyring.core
import pytest

from countydatasync.errors import CredentialStoreError
from countydatasync.extract import source_url
from countydatasync.ops.credentials import (
    SERVICE,
    delete_password,
    env_file_warning,
    set_password,
    smtp_key,
    source_key,
)
from countydatasync.settings import load_settings

from .cli import run_cli

PASSWORD = "Kr;ng}pa@ss% 1"
TOML = """
[source]
url = "postgresql+psycopg://gis_reader@db.county.local:5433/parcels"
[alerts]
smtp_host = "mail.county.local"
username = "alerts"
to = ["gis@county.local"]
"""


def _config(folder: Path) -> Path:
    path = folder / "countydatasync.toml"
    path.write_text(TOML)
    return path


def test_a_stored_password_fills_the_settings(file_keyring: Path, clean_env: Path) -> None:
    config = _config(clean_env)
    settings = load_settings(config, env_file=None)
    assert settings.source.password is None
    assert source_key(settings) == "gis_reader@db.county.local:5433/parcels"
    assert set_password(settings, PASSWORD) == "gis_reader@db.county.local:5433/parcels"
    stored = file_keyring.read_text()  # really stored by the backend (base64 in its file), not in memory
    assert "[countydatasync]" in stored and base64.b64encode(PASSWORD.encode()).decode() in stored
    loaded = load_settings(config, env_file=None)
    assert loaded.source.password is not None and loaded.source.password.get_secret_value() == PASSWORD
    assert source_url(loaded).password == PASSWORD
    assert PASSWORD not in repr(loaded)


def test_the_environment_and_dotenv_win_over_the_store(
    file_keyring: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(clean_env)
    set_password(load_settings(config, env_file=None), PASSWORD)
    dotenv = clean_env / ".env"
    dotenv.write_text("CDS_SOURCE__PASSWORD=from-dotenv\n")
    dotenv.chmod(0o600)
    assert load_settings(config, env_file=dotenv).source.password.get_secret_value() == "from-dotenv"  # type: ignore[union-attr]
    monkeypatch.setenv("CDS_SOURCE__PASSWORD", "from-environment")
    assert load_settings(config, env_file=dotenv).source.password.get_secret_value() == "from-environment"  # type: ignore[union-attr]


def test_delete_removes_the_password(file_keyring: Path, clean_env: Path) -> None:
    settings = load_settings(_config(clean_env), env_file=None)
    set_password(settings, PASSWORD)
    assert delete_password(settings) is True
    assert delete_password(settings) is False
    assert keyring.get_password(SERVICE, source_key(settings)) is None
    assert load_settings(_config(clean_env), env_file=None).source.password is None


def test_the_smtp_password_has_its_own_entry(file_keyring: Path, clean_env: Path) -> None:
    settings = load_settings(_config(clean_env), env_file=None)
    set_password(settings, "smtp-Secret;1", smtp=True)
    assert smtp_key(settings) == "smtp:alerts@mail.county.local"
    loaded = load_settings(_config(clean_env), env_file=None)
    assert loaded.alerts.password.get_secret_value() == "smtp-Secret;1"  # type: ignore[union-attr]
    assert loaded.source.password is None


def test_no_usable_store_is_a_clear_error_and_does_not_break_loading(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = keyring.get_keyring()
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    keyring.core.init_backend()
    try:
        settings = load_settings(_config(clean_env), env_file=None)
        assert settings.source.password is None
        with pytest.raises(CredentialStoreError, match="CDS_SOURCE__PASSWORD"):
            set_password(settings, PASSWORD)
        with pytest.raises(CredentialStoreError, match="set CDS_ALERTS__PASSWORD in the environment"):
            set_password(settings, PASSWORD, smtp=True)  # the SMTP password's own variable, not the source's
    finally:
        keyring.set_keyring(previous)


def test_a_dotenv_others_can_read_is_warned_about_by_a_sync(sample_db: Path, clean_env: Path) -> None:
    """The warning used to be logged while the settings were read, before the run's logging was set up,
    and went nowhere. It reaches the console and the log file now; a private .env gets no warning."""
    if os.name != "posix":
        pytest.skip("POSIX permission bits")
    dotenv = clean_env / ".env"
    dotenv.write_text(f"CDS_SOURCE__URL=sqlite:///{sample_db}\nPGPASSWORD=for-another-tool\n")
    dotenv.chmod(0o644)
    done = run_cli(clean_env, "sync")
    assert done.returncode == 0, done.stderr
    warning = "other users may read it (mode 644); run `chmod 600 .env`"
    assert warning in done.stderr
    assert warning in (clean_env / "logs" / "countydatasync.log").read_text()
    assert "for-another-tool" not in done.stderr + done.stdout  # a line for another tool is left alone
    dotenv.chmod(0o600)
    assert env_file_warning(dotenv) is None
    again = run_cli(clean_env, "sync")
    assert again.returncode == 0 and "other users" not in again.stderr


def test_cli_set_and_delete_never_show_the_password(file_keyring: Path, clean_env: Path) -> None:
    from typer.testing import CliRunner

    from countydatasync.cli import app

    config = _config(clean_env)
    runner = CliRunner()
    stored = runner.invoke(app, ["credentials", "set", "--config", str(config)], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert stored.exit_code == 0, stored.output
    assert "stored the password for gis_reader@db.county.local:5433/parcels" in stored.output
    assert PASSWORD not in stored.output and "Kr;ng" not in stored.output
    assert keyring.get_password(SERVICE, "gis_reader@db.county.local:5433/parcels") == PASSWORD
    mismatch = runner.invoke(
        app,
        ["credentials", "set", "--smtp", "--config", str(config)],
        input="one-Password\nother-Password\none-Password\none-Password\n",
    )
    assert mismatch.exit_code == 0 and "do not match" in mismatch.output.lower()
    assert keyring.get_password(SERVICE, "smtp:alerts@mail.county.local") == "one-Password"
    assert "one-Password" not in mismatch.output
    deleted = runner.invoke(app, ["credentials", "delete", "--config", str(config)])
    assert deleted.exit_code == 0 and "removed the password" in deleted.output
    again = runner.invoke(app, ["credentials", "delete", "--config", str(config)])
    assert again.exit_code == 0 and "no password stored" in again.output


def test_nothing_is_stored_without_a_login_to_store_it_for(file_keyring: Path, clean_env: Path) -> None:
    from countydatasync.errors import ConfigError

    sqlite = load_settings(env_file=None)  # the sample county: a file, no user
    with pytest.raises(ConfigError, match="names no user"):
        set_password(sqlite, PASSWORD)
    with pytest.raises(ConfigError, match="alerts.smtp_host and alerts.username"):
        set_password(sqlite, PASSWORD, smtp=True)
    assert not file_keyring.exists()
    from typer.testing import CliRunner

    from countydatasync.cli import app

    # The command says so before it asks for a password (it used to ask twice, then refuse).
    refused = CliRunner().invoke(app, ["credentials", "set"], input="")
    assert refused.exit_code == 1 and "names no user" in refused.output
    assert "Password" not in refused.output


def test_an_empty_password_in_the_environment_or_dotenv_counts_as_unset(
    file_keyring: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(clean_env)
    settings = load_settings(config, env_file=None)
    set_password(settings, PASSWORD)
    set_password(settings, "smtp-Secret;1", smtp=True)
    dotenv = clean_env / ".env"
    dotenv.write_text("CDS_SOURCE__PASSWORD=\nCDS_ALERTS__PASSWORD=\n")  # a template's empty lines
    dotenv.chmod(0o600)
    from_dotenv = load_settings(config, env_file=dotenv)
    assert from_dotenv.source.password.get_secret_value() == PASSWORD  # type: ignore[union-attr]
    assert from_dotenv.alerts.password.get_secret_value() == "smtp-Secret;1"  # type: ignore[union-attr]
    monkeypatch.setenv("CDS_SOURCE__PASSWORD", "")
    monkeypatch.setenv("CDS_ALERTS__PASSWORD", "")
    from_environment = load_settings(config, env_file=None)
    assert from_environment.source.password.get_secret_value() == PASSWORD  # type: ignore[union-attr]
    assert from_environment.alerts.password.get_secret_value() == "smtp-Secret;1"  # type: ignore[union-attr]
    # With nothing stored either, an empty password is no password at all.
    delete_password(settings)
    delete_password(settings, smtp=True)
    nothing = load_settings(config, env_file=None)
    assert nothing.source.password is None and nothing.alerts.password is None
