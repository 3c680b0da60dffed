"""Shared fixtures: a small sample county made once per session, fresh staging folders per test, and GDAL's
GeoPackage validator run the way the README describes."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import Phase
from hypothesis import settings as hypothesis_settings

from countydatasync.sample.county import SampleCounty, write_sample_county
from countydatasync.settings import Settings

SMALL_COUNTY = SampleCounty(parcels=3_000, seed=7)


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3,000-parcel sample county (read-only: tests that edit the source copy it first)."""
    return write_sample_county(tmp_path_factory.mktemp("county") / "county.sqlite", SMALL_COUNTY)


@pytest.fixture
def source_copy(sample_db: Path, tmp_path: Path) -> Path:
    """A private copy of the sample county that a test may edit."""
    path = tmp_path / "source.sqlite"
    shutil.copyfile(sample_db, path)
    return path


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a source file and a fresh staging folder under the test's tmp dir."""

    def make(source_path: Path, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "source": {"url": f"sqlite:///{source_path}", "batch_size": 700},
            "output": {"directory": tmp_path / "staging"},
        }
        for section, fields in overrides.items():
            if isinstance(fields, dict) and isinstance(values.get(section), dict):
                values[section] = {**values[section], **fields}  # type: ignore[dict-item]
            else:
                values[section] = fields
        return Settings(**values)

    return make


def gpkg_validator_command() -> list[str] | None:
    """GDAL's current validate_gpkg (gdal-utils from PyPI) on Debian's GDAL bindings, when installed."""
    target = os.environ.get("CDS_GDAL_UTILS_DIR")
    if not target or not Path(target, "osgeo_utils").is_dir() or not Path("/usr/bin/python3").is_file():
        return None
    return ["/usr/bin/python3", "-m", "osgeo_utils.samples.validate_gpkg"]


@pytest.fixture
def validate_gpkg() -> Callable[[Path], None]:
    """Assert that GDAL's GeoPackage validator accepts a file."""
    command = gpkg_validator_command()
    if command is None:
        pytest.skip("GDAL's validate_gpkg is not installed (set CDS_GDAL_UTILS_DIR; scripts/test.sh does)")

    def check(path: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.environ["CDS_GDAL_UTILS_DIR"]}
        done = subprocess.run([*command, str(path)], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, f"validate_gpkg rejected {path}:\n{done.stdout}\n{done.stderr}"

    return check


# `pytest --hypothesis-profile=fast-fail` reports the first failing example without shrinking it.
hypothesis_settings.register_profile("fast-fail", phases=[Phase.explicit, Phase.reuse, Phase.generate])


# --- PostgreSQL / PostGIS (CDS_TEST_PG_URL; scripts/setup_postgres.sh makes the server ready) ---------------
PG_SAMPLE_COUNTY = SampleCounty(parcels=3_000, seed=7)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL of the test database (postgresql+psycopg://...), or skip the test."""
    url = os.environ.get("CDS_TEST_PG_URL")
    if not url:
        pytest.skip("CDS_TEST_PG_URL is not set (scripts/test.sh sets it up when run as root)")
    return url


@pytest.fixture(scope="session")
def pg_conninfo(pg_url: str) -> str:
    """The same database as a libpq URL, for psycopg and psql."""
    from sqlalchemy.engine import make_url

    return make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg_schema(pg_conninfo: str) -> Iterator[str]:
    """A fresh, empty schema for one test, dropped afterwards."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_conninfo, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {name}")
    yield name
    with psycopg.connect(pg_conninfo, autocommit=True) as con:
        con.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture(scope="session")
def pg_sample(pg_conninfo: str) -> Iterator[str]:
    """Schema holding the 3,000-parcel sample county as MasterParcels with native PostGIS geometry
    (read-only for tests: a test that edits makes its own table)."""
    import psycopg

    from countydatasync.sample.postgis import load_sample_postgis

    schema = f"sample_{os.getpid()}"
    load_sample_postgis(pg_conninfo, PG_SAMPLE_COUNTY, schema=schema)
    yield schema
    with psycopg.connect(pg_conninfo, autocommit=True) as con:
        con.execute(f"DROP SCHEMA {schema} CASCADE")
