"""`doctor`: check everything a sync needs before the first unattended run fails at 3 a.m.

Each check returns (name, status, detail) with status pass, warn (works, but should be fixed: a source
account that could write, alerts switched off) or fail (a sync or an alert would not work). Source checks
go through the same backend and catalog check a sync uses; privilege checks are per database.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import sqlalchemy as sa

from countydatasync.errors import ConfigError, CountyDataSyncError
from countydatasync.extract import open_source, source_url
from countydatasync.extract.base import SourceSpec
from countydatasync.extract.sql import SqlSource
from countydatasync.ops import privileges
from countydatasync.ops.credentials import env_file_warning
from countydatasync.ops.redact import redact, settings_secrets
from countydatasync.settings import DEFAULT_CONFIG_FILE, Settings, load_settings

Status = Literal["pass", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str


def diagnose(config: Path | None = None, env_file: Path | None = Path(".env")) -> list[Check]:
    """Load the settings like a sync would, then run every check; a settings failure is the only line."""
    try:
        settings = load_settings(config, env_file=env_file)
    except ConfigError as exc:
        return [Check("settings", "fail", redact(str(exc)))]
    file = (
        config
        or os.environ.get("CDS_CONFIG")
        or (DEFAULT_CONFIG_FILE if Path(DEFAULT_CONFIG_FILE).is_file() else "defaults")
    )
    return [
        Check("settings", "pass", f"valid ({file}, .env and environment)"),
        *run_checks(settings, env_file),
    ]


def run_checks(settings: Settings, env_file: Path | None = None) -> list[Check]:
    """Every check after the settings loaded: secrets, source, folders, GDAL, PROJ, SMTP."""
    checks = [check_secrets(settings, env_file)]
    checks += check_source(settings)
    checks += [
        check_writable("output folder", settings.output.directory),
        check_writable("log folder", settings.logging.file.parent),
        check_log_file(settings.logging.file),
        check_gdal(),
        check_proj(settings),
        check_smtp(settings),
    ]
    return checks


def has_failure(checks: list[Check]) -> bool:
    return any(c.status == "fail" for c in checks)


def check_secrets(settings: Settings, env_file: Path | None) -> Check:
    """Passwords belong in the environment, `.env` (private) or the credential store, not in the URL."""
    problems = []
    try:
        if sa.engine.make_url(settings.source.url).password is not None:
            problems.append(
                "source.url contains a password; move it to CDS_SOURCE__PASSWORD or `countydatasync credentials set`"
            )
    except Exception:  # noqa: S110  (an invalid URL is reported by the source check)
        pass
    warning = env_file_warning(env_file)
    if warning:
        problems.append(warning)
    if problems:
        return Check("secrets", "warn", "; ".join(problems))
    return Check("secrets", "pass", "no password in the URL or in a file others can read")


def _open(settings: Settings) -> SqlSource:
    """The sync's own backend; the generic SQLAlchemy source for schemes without one yet."""
    try:
        return open_source(settings)  # type: ignore[return-value]
    except ConfigError as exc:
        if "no source backend" not in str(exc):
            raise
        return SqlSource(source_url(settings), SourceSpec.from_settings(settings))


def check_source(settings: Settings) -> list[Check]:
    """Reachable, table and columns present with usable types, account read-only."""
    secrets = settings_secrets(settings)
    try:
        source = _open(settings)
    except CountyDataSyncError as exc:
        return [Check("source reachable", "fail", redact(str(exc), secrets))]
    except Exception as exc:  # a missing driver, a malformed URL option
        return [Check("source reachable", "fail", redact(f"{type(exc).__name__}: {exc}", secrets))]
    where = redact(source.description, secrets)
    try:
        try:
            with source.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:
            text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            return [
                Check(
                    "source reachable",
                    "fail",
                    redact(f"{where}: {type(exc).__name__}: {text[0] if text else ''}", secrets),
                )
            ]
        checks = [Check("source reachable", "pass", where)]
        try:
            source.table()
        except CountyDataSyncError as exc:
            return [*checks, Check("source table", "fail", redact(str(exc), secrets))]
        name = (
            f"{settings.source.db_schema}.{settings.source.table}"
            if settings.source.db_schema
            else settings.source.table
        )
        checks.append(Check("source table", "pass", f"{name} has every configured column"))
        checks.append(check_column_types(source.engine, settings))
        checks.append(check_read_only(source))
        return checks
    finally:
        source.close()


def _kind(column_type: sa.types.TypeEngine[object]) -> str:
    if isinstance(column_type, sa.Boolean):
        return "boolean"
    if isinstance(column_type, sa.Integer):
        return "integer"
    if isinstance(column_type, sa.Numeric | sa.Float):
        return "real"
    if isinstance(column_type, sa.DateTime | sa.Date):
        return "datetime"
    if isinstance(column_type, sa.String):
        return "text"
    if isinstance(column_type, sa.LargeBinary):
        return "binary"
    return "other"  # geometry types, user-defined types, types the dialect does not know


# Configured type -> source column kinds it can be converted from (text converts row by row, with rejects).
_USABLE = {
    "text": {"text", "integer", "real", "datetime", "boolean"},
    "integer": {"integer", "real", "text", "boolean"},
    "real": {"real", "integer", "text"},
    "date": {"datetime", "text"},
    "datetime": {"datetime", "text"},
    "boolean": {"boolean", "integer", "text"},
}
_GEOMETRY = {"wkb": {"binary", "other"}, "wkt": {"text"}, "native": {"other"}}


def check_column_types(engine: sa.Engine, settings: Settings) -> Check:
    """Compare the catalog's column types with what the settings say the columns hold."""
    src = settings.source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sa.exc.SAWarning)  # "did not recognize type 'geometry'"
        columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns(src.table, schema=src.db_schema)}
    problems = []

    def expect(column: str, allowed: set[str], what: str) -> None:
        kind = _kind(columns[column])
        if kind not in allowed:
            problems.append(f"{column} is {columns[column]!s} ({kind}), {what}")

    expect(src.key_column, {"text", "integer"}, "a parcel key should be text or integer")
    expect(
        src.geometry_column,
        _GEOMETRY[src.geometry_encoding],
        f"which does not look like geometry_encoding '{src.geometry_encoding}'",
    )
    if src.modified_column:
        expect(src.modified_column, {"datetime", "text"}, "a modified column should be a date/time")
    for spec in settings.columns:
        expect(spec.source, _USABLE[spec.type], f"cannot become {spec.type} ({spec.name})")
    if problems:
        return Check("column types", "warn", "; ".join(problems))
    return Check("column types", "pass", f"{len(columns)} columns in {src.table}; every configured one is usable")


def check_read_only(source: SqlSource) -> Check:
    """Least privilege: a sync only reads, so an account that can write is one leaked password from harm."""
    dialect = source.engine.dialect.name
    checker: Callable[[sa.Connection, SourceSpec], tuple[bool, str]] | None = {
        "postgresql": privileges.postgresql,
        "mssql": privileges.mssql,
    }.get(dialect)
    if dialect == "sqlite":
        if source.engine.url.query.get("mode") == "ro" or "mode=ro" in str(source.engine.url.database):
            return Check("read-only account", "pass", "the SQLite file is opened read-only (mode=ro)")
        return Check("read-only account", "warn", "the SQLite file is opened read-write")
    if checker is None:
        return Check("read-only account", "warn", f"privileges cannot be checked on {dialect} sources")
    try:
        with source.engine.connect() as conn:
            writes, detail = checker(conn, source.spec)
    except Exception as exc:
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return Check(
            "read-only account",
            "warn",
            redact(f"could not read privileges: {type(exc).__name__}: {text[0] if text else ''}"),
        )
    return Check("read-only account", "warn" if writes else "pass", detail)


def check_writable(name: str, folder: Path) -> Check:
    """The folder (or, when missing, the nearest existing parent that would hold it) accepts a new file."""
    target = folder
    while not target.exists() and target.parent != target:
        target = target.parent
    note = "" if target == folder else f" (missing; would be created under {target.resolve()})"
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".cds-doctor-"):
            pass
    except OSError as exc:
        return Check(name, "fail", f"cannot write in {target}: {exc.strerror}")
    return Check(name, "pass", f"{folder.resolve()} is writable{note}")


def check_log_file(path: Path) -> Check:
    """The log file opens for appending, as a run opens it (created here when missing): a writable folder
    can still hold a log file the account cannot write, and a run refuses to start without its log."""
    if not path.parent.is_dir():
        return Check("log file", "pass", f"{path} will be created with its folder")
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        return Check("log file", "fail", f"cannot append to {path}: {exc.strerror or exc}")
    return Check("log file", "pass", f"{path.resolve()} is writable")


def check_gdal() -> Check:
    """pyogrio's GDAL can write GeoPackages and has its data files (EPSG tables, GPKG templates)."""
    try:
        import pyogrio
    except Exception as exc:
        return Check("GDAL", "fail", f"pyogrio cannot be loaded: {type(exc).__name__}: {exc}")
    mode = pyogrio.list_drivers().get("GPKG", "")
    data = pyogrio.get_gdal_data_path()
    if "w" not in mode:
        return Check("GDAL", "fail", f"GDAL {pyogrio.__gdal_version_string__} cannot write GeoPackages")
    if not data or not Path(data).is_dir():
        return Check("GDAL", "fail", f"GDAL {pyogrio.__gdal_version_string__}: no GDAL_DATA folder found")
    return Check("GDAL", "pass", f"GDAL {pyogrio.__gdal_version_string__}, GPKG driver, data in {data}")


def check_proj(settings: Settings) -> Check:
    """PROJ's database resolves the configured EPSG codes (EPSG:2927 at least)."""
    try:
        from pyproj import CRS, datadir

        folder = datadir.get_data_dir()
        codes = sorted({c for c in (2927, settings.source.srid, settings.output.target_srid) if c})
        names = [f"EPSG:{c} {CRS.from_epsg(c).name}" for c in codes]
    except Exception as exc:
        return Check("PROJ", "fail", f"{type(exc).__name__}: {exc}")
    return Check("PROJ", "pass", f"data in {folder}; " + "; ".join(names))


def check_smtp(settings: Settings) -> Check:
    """The SMTP server answers, TLS works and the login is accepted, when alerts are configured."""
    alerts = settings.alerts
    if not alerts.configured:
        return Check(
            "SMTP",
            "warn",
            "alerts are off: nobody hears about failed runs (set alerts.smtp_host and alerts.to)",
        )
    from countydatasync.ops.alerts import smtp_exchange

    try:
        smtp_exchange(alerts, lambda server: server.noop())
    except Exception as exc:
        return Check(
            "SMTP",
            "fail",
            redact(f"{alerts.smtp_host}:{alerts.smtp_port}: {type(exc).__name__}: {exc}", settings_secrets(settings)),
        )
    login = f", logged in as {alerts.username}" if alerts.username else ""
    return Check("SMTP", "pass", f"{alerts.smtp_host}:{alerts.smtp_port} answered ({alerts.security}{login})")
