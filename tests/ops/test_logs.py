"""configure_logging: a rotating file (text or JSON lines) plus the console, secrets removed from both."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from concurrent_log_handler import ConcurrentRotatingFileHandler
from rich.console import Console

from countydatasync.errors import ConfigError
from countydatasync.ops.logs import configure_logging
from countydatasync.ops.redact import forget_secrets
from countydatasync.settings import Settings

PASSWORD = "S3cret;pw}@% x"
WEB_TOKEN = "w3b-T0ken;x"


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    forget_secrets()


def _settings(tmp_path: Path, **logging_fields: object) -> Settings:
    return Settings(
        source={"url": "postgresql+psycopg://reader@db.county.local/gis", "password": PASSWORD},
        web={"token": WEB_TOKEN},
        logging={"file": tmp_path / "logs" / "cds.log", **logging_fields},
    )


def test_file_and_console_get_records_without_the_password(tmp_path: Path) -> None:
    stream = io.StringIO()
    path = configure_logging(_settings(tmp_path), console_stream=Console(file=stream, width=200))
    log = logging.getLogger("countydatasync.sync.run")
    log.info("connecting with %s", PASSWORD)
    access = logging.getLogger("uvicorn.access")
    access.setLevel(logging.NOTSET)  # an earlier test's in-process server may have raised its level
    access.info("client sent %s in a header", WEB_TOKEN)
    try:
        raise ConnectionError(f"server rejected DSN host=db password='{PASSWORD}' user=reader")
    except ConnectionError:
        log.exception("run failed")
    logging.getLogger("sqlalchemy.engine").warning("url postgresql://reader:S3cret%3Bpw%7D%40%25%20x@db/gis")
    logging.getLogger("countydatasync.noise").debug("below the configured level")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text()
    console = stream.getvalue()
    for output in (text, console):
        assert "S3cret" not in output and "w3b-T0ken" not in output
        assert "client sent *** in a header" in output
        assert "connecting with ***" in output
        assert "run failed" in output and "ConnectionError" in output
        assert "below the configured level" not in output
    assert "Traceback" in text and "password=***" in text
    assert "reader:***@db/gis" in text


def test_json_lines_and_rotation(tmp_path: Path) -> None:
    path = configure_logging(_settings(tmp_path, json_lines=True, max_bytes=2_000, backup_count=2), console=False)
    log = logging.getLogger("countydatasync.load")
    for n in range(60):
        log.warning("batch %d written with password=%s", n, PASSWORD)
    files = sorted(path.parent.glob("cds.log*"))
    assert [f.name for f in files] == ["cds.log", "cds.log.1", "cds.log.2"]  # older ones dropped
    entries = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert {e["level"] for e in entries} == {"WARNING"}
    assert entries[0]["logger"] == "countydatasync.load" and entries[0]["time"].endswith("+00:00")
    assert all("S3cret" not in e["message"] and e["message"].endswith("password=***") for e in entries)
    assert max(int(e["message"].split()[1]) for e in entries) == 59  # the newest record survived rotation


def test_a_second_call_replaces_its_own_handlers_only(tmp_path: Path) -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    configure_logging(_settings(tmp_path), console=False)
    configure_logging(_settings(tmp_path), console=True)
    root = logging.getLogger().handlers
    assert other in root
    assert sum(isinstance(h, ConcurrentRotatingFileHandler) for h in root) == 1


# A writer process: configures logging as the CLI or the server does, says it is ready, waits for the
# go file so both write at once, then logs numbered lines.
WRITER = """
import logging, sys, time
from pathlib import Path
from countydatasync.ops.logs import configure_logging
from countydatasync.settings import Settings

tag, lines, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
settings = Settings(logging={"file": folder / "logs" / "cds.log", "max_bytes": 20000, "backup_count": 100})
configure_logging(settings, console=False)
(folder / f"ready-{tag}").touch()
while not (folder / "go").exists():
    time.sleep(0.01)
log = logging.getLogger("countydatasync.sync.run")
for n in range(lines):
    log.info("%s line %06d %s", tag, n, "x" * 60)
"""


def test_two_processes_writing_one_log_lose_no_line_across_rotations(tmp_path: Path) -> None:
    lines = 3000
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, tag, str(lines), str(tmp_path)]) for tag in ("cli", "server")
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{tag}").exists() for tag in ("cli", "server")):
        assert time.monotonic() < deadline and all(w.poll() is None for w in writers), "a writer did not start"
        time.sleep(0.02)
    (tmp_path / "go").touch()
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    files = sorted((tmp_path / "logs").glob("cds.log*"))
    assert len(files) > 10, "the test must cross many rotations"
    messages = [line.split(": ", 1)[1] for f in files for line in f.read_text(encoding="utf-8").splitlines()]
    written = [message.rsplit(" ", 1)[0] for message in messages]  # without the padding
    expected = [f"{tag} line {n:06d}" for tag in ("cli", "server") for n in range(lines)]
    assert len(written) == len(expected) and sorted(written) == sorted(expected)  # every line, each once


def test_a_log_file_that_cannot_be_appended_to_is_an_error_at_once(tmp_path: Path) -> None:
    # root may write any file, so the log "file" is a folder: no account can append to that.
    (tmp_path / "logs" / "cds.log").mkdir(parents=True)
    root = logging.getLogger()
    before = list(root.handlers)
    stream = io.StringIO()
    with pytest.raises(ConfigError) as caught:
        configure_logging(_settings(tmp_path), console_stream=Console(file=stream, width=200))
    assert str(caught.value) == (
        f"cannot write the log file {tmp_path / 'logs' / 'cds.log'}: Is a directory; "
        "fix its permissions or set logging.file"
    )
    # The console still works, so what the caller does next (the alert it sends) is seen.
    added = [h for h in root.handlers if h not in before]
    assert [type(h).__name__ for h in added] == ["ConsoleLineHandler"]  # a StringIO is no terminal
    logging.getLogger("countydatasync.ops.alerts").info("alert sent with %s", PASSWORD)
    assert "alert sent with ***" in stream.getvalue()
