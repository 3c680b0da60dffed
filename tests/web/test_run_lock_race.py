"""The dashboard's busy checks (every health request makes one) never make a sync in another process give up."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from countydatasync.errors import RunLockedError
from countydatasync.sync.lock import run_lock
from tests.web.conftest import Staging
from tests.web.live_server import live_server


def test_health_requests_never_make_a_sync_elsewhere_find_the_lock_taken(
    fresh_staging: Staging, tmp_path: Path
) -> None:
    directory = fresh_staging.settings.output.directory
    with live_server(fresh_staging, tmp_path / "server.log") as url:
        stop = threading.Event()
        answered: list[int] = []

        def ask_health() -> None:
            with httpx.Client(base_url=url, timeout=10) as client:
                while not stop.is_set():
                    answered.append(client.get("/api/health").status_code)

        askers = [threading.Thread(target=ask_health, daemon=True) for _ in range(2)]
        for asker in askers:
            asker.start()
        tries, refused = 0, []
        deadline = time.monotonic() + 3
        try:
            while time.monotonic() < deadline:  # what a CLI or cron sync does first, many times over
                tries += 1
                try:
                    with run_lock(directory):
                        time.sleep(0.001)
                except RunLockedError as exc:
                    refused.append(str(exc))
                time.sleep(0.002)
        finally:
            stop.set()
            for asker in askers:
                asker.join(10)
    assert len(answered) > 100 and set(answered) == {200}
    assert tries > 100 and refused == []
