"""GET /api/parcels with boxes much wider than the county, or far from it, in layers of several CRSs: the
parcels returned are those whose geometry meets the box, checked by brute force in WGS84."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer

from countydatasync.settings import Settings
from countydatasync.sync import run_sync
from countydatasync.web import create_app
from countydatasync.web.geo import wkb_from_blob
from tests.web.conftest import Staging

SOURCE_SRID = 2927  # the sample county's: Washington South, US feet
SRIDS = (SOURCE_SRID, 32610, 3857, 4326)
MARGIN = 1e-4  # degrees, about 10 m: parcels this close to a side of the box may go either way


@dataclass
class Layer:
    client: TestClient
    keys: list[str]
    shapes: np.ndarray  # the parcels' WGS84 geometries, in the order of keys

    def expected(self, box: tuple[float, float, float, float]) -> tuple[set[str], set[str]]:
        """The keys that must be returned, and those that may be (they are within MARGIN of a side)."""
        west, south, east, north = box
        surely = shapely.intersects(
            self.shapes, shapely.box(west + MARGIN, south + MARGIN, east - MARGIN, north - MARGIN)
        )
        maybe = shapely.intersects(
            self.shapes, shapely.box(west - MARGIN, south - MARGIN, east + MARGIN, north + MARGIN)
        )
        return (
            {k for k, s in zip(self.keys, surely, strict=True) if s},
            {k for k, m in zip(self.keys, maybe, strict=True) if m},
        )

    def returned(self, box: tuple[float, float, float, float]) -> set[str]:
        body = self.client.get("/api/parcels", params={"bbox": ",".join(map(str, box))}).json()
        assert not body["truncated"]
        return {f["properties"]["key"] for f in body["features"]}


def _wgs84_parcels(settings: Settings, srid: int) -> tuple[list[str], np.ndarray]:
    with sqlite3.connect(settings.output.geo_path) as con:
        rows = con.execute("SELECT pin, geom FROM parcels WHERE geom IS NOT NULL").fetchall()
    to_wgs84 = Transformer.from_crs(srid, 4326, always_xy=True)

    def reproject(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1]))

    return [k for k, _ in rows], shapely.transform(shapely.from_wkb([wkb_from_blob(g) for _, g in rows]), reproject)


@pytest.fixture(scope="module")
def layers(staging: Staging, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Layer]]:
    """The staging layer in the source's CRS, and the same county synced into three other CRSs."""
    settings = {SOURCE_SRID: staging.settings}
    for srid in SRIDS[1:]:
        settings[srid] = Settings(
            source={"url": staging.settings.source.url},
            output={"directory": tmp_path_factory.mktemp(f"epsg{srid}"), "target_srid": srid},
        )
        assert run_sync(settings[srid]).status == "succeeded"
    with ExitStack() as stack:
        yield {
            srid: Layer(
                stack.enter_context(TestClient(create_app(layer_settings))), *_wgs84_parcels(layer_settings, srid)
            )
            for srid, layer_settings in settings.items()
        }


@pytest.mark.parametrize(
    ("srid", "box"),
    [
        (SOURCE_SRID, (-170, 46.9, -60, 70)),  # found nothing: its corners fell outside the CRS's area of use
        (SOURCE_SRID, (100, -90, 180, 90)),  # found every parcel, half a world away
        (32610, (-180, -90, 180, 90)),  # the whole world found nothing
        *[
            (srid, box)
            for srid in SRIDS
            for box in [
                (-180, -90, 180, 90),
                (-180, 46.9, 90, 60),
                (-180, 46.96, 0, 90),
                (-122.975, -90, 180, 90),
                (60, 40, 70, 50),
                (0, -90, 10, -80),
            ]
        ],
    ],
)
def test_a_box_far_wider_than_the_county_finds_the_parcels_in_it(
    layers: dict[int, Layer], srid: int, box: tuple[float, float, float, float]
) -> None:
    layer = layers[srid]
    surely, maybe = layer.expected(box)
    got = layer.returned(box)
    assert surely <= got <= maybe
    if box == (-180, -90, 180, 90):
        assert got == set(layer.keys)


def _county(layer: Layer) -> tuple[float, float, float, float]:
    west, south, east, north = shapely.total_bounds(layer.shapes)
    return west - MARGIN, south - MARGIN, east + MARGIN, north + MARGIN


def _random_box(rng: random.Random, size: float) -> tuple[float, float, float, float]:
    west, south = rng.uniform(-180, 180 - size), rng.uniform(-90, 90 - size / 2)
    return west, south, west + size, south + size / 2


@pytest.mark.parametrize("srid", SRIDS)
def test_random_boxes_away_from_the_county_find_nothing(layers: dict[int, Layer], srid: int) -> None:
    layer, rng = layers[srid], random.Random(srid)
    county = shapely.box(*_county(layer))
    boxes = [_random_box(rng, 10 ** rng.uniform(-3, 2.5)) for _ in range(400)]
    away = [box for box in boxes if not shapely.intersects(county, shapely.box(*box))]
    assert len(away) > 300
    assert [box for box in away if layer.returned(box)] == []


@pytest.mark.parametrize("srid", SRIDS)
def test_random_boxes_over_the_county_find_exactly_the_parcels_in_them(layers: dict[int, Layer], srid: int) -> None:
    layer, rng = layers[srid], random.Random(srid)
    west, south, east, north = _county(layer)
    cutting = 0  # boxes with some parcels in and some out
    for _ in range(40):
        # Sides from inside the county out to tens of degrees beyond it.
        x1, x2 = sorted(rng.uniform(west, east) + rng.choice([0, -1, 1]) * 10 ** rng.uniform(-3, 1.5) for _ in range(2))
        y1, y2 = sorted(
            rng.uniform(south, north) + rng.choice([0, -1, 1]) * 10 ** rng.uniform(-3, 1.5) for _ in range(2)
        )
        box = (max(x1, -180), max(y1, -90), min(x2, 180), min(y2, 90))
        surely, maybe = layer.expected(box)
        assert surely <= layer.returned(box) <= maybe, box
        cutting += 0 < len(surely) < len(layer.keys)
    assert cutting >= 10
