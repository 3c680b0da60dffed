"""The packed R-tree against SQLite's own: structure check, query answers and extent, also after edits."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from countydatasync.load.rtree import RtreeBulkLoader, root_extent


def scan_extent(con: sqlite3.Connection) -> tuple[float, ...]:
    return tuple(con.execute("SELECT min(minx), min(miny), max(maxx), max(maxy) FROM r").fetchone())


@pytest.mark.parametrize("count", [1, 150, 60_000])  # a root leaf, one level, two levels above the leaves
@pytest.mark.parametrize("spacing", [1, 3])  # ids without gaps (as a first load gives them) and sparse ones
def test_packed_tree_is_what_sqlite_expects(count: int, spacing: int) -> None:
    rng = np.random.default_rng(count)
    corner = rng.uniform(-1e6, 1e6, (count, 2))
    bounds = np.hstack([corner, corner + rng.uniform(0.1, 500.0, (count, 2))])  # minx, miny, maxx, maxy
    ids = rng.permutation(np.arange(1, count + 1) * spacing + 40)  # in no particular order

    con = sqlite3.connect(":memory:", isolation_level=None)
    con.execute("CREATE VIRTUAL TABLE r USING rtree(id, minx, maxx, miny, maxy)")
    loader = RtreeBulkLoader(con, "main", "r")
    for start in range(0, count, 7_000):
        loader.add(ids[start : start + 7_000].tolist(), bounds[start : start + 7_000])
    extent = loader.build()

    assert con.execute("SELECT rtreecheck('r')").fetchone()[0] == "ok"
    assert con.execute("SELECT count(*) FROM r").fetchone()[0] == count
    assert extent == pytest.approx((bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max()))
    # every stored box contains the true one (float32 rounded outward)
    stored = dict((row[0], row[1:]) for row in con.execute("SELECT id, minx, maxx, miny, maxy FROM r"))
    for i in rng.choice(count, size=min(count, 500), replace=False):
        minx, maxx, miny, maxy = stored[int(ids[i])]
        assert minx <= bounds[i, 0] and maxx >= bounds[i, 2] and miny <= bounds[i, 1] and maxy >= bounds[i, 3]
    # window queries answer like a brute-force scan
    for x, y in rng.uniform(-1e6, 1e6, (20, 2)):
        window = (x, x + 50_000, y, y + 50_000)
        got = {
            r[0]
            for r in con.execute("SELECT id FROM r WHERE maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?", window)
        }
        hit = (bounds[:, 2] >= x) & (bounds[:, 0] <= x + 50_000) & (bounds[:, 3] >= y) & (bounds[:, 1] <= y + 50_000)
        assert set(ids[hit].tolist()) <= got  # float32 boxes may add a neighbour on the edge, never lose one
    assert root_extent(con, "main", "r") == scan_extent(con)

    # SQLite's own edits on the packed tree keep it sound and the root extent tight
    extremes = [int(ids[bounds[:, c].argmin() if c < 2 else bounds[:, c].argmax()]) for c in range(4)]
    for i in set(extremes):
        con.execute("DELETE FROM r WHERE id = ?", (i,))
    con.execute("INSERT INTO r VALUES (1, -2e6, -1.9e6, 5, 6)")
    assert con.execute("SELECT rtreecheck('r')").fetchone()[0] == "ok"
    assert root_extent(con, "main", "r") == scan_extent(con)


def test_empty_tree_has_no_extent() -> None:
    con = sqlite3.connect(":memory:", isolation_level=None)
    con.execute("CREATE VIRTUAL TABLE r USING rtree(id, minx, maxx, miny, maxy)")
    assert RtreeBulkLoader(con, "main", "r").build() is None
    assert root_extent(con, "main", "r") is None
    con.execute("INSERT INTO r VALUES (5, 1, 2, 3, 4)")
    assert root_extent(con, "main", "r") == (1.0, 3.0, 2.0, 4.0)
