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
from countydatasync.load.transaction import APPEND_CACHE_MIB, GEO, STATS, WORKING, StagingTransaction
from countydatasync.ops.redact import redact, settings_secrets
from countydatasync.settings import Settings
from countydatasync.sync import producer
from countydatasync.sync.apply import Publisher
from countydatasync.sync.lock import run_lock
from countydatasync.sync.result import RunResult
from countydatasync.transform import TransformedBatch, TransformPlan

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int | None], None]
"""Called as progress(stage, rows_done, rows_total_or_None); the CLI draws a bar, the server logs."""

KEEP_ERROR_RUNS = 30  # runs whose error rows stay in the working DB


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
    """A dry run that also returns the keys it would insert or update, and those it would delete."""
    with run_lock(settings.output.directory):
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

    def execute(self) -> RunResult:
        output = self.settings.output
        existed = {p: p.is_file() for p in (output.geo_path, output.stats_path, output.working_path)}
        source = open_source(self.settings)
        result = RunResult(run_id=0, mode="full", source=source.description, started_at=self.started)
        tx: StagingTransaction | None = None
        try:
            tx = StagingTransaction(output, dry_run=self.dry_run)
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
            source.close()
            if self.dry_run:
                for path, was in existed.items():
                    if not was and path.is_file() and path.stat().st_size == 0:
                        path.unlink()

    # --- schema --------------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        s = self.settings
        return json.dumps(
            {
                "key": s.source.key_name,
                "layer": s.output.layer,
                "srid": self.plan.output_srid,
                "columns": [[c.name, c.type] for c in s.columns],
                "dimensions": s.stats.dimensions,
                "measures": s.stats.measures,
            }
        )

    def _prepare_schema(self, con: sqlite3.Connection) -> bool:
        """Create missing tables; rebuild ours when the settings changed their shape. True when rebuilt."""
        s = self.settings
        layer = s.output.layer
        # NOCASE: SQLite table names ignore case, so "Parcels" is the existing layer "parcels", renamed.
        has_layer = (
            con.execute(
                f"SELECT 1 FROM {GEO}.sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE", (layer,)
            ).fetchone()
            is not None
        )
        stored = working.get_state(con, WORKING, "fingerprint")
        rebuild = stored != self._fingerprint() or not has_layer
        if rebuild and (stored is not None or has_layer):
            log.warning("staging schema differs from the settings (or the geo DB is missing): full rebuild")
            geopackage.drop_layer(con, GEO, layer)
            working.drop_parcels(con, WORKING)
            stats.drop_aggregates(con, STATS)
            working.create_tables(con, WORKING, s.source.key_name, s.columns)
            con.execute(f"DELETE FROM {WORKING}.sync_state WHERE name LIKE 'watermark%'")
        if rebuild:
            geopackage.create_layer(con, GEO, layer, s.source.key_name, s.columns, self.plan.output_srid)
        working.create_tables(con, WORKING, s.source.key_name, s.columns)
        stats.create_tables(con, STATS, s.stats.measures)
        return rebuild

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
            self.publisher.delete_absent("seen")
            return
        stamp, style = watermark
        since_ts = stamp - timedelta(seconds=self.settings.source.modified_overlap_seconds)
        since: object = since_ts.to_pydatetime()
        if style in ("T", " "):
            since = since_ts.strftime(f"%Y-%m-%d{style}%H:%M:%S")
        changed = source.count_rows(since)  # type: ignore[arg-type]
        if changed >= producer.PROCESS_THRESHOLD:  # a mass update (a revaluation): transform on a core of its own
            child = producer.in_process(self.settings, self.plan, since)  # type: ignore[arg-type]
            self._stream(child, "extract changes", changed, transformed=True)
        else:
            self._stream(source.batches(modified_since=since), "extract changes", changed)  # type: ignore[arg-type]
        self.progress("reconcile keys", 0, None)
        self.publisher.load_source_keys(source.all_keys())
        recheck = self.publisher.keys_to_recheck()
        if recheck:
            self._stream(source.rows_for_keys(recheck), "re-read keys", len(recheck))
        self.publisher.delete_absent("source_keys")

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
        record = result.as_record()
        with (settings.output.directory / FAILED_RUNS).open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
    except Exception:
        log.exception("could not record the failed run")


def _summary(result: RunResult) -> str:
    return (
        f"extracted {result.extracted}, inserted {result.inserted}, updated {result.updated}, "
        f"unchanged {result.unchanged}, rejected {result.rejected}, deleted {result.deleted}"
    )
