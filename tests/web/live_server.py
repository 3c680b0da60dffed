"""The dashboard served by uvicorn in a process of its own, for tests about its threads, child processes and
the run lock, which the in-process TestClient cannot show."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.web.conftest import Staging

_SERVE = """
import sys
from pathlib import Path

import uvicorn

from countydatasync.web import create_app
from tests.web.conftest import make_settings

{setup}
app = create_app(make_settings(Path(sys.argv[1]), Path(sys.argv[2])))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_health(url: str, server: subprocess.Popen[bytes], output: Callable[[], str], seconds: float = 30) -> None:
    """Return once GET /api/health answers; fail with the server's `output` if it exits first, or on time."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(f"{url}/api/health", timeout=2)
            return
        except httpx.TransportError:
            assert server.poll() is None, output()
            assert time.monotonic() < deadline, "the server did not answer"
            time.sleep(0.1)


@contextmanager
def live_server(staging: Staging, log: Path, setup: str = "") -> Iterator[str]:
    """Serve `staging` from a new process and yield its base URL; `setup` is Python run in it first.

    The server and every process it starts are killed afterwards (they share a new process group), so a
    child stuck in a failing test is not left behind. Its output goes to `log`.
    """
    port = free_port()
    source = staging.settings.source.url.removeprefix("sqlite:///")
    code = _SERVE.format(setup=setup)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-c", code, source, str(staging.settings.output.directory), str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, server, log.read_text)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
