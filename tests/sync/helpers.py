"""Reading staging databases back for assertions."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pandas as pd

from countydatasync.settings import Settings


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
