"""Logging set-up for the edges (CLI, server): a size-rotated file plus the console, every handler redacting.

Library modules never configure logging; they call `logging.getLogger(__name__)`. The service runs
unattended, so the file is what someone reads the morning after a failure: it gets every record at the
configured level, as text or as JSON lines for a log shipper.

A CLI sync and the dashboard's scheduler write the same file from two processes. Each rotating it on its
own would lose lines, so the file handler is concurrent-log-handler's, which takes a lock file
(`.__<name>.lock` beside the log) around every write and rotation, on Windows as on POSIX.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from concurrent_log_handler import ConcurrentRotatingFileHandler
from rich.console import Console
from rich.logging import RichHandler

from countydatasync.errors import ConfigError
from countydatasync.ops.redact import RedactingFilter, register_secret, settings_secrets
from countydatasync.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_OURS = "_countydatasync_handler"  # marks handlers installed here, so a second call replaces them


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO-8601), level, logger, message and, if any, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


class ConsoleLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Records as whole lines in the log file's format, for a console that is not a terminal (cron mail,
    `> cron.out`, the journal): Rich's handler cut each record at 80 columns into a time column and
    indented pieces that no grep could find."""

    def __init__(self, console: Console) -> None:
        super().__init__(console.file)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = self.console.file  # follows a redirected sys.stderr, as Rich's handler does
        super().emit(record)


def _console_handler(console: Console) -> logging.Handler:
    """Rich's handler on a terminal, where its columns and colours help; whole lines everywhere else."""
    if not console.is_terminal:
        handler: logging.Handler = ConsoleLineHandler(console)
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
        return handler
    # rich_tracebacks stays off: Rich would render the traceback from exc_info, around the filter.
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    return handler


def register_configured_secrets(settings: Settings) -> None:
    """Register every secret in the settings with the redactor, whatever its format."""
    for secret in settings_secrets(settings):
        register_secret(secret)


def _file_handler(settings: Settings) -> logging.Handler:
    """The rotating file handler, its files opened once to prove they can be written (ConfigError if not)."""
    conf = settings.logging
    path = conf.file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = ConcurrentRotatingFileHandler(
            str(path), maxBytes=conf.max_bytes, backupCount=conf.backup_count, encoding="utf-8"
        )
        # The handler opens both files at the first record; a file the account cannot write would then
        # lose every line without a word, so open them now and fail here instead.
        for target in (path, Path(handler.lockFilename)):
            with target.open("a", encoding="utf-8"):
                pass
    except OSError as exc:
        raise ConfigError(
            f"cannot write the log file {path}: {exc.strerror or exc}; fix its permissions or set logging.file"
        ) from None
    handler.setFormatter(JsonLineFormatter() if conf.json_lines else logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(settings: Settings, console: bool = True, console_stream: Console | None = None) -> Path:
    """Install the rotating file handler (and a Rich console handler unless `console` is False) on the root
    logger, each with the redaction filter; register the configured secrets. Returns the log file path.

    Calling it again replaces the handlers it installed before (a server reloading its settings), and
    leaves handlers installed by anyone else alone. Raises ConfigError when the log file or its lock file
    cannot be opened for appending (created when missing, with the folder); the console handler is
    installed all the same, so what the caller does about it (the alert it sends) is still seen.
    """
    conf = settings.logging
    register_configured_secrets(settings)
    handlers: list[logging.Handler] = []
    problem: ConfigError | None = None
    try:
        handlers.append(_file_handler(settings))
    except ConfigError as exc:
        problem = exc
    if console:
        handlers.append(_console_handler(console_stream or Console(stderr=True)))

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setLevel(conf.level)
        handler.addFilter(RedactingFilter())
        setattr(handler, _OURS, True)
        root.addHandler(handler)
    root.setLevel(conf.level)
    if problem is not None:
        raise problem
    return conf.file
