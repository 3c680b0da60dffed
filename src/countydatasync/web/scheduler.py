"""Scheduled syncs in the background of `countydatasync serve`.

A daemon thread sleeps on an Event until the next due time, so stopping the server wakes it at once instead
of after the current interval. At each due time it asks the server's SyncJob for a sync, the same one a
click on the dashboard starts: the SyncJob refuses while a sync runs in this server or another process
holds the run lock, and the tick is then skipped and logged, never queued. The run itself happens in the
SyncJob's thread, which logs and alerts a failure (`run_and_notify`); nothing that goes wrong in one tick
stops the schedule.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from countydatasync.ops.schedule import Schedule
from countydatasync.settings import Settings
from countydatasync.web.jobs import SyncBusy, SyncJob

log = logging.getLogger(__name__)

TickOutcome = Literal["started", "skipped", "error"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Starts a sync through `job` at every due time of `schedule`, from `start()` until `stop()`."""

    def __init__(
        self, settings: Settings, job: SyncJob, schedule: Schedule, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self.settings, self.job, self.schedule = settings, job, schedule
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.next_run: datetime | None = None
        self.last_tick: datetime | None = None
        self.last_outcome: TickOutcome | None = None
        self.started = 0
        self.skipped = 0

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the schedule's thread (a second call while it runs does nothing)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sync-scheduler", daemon=True)
        self._thread.start()
        log.info("scheduled syncs %s", self.schedule.description)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop scheduling; a sync already running finishes on its own. True when the thread has ended."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self.next_run = None
        return not self.running

    def tick(self) -> TickOutcome:
        """Start a sync now unless one is running; what happened is also kept in `last_outcome`."""
        self.last_tick = self._clock()
        outcome: TickOutcome
        try:
            self.job.start(self.settings, full=False, trigger="schedule")
        except SyncBusy:
            outcome = "skipped"
            self.skipped += 1
            log.info("scheduled sync skipped: a sync is already running (in this server or another process)")
        except Exception:  # a broken tick is logged; the next one is tried all the same
            outcome = "error"
            log.exception("scheduled sync could not be started")
        else:
            outcome = "started"
            self.started += 1
        self.last_outcome = outcome
        return outcome

    def _loop(self) -> None:
        began = self._clock()
        while not self._stop.is_set():
            try:
                due = self.schedule.next_after(self._clock(), began)
            except Exception:  # e.g. a clock or time-zone problem; retry in a minute rather than die
                log.exception("could not work out the next scheduled sync; trying again in a minute")
                self._stop.wait(60)
                continue
            self.next_run = due
            # Event.wait may wake a little early (clock resolution), hence the loop.
            while (remaining := (due - self._clock()).total_seconds()) > 0:
                if self._stop.wait(remaining):
                    return
            self.tick()
