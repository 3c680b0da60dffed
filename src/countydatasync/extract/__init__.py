"""Extract: read MasterParcels from the configured database in key-ordered batches.

Backends register here by URL scheme; adding one is a module and a line in `BACKENDS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from sqlalchemy.engine import URL, make_url

from countydatasync.errors import ConfigError
from countydatasync.extract.base import RAW_GEOM, RAW_KEY, RAW_MODIFIED, RAW_SRID, Source, SourceSpec
from countydatasync.settings import Settings

# URL scheme (before any "+driver") -> "module:class". Imported lazily so a driver is needed only when used.
BACKENDS: dict[str, str] = {
    "sqlite": "countydatasync.extract.sqlite:SqliteSource",
    # Both spellings libpq accepts; any driver in the URL (postgresql://, +psycopg) means psycopg 3.
    "postgresql": "countydatasync.extract.postgres:PostgresSource",
    "postgres": "countydatasync.extract.postgres:PostgresSource",
    "mssql": "countydatasync.extract.mssql:MssqlSource",
}

__all__ = ["RAW_GEOM", "RAW_KEY", "RAW_MODIFIED", "RAW_SRID", "Source", "SourceSpec", "open_source"]


def source_url(settings: Settings) -> URL:
    """The configured URL with the password (kept apart in settings) filled in."""
    try:
        url = make_url(settings.source.url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in the text: keep it out
        raise ConfigError(f"source url is not a valid database URL ({type(exc).__name__})") from None
    if settings.source.password is not None:
        url = url.set(password=settings.source.password.get_secret_value())
    return url


def open_source(settings: Settings) -> Source:
    """The backend for the configured URL, connected lazily."""
    url = source_url(settings)
    scheme = url.get_backend_name()
    target = BACKENDS.get(scheme)
    if target is None:
        raise ConfigError(f"no source backend for {scheme!r} URLs; known: {', '.join(sorted(BACKENDS))}")
    module_name, class_name = target.split(":")
    factory: Callable[[URL, SourceSpec], Source] = getattr(importlib.import_module(module_name), class_name)
    return factory(url, SourceSpec.from_settings(settings))
