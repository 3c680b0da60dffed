"""E-mail alerts: a failed run, or a run that rejected too many rows, should reach a person.

The service runs unattended on a schedule, so a source that stays down would send the same e-mail every
fifteen minutes; an identical alert is held back for `alerts.repeat_minutes` (the last-sent time of each
alert's fingerprint is kept in a small JSON file beside the log). A successful run clears the failure
fingerprints, and a run under the rejection thresholds the rejection ones, so the next problem is news
again. Sending never raises and never takes longer than `alerts.timeout_seconds`: an SMTP outage or a
stalling server is logged and the run's own error stays the one the caller sees.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from countydatasync.errors import CountyDataSyncError, RunLockedError
from countydatasync.ops.redact import redact, settings_secrets
from countydatasync.settings import AlertSettings, Settings
from countydatasync.sync.result import RunResult

log = logging.getLogger(__name__)

STATE_FILE = "alerts_state.json"


def alert_state_path(settings: Settings) -> Path:
    """Where sent-alert fingerprints are kept: beside the log file, or in the staging folder when the log
    folder cannot take them. A log folder nobody can write fails every run, and each failure is alerted:
    with nowhere to keep the send times, a run every 15 minutes mailed it 96 times a day."""
    folder = settings.logging.file.parent
    usable = (folder.is_dir() and os.access(folder, os.W_OK)) or not folder.exists()
    if not usable and settings.output.directory.is_dir():
        return settings.output.directory / STATE_FILE
    return folder / STATE_FILE


def rejection_exceeded(alerts: AlertSettings, result: RunResult) -> bool:
    """True when the run rejected more new rows than the configured count or share allows. Parcels already
    in error before the run are re-read by every run and left out of both: they were news once, when they
    first failed, and counting them again made every quiet nightly run an alert."""
    new = result.rejected - result.still_rejected
    if alerts.max_rejected_rows is not None and new > alerts.max_rejected_rows:
        return True
    read = result.extracted - result.still_rejected
    if alerts.max_rejected_share is not None and read:
        return new / read > alerts.max_rejected_share
    return False


def compose_alert(settings: Settings, result: RunResult | None, error: BaseException | None) -> EmailMessage:
    """The alert for a failed run (`error` set) or a run over the rejection threshold, secrets removed."""
    alerts = settings.alerts
    failed = error is not None or (result is not None and result.status == "failed")
    what = "sync failed" if failed else "sync rejected too many rows"
    lines = [f"CountyDataSync: {what}.", ""]
    if error is not None:
        lines += [f"Error: {type(error).__name__}: {error}", ""]
    elif result is not None and result.error:
        lines += [f"Error: {result.error}", ""]
    if result is not None:
        new, read = result.rejected - result.still_rejected, result.extracted - result.still_rejected
        share = f"; new: {new:,}, {new / read:.1%} of the rows not already in error" if read else ""
        lines += [
            # A failed run keeps no number: its id was rolled back with it and goes to the next good run.
            (f"Run {result.run_id}" if result.status == "succeeded" else "A run")
            + f" ({result.mode}), status {result.status}, "
            f"started {result.started_at:%Y-%m-%d %H:%M:%S %Z}, took {result.duration_s:.1f} s.",
            f"Source: {result.source}",
            "",
            f"  extracted {result.extracted:,}",
            f"  inserted  {result.inserted:,}",
            f"  updated   {result.updated:,}",
            f"  unchanged {result.unchanged:,}",
            f"  rejected  {result.rejected:,}{share}",
            f"  deleted   {result.deleted:,}",
            f"  repaired  {result.repaired:,}",
            "",
        ]
        if not failed:
            limits = [
                f"more than {alerts.max_rejected_rows:,} rows" if alerts.max_rejected_rows is not None else "",
                f"more than {alerts.max_rejected_share:.1%}" if alerts.max_rejected_share is not None else "",
            ]
            lines += [f"Alert threshold: {' or '.join(x for x in limits if x)} newly rejected.", ""]
    else:
        lines += [f"Source: {settings.source.url} table {settings.source.table}", ""]
    output = settings.output
    lines += [
        "Where to look:",
        f"  log file          {settings.logging.file.resolve()}",
        f"  rejected rows     `errors` table of {output.working_path.resolve()}",
        f"  run history       `runs` table of {output.stats_path.resolve()}",
        f"  failed runs       {(output.directory / 'failed_runs.jsonl').resolve()}",
        f"  geo DB            {output.geo_path.resolve()}",
        "",
        "A failed run publishes nothing: the staging databases keep the last good run.",
        "Run `countydatasync doctor` on the server to check settings, connectivity and permissions.",
    ]
    message = EmailMessage()
    message["Subject"] = redact(f"{alerts.subject_prefix} {what}: {settings.source.table}", settings_secrets(settings))
    message["From"] = alerts.sender
    message["To"] = ", ".join(alerts.to)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="countydatasync")
    message.set_content(redact("\n".join(lines), settings_secrets(settings)) + "\n")
    return message


def fingerprint(settings: Settings, result: RunResult | None, error: BaseException | None) -> str:
    """What makes two alerts the same: the kind, the source and the error (digits ignored, since timings,
    row numbers and run ids differ between otherwise identical failures)."""
    if error is not None or (result is not None and result.status == "failed"):
        text = f"{type(error).__name__}: {error}" if error is not None else str(result.error if result else "")
        kind = "failure:" + re.sub(r"\d+", "#", redact(text, settings_secrets(settings)))
    else:
        kind = "rejected"
    key = f"{kind}|{settings.source.url}|{settings.source.table}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _load_state(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):  # missing or damaged: alert rather than stay silent
        return {}


def _parse_time(text: str) -> datetime:
    """A stored send time; a damaged one counts as long ago, so the alert goes out."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _save_state(path: Path, state: dict[str, str]) -> None:
    """Keep the send times; a folder that cannot take them (the log folder is unusable too) must not stop
    the alert itself, so this only warns."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("cannot keep alert send times in %s (%s): identical alerts are not held back", path, exc.strerror)


class _Cutoff:
    """The sockets of one SMTP exchange, so the thread waiting for it can end it at the deadline: shutting a
    socket down wakes a read blocked on it in another thread. A socket opened after the cut is refused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._done = False

    def track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            if self._done:
                sock.close()
                raise TimeoutError("the alert's deadline passed while connecting")
            self._sockets.append(sock)
        return sock

    def cut(self) -> None:
        with self._lock:
            self._done = True
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _SMTP(smtplib.SMTP):
    """smtplib.SMTP whose socket a _Cutoff can shut down from another thread."""

    def __init__(self, *args: Any, cutoff: _Cutoff, **kwargs: Any) -> None:
        self._cutoff = cutoff
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # smtplib's own hook for making the socket (SMTP_SSL overrides it too); typeshed leaves it out.
        return self._cutoff.track(super()._get_socket(host, port, timeout))  # type: ignore[misc]


class _SMTP_SSL(_SMTP, smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL whose socket a _Cutoff can shut down from another thread."""


def _connect(alerts: AlertSettings, cutoff: _Cutoff) -> smtplib.SMTP:
    """An SMTP session per the settings: connected, TLS established, logged in when a username is set."""
    assert alerts.smtp_host
    context = ssl.create_default_context(cafile=str(alerts.ca_file) if alerts.ca_file else None)
    server: smtplib.SMTP
    if alerts.security == "ssl":
        server = _SMTP_SSL(
            alerts.smtp_host, alerts.smtp_port, timeout=alerts.timeout_seconds, context=context, cutoff=cutoff
        )
    else:
        server = _SMTP(alerts.smtp_host, alerts.smtp_port, timeout=alerts.timeout_seconds, cutoff=cutoff)
    try:
        server.ehlo()
        if alerts.security == "starttls":
            server.starttls(context=context)
            server.ehlo()
        if alerts.username:
            password = alerts.password.get_secret_value() if alerts.password else ""
            server.login(alerts.username, password)
    except BaseException:
        server.close()
        raise
    return server


def smtp_exchange(alerts: AlertSettings, action: Callable[[smtplib.SMTP], object]) -> None:
    """Connect (TLS, login) and call `action` with the session, all within `alerts.timeout_seconds`.

    The socket timeout bounds each read only: a server that sends a continuation line every few seconds
    would hold the run (or `doctor`) for ever. So the exchange runs in a worker thread; at the deadline
    its socket is shut down, which ends the thread too, and TimeoutError is raised. Otherwise raises
    what smtplib raised (SMTPException, OSError).
    """
    cutoff = _Cutoff()
    failure: list[BaseException] = []

    def exchange() -> None:
        try:
            with _connect(alerts, cutoff) as server:
                action(server)
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)

    worker = threading.Thread(target=exchange, name="smtp-exchange", daemon=True)
    worker.start()
    worker.join(alerts.timeout_seconds)
    if worker.is_alive():
        cutoff.cut()
        raise TimeoutError(f"no complete SMTP exchange within alerts.timeout_seconds ({alerts.timeout_seconds:g} s)")
    if failure:
        raise failure[0]


def send_alert(settings: Settings, message: EmailMessage) -> None:
    """Deliver `message` within alerts.timeout_seconds; raises TimeoutError, smtplib and OSError errors
    (notify_run catches them)."""
    smtp_exchange(settings.alerts, lambda server: server.send_message(message))


def notify_run(
    settings: Settings,
    result: RunResult | None,
    error: BaseException | None = None,
    now: datetime | None = None,
) -> bool:
    """Send an alert when the run failed (`error`, or `result.status == "failed"`) or rejected more rows
    than allowed; True when one was sent. Never raises: problems are logged.

    Call it after every run, successful or not, with whatever is known: `result` may be None when the run
    failed before producing one. `now` (default: the current UTC time) is for tests of the repeat interval.
    """
    try:
        return _notify(settings, result, error, now or datetime.now(UTC))
    except Exception:
        log.exception("could not send the alert e-mail")
        return False


def run_and_notify(settings: Settings, run: Callable[[], RunResult], alert: bool = True) -> RunResult:
    """Call `run` (e.g. `lambda: run_sync(settings)`), log a failure to the log file and send the alerts its
    outcome calls for, then return its result or re-raise its exception unchanged. alert=False (a dry run,
    whose outcome is on the screen of whoever started it) logs the same and mails nobody.

    A Ctrl-C (KeyboardInterrupt) or SystemExit is not a failure worth an e-mail and passes straight through;
    neither is RunLockedError (another sync holds the lock), which is logged and re-raised without an alert.
    An exception carrying a `run_result` attribute (a RunResult) lends the alert its counts.
    """
    try:
        result = run()
    except Exception as exc:
        # Our own errors carry a complete message; anything else is a bug whose traceback the log needs.
        log.error(
            "sync failed: %s",
            exc if isinstance(exc, CountyDataSyncError) else f"{type(exc).__name__}: {exc}",
            exc_info=not isinstance(exc, CountyDataSyncError),
        )
        partial = getattr(exc, "run_result", None)
        if alert:
            notify_run(settings, partial if isinstance(partial, RunResult) else None, exc)
        raise
    if alert:
        notify_run(settings, result, None)
    return result


def _notify(settings: Settings, result: RunResult | None, error: BaseException | None, now: datetime) -> bool:
    alerts = settings.alerts
    if not alerts.configured:
        return False
    if isinstance(error, RunLockedError):  # another sync is running: nothing failed, nothing to report
        return False
    failed = error is not None or (result is not None and result.status == "failed")
    state_path = alert_state_path(settings)
    if not failed and result is not None:
        # A success ends a failure incident; a run under the rejection thresholds ends a rejection one too.
        ended = ("f:",) if rejection_exceeded(alerts, result) else ("f:", "r:")
        state = _load_state(state_path)
        if any(k.startswith(ended) for k in state):
            _save_state(state_path, {k: v for k, v in state.items() if not k.startswith(ended)})
    if failed and not alerts.on_failure:
        return False
    if not failed and (result is None or not rejection_exceeded(alerts, result)):
        return False
    key = ("f:" if failed else "r:") + fingerprint(settings, result, error)
    state = _load_state(state_path)
    last = state.get(key)
    if last is not None and now - _parse_time(last) < timedelta(minutes=alerts.repeat_minutes):
        log.info(
            "alert not re-sent: the same alert went out at %s (alerts.repeat_minutes = %s)",
            last,
            alerts.repeat_minutes,
        )
        return False
    message = compose_alert(settings, result, error)
    try:
        send_alert(settings, message)
    except (OSError, smtplib.SMTPException) as exc:
        log.error(
            "could not send the alert e-mail via %s:%s: %s: %s",
            alerts.smtp_host,
            alerts.smtp_port,
            type(exc).__name__,
            redact(str(exc), settings_secrets(settings)),
        )
        return False
    state[key] = now.isoformat()
    _save_state(state_path, state)
    log.info("alert sent to %s: %s", ", ".join(alerts.to), message["Subject"])
    return True
