"""Syncs started in the multi-threaded server: their extract process must not inherit another thread's locks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.web.conftest import TOKEN, Staging
from tests.web.live_server import live_server

AUTH = {"Authorization": f"Bearer {TOKEN}"}

# Run in the server before it starts: the child process reads even this small county, and two threads
# keep PROJ (and its database) busy, as map requests do.
_PROJ_BUSY = """
import threading

from pyproj import CRS, Transformer

from countydatasync.sync import producer

producer.PROCESS_THRESHOLD = 0


def _transform_forever():
    while True:
        Transformer.from_crs("EPSG:4326", CRS.from_epsg(2927), always_xy=True).transform_bounds(-123, 46, -122, 47)


for _ in range(2):
    threading.Thread(target=_transform_forever, daemon=True).start()
"""


def _finished(url: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = httpx.get(f"{url}/api/sync", timeout=5).json()
        if not state["running"]:
            return state
        assert time.monotonic() < deadline, f"the sync is still running after {timeout:.0f} s: {state}"
        time.sleep(0.1)


def test_syncs_in_a_child_process_finish_while_other_threads_use_pyproj(fresh_staging: Staging, tmp_path: Path) -> None:
    with live_server(fresh_staging, tmp_path / "server.log", setup=_PROJ_BUSY) as url:
        for _ in range(8):  # a forked child got stuck in about one run of three
            response = httpx.post(f"{url}/api/sync", headers=AUTH, json={"full": True}, timeout=10)
            assert response.status_code == 202, response.text
            state = _finished(url, timeout=30)
            assert state["outcome"] == "succeeded", state
