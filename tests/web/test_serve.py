"""`serve` as a command: help text, and a real server process answering on 127.0.0.1 (with a schedule)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import typer
from typer.testing import CliRunner

from countydatasync.web.commands import _is_loopback, serve
from tests.web.conftest import Staging
from tests.web.live_server import free_port, wait_for_health


def _command() -> typer.Typer:
    app = typer.Typer()
    app.command()(serve)
    return app


def test_serve_has_help() -> None:
    result = CliRunner().invoke(_command(), ["--help"])
    assert result.exit_code == 0
    assert "--host" in result.output and "--port" in result.output and "--config" in result.output


def test_serve_refuses_a_missing_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(_command(), ["--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1


def test_loopback_detection() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.10")  # noqa: S104


@contextmanager
def _serve_process(staging: Staging, cwd: Path, env: dict[str, str], *args: str) -> Iterator[tuple[int, list[bytes]]]:
    """`serve` in a process of its own on a free port; yields the port once /api/health answers, and after
    the block the process's stderr (in the list) once it has stopped."""
    port = free_port()
    env = {
        **os.environ,
        "CDS_OUTPUT__DIRECTORY": str(staging.settings.output.directory),
        "CDS_WEB__PORT": str(port),
        "PYTHONPATH": os.pathsep.join(sys.path),
        **env,
    }
    code = "import typer; from countydatasync.web.commands import serve; typer.run(serve)"
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stderr: list[bytes] = []
    try:
        wait_for_health(f"http://127.0.0.1:{port}", process, lambda: process.stderr.read().decode())  # type: ignore[union-attr]
        yield port, stderr
    finally:
        process.terminate()
        stderr.append(process.communicate(timeout=10)[1])


def test_serve_runs_uvicorn_on_loopback(staging: Staging, tmp_path: Path) -> None:
    with _serve_process(staging, tmp_path, {}, "--log-level", "warning", "--every", "1h") as (port, _):
        response = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
        assert response.json()["databases"] == {"geo": True, "stats": True, "working": True}
        assert "server" not in response.headers
        schedule = httpx.get(f"http://127.0.0.1:{port}/api/schedule", timeout=5).json()
        assert schedule["description"] == "every 1h" and schedule["next_run"] is not None


def test_serve_logs_requests_to_the_log_file_redacted(staging: Staging, tmp_path: Path) -> None:
    """uvicorn's own logging set-up used to replace ours for its loggers: access lines went to stderr only,
    past the rotating file and its redaction (a token in a query string was printed as sent)."""
    log_file = tmp_path / "logs" / "serve.log"
    with _serve_process(staging, tmp_path, {"CDS_LOGGING__FILE": str(log_file)}, "--log-level", "info") as (
        port,
        stderr,
    ):
        response = httpx.get(f"http://127.0.0.1:{port}/api/health?token=Qu1ck-T0ken-42", timeout=5)
        assert response.status_code == 200
    written = log_file.read_text()
    assert 'GET /api/health?token=*** HTTP/1.1" 200' in written
    assert "Qu1ck-T0ken-42" not in written and "Qu1ck-T0ken-42" not in stderr[0].decode()
