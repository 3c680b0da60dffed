"""After the last batch: the source's key set against the staging databases.

Deletes (keys the source no longer has), keys a watermark run must read again in full (new keys with old
timestamps, parcels in error or pending, keys carried by several rows), and keys met in two batches of one
run. Mixed into the Publisher, whose connection, counts and aggregate deltas it shares.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

import pandas as pd

from countydatasync.extract.base import KEY_COPIES, RAW_KEY
from countydatasync.load import geopackage, stats
from countydatasync.load.geopackage import q
from countydatasync.load.transaction import GEO, WORKING
from countydatasync.transform import Reason
from countydatasync.transform.batch import normalize_keys


class Reconciliation:
    """Key-set reconciliation for the Publisher (see apply.py for the attributes it relies on)."""

    con: sqlite3.Connection
    key: str
    layer: str
    run_id: int
    now: str
    recompute: bool
    dimensions: list[str]
    measures: list[str]
    counts: dict[str, int]
    deltas: stats.Deltas
    late_duplicates: set[str]
    deleted_keys: list[str]

    def _write_errors(self, errors: pd.DataFrame, prev: pd.DataFrame) -> None: ...

    def _record_issues(self, issues: pd.DataFrame) -> None: ...

    def load_source_keys(self, chunks: Iterable[pd.DataFrame]) -> None:
        """Keep the source's full key set (normalized key, how many rows carry it, and the key as stored when
        that differs) for delete and duplicate reconciliation. Plain keys travel as one JSON array per chunk,
        which SQLite unpacks far faster than it binds a million parameters."""
        k = q(self.key)
        self.con.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS source_keys ({k} TEXT PRIMARY KEY, copies INTEGER, raw) WITHOUT ROWID"
        )
        self.con.execute("DELETE FROM temp.source_keys")
        add = (
            f"INSERT INTO temp.source_keys VALUES (?, ?, ?) ON CONFLICT ({k}) DO UPDATE SET "
            "copies = copies + excluded.copies, raw = coalesce(raw, excluded.raw)"
        )
        for chunk in chunks:
            raw = chunk[RAW_KEY]
            norm = normalize_keys(raw)
            plain = (norm.to_numpy(dtype=object) == raw.to_numpy(dtype=object)) & (chunk[KEY_COPIES] == 1).to_numpy()
            self.con.execute(
                "INSERT INTO temp.source_keys SELECT value, 1, NULL FROM json_each(?) WHERE true "
                f"ON CONFLICT ({k}) DO UPDATE SET copies = copies + 1",
                (json.dumps(norm[plain].tolist()),),
            )
            odd = ~plain & norm.notna().to_numpy()
            self.con.executemany(
                add, zip(norm[odd].tolist(), chunk[KEY_COPIES][odd].tolist(), raw[odd].tolist(), strict=True)
            )

    def keys_to_recheck(self) -> list[object]:
        """Source keys to read again in full: parcels the staging DBs lack and those in error or pending (their
        fix may not have touched the modified timestamp) unless this run read them already, and every key
        carried by more than one row (a second copy may keep an old timestamp)."""
        k = q(self.key)
        rows = self.con.execute(
            f"SELECT coalesce(s.raw, s.{k}) FROM temp.source_keys s LEFT JOIN {WORKING}.parcels p ON p.{k} = s.{k} "
            f"WHERE (p.{k} IS NULL AND s.{k} NOT IN (SELECT {k} FROM temp.seen)) OR s.copies > 1 "
            f"UNION SELECT coalesce(s.raw, s.{k}) FROM {WORKING}.parcels p JOIN temp.source_keys s ON s.{k} = p.{k} "
            f"WHERE p.sync_status != 'synced' AND p.{k} NOT IN (SELECT {k} FROM temp.seen)"
        ).fetchall()
        return [r[0] for r in rows]

    def delete_absent(self, present: str) -> None:
        """Remove the parcels whose key is not in the temp table `present` (seen, or source_keys)."""
        k = q(self.key)
        keys = [
            r[0]
            for r in self.con.execute(
                f"SELECT {k} FROM {WORKING}.parcels WHERE {k} NOT IN (SELECT {k} FROM temp.{present})"
            )
        ]
        if not keys:
            return
        payload = json.dumps(keys)
        before = (
            {}
            if self.recompute
            else stats.contributions(self.con, WORKING, self.key, keys, self.dimensions, self.measures)
        )
        t = f"{GEO}.{q(self.layer)}"
        in_keys = f"{k} IN (SELECT value FROM json_each(?))"
        self.con.execute(
            f"DELETE FROM {GEO}.{q(geopackage.rtree_name(self.layer))} WHERE id IN "
            f"(SELECT fid FROM {t} WHERE {in_keys})",
            (payload,),
        )
        self.con.execute(f"DELETE FROM {t} WHERE {in_keys}", (payload,))
        self.con.execute(f"DELETE FROM {WORKING}.parcels WHERE {in_keys}", (payload,))
        self.con.executemany(
            f"INSERT INTO {WORKING}.change_log (run_id, {k}, action, changed_fields, at) "
            "VALUES (?, ?, 'delete', NULL, ?)",
            [(self.run_id, key, self.now) for key in keys],
        )
        self.counts["deleted"] += len(keys)
        self.deleted_keys.extend(keys)
        stats.merge(self.deltas, stats.subtract({}, before))

    def _demote_late_duplicates(self) -> None:
        """A key met again in a later batch: the copy loaded earlier is an error too."""
        k = q(self.key)
        for key in sorted(self.late_duplicates):
            row = self.con.execute(
                f"SELECT sync_status, last_run_id FROM {WORKING}.parcels WHERE {k} = ?", (key,)
            ).fetchone()
            if row is None or row[0] == "error":
                continue
            inserted = self.con.execute(
                f"SELECT 1 FROM {WORKING}.change_log WHERE run_id = ? AND {k} = ? AND action = 'insert'",
                (self.run_id, key),
            ).fetchone()
            loaded_as = "inserted" if inserted else "updated" if row[1] == self.run_id else "unchanged"
            before = (
                {}
                if self.recompute
                else stats.contributions(self.con, WORKING, self.key, [key], self.dimensions, self.measures)
            )
            self.counts[loaded_as] -= 1
            self.counts["rejected"] += 1
            reason, message = Reason.DUPLICATE_KEY.value, "parcel key occurs more than once in the source"
            self._write_errors(
                pd.DataFrame({"key": [key], "reason": [reason], "message": [message]}), pd.DataFrame(index=[key])
            )
            self._record_issues(
                pd.DataFrame(
                    {
                        "key": [key],
                        "source_row": [None],
                        "reason": [reason],
                        "message": [message + " (copy loaded from an earlier batch)"],
                        "excerpt": [None],
                        "severity": ["error"],
                    }
                )
            )
            stats.merge(self.deltas, stats.subtract({}, before))

