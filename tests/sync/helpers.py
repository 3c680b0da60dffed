"""Reading staging databases back for assertions."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from countydatasync.settings import Settings
from countydatasync.sync import run_sync


def file_digests(settings: Settings) -> dict[str, str]:
    out = settings.output
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (out.geo_path, out.stats_path, out.working_path)
    }


def query(path: Path, sql: str, params: tuple = ()) -> pd.DataFrame:
    con = sqlite3.connect(path)
    try:
        return pd.read_sql_query(sql, con, params=params)
    finally:
        con.close()


def integrity_ok(path: Path) -> bool:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def sync_in_thread(settings: Settings, progress: Callable[[str, int, int | None], None], timeout: float = 30.0):
    """Run a sync in a daemon thread, so that a hang fails the test rather than the session; wait up to
    `timeout` seconds. Returns the thread (still alive if the run hangs) and what the run raised."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            run_sync(settings, progress=progress)
        except BaseException as exc:
            failures.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout=timeout)
    return runner, failures
