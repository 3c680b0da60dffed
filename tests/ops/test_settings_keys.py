"""A mistyped key in any settings section is an error naming the key, never its value; the environment and
`.env` still reach every section; a rotated log must keep a backup file."""

from __future__ import annotations

from pathlib import Path

import pytest

from countydatasync.errors import ConfigError
from countydatasync.ops.doctor import diagnose
from countydatasync.settings import load_settings

SECRET = "Hunter;2pw}@% x"


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[alerts]\nrepeat_minute = 1440\n", "alerts.repeat_minute"),
        (f'[source]\npasword = "{SECRET}"\n', "source.pasword"),
        (f'[alerts]\nsmtp_pasword = "{SECRET}"\n', "alerts.smtp_pasword"),
        (f'[web]\ntokn = "{SECRET}"\n', "web.tokn"),
        ('[output]\ndirectry = "elsewhere"\n', "output.directry"),
        ('[stats]\ndimension = ["zoning"]\n', "stats.dimension"),
        ("[logging]\nmax_byte = 1000\n", "logging.max_byte"),
        ('[[columns]]\nsource = "PIN2"\nname = "pin2"\nkind = "text"\n', "columns.0.kind"),
    ],
)
def test_an_unknown_key_in_a_section_is_named_without_its_value(clean_env: Path, toml: str, key: str) -> None:
    config = clean_env / "countydatasync.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env_file=None)
    assert str(caught.value) == f"invalid settings ({config}):\n  {key}: Extra inputs are not permitted"
    checks = diagnose(config, env_file=None)
    assert [(c.name, c.status) for c in checks] == [("settings", "fail")]
    assert key in checks[0].detail and "Hunter" not in checks[0].detail


def test_an_unknown_key_from_the_environment_is_named_without_its_value(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDS_SOURCE__PASWORD", SECRET)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert str(caught.value) == "invalid settings (defaults):\n  source.pasword: Extra inputs are not permitted"


def test_the_environment_and_dotenv_still_set_section_fields(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = clean_env / "countydatasync.toml"
    config.write_text('[source]\nurl = "sqlite:///from-toml.sqlite"\n[alerts]\nrepeat_minutes = 30\n')
    dotenv = clean_env / ".env"
    dotenv.write_text(f"CDS_ALERTS__REPEAT_MINUTES=1440\nCDS_SOURCE__PASSWORD={SECRET}\n")
    dotenv.chmod(0o600)
    monkeypatch.setenv("CDS_SOURCE__URL", "postgresql+psycopg://reader@db.county.local/gis")
    monkeypatch.setenv("CDS_LOGGING__BACKUP_COUNT", "9")
    settings = load_settings(config, env_file=dotenv)
    assert settings.source.url == "postgresql+psycopg://reader@db.county.local/gis"
    assert settings.source.password is not None and settings.source.password.get_secret_value() == SECRET
    assert settings.alerts.repeat_minutes == 1440
    assert settings.logging.backup_count == 9


def test_rotation_without_a_backup_file_is_refused(clean_env: Path) -> None:
    config = clean_env / "countydatasync.toml"
    config.write_text("[logging]\nmax_bytes = 1000000\nbackup_count = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env_file=None)
    assert str(caught.value) == (
        f"invalid settings ({config}):\n  logging: Value error, backup_count must be at least 1 when max_bytes "
        "is set; set max_bytes = 0 to never rotate"
    )
    config.write_text("[logging]\nmax_bytes = 0\nbackup_count = 0\n")  # never rotated: nothing to keep
    assert load_settings(config, env_file=None).logging.backup_count == 0


@pytest.mark.parametrize(
    ("variable", "problem"),
    [
        ("CDS_SOURCE_PASSWORD", "two underscores between section and field: CDS_SOURCE__PASSWORD"),
        ("CDS_OUTPUT_DIRECTORY", "two underscores between section and field: CDS_OUTPUT__DIRECTORY"),
        ("cds_web_token", "two underscores between section and field: CDS_WEB__TOKEN"),
        ("CDS_SORCE__URL", "no settings section 'sorce' (source, columns, stats, output, web, logging, alerts)"),
    ],
)
def test_a_misnamed_environment_variable_is_named_without_its_value(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, problem: str
) -> None:
    """pydantic-settings ignores an environment variable that names no field: the run went on with the
    file's value or the default (a staging folder in the wrong place, a login without its password)."""
    monkeypatch.setenv(variable, SECRET)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert str(caught.value) == f"invalid settings (environment):\n  {variable.upper()}: {problem}"
    checks = diagnose(None, env_file=None)
    assert [(c.name, c.status) for c in checks] == [("settings", "fail")]
    assert variable.upper() in checks[0].detail and "Hunter" not in checks[0].detail
    # Without it, the other CDS_ variables (CDS_CONFIG, the tests' own) are no settings and pass unnoticed.
    monkeypatch.delenv(variable)
    for name in ("CDS_CONFIG_NOTE", "CDS_TEST_PG_URL", "CDS_GDAL_UTILS_DIR", "CDS_CHROMIUM"):
        monkeypatch.setenv(name, "anything")
    monkeypatch.setenv("CDS_SOURCE", '{"table": "Parcels"}')  # a whole section as JSON is a setting
    assert load_settings(env_file=None).source.table == "Parcels"


def test_a_list_that_is_not_json_names_its_variable(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`CDS_ALERTS__TO=gis@county.local` failed with 'error parsing value for field "alerts"': which of the
    alert settings, and what was wrong with it, nobody could tell."""
    monkeypatch.setenv("CDS_ALERTS__TO", "gis@county.local")
    dotenv = clean_env / ".env"
    dotenv.write_text("CDS_STATS__DIMENSIONS=zoning\n")
    dotenv.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=dotenv)
    assert str(caught.value) == (
        "invalid settings (environment and .env):\n"
        '  CDS_ALERTS__TO (environment): a list is written as JSON, e.g. ["first", "second"]\n'
        '  CDS_STATS__DIMENSIONS (.env): a list is written as JSON, e.g. ["first", "second"]'
    )
    monkeypatch.setenv("CDS_ALERTS__TO", '["gis@county.local"]')
    dotenv.write_text('CDS_STATS__DIMENSIONS=["zoning"]\n')
    settings = load_settings(env_file=dotenv)
    assert settings.alerts.to == ["gis@county.local"] and settings.stats.dimensions == ["zoning"]
