"""doctor against real databases: the SQLite sample, and PostgreSQL with a read-only and a read-write role."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.dialects.mssql import pyodbc as _mssql_pyodbc  # noqa: F401  (registers mssql.pyodbc)
from typer.testing import CliRunner

from countydatasync.cli import app
from countydatasync.extract.base import SourceSpec
from countydatasync.ops import privileges
from countydatasync.ops.doctor import Check, check_smtp, check_writable, diagnose, has_failure, run_checks
from countydatasync.sample.county import SampleCounty, write_sample_county
from countydatasync.settings import Settings

from .smtp_server import PASSWORD, USER, free_port, make_ca, start_server

PG_URL = os.environ.get("CDS_TEST_PG_URL")
RO_PASSWORD = "Ro;pa}ss@% 1"
RW_PASSWORD = "Rw;pa}ss@% 2"


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_county(tmp_path_factory.mktemp("doctor") / "county.sqlite", SampleCounty(parcels=200, seed=3))


def _sqlite_settings(county: Path, tmp_path: Path, **sections: object) -> Settings:
    return Settings(
        source={"url": f"sqlite:///{county}", **sections.pop("source", {})},  # type: ignore[dict-item]
        output={"directory": tmp_path / "staging"},
        logging={"file": tmp_path / "logs" / "cds.log"},
        **sections,
    )


def test_the_sample_county_passes(county: Path, tmp_path: Path) -> None:
    checks = _by_name(run_checks(_sqlite_settings(county, tmp_path)))
    for name in (
        "source reachable",
        "source table",
        "column types",
        "read-only account",
        "output folder",
        "log folder",
        "log file",
        "GDAL",
        "PROJ",
        "secrets",
    ):
        assert checks[name].status == "pass", checks[name]
    assert "mode=ro" in checks["read-only account"].detail
    assert "EPSG:2927" in checks["PROJ"].detail and "GDAL 3." in checks["GDAL"].detail
    assert checks["SMTP"].status == "warn"  # alerts off by default: nobody would hear about failures


def test_missing_columns_and_wrong_types_are_named(county: Path, tmp_path: Path) -> None:
    missing = _sqlite_settings(
        county,
        tmp_path,
        columns=[{"source": "NoSuchColumn", "name": "x"}],
        stats={"dimensions": [], "measures": []},
    )
    table = _by_name(run_checks(missing))["source table"]
    assert table.status == "fail" and "NoSuchColumn" in table.detail
    wkt = _sqlite_settings(county, tmp_path, source={"geometry_encoding": "wkt"})
    types = _by_name(run_checks(wkt))["column types"]
    assert types.status == "warn" and "Shape" in types.detail and "'wkt'" in types.detail


def test_an_unwritable_output_folder_fails(tmp_path: Path) -> None:
    if os.name != "posix" or os.geteuid() == 0:
        # root writes anywhere; use a path under a regular file instead, which no one can create
        blocker = tmp_path / "file"
        blocker.write_text("")
        check = check_writable("output folder", blocker / "staging")
        assert check.status == "fail"
        return
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert check_writable("output folder", locked).status == "fail"


def test_a_log_file_the_account_cannot_append_to_fails(county: Path, tmp_path: Path) -> None:
    settings = _sqlite_settings(county, tmp_path)
    log_file = settings.logging.file
    log_file.mkdir(parents=True)  # a folder where the file should be: no account can append to it, root neither
    checks = _by_name(run_checks(settings))
    assert checks["log folder"].status == "pass"
    assert checks["log file"] == Check("log file", "fail", f"cannot append to {log_file}: Is a directory")
    log_file.rmdir()
    assert _by_name(run_checks(settings))["log file"] == Check("log file", "pass", f"{log_file} is writable")
    assert log_file.is_file(), "created, as the first run would"
    if os.name == "posix" and os.geteuid() != 0:
        log_file.chmod(0o400)
        assert _by_name(run_checks(settings))["log file"].status == "fail"


def test_smtp_answers_or_fails(tmp_path: Path) -> None:
    ca, ca_file = make_ca(tmp_path)
    controller, _ = start_server(ca, implicit_tls=False)
    alerts = {
        "smtp_host": "127.0.0.1",
        "smtp_port": controller.port,
        "ca_file": ca_file,
        "username": USER,
        "password": PASSWORD,
        "to": ["gis@county.local"],
    }
    try:
        ok = check_smtp(Settings(alerts=alerts))
        wrong = check_smtp(Settings(alerts={**alerts, "password": "Wrong;pw}1"}))
    finally:
        controller.stop()
    dead = check_smtp(Settings(alerts={**alerts, "smtp_port": free_port(), "timeout_seconds": 2}))
    assert ok.status == "pass" and f"logged in as {USER}" in ok.detail
    assert wrong.status == "fail" and "SMTPAuthenticationError" in wrong.detail and "Wrong" not in wrong.detail
    assert dead.status == "fail" and "ConnectionRefusedError" in dead.detail


def test_cli_exit_code_follows_failures(county: Path, tmp_path: Path, clean_env: Path) -> None:
    runner = CliRunner()
    config = clean_env / "countydatasync.toml"
    config.write_text(f'[source]\nurl = "sqlite:///{county.as_posix()}"\n')
    good = runner.invoke(app, ["doctor", "--config", str(config)])
    assert good.exit_code == 0, good.output
    assert "read-only account" in good.output and "│ fail " not in good.output
    config.write_text(f'[source]\nurl = "sqlite:///{(tmp_path / "gone.sqlite").as_posix()}"\n')
    bad = runner.invoke(app, ["doctor", "--config", str(config)])
    assert bad.exit_code == 1 and "│ fail " in bad.output
    broken = runner.invoke(app, ["doctor", "--config", str(tmp_path / "missing.toml")])
    assert broken.exit_code == 1 and "does not exist" in broken.output
    assert has_failure(diagnose(tmp_path / "missing.toml"))


def test_mssql_permission_queries_compile() -> None:
    """No SQL Server here: the statements must compile for its dialect, with the object name bound."""
    spec = SourceSpec(
        table="Master]Parcels",
        db_schema="dbo",
        key_column="PIN",
        geometry_column="Shape",
        geometry_encoding="native",
        modified_column=None,
        attribute_columns=(),
        batch_size=10,
    )
    assert privileges.mssql_qualified(spec) == "[dbo].[Master]]Parcels]"
    dialect = mssql.pyodbc.dialect(paramstyle="qmark")  # as pyodbc, the SQL Server driver, binds
    compiled = privileges.MSSQL_OBJECT_PERMISSIONS.compile(dialect=dialect)
    assert "FROM fn_my_permissions(?, 'OBJECT')" in str(compiled)
    assert compiled.construct_params({"qualified": privileges.mssql_qualified(spec)}) == {  # type: ignore[attr-defined]
        "qualified": "[dbo].[Master]]Parcels]"
    }
    assert "fn_my_permissions(NULL, 'DATABASE')" in str(privileges.MSSQL_DATABASE_PERMISSIONS.compile(dialect=dialect))
    assert "IS_SRVROLEMEMBER('sysadmin')" in str(privileges.MSSQL_ROLES.compile(dialect=dialect))
    assert {"INSERT", "UPDATE", "DELETE", "ALTER", "CONTROL"} <= set(privileges.MSSQL_WRITES)


# --- PostgreSQL ------------------------------------------------------------------------------------------
pg = pytest.mark.skipif(not PG_URL, reason="CDS_TEST_PG_URL is not set")


@pytest.fixture(scope="module")
def pg_roles() -> Iterator[dict[str, str]]:
    """A schema with MasterParcels and another table, a read-only role and a read-write role."""
    assert PG_URL
    suffix = uuid.uuid4().hex[:8]
    schema, ro, rw = f"doctor_{suffix}", f"cds_ro_{suffix}", f"cds_rw_{suffix}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    statements = [
        f"CREATE SCHEMA {schema}",
        f'CREATE TABLE {schema}."MasterParcels" ("PIN" text, "Shape" bytea, "LastModified" timestamp, '
        f'"OwnerName" text, "Acres" double precision, "YearBuilt" text)',
        f"CREATE TABLE {schema}.other_app (id int)",
        f"CREATE ROLE {ro} LOGIN PASSWORD '{RO_PASSWORD}'",
        f"CREATE ROLE {rw} LOGIN PASSWORD '{RW_PASSWORD}'",
        f"GRANT USAGE ON SCHEMA {schema} TO {ro}, {rw}",
        f'GRANT SELECT ON {schema}."MasterParcels" TO {ro}',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}."MasterParcels" TO {rw}',
        f"GRANT TRUNCATE ON {schema}.other_app TO {rw}",
    ]
    with admin.connect() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    try:
        yield {"schema": schema, "ro": ro, "rw": rw}
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
            for role in (ro, rw):
                conn.execute(sa.text(f"DROP OWNED BY {role}"))
                conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


def _pg_settings(tmp_path: Path, role: str, password: str, schema: str, **source: object) -> Settings:
    assert PG_URL
    url = sa.engine.make_url(PG_URL).set(username=role, password=None)
    return Settings(
        source={
            "url": url.render_as_string(hide_password=False),
            "password": password,
            "db_schema": schema,
            **source,
        },
        columns=[
            {"source": "OwnerName", "name": "owner_name"},
            {"source": "Acres", "name": "acres", "type": "real"},
            {"source": "YearBuilt", "name": "year_built", "type": "integer"},
        ],
        stats={"dimensions": ["owner_name"], "measures": ["acres"]},
        output={"directory": tmp_path / "staging"},
        logging={"file": tmp_path / "logs" / "cds.log"},
    )


@pg
def test_a_read_only_role_passes(pg_roles: dict[str, str], tmp_path: Path) -> None:
    checks = _by_name(run_checks(_pg_settings(tmp_path, pg_roles["ro"], RO_PASSWORD, pg_roles["schema"])))
    for name in ("source reachable", "source table", "column types", "read-only account"):
        assert checks[name].status == "pass", checks[name]
    assert checks["read-only account"].detail.startswith(f"role {pg_roles['ro']} has SELECT on")
    assert all("Ro;pa" not in c.detail for c in checks.values())


@pg
def test_a_role_that_can_write_is_warned_with_its_grants(pg_roles: dict[str, str], tmp_path: Path) -> None:
    checks = _by_name(run_checks(_pg_settings(tmp_path, pg_roles["rw"], RW_PASSWORD, pg_roles["schema"])))
    read_only = checks["read-only account"]
    assert read_only.status == "warn"
    assert "has SELECT, INSERT, UPDATE, DELETE on" in read_only.detail
    assert f"can also write {pg_roles['schema']}.other_app" in read_only.detail
    assert "GRANT SELECT" in read_only.detail  # says how to fix it


@pg
def test_postgres_catalog_problems_are_reported(pg_roles: dict[str, str], tmp_path: Path) -> None:
    wrong_encoding = _pg_settings(tmp_path, pg_roles["ro"], RO_PASSWORD, pg_roles["schema"], geometry_encoding="wkt")
    assert _by_name(run_checks(wrong_encoding))["column types"].status == "warn"
    no_table = _pg_settings(tmp_path, pg_roles["ro"], RO_PASSWORD, pg_roles["schema"], table="Missing")
    table = _by_name(run_checks(no_table))["source table"]
    assert table.status == "fail" and "'Missing' not found" in table.detail


@pg
def test_an_unreachable_server_fails_without_the_password(pg_roles: dict[str, str], tmp_path: Path) -> None:
    settings = _pg_settings(tmp_path, pg_roles["ro"], RO_PASSWORD, pg_roles["schema"])
    url = sa.engine.make_url(settings.source.url).set(port=free_port())
    down = settings.model_copy(
        update={"source": settings.source.model_copy(update={"url": url.render_as_string(hide_password=False)})}
    )
    reachable = _by_name(run_checks(down))["source reachable"]
    assert reachable.status == "fail" and "OperationalError" in reachable.detail
    assert "Ro;pa" not in reachable.detail
