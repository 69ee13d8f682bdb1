"""Five-field crontab lines (minute hour day month weekday), read as APScheduler's ``CronTrigger.from_crontab`` reads
them, which was the only reader until issue 19.

Both the config (to refuse a bad line with its reason) and the schedules (to find windows) use it, so neither needs the
other for it.

A line of numbers, ``*``, ranges, steps and lists (``0 6,18 * * *``, ``*/15 8-17 * 11,12,1,2 0-4``) is read here:
importing APScheduler costs the daemon about 5 MB (its package reads its own metadata through ``importlib.metadata``,
its utilities import asyncio, its cron trigger tzlocal). Anything else (month and weekday names, ``last``, ``2nd
mon``), and every line with a mistake, goes to APScheduler's trigger, so the lines accepted, their meaning and the
reasons given for a refusal stay APScheduler's; ``tests/test_schedules.py`` compares the two on many lines and
times. As in APScheduler 3.x, weekday 0 is Monday (crontab's is Sunday), a line fires when every field matches, and a
time that summer time skips fires at that time by the winter offset (an hour later by the clock). One difference, in
zones with summer time only (Asia/Tehran has none since 2022): in the days after a change APScheduler 3.x sometimes
skips the first matching time (``43,15,26 * */24 * 1`` in Berlin, asked on 2025-03-27: 01:15 on April 1st, not 00:15);
here it is not skipped.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

#: (name, lowest, highest) of each field, in crontab order; weekday 0 is Monday (APScheduler 3.x).
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 6))
_PART = re.compile(r"(?:(?P<all>\*)|(?P<first>\d+)(?:-(?P<last>\d+))?)(?:/(?P<step>\d+))?$")
#: Years searched for the next time at most: every line that can fire (February 29th on a given weekday) does
#: within 28 years.
_SEARCH_YEARS = 29


def _values(text: str, low: int, high: int) -> frozenset[int] | None:
    """The values a field's text names, or None when it is not plainly valid here (APScheduler decides)."""
    values: set[int] = set()
    for part in text.split(","):
        match = _PART.match(part)
        if match is None:
            return None
        step = int(match["step"]) if match["step"] is not None else None
        if match["all"]:
            first, last = low, high
        else:
            first = int(match["first"])
            last = int(match["last"]) if match["last"] is not None else (first if step is None else high)
            if match["last"] is not None and int(match["last"]) == 0 and step is not None:
                return None  # "0-0/5": APScheduler reads a last value of 0 as "no last value"
        if not low <= first <= last <= high or step == 0 or (step is not None and step > last - first):
            return None
        values.update(range(first, last + 1, step or 1))
    return frozenset(values)


@dataclass(frozen=True)
class Crontab:
    """A five-field line of numbers, ``*``, ranges, steps and lists, in a time zone; answers as APScheduler's
    ``CronTrigger`` does."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    timezone: ZoneInfo

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        """The first time at or after ``now`` (to the minute) that the line names, in its time zone; None if none
        within the years searched. ``previous_fire_time`` is taken for APScheduler's signature and must be None."""
        if previous_fire_time is not None:
            raise ValueError("Crontab.get_next_fire_time answers from now only")
        start = now.astimezone(self.timezone)
        if start.second or start.microsecond:
            start += timedelta(minutes=1)
        start = start.replace(second=0, microsecond=0)
        floor = start.timestamp()
        for year in range(start.year, start.year + _SEARCH_YEARS):
            for month in sorted(self.months):
                if (year, month) < (start.year, start.month):
                    continue
                last_day = calendar.monthrange(year, month)[1]
                for day in sorted(self.days):
                    if day > last_day or (year, month, day) < (start.year, start.month, start.day):
                        continue
                    if calendar.weekday(year, month, day) not in self.weekdays:
                        continue
                    for hour in self.hours:
                        for minute in self.minutes:
                            fire = datetime(year, month, day, hour, minute, tzinfo=self.timezone)
                            if fire.timestamp() >= floor:
                                return datetime.fromtimestamp(fire.timestamp(), self.timezone)
        return None


def read_crontab(expression: str, timezone: str) -> Crontab | None:
    """The line read here, or None when APScheduler must read it (names, ``last``, a mistake)."""
    fields = expression.split()
    if len(fields) != 5:
        return None
    values = [_values(text, low, high) for text, (_, low, high) in zip(fields, _FIELDS)]
    if any(v is None for v in values):
        return None
    minutes, hours, days, months, weekdays = values
    return Crontab(tuple(sorted(minutes)), tuple(sorted(hours)), days, months, weekdays, ZoneInfo(timezone))


@lru_cache(maxsize=64)
def parse_cron(expression: str, timezone: str):
    """A trigger for a five-field crontab line (``get_next_fire_time(None, now)``); ValueError names what is wrong."""
    if len(expression.split()) != 5:
        raise ValueError(f"invalid cron {expression!r}: needs five fields (minute hour day month weekday)")
    plain = read_crontab(expression, timezone)
    if plain is not None:
        return plain
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(expression, timezone=ZoneInfo(timezone))
    except ValueError as exc:
        raise ValueError(f"invalid cron {expression!r}: {exc}") from None
