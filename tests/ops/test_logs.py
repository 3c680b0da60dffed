"""configure_logging: a rotating file (text or JSON lines) plus the console, secrets removed from both."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

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
    logging.getLogger("uvicorn.access").info("client sent %s in a header", WEB_TOKEN)
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
    assert sum(isinstance(h, logging.handlers.RotatingFileHandler) for h in root) == 1
