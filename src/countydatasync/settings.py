"""One typed settings object, read from defaults, a TOML file, `.env` and the environment.

Precedence, highest first: keyword arguments, environment variables (`CDS_SOURCE__TABLE=...`),
`.env`, the TOML file (`countydatasync.toml` or `--config`/`CDS_CONFIG`), the defaults below.
The defaults describe the bundled sample county, so `countydatasync demo` needs no file at all.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from countydatasync.errors import ConfigError

DEFAULT_CONFIG_FILE = "countydatasync.toml"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ColumnType = Literal["text", "integer", "real", "date", "datetime", "boolean"]

# The fixed columns of every table that the key and the carried columns go into, in lower case: SQLite
# compares names without regard to case. They follow load/geopackage.py, load/working.py, load/stats.py and
# the temp tables of sync/apply.py and sync/reconcile.py; tests/test_settings_names.py checks them.
COLUMN_TABLES = {  # tables of the key and of every carried column
    "geo DB layer": {"fid", "geom", "gis_acres", "sync_status", "sync_note"},
    "working DB parcels": {
        "gis_acres",
        "sync_status",
        "sync_reason",
        "sync_message",
        "attr_hash",
        "geom_hash",
        "first_seen",
        "source_modified",
        "last_changed",
        "last_synced",
        "last_run_id",
        "in_geo",
    },
    "run's staged rows": {
        "gis_acres",
        "sync_reason",
        "attr_hash",
        "geom_hash",
        "source_modified",
        "staging_state",
        "staging_fid",
        "staging_geom",
    },
}
KEY_TABLES = {  # tables of the key alone
    "working DB errors": {"id", "run_id", "source_row", "reason", "message", "excerpt", "severity"},
    "working DB change_log": {"id", "run_id", "action", "changed_fields", "at"},
    "run's change-log query": {"n", "fields"},
    "run's moved boxes": {"minx", "maxx", "miny", "maxy"},
    "run's source keys": {"copies", "stored"},
}
AGGREGATE_COLUMNS = {"dimension", "value", "parcel_count"}  # the stats DB adds <measure>_sum, _count and _mean
MEASURE_SUFFIXES = ("_sum", "_count", "_mean")
# SQLite's own tables, the GeoPackage's, and the R-tree tables of a layer (rtree_<layer>_geom and its shadows).
RESERVED_LAYER = re.compile(r"^(sqlite_|gpkg_|rtree_.+_geom(_node|_parent|_rowid)?$)", re.IGNORECASE)


class SettingsSection(BaseModel):
    """Base of every section: an unknown key (`repeat_minute`, `pasword`) is an error naming it, not a
    setting silently left at its default."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _empty_means_none(cls, values: object) -> object:
        """An empty value (`CDS_ALERTS__MAX_REJECTED_SHARE=`, or `""` in TOML, which has no null) is None
        for every field that may be None: the help texts say "empty: no limit", "empty keeps ...". Without
        this, an empty number failed to parse and an empty path read as the current folder."""
        if not isinstance(values, dict):
            return values
        optional = {name for name, field in cls.model_fields.items() if type(None) in get_args(field.annotation)}
        return {k: (None if k in optional and isinstance(v, str) and not v.strip() else v) for k, v in values.items()}


class ColumnSpec(SettingsSection):
    """One attribute column carried from the source into the staging databases."""

    source: str = Field(description="Column name in the source table.")
    name: str = Field(description="Column name in the staging databases (letters, digits, underscore).")
    type: ColumnType = Field(default="text", description="Type the value is converted to.")

    @field_validator("name")
    @classmethod
    def _plain_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"output column name {value!r} must be letters, digits and underscores")
        return value


def _sample_columns() -> list[ColumnSpec]:
    pairs = [
        ("OwnerName", "owner_name", "text"),
        ("OwnerMailAddress", "owner_mail_address", "text"),
        ("SitusAddress", "situs_address", "text"),
        ("SitusCity", "situs_city", "text"),
        ("SitusZip", "situs_zip", "text"),
        ("LandUseCode", "land_use", "text"),
        ("LandUseDesc", "land_use_desc", "text"),
        ("Zoning", "zoning", "text"),
        ("Neighborhood", "neighborhood", "text"),
        ("TaxDistrict", "tax_district", "text"),
        ("SchoolDistrict", "school_district", "text"),
        ("Subdivision", "subdivision", "text"),
        ("Acres", "acres", "real"),
        ("LandValue", "land_value", "real"),
        ("ImprValue", "improvement_value", "real"),
        ("TotalValue", "total_value", "real"),
        ("YearBuilt", "year_built", "integer"),
        ("BldgSqFt", "building_sqft", "integer"),
        ("LastSaleDate", "last_sale_date", "date"),
        ("LastSalePrice", "last_sale_price", "real"),
        ("LegalDesc", "legal_description", "text"),
        ("ExemptionCode", "exemption_code", "text"),
        ("TaxYear", "tax_year", "integer"),
        ("LastModified", "last_modified", "datetime"),
    ]
    return [ColumnSpec(source=s, name=n, type=t) for s, n, t in pairs]  # type: ignore[arg-type]


class SourceSettings(SettingsSection):
    """Where MasterParcels lives and how its key and geometry are stored."""

    url: str = Field(
        default="sqlite:///data/sample_county.sqlite",
        description="SQLAlchemy URL of the source database, without the password "
        "(sqlite:///file, postgresql://user@host/db, mssql+pyodbc://user@dsn).",
    )
    password: SecretStr | None = Field(
        default=None,
        description="Source password. Prefer CDS_SOURCE__PASSWORD, .env or the OS credential store to writing it here.",
    )
    db_schema: str | None = Field(default=None, description="Database schema of the table (e.g. dbo, public).")
    table: str = Field(default="MasterParcels", description="Source table (or view) name.")
    key_column: str = Field(default="PIN", description="Parcel number column: the key of every parcel.")
    key_name: str = Field(default="pin", description="Name of the key column in the staging databases.")
    geometry_column: str = Field(default="Shape", description="Geometry column.")
    geometry_encoding: Literal["wkb", "wkt", "native"] = Field(
        default="wkb",
        description="How the geometry is stored: wkb (binary), wkt (text) or native (PostGIS / SQL Server type).",
    )
    srid: int | None = Field(
        default=2927,
        description="EPSG code of the source coordinates, used where the column carries none.",
    )
    modified_column: str | None = Field(
        default="LastModified",
        description="Trustworthy last-modified timestamp column; enables watermark extraction. "
        "Leave empty to compare content hashes over a full scan.",
    )
    timezone: str = Field(
        default="UTC",
        description="Time zone of source timestamps stored without one (e.g. America/Los_Angeles); "
        "staging databases hold UTC.",
    )
    modified_overlap_seconds: int = Field(
        default=300,
        description="Re-read rows modified this long before the last watermark, for clocks and "
        "transactions that commit late; re-read unchanged rows are recognised by their hash.",
    )
    batch_size: int = Field(
        default=10_000,
        ge=1,
        description="Rows per extraction batch; memory grows with it (about 5 KB a row in flight).",
    )
    max_retries: int = Field(default=5, ge=0, description="Retries of a batch after a transient failure.")
    retry_backoff_seconds: float = Field(
        default=1.0, ge=0, description="First retry delay; doubles on each further retry."
    )
    connect_timeout_seconds: int = Field(
        default=30,
        ge=2,
        description="A server source (PostgreSQL, SQL Server) that does not answer a connection attempt within "
        "this long counts as down for that try, and the retries follow.",
    )

    @field_validator("key_name")
    @classmethod
    def _plain_key_name(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"key_name {value!r} must be letters, digits and underscores")
        return value


class StatsSettings(SettingsSection):
    """Which carried columns (by output name) feed the aggregates in the stats DB."""

    dimensions: list[str] = Field(
        default=["land_use", "zoning", "neighborhood", "tax_district"],
        description="Group-by columns: one set of aggregates per column.",
    )
    measures: list[str] = Field(
        default=["acres", "land_value", "improvement_value", "total_value"],
        description="Numeric columns summed and averaged per group.",
    )


class OutputSettings(SettingsSection):
    """The three staging databases."""

    directory: Path = Field(default=Path("staging"), description="Folder of the staging databases.")
    geo_db: str = Field(default="parcels.gpkg", description="GeoPackage file name (the geo DB).")
    stats_db: str = Field(default="stats.sqlite", description="Aggregates and run history (the stats DB).")
    working_db: str = Field(
        default="working.sqlite", description="Attribute copy, sync status and change log (the working DB)."
    )
    layer: str = Field(default="parcels", description="GeoPackage layer (table) name.")
    target_srid: int | None = Field(default=None, description="EPSG code to reproject to; empty keeps the source CRS.")
    busy_timeout_seconds: float = Field(
        default=60.0,
        description="How long a sync waits for readers holding a staging database in a transaction.",
    )

    @field_validator("layer")
    @classmethod
    def _plain_layer(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"layer {value!r} must be letters, digits and underscores")
        if RESERVED_LAYER.match(value):
            raise ValueError(
                f"layer {value!r} is reserved: names starting with sqlite_ or gpkg_, and rtree_..._geom names, "
                "belong to SQLite, the GeoPackage or its R-tree indexes; choose another"
            )
        return value

    @property
    def geo_path(self) -> Path:
        return self.directory / self.geo_db

    @property
    def stats_path(self) -> Path:
        return self.directory / self.stats_db

    @property
    def working_path(self) -> Path:
        return self.directory / self.working_db


class WebSettings(SettingsSection):
    """The dashboard and REST API started by `countydatasync serve`."""

    host: str = Field(
        default="127.0.0.1",
        description="Address the server listens on; 127.0.0.1 keeps it on this machine. Use 0.0.0.0 only "
        "behind a firewall or reverse proxy.",
    )
    port: int = Field(default=8750, ge=1, le=65535, description="TCP port the server listens on.")
    token: SecretStr | None = Field(
        default=None,
        description="Bearer token that POST /api/sync requires. Empty disables starting syncs from the web. "
        "Prefer CDS_WEB__TOKEN or .env to writing it here.",
    )
    basemap_url: str | None = Field(
        default=None,
        description="Tile URL template for a basemap under the parcels, e.g. "
        "https://tiles.example.gov/{z}/{x}/{y}.png; empty shows the parcels alone (works offline).",
    )
    basemap_attribution: str = Field(default="", description="Attribution text shown for the basemap.")
    feature_cap: int = Field(
        default=5000,
        ge=1,
        le=100_000,
        description="Most parcels one map request returns; a larger viewport gets the first ones and a "
        "'truncated' flag, and the map asks the user to zoom in.",
    )
    cors_origins: list[str] = Field(
        default=[],
        description="Origins allowed to call the API from other web pages (CORS); empty allows none.",
    )
    schedule_every: str | None = Field(
        default=None,
        description="Run a sync in the background of `serve` at this interval (30s, 15m, 1h, 1d; the first run comes "
        "one interval after the server starts); empty: no schedule. `serve --every` overrides it.",
    )
    schedule_cron: str | None = Field(
        default=None,
        description="Run a sync in the background of `serve` on this cron schedule, in the server's local "
        "time (e.g. '*/15 * * * *'); empty: no schedule. `serve --cron` overrides it. Set this or "
        "schedule_every, not both.",
    )

    @field_validator("basemap_url")
    @classmethod
    def _http_template(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"basemap_url {value!r} must start with https:// or http://")
        return value

    @model_validator(mode="after")
    def _one_valid_schedule(self) -> WebSettings:
        from countydatasync.ops.schedule import schedule_from

        self.schedule_every = self.schedule_every or None
        self.schedule_cron = self.schedule_cron or None
        try:
            schedule_from(self.schedule_every, self.schedule_cron)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


class LoggingSettings(SettingsSection):
    """Where the service writes its log; the CLI and the server set this up once at start."""

    file: Path = Field(default=Path("logs/countydatasync.log"), description="Log file (rotated by size).")
    max_bytes: int = Field(default=10_000_000, ge=0, description="Rotate the log file at this size (0: never).")
    backup_count: int = Field(
        default=5, ge=0, description="Rotated log files kept beside the current one (at least 1 when max_bytes is set)."
    )
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level written to the file and the console."
    )
    json_lines: bool = Field(
        default=False, description="Write the log file as JSON lines (one object per record) for log shippers."
    )

    @model_validator(mode="after")
    def _rotation_keeps_a_file(self) -> LoggingSettings:
        # Rotating into no backup file would either empty the log or never rotate it at all.
        if self.max_bytes > 0 and self.backup_count < 1:
            raise ValueError("backup_count must be at least 1 when max_bytes is set; set max_bytes = 0 to never rotate")
        return self


class AlertSettings(SettingsSection):
    """E-mail alerts for failed runs and runs that reject too many rows. Off until smtp_host and to are set."""

    smtp_host: str | None = Field(default=None, description="SMTP server; empty disables alerts.")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port (587 STARTTLS, 465 SSL, 25 none).")
    security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls", description="starttls (upgrade after connecting), ssl (TLS from the start) or none."
    )
    ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the SMTP server's certificate, when it is "
        "not in the system's trust store (an internal CA).",
    )
    username: str | None = Field(default=None, description="SMTP login; empty sends without logging in.")
    password: SecretStr | None = Field(
        default=None, description="SMTP password. Prefer CDS_ALERTS__PASSWORD or .env to writing it here."
    )
    sender: str = Field(default="countydatasync@localhost", description="From address.")
    to: list[str] = Field(default=[], description="Recipients.")
    subject_prefix: str = Field(default="[CountyDataSync]", description="Start of every alert's subject.")
    on_failure: bool = Field(default=True, description="Send an alert when a run fails.")
    max_rejected_rows: int | None = Field(
        default=None,
        ge=0,
        description="Alert when a run rejects more rows than this, not counting parcels already in error "
        "before the run (every run re-reads them); empty: no count limit.",
    )
    max_rejected_share: float | None = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Alert when a run rejects more than this share of the rows it extracted (0.05 = 5%), "
        "not counting parcels already in error before the run; empty: no share limit.",
    )
    repeat_minutes: float = Field(
        default=60.0, ge=0, description="An identical alert is not sent again within this many minutes."
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="Longest an alert may take: connecting, TLS, login and sending."
    )

    @property
    def configured(self) -> bool:
        return bool(self.smtp_host and self.to)


class _TomlFile(TomlConfigSettingsSource):
    """The settings file, read as TOML after a UTF-8 byte order mark: Windows editors (Notepad before 2019,
    PowerShell 5's `Out-File -Encoding utf8`) start files with one, and TOML does not allow it."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        data = Path(file_path).read_bytes().removeprefix(codecs.BOM_UTF8)
        return tomllib.loads(data.decode("utf-8"))


def _same_names(names: list[str]) -> list[list[str]]:
    """The names given more than once, in groups of those SQLite takes for one (it ignores case)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.lower(), []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def _tables_with(name: str, tables: dict[str, set[str]]) -> list[str]:
    """The tables that have a fixed column called `name`, in any case."""
    return [table for table, fixed in tables.items() if name.lower() in fixed]


def _name_problems(key: str, columns: list[str], stats: StatsSettings) -> list[str]:
    """One message per output name that would meet another in one of our tables: SQLite refuses a table
    with two columns of one name, and it ignores case when it compares them."""
    problems = []
    if taken := _tables_with(key, {**COLUMN_TABLES, **KEY_TABLES}):
        problems.append(
            f"source.key_name {key!r} is reserved: a column of that name (in any case) is in the "
            f"{' and the '.join(taken)}; choose another"
        )
    if twice := _same_names([key, *columns]):
        problems.append(
            "columns: output names used twice (SQLite ignores case; source.key_name counts): "
            + ", ".join(" = ".join(group) for group in twice)
        )
    if reserved := [f"{n} ({', '.join(t)})" for n in columns if (t := _tables_with(n, COLUMN_TABLES))]:
        problems.append(f"columns: output names reserved: {', '.join(reserved)} (SQLite ignores case)")
    for setting, names in (("dimensions", stats.dimensions), ("measures", stats.measures)):
        if twice := _same_names(names):
            problems.append(f"stats.{setting}: listed more than once: {', '.join(group[0] for group in twice)}")
    derived = [m + s for m in stats.measures for s in MEASURE_SUFFIXES if (m + s).lower() in AGGREGATE_COLUMNS]
    if derived:
        problems.append(
            f"stats.measures: the stats DB's aggregates table has a column {', '.join(derived)} of its own; "
            "rename the measure's column"
        )
    return problems


class Settings(BaseSettings):
    """Everything a run needs. Each field has a default and help text; `countydatasync init` writes them out."""

    model_config = SettingsConfigDict(
        env_prefix="CDS_",
        env_nested_delimiter="__",
        env_file=".env",
        # Lines of `.env` without the CDS_ prefix belong to other tools (PGPASSWORD, say) and are left alone;
        # a CDS_ line that names no setting is an error, as in the environment.
        dotenv_filtering="match_prefix",
        extra="forbid",
        toml_file=None,
    )

    source: SourceSettings = Field(default_factory=SourceSettings, description="The source database.")
    columns: list[ColumnSpec] = Field(
        default_factory=_sample_columns, description="Attribute columns carried to the staging databases."
    )
    stats: StatsSettings = Field(default_factory=StatsSettings, description="Aggregates in the stats DB.")
    output: OutputSettings = Field(default_factory=OutputSettings, description="The staging databases.")
    web: WebSettings = Field(default_factory=WebSettings, description="The web dashboard and API.")
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="The log file.")
    alerts: AlertSettings = Field(default_factory=AlertSettings, description="E-mail alerts.")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        problems = _name_problems(self.source.key_name, [c.name for c in self.columns], self.stats)
        if problems:
            raise ValueError("; ".join(problems))
        types = {c.name: c.type for c in self.columns}
        for dim in self.stats.dimensions:
            if dim not in types:
                raise ValueError(f"stats dimension {dim!r} is not a carried column name")
        for measure in self.stats.measures:
            if types.get(measure) not in ("integer", "real"):
                raise ValueError(f"stats measure {measure!r} must be a carried integer or real column")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, _TomlFile(settings_cls))

    def column_type(self, name: str) -> ColumnType:
        """Type of a carried column by output name."""
        for column in self.columns:
            if column.name == name:
                return column.type
        raise KeyError(name)


class ResolvedSettings(Settings):
    """Settings from the values given and the defaults only: no settings file, `.env` or environment is
    read. For the demo, which runs on the defaults wherever it is started, and for a child process's copy
    of settings resolved already."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _is_list(annotation: object) -> bool:
    return get_origin(annotation) is list


def _misnamed(variable: str) -> str | None:
    """What is wrong with a CDS_ variable that names no setting, or None when it is one or is not meant as
    one (CDS_CONFIG, a test's CDS_TEST_PG_URL). pydantic-settings ignores such a variable, so without this
    `CDS_OUTPUT_DIRECTORY=/srv/staging` left the staging folder where the file or the default puts it."""
    name = variable.upper().removeprefix("CDS_")
    sections = Settings.model_fields
    if "__" in name:
        section = name.split("__", 1)[0].lower()
        return None if section in sections else f"no settings section {section!r} ({', '.join(sections)})"
    for section in sections:
        if name.lower().startswith(section + "_"):
            field = name[len(section) + 1 :]
            return f"two underscores between section and field: CDS_{section.upper()}__{field}"
    return None


def _undecodable_list(variable: str, value: str | None) -> bool:
    """True when `variable` sets a list setting (alerts.to, stats.dimensions, ...) to something that is not
    JSON, which pydantic-settings reports without saying which variable it was."""
    name = variable.upper().removeprefix("CDS_").lower()
    section, _, field = name.partition("__")
    model = Settings.model_fields.get(section)
    if model is None:
        return False
    annotation = model.annotation
    if field:
        fields = getattr(annotation, "model_fields", {})
        annotation = fields[field].annotation if field in fields else None
    if not _is_list(annotation) or not value:
        return False
    try:
        json.loads(value)
    except ValueError:
        return True
    return False


def _variable_problems(environ: Mapping[str, str], dotenv: Mapping[str, str | None]) -> list[str]:
    """One line per CDS_ variable (environment or `.env`) that cannot mean what it was set for, naming the
    variable, never its value. Misnamed keys in `.env` are already extra inputs to the settings."""
    problems = []
    ours = [(n, v, "environment") for n, v in environ.items()] + [(n, v, ".env") for n, v in dotenv.items()]
    for name, value, origin in ours:
        if not name.upper().startswith("CDS_"):
            continue
        if origin == "environment" and (problem := _misnamed(name)):
            problems.append(f"{name.upper()}: {problem}")
        elif _undecodable_list(name, value):
            problems.append(f'{name.upper()} ({origin}): a list is written as JSON, e.g. ["first", "second"]')
    return problems


def _check_variables(env_file: Path | None) -> None:
    dotenv = dotenv_values(env_file, encoding="utf-8") if env_file else {}
    problems = _variable_problems(os.environ, dotenv)
    if problems:
        origins = "environment and .env" if any("(.env)" in p for p in problems) else "environment"
        raise ConfigError(f"invalid settings ({origins}):\n  " + "\n  ".join(problems))


def load_settings(config: Path | None = None, env_file: Path | None = Path(".env")) -> Settings:
    """Read settings from `config` (default: $CDS_CONFIG or ./countydatasync.toml if present), `.env`
    and the environment. A config path that was asked for but does not exist is an error."""
    explicit = config or (Path(os.environ["CDS_CONFIG"]) if os.environ.get("CDS_CONFIG") else None)
    path = explicit or Path(DEFAULT_CONFIG_FILE)
    if explicit is not None and not explicit.is_file():
        raise ConfigError(f"settings file {explicit} does not exist; create one with `countydatasync init`")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=path if path.is_file() else None)

    env_file = env_file if env_file and env_file.is_file() else None
    where = f"{path if path.is_file() else 'defaults'}{', .env' if env_file else ''}"
    try:
        _check_variables(env_file)
        settings = _FromFile(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        # Where and why, never the value: a password under a mistyped name is reported as an extra input.
        errors = exc.errors(include_input=False)
        problems = [f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in errors]
        raise ConfigError(f"invalid settings ({where}):\n  " + "\n  ".join(problems)) from None
    except ValueError as exc:  # a malformed TOML file
        raise ConfigError(f"invalid settings ({where}): {exc}") from exc
    from countydatasync.ops.credentials import complete_settings  # passwords from the OS store

    return complete_settings(settings)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        value = value.as_posix()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def settings_template(settings: Settings | None = None) -> str:
    """A commented TOML settings file with every field, its help text and its value (default: the
    defaults). Secrets are never written: they belong in the environment, `.env` or the credential store."""
    settings = settings or Settings.model_construct()
    lines = [
        "# CountyDataSync settings. Environment variables override this file: CDS_SECTION__FIELD,",
        "# e.g. CDS_SOURCE__URL or CDS_SOURCE__PASSWORD (also read from .env).",
        "",
    ]
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, list):  # the carried columns
            lines.append(f"# {field.description}")
            for column in value:
                lines += [f"[[{name}]]", *(f"{k} = {_toml_value(v)}" for k, v in column.model_dump().items()), ""]
            continue
        lines.append(f"[{name}]  # {field.description}")
        for sub, sub_field in type(value).model_fields.items():
            current = getattr(value, sub)
            lines.append(f"# {sub_field.description}")
            if isinstance(current, SecretStr) or sub == "password":
                store = {
                    "source": " or use `countydatasync credentials set`",
                    "alerts": " or use `countydatasync credentials set --smtp`",
                }.get(name, "")  # the OS credential store keeps these two
                hint = f"set CDS_{name.upper()}__{sub.upper()}{store}"
                lines.append(f"# {sub} = ({hint})")
            elif current is None:
                lines.append(f"# {sub} =")
            else:
                lines.append(f"{sub} = {_toml_value(current)}")
        lines.append("")
    return "\n".join(lines)
