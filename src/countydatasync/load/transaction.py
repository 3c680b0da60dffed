"""The run transaction: one SQLite connection over the three staging databases, committed once.

The working DB is the main database; the geo and stats DBs are attached. In rollback-journal mode
SQLite commits a transaction that spans attached databases atomically through a super-journal, and a
process killed at any moment leaves hot journals that the next connection (ours, GDAL's or QGIS's)
rolls back. So a run publishes all three databases or none, and the files stay single files (no WAL),
which network shares need. Readers inside a read transaction keep their snapshot: the commit waits
for them up to the busy timeout.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from countydatasync.errors import PublishError
from countydatasync.load import scratch
from countydatasync.settings import OutputSettings

log = logging.getLogger(__name__)

WORKING, GEO, STATS = "main", "geo", "stats"
# Page caches. Updates spread over the files want a larger one per database than a first load, which
# appends (8 MiB: 0.8 s faster at 1,000,000 parcels than 16, and 17 MiB less memory; 16 MiB for a
# revaluation: 1.5 s faster than 8). The temp database holds the run's key bookkeeping (the keys seen, the
# source's key set): 32 MiB, chosen when it held the staged batch too; with the batch staged in memory
# (load/scratch.py), 2 MiB measured the same within the noise, so it was left.
CACHE_MIB, APPEND_CACHE_MIB, TEMP_CACHE_MIB = 16, 8, 32
WRITEBACK_SECONDS = 1.0  # how often what SQLite wrote so far is flushed to disk (see Writeback)


class StagingTransaction:
    """Opens the staging databases and holds a write transaction on all three until commit or rollback.

    dry_run: the transaction will be rolled back, so the files stay exactly as they are, in WAL mode too
    (default False: a WAL file is switched back to a rollback journal, which the atomic commit needs).
    """

    def __init__(self, output: OutputSettings, dry_run: bool = False) -> None:
        scratch.require_support()
        output.directory.mkdir(parents=True, exist_ok=True)
        self.paths = {WORKING: output.working_path, GEO: output.geo_path, STATS: output.stats_path}
        try:
            self.con = sqlite3.connect(
                self.paths[WORKING],
                isolation_level=None,
                timeout=output.busy_timeout_seconds,
                check_same_thread=False,
            )
            self.con.execute("ATTACH DATABASE ? AS geo", (str(self.paths[GEO]),))
            self.con.execute("ATTACH DATABASE ? AS stats", (str(self.paths[STATS]),))
            scratch.attach(self.con)
            for schema in (WORKING, GEO, STATS):
                if not dry_run:
                    self._check_journal_mode(schema)
                # FULL: a commit survives power loss, not only a killed process.
                self.con.execute(f"PRAGMA {schema}.synchronous = FULL")
            self.set_cache(CACHE_MIB)
            self.con.execute("PRAGMA temp_store = FILE")
            self.con.execute(f"PRAGMA temp.cache_size = -{TEMP_CACHE_MIB * 1024}")
            self.con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise PublishError(f"cannot open the staging databases in {output.directory}: {exc}") from exc
        self.open = True
        self.writeback = Writeback([self.paths[WORKING], self.paths[GEO]])

    def _check_journal_mode(self, schema: str) -> None:
        mode = self.con.execute(f"PRAGMA {schema}.journal_mode").fetchone()[0]
        if mode.lower() == "wal":
            # Another tool switched the file to WAL; go back to a single-file rollback journal.
            self.con.execute(f"PRAGMA {schema}.journal_mode = DELETE")
            log.warning("%s was in WAL mode; switched back to rollback journal", self.paths[schema])

    def set_cache(self, mib: int) -> None:
        """The page cache of each staging database, in MiB."""
        for schema in (WORKING, GEO, STATS):
            self.con.execute(f"PRAGMA {schema}.cache_size = -{mib * 1024}")

    def commit(self) -> None:
        self.writeback.stop()
        try:
            self.con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self.write_failure(exc) from exc
        finally:
            self.open = False

    def write_failure(self, exc: sqlite3.Error) -> PublishError:
        """A failed write or commit as the operator needs to read it: what to fix, and that the previous
        state is intact (the transaction is rolled back; `close` restores the files)."""
        directory = self.paths[WORKING].parent
        code = getattr(exc, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL:
            temp = sqlite_temp_directory()
            problem = (
                f"the disk is full: {_free_mib(directory)} MiB free there once the run was given up; SQLite "
                f"keeps the run's temp tables in {temp} ({_free_mib(temp)} MiB free; SQLITE_TMPDIR moves "
                "them). Free space and run again"
            )
        elif code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            problem = f"{exc}: a reader holds one in a long transaction; close it or raise output.busy_timeout_seconds"
        else:
            problem = str(exc)
        return PublishError(
            f"could not write the staging databases in {directory} ({problem}). "
            "Nothing was published; the previous state is intact."
        )

    def rollback(self) -> None:
        if self.open and not self.con.in_transaction:  # SQLite gave it up itself, after a write error
            self.open = False
        if self.open:
            try:
                self.con.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("rollback failed; SQLite rolls the journals back at the next open")
            self.open = False

    def close(self) -> None:
        self.writeback.stop()
        self.rollback()
        self._restore_hot_journals()
        self.con.close()
        self.writeback.close()  # after the connection: closing a file descriptor drops the process's locks

    def _restore_hot_journals(self) -> None:
        """After a write error (a full disk, an I/O error) SQLite has given up the transaction but left the
        files changed, with their journals: it rolls them back at the next read. Read now, so the files are
        byte-identical to the previous state before this run ends, not only after some reader opens them
        (a reader with read-only access to the folder could not)."""
        for schema, path in self.paths.items():
            if Path(f"{path}-journal").exists():
                try:
                    self.con.execute(f"SELECT count(*) FROM {schema}.sqlite_master").fetchone()
                except sqlite3.Error:
                    log.exception("could not roll back %s; SQLite does so at its next open", path)

    def __enter__(self) -> StagingTransaction:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Writeback:
    """Flushes the pages SQLite has written to the staging files so far, every WRITEBACK_SECONDS, from a
    thread of its own. A first load writes hundreds of megabytes as it goes, which the OS kept in memory
    until the commit's sync waited for all of them at once (0.44 s at 1,000,000 parcels, with both cores
    idle). Flushing early only makes written pages durable sooner: SQLite's own syncs at the commit, in
    its order, are what make it atomic.

    The files stay open until `close`, after the connection's: closing any descriptor of a file drops the
    POSIX locks the process holds on it, SQLite's included."""

    def __init__(self, paths: list[Path]) -> None:
        self.fds: list[int] = []
        for path in paths if hasattr(os, "fdatasync") else ():
            try:
                self.fds.append(os.open(path, os.O_RDONLY))
            except OSError:  # not flushed early, then: the commit's own sync still makes it durable
                continue
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, name="staging-writeback", daemon=True)
        if self.fds:
            self.thread.start()

    def _run(self) -> None:
        while not self.halt.wait(WRITEBACK_SECONDS):
            for fd in self.fds:
                try:
                    os.fdatasync(fd)
                except OSError:  # the commit's own sync reports what is wrong with the disk
                    return

    def stop(self) -> None:
        self.halt.set()
        if self.thread.is_alive():
            self.thread.join()

    def close(self) -> None:
        self.stop()
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def sqlite_temp_directory() -> Path:
    """Where SQLite puts temp files: on Unix the first writable of $SQLITE_TMPDIR, $TMPDIR, /var/tmp,
    /usr/tmp, /tmp and the current folder (SQLite's documented order); on Windows the system temp folder."""
    if os.name == "nt":
        return Path(tempfile.gettempdir())
    unix_defaults = ("/var/tmp", "/usr/tmp", "/tmp")  # noqa: S108  # only read: where SQLite writes
    for candidate in (os.environ.get("SQLITE_TMPDIR"), os.environ.get("TMPDIR"), *unix_defaults):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return Path(candidate)
    return Path.cwd()


def _free_mib(directory: Path) -> int:
    try:
        return shutil.disk_usage(directory).free // 2**20
    except OSError:
        return -1


def is_published(path: Path) -> bool:
    """True when `path` holds a database: SQLite creates a file on opening it, and an empty file reads as a
    database without tables (a failed first run of an earlier version left three such files)."""
    return path.is_file() and path.stat().st_size > 0
