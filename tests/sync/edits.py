"""Edits to a SQLite MasterParcels table, as a county's assessor office would make them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import shapely

_clock = [0]
BROKEN = b"\x01\x03broken"  # WKB that does not parse


def stamp() -> str:
    """A fresh LastModified, later than anything in the sample county."""
    _clock[0] += 1
    return f"2027-01-01T00:{_clock[0] // 60 % 60:02d}:{_clock[0] % 60:02d}"


def apply_edit(path: Path, op: str, pick: int) -> None:
    """Apply one edit to the row chosen by `pick` (modulo the table size)."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT rowid, PIN FROM MasterParcels WHERE PIN IS NOT NULL ORDER BY rowid").fetchall()
        rowid, pin = rows[pick % len(rows)]
        if op == "attribute":
            con.execute(
                "UPDATE MasterParcels SET OwnerName = OwnerName || ' JR', LandValue = 12345.5, "
                "LastModified = ? WHERE rowid = ?",
                (stamp(), rowid),
            )
        elif op == "geometry":
            shape = con.execute("SELECT Shape FROM MasterParcels WHERE rowid = ?", (rowid,)).fetchone()[0]
            geom = shapely.from_wkb(shape, on_invalid="ignore") if shape else None
            if geom is None or geom.is_empty:
                geom = shapely.box(1_030_000, 610_000, 1_030_050, 610_080)
            moved = shapely.transform(geom, lambda xy: xy + [1.5, -2.0])
            con.execute(
                "UPDATE MasterParcels SET Shape = ?, LastModified = ? WHERE rowid = ?",
                (shapely.to_wkb(moved), stamp(), rowid),
            )
        elif op == "delete":
            con.execute("DELETE FROM MasterParcels WHERE rowid = ?", (rowid,))
        elif op == "insert":
            con.execute("INSERT INTO MasterParcels SELECT * FROM MasterParcels WHERE rowid = ?", (rowid,))
            new_pin = f"9{pick:010d}"
            con.execute(
                "UPDATE MasterParcels SET PIN = ?, LastModified = ? WHERE rowid = last_insert_rowid()",
                (new_pin, stamp()),
            )
        elif op == "reinsert":  # delete, then the same key comes back with other content
            con.execute("INSERT INTO MasterParcels SELECT * FROM MasterParcels WHERE rowid = ?", (rowid,))
            con.execute("DELETE FROM MasterParcels WHERE rowid = ?", (rowid,))
            con.execute(
                "UPDATE MasterParcels SET OwnerName = 'RETURNED', LastModified = ? WHERE rowid = last_insert_rowid()",
                (stamp(),),
            )
        elif op == "break":
            con.execute(
                "UPDATE MasterParcels SET Shape = ?, LastModified = ? WHERE rowid = ?",
                (BROKEN, stamp(), rowid),
            )
        elif op == "mend":
            good = shapely.to_wkb(shapely.MultiPolygon([shapely.box(1_020_000, 600_000, 1_020_090, 600_140)]))
            con.execute("UPDATE MasterParcels SET Shape = ?, LastModified = ? WHERE rowid = ?", (good, stamp(), rowid))
        # Edits that leave LastModified as it was, which a watermark run finds only by its key-set check.
        elif op == "restore":  # a parcel comes back from an archive under a new key, timestamp and all
            con.execute("INSERT INTO MasterParcels SELECT * FROM MasterParcels WHERE rowid = ?", (rowid,))
            con.execute("UPDATE MasterParcels SET PIN = ? WHERE rowid = last_insert_rowid()", (f"8{pick:010d}",))
        elif op == "copy":  # a second row with the same key
            con.execute("INSERT INTO MasterParcels SELECT * FROM MasterParcels WHERE rowid = ?", (rowid,))
        elif op == "respace":  # a second row whose key differs only in spacing
            con.execute("INSERT INTO MasterParcels SELECT * FROM MasterParcels WHERE rowid = ?", (rowid,))
            con.execute("UPDATE MasterParcels SET PIN = ' ' || PIN WHERE rowid = last_insert_rowid()")
        elif op == "quiet_mend":  # a broken geometry fixed without touching the timestamp
            broken = con.execute("SELECT rowid FROM MasterParcels WHERE Shape = ? ORDER BY rowid", (BROKEN,)).fetchall()
            if broken:
                good = shapely.to_wkb(shapely.MultiPolygon([shapely.box(1_020_100, 600_000, 1_020_190, 600_140)]))
                con.execute("UPDATE MasterParcels SET Shape = ? WHERE rowid = ?", (good, broken[pick % len(broken)][0]))
        else:
            raise ValueError(op)
        con.commit()
    finally:
        con.close()


OPS = [
    *("attribute", "geometry", "delete", "insert", "reinsert", "break", "mend"),
    *("restore", "copy", "respace", "quiet_mend"),
]
