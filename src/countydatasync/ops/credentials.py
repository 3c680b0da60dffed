"""Passwords from the environment, `.env`, or the OS credential store, never from the settings file.

Precedence: CDS_SOURCE__PASSWORD (environment or `.env`, read by the settings) wins; when no password is
given, the OS credential store is asked through keyring (Windows Credential Manager, macOS Keychain,
Secret Service on Linux). Entries live under service `countydatasync`, keyed by `user@host/database` of
the source URL, so one machine can hold the passwords of several counties' sources; the SMTP password is
keyed `smtp:user@host`.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import keyring
import keyring.errors
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from countydatasync.errors import ConfigError, CredentialStoreError
from countydatasync.settings import Settings

log = logging.getLogger(__name__)

SERVICE = "countydatasync"


def source_key(settings: Settings) -> str:
    """The credential-store user name of the source: `user@host/database` from the source URL."""
    try:
        url = make_url(settings.source.url)
    except Exception:
        raise ConfigError("source url is not a valid database URL; fix source.url first") from None
    host = url.host or ""
    if url.port:
        host = f"{host}:{url.port}"
    return f"{url.username or ''}@{host}/{url.database or ''}"


def smtp_key(settings: Settings) -> str:
    """The credential-store user name of the SMTP login: `smtp:user@host`."""
    return f"smtp:{settings.alerts.username or ''}@{settings.alerts.smtp_host or ''}"


def _key(settings: Settings, smtp: bool) -> str:
    return smtp_key(settings) if smtp else source_key(settings)


def storable_key(settings: Settings, smtp: bool = False) -> str:
    """The key a password would be stored under; a ConfigError when the settings name no login to store
    one for (checked before anyone is asked to type a password)."""
    if smtp and not (settings.alerts.username and settings.alerts.smtp_host):
        raise ConfigError("set alerts.smtp_host and alerts.username before storing an SMTP password")
    if not smtp and not _url_user(settings.source.url):
        raise ConfigError(
            "source.url names no user (e.g. postgresql+psycopg://reader@host/db), so there is "
            "no login to store a password for; a SQLite source needs none"
        )
    return _key(settings, smtp)


def set_password(settings: Settings, password: str, smtp: bool = False) -> str:
    """Store the source (or SMTP) password in the OS credential store; returns the key it is stored under.
    Raises CredentialStoreError when no usable store is available."""
    if not password:
        raise ConfigError("refusing to store an empty password")
    key = storable_key(settings, smtp)
    try:
        keyring.set_password(SERVICE, key, password)
    except keyring.errors.KeyringError as exc:
        raise CredentialStoreError(_store_problem(exc, smtp)) from None
    return key


def delete_password(settings: Settings, smtp: bool = False) -> bool:
    """Remove the stored source (or SMTP) password; False when there was none."""
    try:
        keyring.delete_password(SERVICE, _key(settings, smtp))
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.KeyringError as exc:
        raise CredentialStoreError(_store_problem(exc, smtp)) from None
    return True


def stored_password(settings: Settings, smtp: bool = False) -> str | None:
    """The stored password, or None when there is none or no credential store is usable."""
    try:
        return keyring.get_password(SERVICE, _key(settings, smtp))
    except (keyring.errors.KeyringError, ConfigError) as exc:
        log.debug("credential store not consulted: %s", type(exc).__name__)
        return None


def _store_problem(exc: BaseException, smtp: bool) -> str:
    variable = "CDS_ALERTS__PASSWORD" if smtp else "CDS_SOURCE__PASSWORD"
    return (
        f"the OS credential store is not usable ({type(exc).__name__}: {exc}); set {variable} "
        "in the environment or a .env file readable only by the service account instead"
    )


def warn_about_env_file(path: Path = Path(".env")) -> None:
    """Log `env_file_warning` for the working folder's `.env`; for the entry points, once their logging is
    configured (while the settings are read, there is nowhere yet for the warning to go)."""
    warning = env_file_warning(path)
    if warning:
        log.warning(warning)


def env_file_warning(path: Path | None) -> str | None:
    """A warning when `.env` can be read or written by users other than its owner (POSIX permission bits;
    on Windows, folder ACLs decide and are not checked here)."""
    if path is None or os.name != "posix" or not path.is_file():
        return None
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} holds secrets but other users may read it (mode {stat.S_IMODE(mode):o}); run `chmod 600 {path}`"
    return None


def complete_settings(settings: Settings) -> Settings:
    """Settings with missing passwords filled from the credential store. The hook `load_settings` calls
    after reading the settings."""
    updates: dict[str, object] = {}
    source = settings.source
    password = _given(source.password)
    if password is None and not _has_url_password(source.url) and _url_user(source.url):
        password = _given(stored_password(settings))
    if password != source.password:
        updates["source"] = source.model_copy(update={"password": password})
    alerts = settings.alerts
    password = _given(alerts.password)
    if password is None and alerts.username and alerts.smtp_host:
        password = _given(stored_password(settings, smtp=True))
    if password != alerts.password:
        updates["alerts"] = alerts.model_copy(update={"password": password})
    return settings.model_copy(update=updates) if updates else settings


def _given(secret: SecretStr | str | None) -> SecretStr | None:
    """The secret, or None when it is missing or empty: an empty `CDS_SOURCE__PASSWORD=` (left in a `.env`
    template, say) counts as not set, so the credential store is still asked."""
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return SecretStr(value) if value else None


def _has_url_password(url: str) -> bool:
    try:
        return make_url(url).password is not None
    except Exception:
        return False


def _url_user(url: str) -> str | None:
    """The URL's user name, or None (no user, or not a valid URL): no user means no password to look up."""
    try:
        return make_url(url).username
    except Exception:
        return None
