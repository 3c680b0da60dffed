"""Schedules read as cron reads them, and intervals too short or too long are settings errors, not crashes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from countydatasync.errors import ConfigError
from countydatasync.ops.schedule import parse_cron, parse_interval
from countydatasync.settings import Settings
from countydatasync.web.commands import serve


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZoneInfo]:
    """The server's local time zone is America/New_York (cron schedules run in local time)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield ZoneInfo("America/New_York")
    monkeypatch.undo()
    time.tzset()


def _due_times(expression: str, start: datetime, count: int) -> list[str]:
    schedule = parse_cron(expression)
    now, due = start.astimezone(UTC), []
    for _ in range(count):
        now = schedule.next_after(now, now)
        due.append(now.astimezone(start.tzinfo).strftime("%a %Y-%m-%d %H:%M"))
    return due


def test_a_starred_day_of_month_and_a_weekday_must_both_match(new_york: ZoneInfo) -> None:
    # Vixie cron and cronie: '*/2' starts with '*', so odd-dated days AND Mondays, not odd days OR Mondays.
    assert _due_times("0 0 */2 * 1", datetime(2026, 6, 1, tzinfo=new_york), 3) == [
        "Mon 2026-06-15 00:00",
        "Mon 2026-06-29 00:00",
        "Mon 2026-07-13 00:00",
    ]


def test_a_plain_day_of_month_and_a_weekday_still_match_either(new_york: ZoneInfo) -> None:
    assert _due_times("0 0 13 * 5", datetime(2026, 2, 1, tzinfo=new_york), 3) == [
        "Fri 2026-02-06 00:00",
        "Fri 2026-02-13 00:00",
        "Fri 2026-02-20 00:00",
    ]
    assert _due_times("0 0 13 * 5", datetime(2026, 4, 3, 1, tzinfo=new_york), 2) == [
        "Fri 2026-04-10 00:00",
        "Mon 2026-04-13 00:00",  # the 13th, though not a Friday
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.0000001s", "'0.0000001s' must be at least 1s"),  # rounds to no interval at all
        ("0.999s", "'0.999s' must be at least 1s"),
        ("99999999999d", "'99999999999d' is too long: the first run would come after the year 9999"),
        ("3000000d", "'3000000d' is too long: the first run would come after the year 9999"),
    ],
)
def test_intervals_under_a_second_or_past_the_calendar_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_interval(text)
    assert str(caught.value) == f"schedule interval {message}"


def test_one_second_is_the_shortest_interval() -> None:
    assert parse_interval("1s").interval.total_seconds() == 1
    assert parse_interval("1.5s").interval.total_seconds() == 1.5


def test_settings_refuse_an_interval_that_rounds_to_nothing() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(web={"schedule_every": "0.0000001s"})
    assert "schedule interval '0.0000001s' must be at least 1s" in str(caught.value)


def test_serve_refuses_an_interval_past_the_calendar_with_one_line(clean_env: Path) -> None:
    command = typer.Typer()
    command.command()(serve)
    result = CliRunner().invoke(command, ["--every", "99999999999d"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # not an OverflowError
    assert "error: schedule interval '99999999999d' is too long" in result.output
    assert "Traceback" not in result.output
