"""Scheduled syncs: intervals and cron expressions parse (or fail naming the value), and a server built with
a half-second schedule really syncs the sample county, skips a tick while another holder has the run lock,
keeps going after a failed run (which is alerted), and stops when the server stops."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from countydatasync.errors import ConfigError, RunLockedError
from countydatasync.ops.schedule import CronSchedule, parse_cron, parse_interval, schedule_from
from countydatasync.settings import Settings
from countydatasync.sync.lock import run_lock
from countydatasync.web import create_app
from countydatasync.web.commands import with_schedule
from countydatasync.web.scheduler import Scheduler
from tests.ops.smtp_server import PASSWORD, USER, make_ca, start_server
from tests.web.conftest import Staging

INTERVAL = "1s"  # the shortest interval a schedule accepts
T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def _runs(settings: Settings) -> int:
    with sqlite3.connect(f"file:{settings.output.stats_path}?mode=ro", uri=True) as con:
        return int(con.execute("SELECT count(*) FROM runs").fetchone()[0])


def _until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextmanager
def _hold_run_lock(directory: Path) -> Iterator[None]:
    """Hold the run lock as another process would, taking it as soon as a running scheduled sync lets go."""
    stack = ExitStack()
    deadline = time.monotonic() + 20
    while True:
        try:
            stack.enter_context(run_lock(directory))
            break
        except RunLockedError:
            assert time.monotonic() < deadline, "the run lock was never free"
            time.sleep(0.02)
    with stack:
        yield


def _scheduled(staging: Staging, **web: object) -> Settings:
    return staging.settings.model_copy(update={"web": staging.settings.web.model_copy(update=web)})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("1h", 3600),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        (" 2H ", 7200),
    ],
)
def test_intervals_parse(text: str, seconds: float) -> None:
    assert parse_interval(text).interval == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["15", "15x", "m15", "-5m", "1.5.2h", "", "0s", "every 15m"])
def test_a_bad_interval_is_refused_naming_the_value(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_interval(text)
    assert repr(text) in str(caught.value)


def test_an_interval_counts_from_the_start_and_skips_missed_times() -> None:
    every = parse_interval("15m")
    assert every.next_after(T0, T0) == T0 + timedelta(minutes=15)
    assert every.next_after(T0 + timedelta(minutes=15), T0) == T0 + timedelta(minutes=30)  # strictly after
    # A sync that ran 40 minutes: the 15 and 30 minute ticks are gone, not queued.
    assert every.next_after(T0 + timedelta(minutes=40), T0) == T0 + timedelta(minutes=45)


def test_cron_expressions_parse_and_give_the_next_due_time() -> None:
    schedule = parse_cron("*/15  * * * *")
    assert isinstance(schedule, CronSchedule) and schedule.expression == "*/15 * * * *"
    due = schedule.next_after(T0 + timedelta(minutes=7, seconds=3), T0)
    # Minute 15 of some local hour: whatever the server's time zone, its offset is whole quarter-hours.
    assert due.tzinfo is not None and due.minute % 15 == 0 and due.second == 0
    assert timedelta(0) < due - (T0 + timedelta(minutes=7, seconds=3)) <= timedelta(minutes=15)
    assert parse_cron("@hourly").expression == "@hourly"


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="changing the process's time zone needs time.tzset")
def test_cron_reads_the_server_local_time_across_daylight_saving(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/Chicago")
    time.tzset()
    try:
        nightly = parse_cron("0 2 * * *")
        # 21:00 CST on 1 March: the next 02:00 Chicago time is 08:00 UTC.
        assert nightly.next_after(T0, T0) == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
        # 8 March 2026 02:00 does not exist in Chicago (clocks jump to 03:00 CDT); 9 March 02:00 CDT is 07:00 UTC.
        after_jump = nightly.next_after(datetime(2026, 3, 8, 8, 30, tzinfo=UTC), T0)
        assert after_jump == datetime(2026, 3, 9, 7, 0, tzinfo=UTC)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    "text", ["61 * * * *", "* * * *", "*/15 * * * * *", "a b c d e", "0 0 31 2 *", "@reboot", "*/0 * * * *"]
)
def test_a_bad_cron_expression_is_refused_naming_the_value(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_cron(text)
    assert repr(text) in str(caught.value)


def test_settings_refuse_a_bad_schedule_or_two_of_them() -> None:
    with pytest.raises(ValueError, match="'15x'"):
        Settings(web={"schedule_every": "15x"})
    with pytest.raises(ValueError, match="not both"):
        Settings(web={"schedule_every": "15m", "schedule_cron": "0 * * * *"})
    assert Settings(web={"schedule_every": ""}).web.schedule_every is None
    assert schedule_from(None, None) is None


def test_the_command_line_overrides_the_settings_schedule() -> None:
    settings = Settings(web={"schedule_cron": "0 2 * * *"})
    every = with_schedule(settings, "15m", None).web
    assert (every.schedule_every, every.schedule_cron) == ("15m", None)
    cron = with_schedule(Settings(web={"schedule_every": "1h"}), None, "*/5 * * * *").web
    assert (cron.schedule_every, cron.schedule_cron) == (None, "*/5 * * * *")
    assert with_schedule(settings, None, None) is settings
    with pytest.raises(ConfigError, match="'2 weeks'"):
        with_schedule(settings, "2 weeks", None)


def test_serve_refuses_a_bad_every_with_one_line() -> None:
    import typer

    from countydatasync.web.commands import serve

    command = typer.Typer()
    command.command()(serve)
    result = CliRunner().invoke(command, ["--every", "15x"])
    assert result.exit_code == 1
    assert "'15x'" in result.output and "Traceback" not in result.output


def test_no_schedule_by_default(client: TestClient) -> None:
    state = client.get("/api/schedule").json()
    assert state["enabled"] is False and state["next_run"] is None


def test_scheduled_syncs_run_skip_while_locked_and_stop_with_the_server(fresh_staging: Staging) -> None:
    settings = _scheduled(fresh_staging, schedule_every=INTERVAL)
    before = _runs(settings)
    app = create_app(settings)
    scheduler: Scheduler = app.state.scheduler
    with TestClient(app) as client:
        _until(lambda: _runs(settings) >= before + 2, what="two scheduled runs in the stats DB")
        state = client.get("/api/schedule").json()
        assert state["enabled"] and state["description"] == "every 1s" and state["started"] >= 2
        assert datetime.fromisoformat(state["next_run"]) > datetime.now(UTC) - timedelta(seconds=1)
        assert client.get("/api/sync").json()["trigger"] == "schedule"

        # Another holder of the run lock (as a CLI sync in another process would be): ticks are skipped.
        with _hold_run_lock(settings.output.directory):
            held = _runs(settings)
            skipped = scheduler.skipped
            _until(lambda: scheduler.skipped >= skipped + 2, timeout=5, what="two skipped ticks")
            assert _runs(settings) == held
            assert client.get("/api/schedule").json()["last_outcome"] == "skipped"
        _until(lambda: _runs(settings) > held, what="a scheduled run after the lock was released")
    # Leaving the client ran the lifespan's shutdown: the thread is gone at once, and nothing else starts.
    assert not scheduler.running and scheduler.next_run is None
    assert app.state.sync_job.wait(30)
    stopped_at, started = _runs(settings), scheduler.started
    time.sleep(2.2)  # more than two intervals
    assert (_runs(settings), scheduler.started) == (stopped_at, started)
    with sqlite3.connect(f"file:{settings.output.stats_path}?mode=ro", uri=True) as con:
        statuses = {s for (s,) in con.execute("SELECT status FROM runs WHERE run_id > ?", (before,))}
    assert statuses == {"succeeded"}


def test_stop_wakes_the_scheduler_at_once(fresh_staging: Staging) -> None:
    app = create_app(_scheduled(fresh_staging, schedule_every="1h"))
    scheduler: Scheduler = app.state.scheduler
    with TestClient(app) as client:
        next_run = datetime.fromisoformat(client.get("/api/schedule").json()["next_run"])
        assert timedelta(minutes=59) < next_run - datetime.now(UTC) <= timedelta(hours=1)
        began = time.monotonic()
    assert not scheduler.running and time.monotonic() - began < 1.0
    assert scheduler.started == 0


def test_a_failed_scheduled_run_is_logged_and_alerted_and_the_schedule_goes_on(
    fresh_staging: Staging, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca, ca_file = make_ca(tmp_path)
    controller, inbox = start_server(ca, implicit_tls=False)
    try:
        settings = Settings(
            source={"url": f"sqlite:///{tmp_path / 'no_such_master.sqlite'}"},
            output={"directory": fresh_staging.settings.output.directory},
            logging={"file": tmp_path / "logs" / "cds.log"},
            web={"schedule_every": INTERVAL},
            alerts={
                "smtp_host": "127.0.0.1",
                "smtp_port": controller.port,
                "ca_file": ca_file,
                "username": USER,
                "password": PASSWORD,
                "to": ["gis-team@county.example"],
            },
        )
        app = create_app(settings)
        scheduler: Scheduler = app.state.scheduler
        caplog.set_level(logging.INFO)
        with TestClient(app):

            def failures() -> int:
                return sum(
                    r.levelno == logging.ERROR and r.getMessage().startswith("sync failed:") for r in caplog.records
                )

            _until(lambda: failures() >= 2 and scheduler.started >= 3, what="failed scheduled runs")
        app.state.sync_job.wait(30)
    finally:
        controller.stop()
    assert "no_such_master.sqlite" in app.state.sync_job.message
    assert app.state.sync_job.outcome == "failed"
    # One e-mail: the identical failures after it are held back by alerts.repeat_minutes.
    assert len(inbox.messages) == 1 and "sync failed" in inbox.messages[0]["Subject"]
