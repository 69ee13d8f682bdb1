"""When each schedule wants its actuator on: windows in local time, computed from the clock, never remembered.

A schedule is *level-triggered*: ``window(schedule, now)`` says whether a window is open at ``now`` and when it ends.
So a daemon restarted in the middle of a 10-minute irrigation only waters for what is left of those 10 minutes, and
one that was down through a whole window does not water late. Cron lines are read by ``cron.py`` (as APScheduler's
trigger reads them); sunrise and sunset come from astral.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from edge.gateway.control.config import CronSchedule, DutySchedule, SunSchedule
from edge.gateway.control.cron import parse_cron


@dataclass(frozen=True)
class Window:
    start: float  # UTC seconds
    end: float


@dataclass(frozen=True)
class Place:
    latitude: float
    longitude: float
    timezone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def window(schedule, now: float, place: Place) -> Window | None:
    """The window of ``schedule`` open at ``now`` (UTC seconds), or None."""
    if isinstance(schedule, CronSchedule):
        return _cron_window(schedule, now, place)
    if isinstance(schedule, DutySchedule):
        return _duty_window(schedule, now, place)
    if isinstance(schedule, SunSchedule):
        return _sun_window(schedule, now, place)
    raise TypeError(f"unknown schedule {schedule!r}")


def _cron_window(schedule: CronSchedule, now: float, place: Place) -> Window | None:
    trigger = parse_cron(schedule.cron, place.timezone)
    since = datetime.fromtimestamp(now - schedule.duration, place.tz)
    fire = trigger.get_next_fire_time(None, since)
    if fire is None or not fire.timestamp() <= now < fire.timestamp() + schedule.duration:
        return None
    return Window(fire.timestamp(), fire.timestamp() + schedule.duration)


def _daily_window(between: tuple[str, str], day: date, tz: ZoneInfo) -> tuple[float, float]:
    start_t, end_t = (time.fromisoformat(t) for t in between)
    start = datetime.combine(day, start_t, tz)
    end = datetime.combine(day, end_t, tz)
    if end <= start:  # crosses midnight, or 00:00-00:00 meaning all day
        end += timedelta(days=1)
    return start.timestamp(), end.timestamp()


def _duty_window(schedule: DutySchedule, now: float, place: Place) -> Window | None:
    today = datetime.fromtimestamp(now, place.tz).date()
    for day in (today, today - timedelta(days=1)):  # yesterday's window may run past midnight
        start, end = _daily_window(schedule.between, day, place.tz)
        if start <= now < end:
            cycle_start = start + (now - start) // schedule.every * schedule.every
            on_end = min(cycle_start + schedule.on_for, end)
            return Window(cycle_start, on_end) if now < on_end else None
    return None


@lru_cache(maxsize=256)
def sun_times(day: date, place: Place) -> dict[str, float]:
    """Sunrise and sunset of a local day, UTC seconds (astral)."""
    from astral import Observer
    from astral.sun import sunrise, sunset

    observer = Observer(place.latitude, place.longitude)
    return {"sunrise": sunrise(observer, day, place.tz).timestamp(),
            "sunset": sunset(observer, day, place.tz).timestamp()}


def _sun_window(schedule: SunSchedule, now: float, place: Place) -> Window | None:
    today = datetime.fromtimestamp(now, place.tz).date()
    for day in (today, today - timedelta(days=1)):  # an evening window may run past midnight
        start = sun_times(day, place)[schedule.event] + schedule.offset_seconds()
        if start <= now < start + schedule.duration:
            return Window(start, start + schedule.duration)
    return None
