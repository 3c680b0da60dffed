"""Shared fixtures: a small sample county made once per session, fresh staging folders per test, and GDAL's
GeoPackage validator run the way the README describes."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

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


from hypothesis import Phase  # noqa: E402
from hypothesis import settings as hypothesis_settings

# `pytest --hypothesis-profile=fast-fail` reports the first failing example without shrinking it.
hypothesis_settings.register_profile("fast-fail", phases=[Phase.explicit, Phase.reuse, Phase.generate])
