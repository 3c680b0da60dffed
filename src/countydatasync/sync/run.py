"""A sync run: lock, open the source and the staging transaction, stream batches through the transform into
the publisher, reconcile deletes, commit. Any failure rolls everything back and is recorded as a failed run.

Two ways to find changes:
- watermark: with a trustworthy modified-timestamp column and a previous run, read only rows modified
  since the last watermark (less an overlap), then read the source's key set to find deletes, new keys
  with old timestamps, and parcels still in error;
- scan: read every row and compare content hashes (first runs, `--full`, or no modified column).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pandas as pd

from countydatasync.errors import CountyDataSyncError
from countydatasync.extract import Source, open_source
from countydatasync.load import geopackage, stats, working
from countydatasync.load.geopackage import q
from countydatasync.load.transaction import APPEND_CACHE_MIB, GEO, STATS, WORKING, StagingTransaction, is_published
from countydatasync.ops.redact import redact, settings_secrets
from countydatasync.settings import KEY_TABLES, Settings
from countydatasync.sync import producer
from countydatasync.sync.apply import Publisher
from countydatasync.sync.lock import run_lock
from countydatasync.sync.result import RunResult
from countydatasync.transform import TransformedBatch, TransformPlan

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int | None], None]
"""Called as progress(stage, rows_done, rows_total_or_None); the CLI draws a bar, the server logs."""

KEEP_ERROR_RUNS = 30  # runs whose error rows stay in the working DB

# The fingerprint of the settings (and the source's declared column types) that the staging databases were
# built from, kept in the working DB, in three parts that a change affects differently:
SCHEMA_PARTS = ("key", "layer", "srid", "columns")  # the tables' shape: rebuilt
STATS_PARTS = ("dimensions", "measures")  # the aggregates: recomputed from the working DB
READ_PARTS = ("source",)  # what rows are read and how they are typed: every row read again, compared by hash


def _no_progress(stage: str, done: int, total: int | None) -> None:
    return None


def run_sync(
    settings: Settings, *, full: bool = False, dry_run: bool = False, progress: ProgressCallback = _no_progress
) -> RunResult:
    """Sync the staging databases with the source and return the run's counts.

    full: re-read and rewrite every parcel (default False: only what changed).
    dry_run: do all the work, then roll back; nothing is published (default False).
    Raises CountyDataSyncError subclasses with a message naming the problem; the previous staging state
    is then untouched.
    """
    with run_lock(settings.output.directory):
        return _Run(settings, full, dry_run, progress).execute()


def detect_changes(
    settings: Settings, progress: ProgressCallback = _no_progress
) -> tuple[RunResult, list[str], list[str]]:
    """A dry run that also returns the keys it would insert or update, and those it would delete. The caller
    holds the run lock (`run_lock(settings.output.directory)`) for as long as it acts on the answer."""
    run = _Run(settings, False, True, progress)
    result = run.execute()
    assert run.publisher is not None
    return result, run.publisher.changed_keys, run.publisher.deleted_keys


class _Run:
    def __init__(self, settings: Settings, full: bool, dry_run: bool, progress: ProgressCallback) -> None:
        self.settings, self.full, self.dry_run, self.progress = settings, full, dry_run, progress
        self.plan = TransformPlan.from_settings(settings)
        self.started = datetime.now(UTC)
        self.now = self.started.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        self.publisher: Publisher | None = None
        self.source_description = ""  # where rows come from, and their declared types: set once the source is open
        self.source_types: dict[str, str] = {}

    def execute(self) -> RunResult:
        output = self.settings.output
        existed = {p: p.is_file() for p in (output.geo_path, output.stats_path, output.working_path)}
        src = self.settings.source
        described = redact(f"{src.url} table {src.table}", settings_secrets(self.settings))
        result = RunResult(run_id=0, mode="full", source=described, started_at=self.started)
        source: Source | None = None
        tx: StagingTransaction | None = None
        try:
            # Inside the try: a source that cannot even be opened (a missing file, an unknown driver) is a
            # failed run like any other, recorded in failed_runs.jsonl.
            source = open_source(self.settings)
            result.source = source.description
            tx = StagingTransaction(output, dry_run=self.dry_run)
            self.source_types = _declared_types(source, self.settings)
            self.source_description = source.description
            force = self._prepare_schema(tx.con) or self.full
            result.run_id = stats.next_run_id(tx.con, STATS, WORKING)
            self.publisher = Publisher(tx.con, self.settings, self.plan, result.run_id, self.now, force)
            self.publisher.track_keys = self.dry_run
            result.mode = "full" if force or self.publisher.initial else "incremental"
            if self.publisher.initial:
                tx.set_cache(APPEND_CACHE_MIB)
            watermark = None if force else self._watermark(tx.con)
            self._extract(source, watermark)
            self.publisher.finish()
            self._save_state(tx.con)
            self._fill(result, "succeeded")
            working.set_state(tx.con, WORKING, "last_run_id", str(result.run_id))
            tx.con.execute(f"DELETE FROM {WORKING}.errors WHERE run_id <= ?", (result.run_id - KEEP_ERROR_RUNS,))
            if self.dry_run:
                result.mode = f"dry-run ({result.mode})"
                tx.rollback()
            else:
                stats.record_run(tx.con, STATS, result)
                tx.commit()
            result.outputs = {"geo": output.geo_path, "stats": output.stats_path, "working": output.working_path}
            log.info("run %s %s: %s", result.run_id, result.mode, _summary(result))
            return result
        except BaseException as exc:
            if tx is not None:
                tx.rollback()
            # A staging write that failed (a full disk, an I/O error) is told as such, not as a traceback.
            error = tx.write_failure(exc) if tx is not None and isinstance(exc, sqlite3.Error) else exc
            self._fill(result, "failed", error)
            if not self.dry_run:
                _record_failure(self.settings, result)
            if isinstance(error, Exception):
                error.run_result = result  # type: ignore[attr-defined]  # counts for the failure alert
            if error is not exc:
                raise error from exc
            raise
        finally:
            if tx is not None:
                tx.close()
            if source is not None:
                source.close()
            # Files this run created and left empty (a dry run, a failed first run): readers would take an empty
            # file for a database without tables.
            for path, was in existed.items():
                if not was and path.is_file() and not is_published(path):
                    path.unlink()

    # --- schema --------------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        s, src = self.settings, self.settings.source
        return json.dumps(
            {
                "key": src.key_name,
                "layer": s.output.layer,
                "srid": self.plan.output_srid,
                "columns": [[c.name, c.type] for c in s.columns],
                "dimensions": s.stats.dimensions,
                "measures": s.stats.measures,
                "source": {
                    "table": self.source_description,  # where from (no password)
                    "db_schema": src.db_schema,
                    "key_column": src.key_column,
                    "geometry_column": src.geometry_column,
                    "geometry_encoding": src.geometry_encoding,
                    "srid": src.srid,
                    "timezone": src.timezone,
                    "modified_column": src.modified_column or None,
                    "column_sources": [c.source for c in s.columns],
                    "declared_types": self.source_types,
                },
            }
        )

    def _prepare_schema(self, con: sqlite3.Connection) -> bool:
        """Create missing tables; bring ours in line with what the last successful run built them from
        (the stored fingerprint). True when the staging schema was rebuilt.

        A watermark run reads only the rows modified since the last run, so a change in how rows are read or
        typed (a column's source, the timezone, the source itself or a column's declared type) drops the
        watermark: this run reads every row, and the content hashes find the parcels that came out otherwise."""
        s = self.settings
        layer = s.output.layer
        # lower(): SQLite table names ignore case, so "Parcels" is the existing layer "parcels", renamed.
        tables = con.execute(f"SELECT name FROM {GEO}.sqlite_master WHERE type = 'table'").fetchall()
        geo_tables = {row[0].lower() for row in tables}
        has_layer = layer.lower() in geo_tables
        stored_text = working.get_state(con, WORKING, "fingerprint")
        stored = _parsed(stored_text)
        current = json.loads(self._fingerprint())

        def changed(parts: tuple[str, ...]) -> bool:
            return any(stored.get(part) != current[part] for part in parts)

        rebuild = changed(SCHEMA_PARTS) or not has_layer
        if rebuild and (stored_text is not None or has_layer):
            log.warning("staging schema differs from the settings (or the geo DB is missing): full rebuild")
            self._rename_key(con)
            # The previous layer too: under another name it would stay in the geo DB, stale. A new geo DB (another
            # output.geo_db) has no GeoPackage tables yet, and nothing to drop.
            for name in {layer, str(stored.get("layer") or layer)} if "gpkg_contents" in geo_tables else ():
                geopackage.drop_layer(con, GEO, name)
            working.drop_parcels(con, WORKING)
            stats.drop_aggregates(con, STATS)
            working.create_tables(con, WORKING, s.source.key_name, s.columns)
            con.execute(f"DELETE FROM {WORKING}.sync_state WHERE name LIKE 'watermark%'")
        if not rebuild and changed(STATS_PARTS):
            log.warning("stats dimensions or measures changed: aggregates recomputed")
            stats.drop_aggregates(con, STATS)  # the run finds them lost and recomputes them (see Publisher)
        if not rebuild and changed(READ_PARTS):
            log.warning("how the source is read changed (settings or column types): every row is read again")
            con.execute(f"DELETE FROM {WORKING}.sync_state WHERE name LIKE 'watermark%'")
        if rebuild:
            geopackage.create_layer(con, GEO, layer, s.source.key_name, s.columns, self.plan.output_srid)
        working.create_tables(con, WORKING, s.source.key_name, s.columns)
        stats.create_tables(con, STATS, s.stats.measures)
        return rebuild

    def _rename_key(self, con: sqlite3.Connection) -> None:
        """The errors and the change log outlive a rebuild: their key column takes the current key name,
        which every insert names (and a new working DB would have)."""
        key = self.settings.source.key_name
        for table in ("errors", "change_log"):
            fixed = KEY_TABLES[f"working DB {table}"]
            names = [row[1] for row in con.execute(f"PRAGMA {WORKING}.table_info({table})")]
            old = [name for name in names if name.lower() not in fixed]
            if len(old) == 1 and old[0] != key:
                con.execute(f"ALTER TABLE {WORKING}.{table} RENAME COLUMN {q(old[0])} TO {q(key)}")

    # --- extraction ----------------------------------------------------------------------------------
    def _watermark(self, con: sqlite3.Connection) -> tuple[pd.Timestamp, str] | None:
        if not self.settings.source.modified_column:
            return None
        value = working.get_state(con, WORKING, "watermark")
        style = working.get_state(con, WORKING, "watermark_style") or "datetime"
        return (pd.Timestamp(value), style) if value else None

    def _extract(self, source: Source, watermark: tuple[pd.Timestamp, str] | None) -> None:
        assert self.publisher is not None
        if watermark is None:
            total = source.count_rows()
            if total >= producer.PROCESS_THRESHOLD:
                self._stream(producer.in_process(self.settings, self.plan, None), "extract", total, transformed=True)
            else:
                self._stream(source.batches(), "extract", total)
            self.publisher.delete(self.publisher.absent_keys("seen"))
            return
        stamp, style = watermark
        since_ts = stamp - timedelta(seconds=self.settings.source.modified_overlap_seconds)
        since: object = since_ts.to_pydatetime()
        if style in ("T", " "):
            since = since_ts.strftime(f"%Y-%m-%d{style}%H:%M:%S")
        # The key set first: keys that several rows carry are read once, all copies together, by the re-read.
        self.progress("reconcile keys", 0, None)
        self.publisher.load_source_keys(source.all_keys())
        several = self.publisher.keys_with_copies()
        changed = source.count_rows(since)  # type: ignore[arg-type]
        if changed >= producer.PROCESS_THRESHOLD:  # a mass update (a revaluation): transform on a core of its own
            child = producer.in_process(self.settings, self.plan, since, several)  # type: ignore[arg-type]
            self._stream(child, "extract changes", changed, transformed=True)
        else:
            changes = producer.without_keys(source.batches(modified_since=since), several)  # type: ignore[arg-type]
            self._stream(changes, "extract changes", changed)
        # Found before the re-read, which only reads keys the source has, so it cannot change them.
        absent = self.publisher.absent_keys("source_keys")
        recheck = self.publisher.keys_to_recheck(len(absent))
        if recheck:
            self._stream(source.rows_for_keys(recheck), "re-read keys", len(recheck))
        self.publisher.delete(absent)

    def _stream(
        self,
        batches: Iterator[pd.DataFrame] | Iterator[TransformedBatch],
        stage: str,
        total: int | None,
        transformed: bool = False,
    ) -> None:
        """Write batches as the producer (see producer.py) hands them over."""
        assert self.publisher is not None
        done = 0
        self.progress(stage, 0, total)
        ready = batches if transformed else producer.in_thread(batches, self.plan)  # type: ignore[arg-type]
        # Closed here, not when garbage collection gets to it: a failed run's traceback keeps the generator
        # alive, and its producer thread must stop reading before the caller closes the source under it.
        with closing(ready):  # type: ignore[type-var]
            for batch in ready:
                self._note_style(batch)
                self.publisher.apply(batch)
                done += batch.extracted
                self.progress(stage, done, total)

    def _note_style(self, batch: TransformedBatch) -> None:
        if batch.max_modified is not None and not pd.isna(batch.max_modified):
            current = getattr(self, "max_modified", None)
            self.max_modified = batch.max_modified if current is None else _later(current, batch.max_modified)
            self.style = batch.modified_style

    def _save_state(self, con: sqlite3.Connection) -> None:
        working.set_state(con, WORKING, "fingerprint", self._fingerprint())
        stamp = getattr(self, "max_modified", None)
        if self.settings.source.modified_column and stamp is not None:
            previous = working.get_state(con, WORKING, "watermark")
            if previous is None or _later(pd.Timestamp(previous), stamp) is stamp:
                working.set_state(con, WORKING, "watermark", stamp.isoformat())
                working.set_state(con, WORKING, "watermark_style", self.style)

    def _fill(self, result: RunResult, status: str, exc: BaseException | None = None) -> None:
        if self.publisher is not None:
            for name, value in self.publisher.counts.items():
                setattr(result, name, value)
        result.status = status
        result.finished_at = datetime.now(UTC)
        if exc is not None:
            text = str(exc) if isinstance(exc, CountyDataSyncError) else f"{type(exc).__name__}: {exc}"
            result.error = redact(text, settings_secrets(self.settings))


def _parsed(fingerprint: str | None) -> dict[str, object]:
    """A stored fingerprint's parts; none for a new working DB (or an unreadable value), so all differ."""
    try:
        parts = json.loads(fingerprint or "{}")
    except ValueError:
        return {}
    return parts if isinstance(parts, dict) else {}


def _declared_types(source: Source, settings: Settings) -> dict[str, str]:
    """The source's declared types of the columns a run reads. A changed type (ALTER COLUMN ... TYPE, a
    table rebuilt) can change every row's value without moving a modified timestamp. Reflecting the table
    also checks that every configured column is there before anything is written."""
    check = getattr(source, "table", None)  # the SQLAlchemy backends' catalog check
    if check is None:
        return {}
    check()
    types = getattr(source, "catalog_types", {})
    src = settings.source
    read = [src.key_column, src.geometry_column, src.modified_column, *(c.source for c in settings.columns)]
    return {name: repr(types[name]) for name in dict.fromkeys(read) if name and name in types}


def _later(a: pd.Timestamp, b: pd.Timestamp) -> pd.Timestamp:
    """The later of two watermarks; `b` when one carries a time zone and the other does not (the column's
    type changed, e.g. to timestamptz), as such times do not compare."""
    if (a.tzinfo is None) != (b.tzinfo is None):
        return b
    return b if b > a else a


FAILED_RUNS = "failed_runs.jsonl"


def _record_failure(settings: Settings, result: RunResult) -> None:
    """Append a failed run to failed_runs.jsonl beside the staging databases, which a failed run leaves
    byte-identical; never mask the original error."""
    try:
        settings.output.directory.mkdir(parents=True, exist_ok=True)
        # No run id: a failed run's id is rolled back with its data and given to the next run that succeeds,
        # so the id would name another run.
        record = {**result.as_record(), "run_id": None}
        with (settings.output.directory / FAILED_RUNS).open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
    except Exception:
        log.exception("could not record the failed run")


def _summary(result: RunResult) -> str:
    return (
        f"extracted {result.extracted}, inserted {result.inserted}, updated {result.updated}, "
        f"unchanged {result.unchanged}, rejected {result.rejected}, deleted {result.deleted}"
    )
