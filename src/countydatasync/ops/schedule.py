"""When scheduled syncs are due: an interval (`30s`, `15m`, `1h30m`) or a cron expression.

Kept apart from the thread that acts on it (`web/scheduler.py`) so the settings can validate a schedule
without loading the web stack, and so the due times can be tested without a clock. Both kinds answer one
question, "the first due time strictly after now", which is all the scheduler needs: a due time that
passed while a sync was running is simply never returned, so missed ticks are skipped, not queued.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from countydatasync.errors import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_INTERVAL = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
MIN_INTERVAL = timedelta(seconds=1)
_CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class Schedule(Protocol):
    """Due times of scheduled syncs."""

    @property
    def description(self) -> str:
        """How the schedule reads in logs and on the dashboard, e.g. "every 15m"."""
        ...

    def next_after(self, now: datetime, started: datetime) -> datetime:
        """The first due time strictly after `now` (aware, UTC); `started` is when the schedule began."""
        ...


@dataclass(frozen=True)
class IntervalSchedule:
    """Every `interval`, counted from when the schedule started (the first run is one interval in)."""

    interval: timedelta
    description: str

    def next_after(self, now: datetime, started: datetime) -> datetime:
        elapsed = max((now - started) / self.interval, 0.0)
        return started + self.interval * (math.floor(elapsed) + 1)


@dataclass(frozen=True)
class CronSchedule:
    """A five-field cron expression (minute hour day-of-month month day-of-week) in the server's local
    time, as cron itself reads it; daylight-saving changes are handled by croniter.

    Day-of-month and day-of-week both restricted means either day matches, unless one of them starts
    with '*' (`*/2`): then Vixie cron and cronie require both, and so does croniter's implement_cron_bug.
    """

    expression: str
    description: str

    def next_after(self, now: datetime, started: datetime) -> datetime:
        from croniter import croniter
        from dateutil.tz import tzlocal

        local = now.astimezone(tzlocal())
        due: datetime = croniter(self.expression, local, implement_cron_bug=True).get_next(datetime)
        return due.astimezone(UTC)


def parse_interval(text: str) -> IntervalSchedule:
    """`30s`, `15m`, `1h`, `1d`, `1h30m` or `1.5s` as a schedule, at least one second; raises ConfigError
    naming the value."""
    compact = re.sub(r"\s+", "", text.strip().lower())
    if not _INTERVAL.fullmatch(compact):
        raise ConfigError(
            f"schedule interval {text!r} is not understood: use a number and a unit "
            "(s, m, h or d), e.g. 30s, 15m, 1h or 1h30m"
        )
    seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(compact))
    try:
        interval = timedelta(seconds=seconds)
        datetime.now(UTC) + interval  # the first due time must be a date, before the year 10000
    except OverflowError:
        raise ConfigError(
            f"schedule interval {text!r} is too long: the first run would come after the year 9999"
        ) from None
    # Checked after the conversion, which rounds to microseconds: 0.0000001s becomes no interval at all.
    if interval < MIN_INTERVAL:
        raise ConfigError(f"schedule interval {text!r} must be at least 1s")
    return IntervalSchedule(interval, f"every {compact}")


def parse_cron(text: str) -> CronSchedule:
    """A five-field cron expression or an alias such as @hourly; raises ConfigError naming the value."""
    from croniter import CroniterError, croniter

    expression = " ".join(text.split())
    if expression.startswith("@"):
        if expression.lower() not in _CRON_ALIASES:
            raise ConfigError(
                f"cron expression {text!r} is not valid: the aliases are {', '.join(sorted(_CRON_ALIASES))}"
            )
        expression = expression.lower()
    elif len(expression.split(" ")) != 5:
        raise ConfigError(
            f"cron expression {text!r} is not valid: it needs five fields, minute hour "
            "day-of-month month day-of-week, e.g. '*/15 * * * *'"
        )
    try:
        # also refuses dates that never come, such as 31 February
        croniter(expression, implement_cron_bug=True).get_next(datetime)
    except (CroniterError, ValueError) as exc:
        raise ConfigError(f"cron expression {text!r} is not valid: {exc}") from None
    return CronSchedule(expression, f"cron {expression!r} (server local time)")


def schedule_from(every: str | None, cron: str | None) -> Schedule | None:
    """The schedule an interval or a cron expression describes; None when neither is set.

    Raises ConfigError when both are set, or when either cannot be parsed.
    """
    if every and cron:
        raise ConfigError(f"set a schedule interval ({every!r}) or a cron expression ({cron!r}), not both")
    if every:
        return parse_interval(every)
    if cron:
        return parse_cron(cron)
    return None
