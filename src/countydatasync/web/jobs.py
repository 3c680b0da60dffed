"""The background sync started from the web or by the schedule: one at a time, in a thread of the server.

`countydatasync serve` and a CLI or scheduled sync share the run lock beside the staging databases, so
the API answers 409 (and the scheduler skips its tick) both while this server's sync runs and while another
process holds the lock. Every run goes through `run_and_notify`, so a failure is logged and e-mailed the
same way whether the CLI, a click on the dashboard or the schedule started it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from countydatasync.errors import CountyDataSyncError
from countydatasync.ops.redact import redact, settings_secrets
from countydatasync.settings import Settings
from countydatasync.sync.lock import is_locked
from countydatasync.sync.result import RunResult

log = logging.getLogger(__name__)

SyncRunner = Callable[..., RunResult]
Trigger = Literal["web", "schedule"]
_LABEL: dict[Trigger, str] = {"web": "web-started", "schedule": "scheduled"}


class SyncBusy(Exception):
    """A sync is already running (in this server or in another process)."""


def _default_runner(settings: Settings, *, full: bool = False) -> RunResult:
    from countydatasync.sync import producer, run_sync  # imported late: the web app starts without the pipeline

    with producer.avoid_fork():  # this process has request threads: a fork would copy the locks they hold
        return run_sync(settings, full=full)


class SyncJob:
    """Starts syncs in a background thread and remembers the last one's outcome."""

    def __init__(self, runner: SyncRunner = _default_runner) -> None:
        self._runner = runner
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.full: bool | None = None
        self.trigger: Trigger | None = None
        self.run_id: int | None = None
        self.outcome: str | None = None
        self.message: str | None = None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def busy(self, settings: Settings) -> bool:
        """True while this server's sync runs or another process holds the run lock."""
        return self.running or is_locked(settings.output.directory)

    def start(self, settings: Settings, full: bool = False, trigger: Trigger = "web") -> None:
        """Start a sync in the background, or raise SyncBusy at once if one is running.

        trigger: who asked, "web" (POST /api/sync, the default) or "schedule"; shown in GET /api/sync.
        """
        with self._guard:
            if self.busy(settings):
                raise SyncBusy("a sync is already running; wait for it to finish")
            self.started_at, self.finished_at = datetime.now(UTC), None
            self.full, self.trigger, self.run_id, self.outcome, self.message = full, trigger, None, None, None
            self._thread = threading.Thread(
                target=self._run, args=(settings, full, trigger), name=f"{trigger}-sync", daemon=True
            )
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running sync (if any); True when none is running afterwards."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def _run(self, settings: Settings, full: bool, trigger: Trigger) -> None:
        from countydatasync.ops.alerts import run_and_notify  # imported late, like the pipeline

        log.info("%s sync started (full=%s)", _LABEL[trigger], full)
        try:
            # run_and_notify logs the failure (with the traceback of an unexpected one) and sends the alert.
            result = run_and_notify(settings, lambda: self._runner(settings, full=full))
        except CountyDataSyncError as exc:
            self.outcome, self.message = "failed", redact(str(exc), settings_secrets(settings))
        except Exception as exc:  # the thread must record every failure, not die silently
            self.outcome, self.message = "failed", redact(f"unexpected error: {exc}", settings_secrets(settings))
        else:
            self.run_id, self.outcome, self.message = result.run_id, result.status, result.error
            log.info("%s sync %s: run %s", _LABEL[trigger], result.status, result.run_id)
        finally:
            self.finished_at = datetime.now(UTC)
