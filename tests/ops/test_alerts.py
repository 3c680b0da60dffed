"""Alerts reach a real SMTP server over TLS with login, say what failed and where to look, are not repeated
within the interval, and a dead SMTP server never hides the run's own error."""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from countydatasync.errors import PermanentSourceError, RunLockedError
from countydatasync.ops.alerts import alert_state_path, notify_run, rejection_exceeded
from countydatasync.settings import Settings
from countydatasync.sync.result import RunResult

from .smtp_server import PASSWORD, USER, Inbox, free_port, make_ca, start_server

SOURCE_PASSWORD = "Db;pa}ss@% 7"
T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def starttls_server(ca: tuple[trustme.CA, Path]) -> Iterator[tuple[int, Inbox]]:
    controller, inbox = start_server(ca[0], implicit_tls=False)
    yield controller.port, inbox
    controller.stop()


@pytest.fixture
def make_settings(tmp_path: Path, ca: tuple[trustme.CA, Path]) -> Callable[..., Settings]:
    def make(port: int, **alerts: object) -> Settings:
        values = {
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "security": "starttls",
            "ca_file": ca[1],
            "username": USER,
            "password": PASSWORD,
            "sender": "cds@county.example",
            "to": ["gis-team@county.example", "dba@county.example"],
            "repeat_minutes": 60,
            **alerts,
        }
        return Settings(
            source={"url": "postgresql+psycopg://reader@db.county.local/gis", "password": SOURCE_PASSWORD},
            output={"directory": tmp_path / "staging"},
            logging={"file": tmp_path / "logs" / "cds.log"},
            alerts=values,
        )

    return make


def _result(status: str = "failed", extracted: int = 1000, rejected: int = 0, error: str | None = None) -> RunResult:
    return RunResult(
        run_id=41,
        mode="incremental",
        source="postgresql+psycopg://reader:***@db.county.local/gis table MasterParcels",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=12.5),
        status=status,
        extracted=extracted,
        inserted=5,
        updated=7,
        unchanged=extracted - 12 - rejected,
        rejected=rejected,
        deleted=2,
        repaired=3,
        error=error,
    )


def _source_down() -> PermanentSourceError:
    return PermanentSourceError(
        f"cannot read postgresql+psycopg://reader:{SOURCE_PASSWORD}@db.county.local/gis: "
        f"password authentication failed (password={SOURCE_PASSWORD})"
    )


def test_a_failed_run_is_mailed_over_starttls_with_login(
    starttls_server: tuple[int, Inbox], make_settings: Callable[..., Settings]
) -> None:
    port, inbox = starttls_server
    settings = make_settings(port)
    error = _source_down()
    assert notify_run(settings, _result(error=str(error)), error, now=T0) is True
    assert inbox.logins == [USER]
    assert inbox.recipients == [["gis-team@county.example", "dba@county.example"]]
    message = inbox.messages[0]
    assert message["Subject"] == "[CountyDataSync] sync failed: MasterParcels"
    assert message["From"] == "cds@county.example"
    body = message.get_content()
    assert "PermanentSourceError: cannot read postgresql+psycopg://reader:***@db.county.local/gis" in body
    assert "A run (incremental), status failed" in body and "Run 41" not in body  # its id goes to the next run
    assert "extracted 1,000" in body and "rejected  0" in body and "deleted   2" in body
    assert str((settings.logging.file).resolve()) in body
    assert str(settings.output.working_path.resolve()) in body
    assert SOURCE_PASSWORD not in message.as_string() and PASSWORD not in message.as_string()
    assert "Db;pa" not in body


def test_identical_failures_wait_for_the_interval_and_a_success_resets_it(
    starttls_server: tuple[int, Inbox], make_settings: Callable[..., Settings]
) -> None:
    port, inbox = starttls_server
    settings = make_settings(port, repeat_minutes=60)
    assert notify_run(settings, None, _source_down(), now=T0)
    assert not notify_run(settings, None, _source_down(), now=T0 + timedelta(minutes=15))
    assert not notify_run(settings, None, _source_down(), now=T0 + timedelta(minutes=59))
    assert len(inbox.messages) == 1
    assert notify_run(
        settings, None, PermanentSourceError("table MasterParcels not found"), now=T0 + timedelta(minutes=20)
    ), "a different failure is news"
    assert notify_run(settings, None, _source_down(), now=T0 + timedelta(minutes=61))
    assert len(inbox.messages) == 3
    assert alert_state_path(settings).is_file()
    # A successful run ends the incident: the same failure right after is mailed again.
    assert not notify_run(settings, _result(status="succeeded", rejected=0), None, now=T0 + timedelta(minutes=62))
    assert notify_run(settings, None, _source_down(), now=T0 + timedelta(minutes=63))
    assert len(inbox.messages) == 4


def test_rejections_over_the_threshold_are_mailed(
    starttls_server: tuple[int, Inbox], make_settings: Callable[..., Settings]
) -> None:
    port, inbox = starttls_server
    by_share = make_settings(port, max_rejected_share=0.05, max_rejected_rows=None)
    assert not notify_run(by_share, _result(status="succeeded", rejected=50), None, now=T0)  # exactly 5%
    assert notify_run(by_share, _result(status="succeeded", rejected=51), None, now=T0)
    body = inbox.messages[0].get_content()
    assert inbox.messages[0]["Subject"] == "[CountyDataSync] sync rejected too many rows: MasterParcels"
    assert "rejected  51; new: 51, 5.1% of the rows not already in error" in body
    assert "more than 5.0% newly rejected" in body
    assert "`errors` table of" in body
    by_count = make_settings(port, max_rejected_share=None, max_rejected_rows=10, repeat_minutes=0)
    assert not notify_run(by_count, _result(status="succeeded", extracted=100_000, rejected=10), None, now=T0)
    assert notify_run(by_count, _result(status="succeeded", extracted=100_000, rejected=11), None, now=T0)
    assert len(inbox.messages) == 2


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # see smtp_server.py
def test_implicit_tls(ca: tuple[trustme.CA, Path], make_settings: Callable[..., Settings]) -> None:
    controller, inbox = start_server(ca[0], implicit_tls=True)
    try:
        settings = make_settings(controller.port, security="ssl")
        assert notify_run(settings, None, _source_down(), now=T0)
    finally:
        controller.stop()
    assert inbox.logins == [USER] and len(inbox.messages) == 1


def test_an_untrusted_certificate_is_refused(
    starttls_server: tuple[int, Inbox],
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port, inbox = starttls_server
    settings = make_settings(port, ca_file=None)  # the system store does not know the test CA
    assert not notify_run(settings, None, _source_down(), now=T0)
    assert inbox.messages == [] and "SSLCertVerificationError" in caplog.text


def test_a_dead_smtp_server_never_hides_the_original_error(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(free_port(), timeout_seconds=2)  # nothing listens there
    caplog.set_level(logging.INFO)
    with pytest.raises(PermanentSourceError, match="password authentication failed"):
        try:
            raise _source_down()
        except PermanentSourceError as exc:
            assert notify_run(settings, None, exc, now=T0) is False
            raise
    assert "could not send the alert e-mail via 127.0.0.1" in caplog.text
    assert "ConnectionRefusedError" in caplog.text
    assert not alert_state_path(settings).exists(), "an unsent alert must not count as sent"


def test_a_wrong_smtp_password_is_logged_without_the_password(
    starttls_server: tuple[int, Inbox],
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port, inbox = starttls_server
    settings = make_settings(port, password="Wrong;pass}word")
    assert notify_run(settings, None, _source_down(), now=T0) is False
    assert "SMTPAuthenticationError" in caplog.text
    assert inbox.messages == []
    # The next run, with the right password, is not throttled by the failed attempt.
    assert notify_run(make_settings(port), None, _source_down(), now=T0 + timedelta(minutes=1))


def test_nothing_is_sent_when_alerts_are_off_or_the_run_is_fine(
    starttls_server: tuple[int, Inbox], make_settings: Callable[..., Settings]
) -> None:
    port, inbox = starttls_server
    assert not notify_run(make_settings(port, to=[]), None, _source_down(), now=T0)
    assert not notify_run(make_settings(port, on_failure=False), None, _source_down(), now=T0)
    assert not notify_run(make_settings(port), None, RunLockedError("another sync is running"), now=T0)
    assert not notify_run(make_settings(port), _result(status="succeeded", rejected=1), None, now=T0)
    assert inbox.messages == []


def test_run_and_notify_around_a_real_sync(
    starttls_server: tuple[int, Inbox], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from countydatasync.ops.alerts import run_and_notify
    from countydatasync.ops.logs import configure_logging
    from countydatasync.sample.county import SampleCounty, write_sample_county
    from countydatasync.sync import run_sync

    port, inbox = starttls_server
    county = write_sample_county(tmp_path / "county.sqlite", SampleCounty(parcels=300, seed=5))
    base = make_settings(port, max_rejected_rows=0, max_rejected_share=None)
    settings = base.model_copy(
        update={"source": base.source.model_copy(update={"url": f"sqlite:///{county}", "password": None})}
    )
    root = logging.getLogger()
    before = list(root.handlers)
    log_file = configure_logging(settings, console=False)
    try:
        result = run_and_notify(settings, lambda: run_sync(settings))
        assert result.status == "succeeded" and result.rejected > 0  # the sample county has faulty parcels
        assert len(inbox.messages) == 1 and "rejected too many rows" in inbox.messages[0]["Subject"]
        assert f"rejected  {result.rejected:,}" in inbox.messages[0].get_content()

        missing = settings.model_copy(
            update={"source": settings.source.model_copy(update={"url": f"sqlite:///{tmp_path / 'gone.sqlite'}"})}
        )
        with pytest.raises(PermanentSourceError, match="gone.sqlite does not exist"):
            run_and_notify(missing, lambda: run_sync(missing))
    finally:
        for handler in root.handlers:
            if handler not in before:
                handler.close()
        root.handlers[:] = before
    assert len(inbox.messages) == 2 and "sync failed" in inbox.messages[1]["Subject"]
    assert "gone.sqlite does not exist" in inbox.messages[1].get_content()
    logged = log_file.read_text()
    assert "sync failed: source SQLite file" in logged and "alert sent to gis-team@county.example" in logged


def test_a_damaged_state_file_does_not_silence_alerts(
    starttls_server: tuple[int, Inbox], make_settings: Callable[..., Settings]
) -> None:
    port, inbox = starttls_server
    settings = make_settings(port)
    assert notify_run(settings, None, _source_down(), now=T0)
    path = alert_state_path(settings)
    path.write_text(path.read_text().replace(str(T0.year), "not-a-year"))
    assert notify_run(settings, None, _source_down(), now=T0 + timedelta(minutes=1))
    path.write_text("{ truncated")
    assert notify_run(settings, None, _source_down(), now=T0 + timedelta(minutes=2))
    assert len(inbox.messages) == 3


def test_a_run_under_the_thresholds_ends_a_rejection_incident(
    starttls_server: tuple[int, Inbox], make_settings: Callable[..., Settings]
) -> None:
    port, inbox = starttls_server
    settings = make_settings(port, max_rejected_share=0.05, max_rejected_rows=None, repeat_minutes=60)
    assert notify_run(settings, _result(status="succeeded", rejected=80), None, now=T0)
    assert not notify_run(settings, _result(status="succeeded", rejected=90), None, now=T0 + timedelta(minutes=5))
    assert len(inbox.messages) == 1, "the same rejection problem is held back within repeat_minutes"
    # A clean run ends the incident: the next run over the threshold is news, within the hour or not.
    assert not notify_run(settings, _result(status="succeeded", rejected=3), None, now=T0 + timedelta(minutes=10))
    assert notify_run(settings, _result(status="succeeded", rejected=80), None, now=T0 + timedelta(minutes=15))
    assert len(inbox.messages) == 2
    assert [m["Subject"] for m in inbox.messages] == ["[CountyDataSync] sync rejected too many rows: MasterParcels"] * 2


class _Dribbler:
    """A mail server that never finishes its greeting: a '220-' continuation line every 0.2 s, for at most
    `gives_up_after` seconds. Records how long each client stayed connected."""

    def __init__(self, gives_up_after: float = 10.0) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.gives_up_after = gives_up_after
        self.connected_for: list[float] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._dribble, args=(client,), daemon=True).start()

    def _dribble(self, client: socket.socket) -> None:
        began = time.monotonic()
        with client:
            while time.monotonic() - began < self.gives_up_after:
                try:
                    client.sendall(b"220-mail.county.local busy, please wait\r\n")
                    readable, _, _ = select.select([client], [], [], 0.2)
                    if readable and client.recv(1024) == b"":  # the client hung up
                        break
                except OSError:
                    break
        self.connected_for.append(time.monotonic() - began)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def dribbler() -> Iterator[_Dribbler]:
    server = _Dribbler()
    yield server
    server.close()


def test_a_server_that_never_finishes_its_greeting_is_given_up_at_the_deadline(
    dribbler: _Dribbler, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    from countydatasync.ops.alerts import run_and_notify

    def source_down() -> RunResult:
        raise _source_down()

    settings = make_settings(dribbler.port, timeout_seconds=1)
    began = time.monotonic()
    with pytest.raises(PermanentSourceError, match="password authentication failed"):
        run_and_notify(settings, source_down)
    took = time.monotonic() - began
    assert 1 <= took < 3, f"the alert held the run for {took:.1f} s"
    assert (
        f"could not send the alert e-mail via 127.0.0.1:{dribbler.port}: TimeoutError: no complete SMTP "
        "exchange within alerts.timeout_seconds (1 s)" in caplog.text
    )
    assert not alert_state_path(settings).exists(), "an unsent alert must not count as sent"
    # The abandoned exchange does not linger: its connection is closed at the deadline.
    deadline = time.monotonic() + 3
    while not dribbler.connected_for and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(dribbler.connected_for) == 1 and dribbler.connected_for[0] < 2


def test_doctor_gives_up_on_such_a_server_at_the_deadline(dribbler: _Dribbler) -> None:
    from countydatasync.ops.doctor import check_smtp

    began = time.monotonic()
    check = check_smtp(
        Settings(
            alerts={
                "smtp_host": "127.0.0.1",
                "smtp_port": dribbler.port,
                "to": ["gis@county.local"],
                "timeout_seconds": 1,
            }
        )
    )
    assert time.monotonic() - began < 3
    assert check.status == "fail"
    assert check.detail == (
        f"127.0.0.1:{dribbler.port}: TimeoutError: no complete SMTP exchange within alerts.timeout_seconds (1 s)"
    )


def test_parcels_already_in_error_do_not_alert_again(
    starttls_server: tuple[int, Inbox], make_settings: Callable[..., Settings]
) -> None:
    """An incremental run re-reads every parcel in error: with no edit at the source, nearly all it extracts
    is rejected again. That was news once; each quiet night must not mail it again."""
    port, inbox = starttls_server
    settings = make_settings(port, max_rejected_share=0.05, max_rejected_rows=100, repeat_minutes=0)
    quiet = _result(status="succeeded", extracted=260, rejected=255)
    quiet.still_rejected = 255
    assert rejection_exceeded(settings.alerts, _result(status="succeeded", extracted=260, rejected=255))
    assert not notify_run(settings, quiet, None, now=T0)
    worse = _result(status="succeeded", extracted=260, rejected=258)  # 3 new of the 5 rows not in error before
    worse.still_rejected = 255
    assert notify_run(settings, worse, None, now=T0)
    assert "rejected  258; new: 3, 60.0% of the rows not already in error" in inbox.messages[0].get_content()


def test_a_log_folder_that_cannot_keep_the_send_times_does_not_start_an_alert_storm(
    starttls_server: tuple[int, Inbox], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A log folder the account cannot write fails every run, and every run alerts it: with the send times
    kept only beside the log, a run every 15 minutes mailed the same failure 96 times a day."""
    port, inbox = starttls_server
    settings = make_settings(port, repeat_minutes=60)
    (tmp_path / "logs").write_text("")  # the log folder is a file: nothing can be written under it
    settings.output.directory.mkdir()
    error = PermanentSourceError("cannot write the log file: Not a directory")
    assert notify_run(settings, None, error, now=T0)
    assert not notify_run(settings, None, error, now=T0 + timedelta(minutes=15))
    assert not notify_run(settings, None, error, now=T0 + timedelta(minutes=30))
    assert len(inbox.messages) == 1
    assert alert_state_path(settings) == settings.output.directory / "alerts_state.json"
    assert alert_state_path(settings).is_file()
