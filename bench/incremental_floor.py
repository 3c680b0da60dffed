"""A lower bound for an incremental run: the least any watermark run must do, written by hand.

    python bench/incremental_floor.py SOURCE.sqlite STAGING_DIR

Run by sync_bench.py on a copy of the staging databases that a sync built from the sample county, after the
source was edited. It does what issue #4 requires of every watermark run and nothing more: start Python with
the libraries it needs, read the source's key set and the staged one and compare them (deletes), read the
rows modified since the watermark and check their geometries, then, in one transaction over the working and
geo DBs, rewrite the changed rows (the owner and the geometry only), insert the new ones, delete the gone
ones, and commit. Left out, so the real run can only be slower: typing and cleaning attributes, repairs,
content hashes, GeoPackage geometry headers, the R-tree, statuses, the change log, the stats DB and the
parcels in error. The copy it writes to is thrown away (its R-tree triggers are dropped, its R-tree is stale).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time

start = time.perf_counter()

import adbc_driver_sqlite.dbapi as adbc  # noqa: E402  (the imports are part of what is timed)
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import shapely  # noqa: E402

# The sample county's names (countydatasync.sample): source columns, then the staging databases' ones.
SOURCE_KEY, SOURCE_OWNER, SOURCE_SHAPE, SOURCE_MODIFIED = "PIN", "OwnerName", "Shape", "LastModified"
KEY, OWNER = "pin", "owner_name"


def arrow(path: str, sql: str, *params: object) -> pa.Table:
    with adbc.connect(path) as con, con.cursor() as cur:
        cur.execute(sql, params or None)
        return cur.fetch_arrow_table()


def main(source: str, staging: str) -> None:
    working, geo = f"{staging}/working.sqlite", f"{staging}/parcels.gpkg"
    with sqlite3.connect(working) as con:
        # The sample's timestamps are ISO text with a 'T', as the watermark is stored.
        since = con.execute("SELECT value FROM sync_state WHERE name = 'watermark'").fetchone()[0][:19]
    source_keys = arrow(source, f"SELECT {SOURCE_KEY} FROM MasterParcels")[SOURCE_KEY].drop_null()
    staged_keys = arrow(working, f"SELECT {KEY} FROM parcels")[KEY]
    gone = staged_keys.filter(pc.invert(pc.is_in(staged_keys, value_set=source_keys))).to_pylist()
    changed = arrow(
        source,
        f"SELECT {SOURCE_KEY}, {SOURCE_OWNER}, {SOURCE_SHAPE} FROM MasterParcels WHERE {SOURCE_MODIFIED} > ?",
        since,
    )
    changed = changed.filter(pc.is_valid(changed[SOURCE_KEY]))  # a row without a key is an error, not written
    keys = changed[SOURCE_KEY]
    shapes = changed[SOURCE_SHAPE].to_numpy(zero_copy_only=False)
    shapely.is_valid(shapely.from_wkb(shapes, on_invalid="ignore"))
    new = pc.invert(pc.is_in(keys, value_set=staged_keys)).to_numpy(zero_copy_only=False)
    rows = list(zip(changed[SOURCE_OWNER].to_pylist(), shapes.tolist(), keys.to_pylist(), strict=True))

    con = sqlite3.connect(working, isolation_level=None)
    con.execute("ATTACH DATABASE ? AS geo", (geo,))
    con.execute("BEGIN")
    for (trigger,) in con.execute("SELECT name FROM geo.sqlite_master WHERE type = 'trigger'").fetchall():
        con.execute(f'DROP TRIGGER geo."{trigger}"')
    old = [row for row, is_new in zip(rows, new, strict=True) if not is_new]
    added = [row for row, is_new in zip(rows, new, strict=True) if is_new]
    con.executemany(f"UPDATE main.parcels SET {OWNER} = ? WHERE {KEY} = ?", [(o, k) for o, _, k in old])
    con.executemany(f"UPDATE geo.parcels SET {OWNER} = ?, geom = ? WHERE {KEY} = ?", old)
    con.executemany(
        f"INSERT INTO main.parcels ({OWNER}, {KEY}, sync_status) VALUES (?, ?, 'synced')",
        [(o, k) for o, _, k in added],
    )
    con.executemany(f"INSERT INTO geo.parcels ({OWNER}, geom, {KEY}) VALUES (?, ?, ?)", added)
    payload = json.dumps(gone)
    for table in ("main.parcels", "geo.parcels"):
        con.execute(f"DELETE FROM {table} WHERE {KEY} IN (SELECT value FROM json_each(?))", (payload,))
    con.execute("COMMIT")
    con.close()
    print(f"{len(old)} updated, {len(added)} inserted, {len(gone)} deleted in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main(*sys.argv[1:3])
