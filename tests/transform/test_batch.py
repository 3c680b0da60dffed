import pandas as pd
import shapely

from countydatasync.extract.base import RAW_GEOM, RAW_KEY
from countydatasync.transform import TransformPlan, transform_batch

SQUARE = shapely.to_wkb(shapely.from_wkt("POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))"))
WITH_LINE = shapely.to_wkb(shapely.from_wkt("GEOMETRYCOLLECTION (POLYGON ((0 0, 1 0, 1 1, 0 0)), POINT (0 0))"))


def _plan() -> TransformPlan:
    return TransformPlan("pin", (), "wkb", 2927, 2927, "UTC")


def test_a_batch_without_carried_columns() -> None:
    raw = pd.DataFrame({RAW_KEY: ["A", "B"], RAW_GEOM: pd.Series([SQUARE, None], dtype=object)})
    batch = transform_batch(raw, _plan())
    assert batch.parcels.columns.tolist() == ["pin", "gis_acres", "sync_note", "source_modified"]
    assert batch.parcels["pin"].tolist() == ["A"]
    assert batch.issues[["key", "reason"]].values.tolist() == [["B", "null_geometry"]]


def test_a_collection_loaded_without_its_lines_is_a_warning() -> None:
    raw = pd.DataFrame({RAW_KEY: ["A", "B"], RAW_GEOM: pd.Series([SQUARE, WITH_LINE], dtype=object)})
    batch = transform_batch(raw, _plan())
    assert batch.parcels["pin"].tolist() == ["A", "B"]
    note = batch.parcels["sync_note"]
    assert note.isna().tolist() == [True, False] and note[1] == "invalid_geometry_repaired"
    assert batch.issues[["key", "reason", "message", "severity"]].values.tolist() == [
        [
            "B",
            "invalid_geometry_repaired",
            "geometry is a GeometryCollection: its non-polygonal parts were dropped",
            "warning",
        ]
    ]
    assert batch.rejected.empty
