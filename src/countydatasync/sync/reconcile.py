"""After the last batch: the source's key set against the staging databases.

Deletes (keys the source no longer has), keys a watermark run must read again in full (new keys with old
timestamps, parcels in error or pending, keys carried by several rows), and keys met in two batches of one
run. Mixed into the Publisher, whose connection, counts and aggregate deltas it shares.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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
    initial: bool
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
        """Keep the source's full key set for delete and duplicate reconciliation, in temp tables (SQLite
        keeps them in a temp file, so memory stays bounded): each normalized key with how many rows carry
        it, and the stored forms of keys stored otherwise (' 123', 123.0). Single-copy keys travel as one
        JSON array per chunk, which SQLite unpacks far faster than it binds a million parameters."""
        k = q(self.key)
        self.con.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS source_keys ({k} TEXT PRIMARY KEY, copies INTEGER) WITHOUT ROWID"
        )
        self.con.execute(f"CREATE TEMP TABLE IF NOT EXISTS source_forms ({k} TEXT, stored)")
        self.con.execute("DELETE FROM temp.source_keys")
        self.con.execute("DELETE FROM temp.source_forms")
        # Keys that normalize alike add up: ' 123' and '123' are two copies of one key.
        add = f"ON CONFLICT ({k}) DO UPDATE SET copies = copies + excluded.copies"
        for chunk in chunks:
            stored = chunk[RAW_KEY]
            norm = normalize_keys(stored)
            known = norm.notna().to_numpy()
            copies = chunk[KEY_COPIES].to_numpy()
            single = known & (copies == 1)
            self.con.execute(
                f"INSERT INTO temp.source_keys SELECT value, 1 FROM json_each(?) WHERE true {add}",
                (json.dumps(norm[single].tolist()),),
            )
            several = known & (copies > 1)
            self.con.executemany(
                f"INSERT INTO temp.source_keys VALUES (?, ?) {add}",
                zip(norm[several].tolist(), copies[several].tolist(), strict=True),
            )
            other = known & ~_same_text(norm, stored)
            self.con.executemany(
                "INSERT INTO temp.source_forms VALUES (?, ?)",
                zip(norm[other].tolist(), stored[other].tolist(), strict=True),
            )

    def keys_with_copies(self) -> frozenset[str]:
        """Source keys carried by more than one row: a watermark run leaves them to `keys_to_recheck`, which
        reads all their copies once (the changes pass would read a changed copy, and the re-read it again)."""
        k = q(self.key)
        return frozenset(r[0] for r in self.con.execute(f"SELECT {k} FROM temp.source_keys WHERE copies > 1"))

    def keys_to_recheck(self, absent: int) -> list[object]:
        """Source keys to read again in full, in every stored form: parcels the staging DBs lack and those
        in error or pending (their fix may not have touched the modified timestamp) unless this run read
        them already, and every key carried by more than one row (a second copy may keep an old timestamp).
        A normalized form no row stores matches nothing, and backends compare it with a numeric key column
        by the column's type.

        `absent`: how many staged parcels the source no longer has (see `absent_keys`). With it, two counts
        tell whether any source key is missing from the staging DBs. Usually none is (this run's changes
        pass read the new parcels), and looking up every source key in the working DB is skipped."""
        k = q(self.key)
        staged = self.con.execute(f"SELECT count(*) FROM {WORKING}.parcels").fetchone()[0]
        source = self.con.execute("SELECT count(*) FROM temp.source_keys").fetchone()[0]
        if source > staged - absent:
            copies_or_missing = (
                f"SELECT s.{k} FROM temp.source_keys s LEFT JOIN {WORKING}.parcels p ON p.{k} = s.{k} "
                f"WHERE (p.{k} IS NULL AND s.{k} NOT IN (SELECT {k} FROM temp.seen)) OR s.copies > 1"
            )
        else:
            copies_or_missing = f"SELECT {k} FROM temp.source_keys WHERE copies > 1"
        rows = self.con.execute(
            f"WITH again ({k}) AS ({copies_or_missing} "
            f"UNION SELECT s.{k} FROM {WORKING}.parcels p JOIN temp.source_keys s ON s.{k} = p.{k} "
            # IN, not != 'synced': the few unsettled parcels are found through the status index
            f"WHERE p.sync_status IN ('error', 'pending') AND p.{k} NOT IN (SELECT {k} FROM temp.seen)) "
            f"SELECT {k} FROM again UNION SELECT f.stored FROM temp.source_forms f JOIN again a ON a.{k} = f.{k}"
        ).fetchall()
        return [r[0] for r in rows]

    def absent_keys(self, present: str) -> list[str]:
        """The staged parcels whose key is not in the temp table `present` (seen, or source_keys)."""
        if self.initial:  # the working DB started empty: every parcel in it was seen in this run
            return []
        k = q(self.key)
        return [
            r[0]
            for r in self.con.execute(
                f"SELECT {k} FROM {WORKING}.parcels WHERE {k} NOT IN (SELECT {k} FROM temp.{present})"
            )
        ]

    def delete(self, keys: list[str]) -> None:
        """Remove these parcels from the staging databases, with a change-log entry each."""
        if not keys:
            return
        k = q(self.key)
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
        self.recompute = self.recompute or stats.inexact(before)
        stats.merge(self.deltas, stats.subtract({}, before))

    def _demote_late_duplicates(self) -> None:
        """A key met again in a later batch: the copy loaded earlier is an error too. As within one batch,
        being carried twice is the reason that counts, also for a copy rejected for something else."""
        k = q(self.key)
        reason, message = Reason.DUPLICATE_KEY.value, "parcel key occurs more than once in the source"
        for key in sorted(self.late_duplicates):
            row = self.con.execute(
                f"SELECT sync_status, last_run_id, sync_reason FROM {WORKING}.parcels WHERE {k} = ?", (key,)
            ).fetchone()
            if row is None or (row[0] == "error" and row[2] == reason):
                continue
            if row[0] != "error":  # it was loaded: now it counts as rejected (not repaired), and leaves the aggregates
                loaded_as = (
                    "inserted" if self._inserted_now(key) else "updated" if row[1] == self.run_id else "unchanged"
                )
                self.counts[loaded_as] -= 1
                self.counts["rejected"] += 1
                if row[2] == Reason.INVALID_GEOMETRY_REPAIRED.value:
                    self.counts["repaired"] -= 1
                if not self.recompute:
                    before = stats.contributions(self.con, WORKING, self.key, [key], self.dimensions, self.measures)
                    self.recompute = stats.inexact(before)
                    stats.merge(self.deltas, stats.subtract({}, before))
            status = pd.DataFrame({"key": [key], "reason": [reason], "message": [message]})
            self._write_errors(status, pd.DataFrame(index=[key]))
            later = message + " (copy met in an earlier batch)"
            if row[0] == "error":  # the earlier copy has its errors row from this run: it changes reason
                self.con.execute(
                    f"UPDATE {WORKING}.errors SET reason = ?, message = ? "
                    f"WHERE {k} = ? AND run_id = ? AND severity = 'error'",
                    (reason, later, key, self.run_id),
                )
                continue
            self._record_issues(status.assign(source_row=None, excerpt=None, severity="error", message=later))

    def _inserted_now(self, key: str) -> bool:
        """Whether this run inserted the parcel: every parcel of a first load, which logs no inserts."""
        if self.initial:
            return True
        # Through the key's index: this run's rows in the run index can be a million (a mass update).
        return (
            self.con.execute(
                f"SELECT 1 FROM {WORKING}.change_log WHERE {q(self.key)} = ? AND +run_id = ? AND action = 'insert'",
                (key, self.run_id),
            ).fetchone()
            is not None
        )


def _same_text(norm: pd.Series, stored: pd.Series) -> np.ndarray:
    """Where the normalized key reads as the stored key (123 and '123' do; ' 123' and 123.0 do not).
    Arrow strings are compared in Arrow: a million keys as Python objects took a sixth of the load."""
    if isinstance(stored.array, pd.arrays.ArrowStringArray) and isinstance(norm.array, pd.arrays.ArrowStringArray):
        return pc.equal(pa.array(norm), pa.array(stored)).fill_null(False).to_numpy(zero_copy_only=False)
    same = norm.notna().to_numpy() & stored.notna().to_numpy()
    same[same] = norm[same].to_numpy(dtype=object) == stored[same].map(str).to_numpy(dtype=object)
    return same
