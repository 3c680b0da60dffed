"""What a run reports: the outcome counts that reconcile every extracted row."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass
class RunResult:
    """Counts and outcome of one sync run.

    Every extracted row ends as exactly one of inserted, updated, unchanged or rejected, so
    `extracted == inserted + updated + unchanged + rejected` always holds; `deleted` counts parcels that
    left the source, and `repaired` (a subset of the loaded rows) those whose geometry was fixed.
    """

    run_id: int
    mode: str  # "full", "incremental" or "dry-run"
    source: str
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "running"  # "succeeded" or "failed" when finished
    extracted: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deleted: int = 0
    repaired: int = 0
    still_rejected: int = 0  # of `rejected`, rows whose parcel was already in error before the run (not stored)
    error: str | None = None
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def loaded(self) -> int:
        return self.inserted + self.updated + self.unchanged

    @property
    def reconciles(self) -> bool:
        return self.extracted == self.loaded + self.rejected

    @property
    def duration_s(self) -> float:
        end = self.finished_at or self.started_at
        return (end - self.started_at).total_seconds()

    def as_record(self) -> dict[str, object]:
        """The run as stored in the history: plain values, ISO timestamps, the error as `message`."""
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "status": self.status,
            "mode": self.mode,
            "source": self.source,
            "extracted": self.extracted,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "deleted": self.deleted,
            "repaired": self.repaired,
            "duration_s": round(self.duration_s, 3),
            "message": self.error,
        }
