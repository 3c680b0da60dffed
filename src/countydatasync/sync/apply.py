"""Applying transformed batches to the staging databases inside the run transaction.

Each parcel of a batch is classified against the working DB by its content hashes: new parcels are
inserted, changed ones updated (with the changed fields in the change log), unchanged ones are not
written at all. Rejected parcels get status `error` with their reason, and the geo DB keeps their last
good version, flagged. Aggregates move by the difference the batch made.
"""

from __future__ import annotations

import json
import sqlite3
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from countydatasync.load import geopackage, stats, working
from countydatasync.load.geopackage import q
from countydatasync.load.rtree import RtreeBulkLoader, root_extent
from countydatasync.load.scratch import ScratchTable
from countydatasync.load.transaction import GEO, STATS, WORKING
from countydatasync.settings import Settings
from countydatasync.sync.reconcile import Reconciliation
from countydatasync.transform import Reason, TransformedBatch, TransformPlan


def storage_values(frame: pd.DataFrame, names: list[str]) -> list[list[object]]:
    """Columns as lists of plain Python values (None for missing) that sqlite3 can bind."""
    return [_bindable(frame[n]) for n in names]


def _bindable(column: pd.Series) -> list[object]:
    if column.dtype.kind == "f":
        return column.to_numpy().tolist()  # SQLite stores a bound NaN as NULL
    if isinstance(column.array, pd.arrays.ArrowStringArray):  # straight from Arrow: half the time of pandas' way
        return pa.array(column.array).to_pylist()
    if isinstance(column.dtype, pd.api.extensions.ExtensionDtype):
        return column.to_numpy(dtype=object, na_value=None).tolist()
    values = column.to_numpy(dtype=object)
    return np.where(pd.isna(values), None, values).tolist()


# Per-row status of a written parcel, bound with its attributes; the other status columns are the same for the
# whole run.
ROW_STATUS = ["sync_reason", "attr_hash", "geom_hash", "source_modified"]
REPAIRED_MESSAGE = "geometry was invalid and has been repaired"
# Bits of a staged row's state: the working DB has the parcel; the layer has it; its content changed (logged).
STAGED_EXISTING, STAGED_IN_GEO, STAGED_LOGGED = 1, 2, 4


class Staged(NamedTuple):
    """What a batch staged: how many rows, the STAGED_* bits any row has (statements with nothing to do are
    skipped), and the fids and boxes of the features the layer gets, in fid order."""

    rows: int
    bits: int
    new_fids: list[int]
    new_bounds: np.ndarray


def _known(keys: pd.Series, stored: pd.Index) -> np.ndarray:
    """Which keys the (unique) index holds. The index's own hash table: pandas' isin on Arrow strings
    first walks every value of `stored` in Python."""
    if stored.empty:
        return np.zeros(len(keys), dtype=bool)
    return stored.get_indexer(keys.to_numpy(dtype=object)) >= 0


def _changed_fields(attrs: list[str]) -> str:
    """SQL for the JSON list of fields in which a staged row `b` differs from its stored row `p`. IS NOT
    treats two NULLs as equal, and the stored column's affinity decides how a bound value compares."""
    tests = [(f"b.{q(a)} IS NOT p.{q(a)}", a) for a in attrs if a != "gis_acres"]
    tests.append(("b.geom_hash IS NOT p.geom_hash", "geometry"))
    literal = {name: json.dumps(name).replace("'", "''") for _, name in tests}  # JSON strings in SQL quotes
    names = " || ".join(f"CASE WHEN {test} THEN '{literal[name]}, ' ELSE '' END" for test, name in tests)
    return f"'[' || rtrim({names}, ', ') || ']'"


class Publisher(Reconciliation):
    """Writes a run's batches; one per run, bound to the run's transaction."""

    def __init__(
        self, con: sqlite3.Connection, settings: Settings, plan: TransformPlan, run_id: int, now: str, force: bool
    ) -> None:
        self.con, self.plan, self.run_id, self.now, self.force = con, plan, run_id, now, force
        self.key = plan.key_name
        self.layer = settings.output.layer
        self.attrs = [c.name for c in settings.columns] + ["gis_acres"]
        self.dimensions, self.measures = settings.stats.dimensions, settings.stats.measures
        self.counts = dict.fromkeys(
            ("extracted", "inserted", "updated", "unchanged", "rejected", "deleted", "repaired", "still_rejected"), 0
        )
        self.deltas: stats.Deltas = {}
        self.initial = con.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {WORKING}.parcels)").fetchone()[0] == 1
        # A forced run over existing staging data, or one whose aggregates were lost, recomputes them at the
        # end; every other run adds what each batch changed.
        self.recompute = not self.initial and (force or stats.aggregates_lost(con, STATS, WORKING))
        # Parcels edited by hand in the working DB (see working.create_edit_trigger): they are pending, so this
        # run rewrites them from the source; the aggregates counted the edited values and are recomputed.
        if working.get_state(con, WORKING, working.EDITED_LOCALLY):
            self.recompute = not self.initial
            con.execute(f"DELETE FROM {WORKING}.sync_state WHERE name = ?", (working.EDITED_LOCALLY,))
        working.create_edit_trigger(con, WORKING, self.key, self.attrs)
        self.late_duplicates: set[str] = set()
        self.track_keys = False  # set by dry runs: `status` marks the changed keys pending
        self.changed_keys: list[str] = []  # inserted or updated
        self.deleted_keys: list[str] = []
        seq = con.execute(f"SELECT seq FROM {GEO}.sqlite_sequence WHERE name = ?", (self.layer,)).fetchone()
        top = con.execute(f"SELECT max(fid) FROM {GEO}.{q(self.layer)}").fetchone()[0]
        self.next_fid = max(seq[0] if seq else 0, top or 0) + 1
        con.execute(f"CREATE TEMP TABLE IF NOT EXISTS seen ({q(self.key)} TEXT PRIMARY KEY)")
        # Every parcel a batch writes, bound once (in C, see load/scratch.py); SQLite copies the values on from
        # scratch.batch_rows. staging_state holds the STAGED_* bits; staging_fid is set for parcels the layer
        # gets a new feature for. (These names are reserved in the settings, so no carried column can clash.)
        self.row_columns = [self.key, *self.attrs, *ROW_STATUS, "staging_state", "staging_fid", "staging_geom"]
        self.batch_rows = ScratchTable(con, "batch_rows", self.row_columns)
        # New boxes of existing features whose geometry moved: few, so they travel apart.
        con.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS batch_boxes ({q(self.key)} TEXT, minx REAL, maxx REAL, miny REAL, "
            "maxy REAL)"
        )
        self.changed_fields = _changed_fields(self.attrs)
        self.empty_layer = con.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {GEO}.{q(self.layer)})").fetchone()[0] == 1
        # An empty layer gets its R-tree packed in one go at the end (see load/rtree.py).
        self.rtree_loader = RtreeBulkLoader(con, GEO, geopackage.rtree_name(self.layer)) if self.empty_layer else None
        con.execute("DELETE FROM temp.seen")
        geopackage.drop_triggers(con, GEO, self.layer)

    # --- one batch -----------------------------------------------------------------------------------
    def apply(self, batch: TransformedBatch) -> None:
        self.counts["extracted"] += batch.extracted
        issues = batch.issues.copy()
        parcels, keep = batch.parcels, np.ones(len(batch.parcels), dtype=bool)
        later = self._mark_seen(parcels[self.key].tolist(), issues)
        if later:
            # Same key as a parcel loaded from an earlier batch (keys that differ only in spacing or type).
            keep = ~parcels[self.key].isin(list(later)).to_numpy()
            moved = parcels.loc[~keep, [self.key]].rename(columns={self.key: "key"})
            moved = moved.assign(
                source_row=None,
                reason=Reason.DUPLICATE_KEY.value,
                excerpt=None,
                severity="error",
                message="parcel key occurs more than once in the source (in another batch)",
            )
            issues = pd.concat([issues, moved], ignore_index=True)
            self.late_duplicates |= later
        parcels = parcels[keep].reset_index(drop=True)
        wkb, bounds = batch.wkb[keep], batch.bounds[keep]
        attr_hash, geom_hash = batch.attr_hash[keep], batch.geom_hash[keep]

        rejected = issues[issues["severity"] == "error"]
        self.counts["rejected"] += len(rejected)
        self.counts["repaired"] += int((parcels["sync_note"] == Reason.INVALID_GEOMETRY_REPAIRED.value).sum())
        error_keys = rejected.dropna(subset=["key"]).drop_duplicates("key")
        if later:  # the copy an earlier batch loaded is demoted at the end, counts and aggregates with it
            error_keys = error_keys[~error_keys["key"].isin(list(later))]
        keys = parcels[self.key].tolist()
        touched = keys + error_keys["key"].tolist()
        prev = pd.DataFrame(columns=["attr_hash", "geom_hash", "sync_status", "in_geo"])
        if not self.initial and touched:
            prev = working.previous_versions(self.con, WORKING, self.key, touched)

        exists = _known(parcels[self.key], prev.index)
        was_error = prev.index[prev["sync_status"] == "error"]
        self.counts["still_rejected"] += int(rejected["key"].isin(was_error).sum()) if len(was_error) else 0
        old = prev.reindex(parcels[self.key])
        # Whether the layer has a feature: the working DB says so for the parcels it has. The layer itself is
        # asked for the others (a working row deleted by hand), and for all in a forced run, which so puts
        # back features deleted by hand (asking for every parcel of every run cost 1.5 µs a parcel).
        featured = exists & (old["in_geo"].to_numpy() == 1)
        ask = np.ones(len(keys), dtype=bool) if self.force else ~exists
        if ask.any():
            featured[ask] = self._featured([k for k, a in zip(keys, ask, strict=True) if a])
        if (featured & ~exists).any():
            # A working row removed by hand while its feature stayed: the feature is rewritten in place, and
            # the aggregates, which may still count the removed row, are recomputed.
            self.recompute = True
        # Rows kept only for a status (error or pending placeholders) have no content hash yet.
        had_content = exists & old["attr_hash"].notna().to_numpy()
        same = (
            had_content
            & (old["attr_hash"].to_numpy() == attr_hash)
            & (old["geom_hash"].to_numpy() == geom_hash)
            & (old["sync_status"].to_numpy() == "synced")
            & featured
        )
        same &= not self.force
        in_geo = featured
        write = ~same
        self.counts["unchanged"] += int(same.sum())
        self.counts["inserted"] += int((~had_content).sum())
        self.counts["updated"] += int((had_content & ~same).sum())

        rows = parcels.assign(_attr=attr_hash, _geom=geom_hash)
        # What the parcels about to be rewritten or rejected counted for until now.
        replaced = parcels[self.key][write & exists].tolist()
        replaced += error_keys["key"][_known(error_keys["key"], prev.index)].tolist()
        before = (
            {}
            if self.recompute or not replaced
            else stats.contributions(self.con, WORKING, self.key, replaced, self.dimensions, self.measures)
        )
        moved = old["geom_hash"].to_numpy() != geom_hash  # also true where there was no geometry before
        staged = self._stage(rows, wkb, bounds, write, exists, in_geo, had_content & ~same, moved)
        self._log_changes(staged)
        if not self.initial:  # a first load logs no per-parcel inserts: the run history has the count
            self.con.executemany(
                f"INSERT INTO {WORKING}.change_log (run_id, {q(self.key)}, action, changed_fields, at) "
                "VALUES (?, ?, 'insert', NULL, ?)",
                [(self.run_id, k, self.now) for k in parcels[self.key][~had_content]],
            )
        if self.track_keys:
            self.changed_keys.extend(parcels[self.key][write].tolist())
        self._write_working(staged)
        self._write_geo(staged)
        self._write_errors(error_keys, prev)
        self._record_issues(issues)
        if not self.recompute:
            # Rows written now are published and current; rejected ones no longer count.
            after = stats.frame_contributions(rows[write], self.dimensions, self.measures)
            self.recompute = stats.inexact(after, before)
            stats.merge(self.deltas, stats.subtract(after, before))

    def _featured(self, keys: list[str]) -> np.ndarray:
        """Which of the keys have a feature in the layer: the geo DB's own word, not the working DB's in_geo
        (a reader may have deleted a feature, or a working row, by hand). Found through the key's index."""
        if self.empty_layer or not keys:  # a first load: no lookups
            return np.zeros(len(keys), dtype=bool)
        found = {
            row[0]
            for row in self.con.execute(
                f"SELECT {q(self.key)} FROM {GEO}.{q(self.layer)} WHERE {q(self.key)} IN "
                "(SELECT value FROM json_each(?))",
                (json.dumps(keys),),
            )
        }
        return np.fromiter((k in found for k in keys), dtype=bool, count=len(keys))

    def _mark_seen(self, keys: list[str], issues: pd.DataFrame) -> set[str]:
        """Record this batch's keys; return those an earlier batch of this run already had.

        Rows of one key always arrive in one batch, so a key seen before differs from an earlier one only
        in spacing or type (' 123', 123 and '123' all normalize to '123')."""
        all_keys = list(dict.fromkeys(keys + issues["key"].dropna().tolist()))
        payload = json.dumps(all_keys)
        top = self.con.execute("SELECT coalesce(max(rowid), 0) FROM temp.seen").fetchone()[0]
        before = self.con.total_changes
        self.con.execute("INSERT OR IGNORE INTO temp.seen SELECT value FROM json_each(?)", (payload,))
        if self.con.total_changes - before == len(all_keys):
            return set()
        return {
            r[0]
            for r in self.con.execute(
                f"SELECT {q(self.key)} FROM temp.seen WHERE rowid <= ? AND {q(self.key)} IN "
                "(SELECT value FROM json_each(?))",
                (top, payload),
            )
        }

    def _stage(
        self,
        rows: pd.DataFrame,
        wkb: np.ndarray,
        bounds: np.ndarray,
        write: np.ndarray,
        exists: np.ndarray,
        in_geo: np.ndarray,
        log: np.ndarray,
        moved: np.ndarray,
    ) -> Staged:
        """Bind the batch's parcels to be written into scratch.batch_rows: each value once, which is the slow
        part of a load. Parcels without a feature in the layer get their fid here, in row order."""
        self.con.execute("DELETE FROM temp.batch_boxes")
        if not write.any():
            return Staged(0, 0, [], np.empty((0, 4)))  # scratch.batch_rows still holds an earlier batch
        part, b = rows[write], bounds[write]
        existing, featured = exists[write], in_geo[write]
        fids = np.full(len(part), None, dtype=object)
        order = np.flatnonzero(~featured)  # fids ascend with the rows: the layer takes them without a sort
        new_fids = list(range(self.next_fid, self.next_fid + len(order)))
        fids[order] = new_fids
        self.next_fid += len(order)
        state = existing * STAGED_EXISTING + featured * STAGED_IN_GEO + log[write] * STAGED_LOGGED
        # in the order of self.row_columns: the batch's sync_note is the working DB's sync_reason
        columns = [part[c] for c in [self.key, *self.attrs, "sync_note", "_attr", "_geom", "source_modified"]]
        arrays = [pa.array(c, from_pandas=True) for c in columns]  # from_pandas: NaN is missing, stored NULL
        arrays += [
            pa.array(state),
            pa.array(fids, pa.int64()),
            geopackage.geometry_blobs(wkb[write], b, self.plan.output_srid),
        ]
        self.batch_rows.fill(pa.Table.from_arrays(arrays, names=self.row_columns))
        # An R-tree entry is rewritten only where the geometry moved.
        boxed = featured & moved[write]
        if boxed.any():
            minx, miny, maxx, maxy = b[boxed].T.tolist()
            self.con.executemany(
                "INSERT INTO temp.batch_boxes VALUES (?, ?, ?, ?, ?)",
                zip(part[self.key][boxed].tolist(), minx, maxx, miny, maxy, strict=True),
            )
        return Staged(len(part), int(np.bitwise_or.reduce(state)), new_fids, b[order])

    def _log_changes(self, staged: Staged) -> None:
        """An update entry for each staged parcel whose content changed, naming the fields that did; compared
        in SQL against the stored row, before the update."""
        if not staged.bits & STAGED_LOGGED:
            return
        k = q(self.key)
        self.con.execute(
            f"INSERT INTO {WORKING}.change_log (run_id, {k}, action, changed_fields, at) "
            f"SELECT ?, {k}, 'update', fields, ? FROM (SELECT b.rowid AS n, b.{k}, {self.changed_fields} AS fields "
            f"FROM scratch.batch_rows b JOIN {WORKING}.parcels p ON p.{k} = b.{k} "
            f"WHERE b.staging_state & {STAGED_LOGGED}) WHERE fields != '[]' ORDER BY n",
            (self.run_id, self.now),
        )

    def _write_working(self, staged: Staged) -> None:
        """Staged parcels into the working DB: new ones inserted, the others rewritten in place (without the
        key: setting it, even to itself, would rewrite its index entry too)."""
        if not staged.rows:
            return
        k = q(self.key)
        carried = ", ".join(q(c) for c in [self.key, *self.attrs])
        status = ", ".join(ROW_STATUS)
        params = (REPAIRED_MESSAGE, self.now, self.run_id)
        self.con.execute(
            f"INSERT INTO {WORKING}.parcels ({carried}, {status}, sync_status, sync_message, first_seen, "
            f"last_changed, last_synced, last_run_id, in_geo) SELECT {carried}, {status}, 'synced', CASE WHEN "
            "sync_reason IS NOT NULL THEN ?1 END, ?2, ?2, ?2, ?3, 1 FROM scratch.batch_rows "
            f"WHERE staging_state & {STAGED_EXISTING} = 0",
            params,
        )
        if not staged.bits & STAGED_EXISTING:
            return
        sets = ", ".join(f"{q(c)} = b.{q(c)}" for c in [*self.attrs, *ROW_STATUS])
        # coalesce: placeholders that `status` wrote before it set first_seen have none.
        self.con.execute(
            f"UPDATE {WORKING}.parcels SET {sets}, sync_status = 'synced', sync_message = CASE WHEN "
            "b.sync_reason IS NOT NULL THEN ?1 END, first_seen = coalesce(first_seen, ?2), last_changed = ?2, "
            f"last_synced = ?2, last_run_id = ?3, in_geo = 1 FROM scratch.batch_rows b "
            f"WHERE b.staging_state & {STAGED_EXISTING} AND {WORKING}.parcels.{k} = b.{k}",
            params,
        )

    def _write_geo(self, staged: Staged) -> None:
        """Staged parcels into the layer: a feature for those without one, the others rewritten in place (their
        R-tree entry only where the geometry moved)."""
        t, r = f"{GEO}.{q(self.layer)}", f"{GEO}.{q(geopackage.rtree_name(self.layer))}"
        k = q(self.key)
        carried = ", ".join(q(a) for a in [self.key, *self.attrs])
        if staged.new_fids:
            self.con.execute(
                f"INSERT INTO {t} (fid, geom, {carried}, sync_status, sync_note) SELECT staging_fid, staging_geom, "
                f"{carried}, 'synced', sync_reason FROM scratch.batch_rows WHERE staging_fid IS NOT NULL "
                "ORDER BY rowid"  # the fid order (see _stage); by staging_fid, SQLite sorted every batch first
            )
            self._index_new(staged.new_fids, staged.new_bounds)
        if not staged.bits & STAGED_IN_GEO:
            return
        sets = ", ".join(f"{q(a)} = b.{q(a)}" for a in self.attrs)
        self.con.execute(
            f"UPDATE {t} SET geom = b.staging_geom, {sets}, sync_status = 'synced', sync_note = b.sync_reason "
            f"FROM scratch.batch_rows b WHERE b.staging_state & {STAGED_IN_GEO} AND {t}.{k} = b.{k}"
        )
        self.con.execute(
            f"INSERT OR REPLACE INTO {r} (id, minx, maxx, miny, maxy) SELECT g.fid, b.minx, b.maxx, b.miny, "
            f"b.maxy FROM temp.batch_boxes b JOIN {t} g ON g.{k} = b.{k}"
        )

    def _index_new(self, fids: list[int], bounds: np.ndarray) -> None:
        """R-tree entries of new features: packed at the end when the layer started empty, else inserted."""
        if self.rtree_loader is not None:
            self.rtree_loader.add(fids, bounds)
            return
        minx, miny, maxx, maxy = bounds.T.tolist()
        self.con.executemany(
            f"INSERT INTO {GEO}.{q(geopackage.rtree_name(self.layer))} VALUES (?, ?, ?, ?, ?)",
            zip(fids, minx, maxx, miny, maxy, strict=True),
        )

    def _write_errors(self, errors: pd.DataFrame, prev: pd.DataFrame) -> None:
        """Status `error` for rejected parcels; the geo DB keeps (and flags) their last good version."""
        if errors.empty:
            return
        known = _known(errors["key"], prev.index)
        params = list(zip(errors["reason"], errors["message"], errors["key"], strict=True))
        self.con.executemany(
            f"UPDATE {WORKING}.parcels SET sync_status = 'error', sync_reason = ?, sync_message = ?, "
            f"last_run_id = {self.run_id} WHERE {q(self.key)} = ?",
            [p for p, k in zip(params, known, strict=True) if k],
        )
        self.con.executemany(
            f"INSERT INTO {WORKING}.parcels ({q(self.key)}, sync_status, sync_reason, sync_message, first_seen, "
            f"last_run_id, in_geo) VALUES (?, 'error', ?, ?, ?, {self.run_id}, 0)",
            [(k, r, m, self.now) for (r, m, k), kn in zip(params, known, strict=True) if not kn],
        )
        self.con.executemany(
            f"UPDATE {GEO}.{q(self.layer)} SET sync_status = 'error', sync_note = ? WHERE {q(self.key)} = ?",
            [(r, k) for r, _, k in params],
        )

    def _record_issues(self, issues: pd.DataFrame) -> None:
        if issues.empty:
            return
        cols = ["key", "source_row", "reason", "message", "excerpt", "severity"]
        self.con.executemany(
            f"INSERT INTO {WORKING}.errors (run_id, {q(self.key)}, source_row, reason, message, excerpt, severity) "
            f"VALUES ({self.run_id}, ?, ?, ?, ?, ?, ?)",
            zip(*storage_values(issues, cols), strict=True),
        )

    def finish(self) -> None:
        """Settle duplicates across batches, the aggregates, and the GeoPackage's triggers and contents."""
        self._demote_late_duplicates()
        if self.recompute:
            stats.create_tables(self.con, STATS, self.measures)
            stats.recompute(self.con, STATS, WORKING, self.dimensions, self.measures)
        else:
            stats.apply_deltas(self.con, STATS, self.deltas, self.measures)
        rtree_name = geopackage.rtree_name(self.layer)
        extent = self.rtree_loader.build() if self.rtree_loader is not None else root_extent(self.con, GEO, rtree_name)
        geopackage.create_triggers(self.con, GEO, self.layer)
        geopackage.refresh_contents(self.con, GEO, self.layer, extent)
