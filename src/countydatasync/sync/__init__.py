"""Sync: one run end to end (lock, extract, transform, publish), its result, and the run lock."""

from countydatasync.sync.result import RunResult
from countydatasync.sync.run import run_sync

__all__ = ["RunResult", "run_sync"]
