"""gis_acres in geographic output coordinates: measured in an equal-area projection, not left empty."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from countydatasync.settings import Settings
from countydatasync.sync import run_sync

from ..sync.helpers import query


def _acres(settings: Settings) -> dict[str, float]:
    rows = query(settings.output.geo_path, "SELECT pin, gis_acres FROM parcels")
    return dict(zip(rows["pin"], rows["gis_acres"], strict=True))


def test_geographic_output_gets_the_acres_of_projected_output(
    sample_db: Path, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    projected = make_settings(sample_db)  # EPSG:2927, US survey feet
    run_sync(projected)
    expected = _acres(projected)
    for srid in (4326, 4269):
        geographic = make_settings(sample_db, output={"directory": tmp_path / str(srid), "target_srid": srid})
        run_sync(geographic)
        acres = _acres(geographic)
        assert acres.keys() == expected.keys()
        got = np.array([acres[pin] for pin in expected], dtype=float)
        want = np.array(list(expected.values()))
        assert not np.isnan(got).any()
        assert np.abs(got / want - 1).max() < 0.005
