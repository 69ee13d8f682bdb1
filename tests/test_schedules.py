"""Schedules open their windows at the right local times in Asia/Tehran, and say when the windows end."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from edge.gateway.control.config import CronSchedule, DutySchedule, SunSchedule
from edge.gateway.control.schedules import Place, window

TEHRAN = ZoneInfo("Asia/Tehran")
KHORRAMABAD = Place(33.487, 48.356, "Asia/Tehran")


def local(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=TEHRAN).timestamp()


def clock_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, TEHRAN).strftime("%H:%M:%S")


CRON = CronSchedule(id="irrigation", type="cron", actuator="pump", cron="0 6,18 * * *", duration="10m")


@pytest.mark.parametrize("at, expected", [
    ("2025-07-15 05:59:59", None),
    ("2025-07-15 06:00:00", ("06:00:00", "06:10:00")),
    ("2025-07-15 06:09:59", ("06:00:00", "06:10:00")),
    ("2025-07-15 06:10:00", None),
    ("2025-07-15 12:00:00", None),
    ("2025-07-15 18:04:00", ("18:00:00", "18:10:00")),
])
def test_cron_with_duration_opens_at_local_times(at, expected):
    w = window(CRON, local(at), KHORRAMABAD)
    assert (w and (clock_of(w.start), clock_of(w.end))) == expected


def test_cron_follows_the_gateway_time_zone_not_utc():
    utc_place = Place(33.487, 48.356, "UTC")
    assert window(CRON, local("2025-07-15 06:05"), KHORRAMABAD) is not None
    assert window(CRON, local("2025-07-15 06:05"), utc_place) is None  # 06:05 in Tehran is 02:35 UTC


DUTY = DutySchedule(id="airing", type="duty", actuator="vent", on_for="5m", every="30m", between=("08:00", "18:00"))


@pytest.mark.parametrize("at, expected", [
    ("2025-07-15 07:59", None),
    ("2025-07-15 08:00", ("08:00:00", "08:05:00")),
    ("2025-07-15 08:04", ("08:00:00", "08:05:00")),
    ("2025-07-15 08:06", None),
    ("2025-07-15 08:31", ("08:30:00", "08:35:00")),
    ("2025-07-15 17:32", ("17:30:00", "17:35:00")),
    ("2025-07-15 18:00", None),
])
def test_duty_cycle_runs_on_for_every_period_inside_its_window(at, expected):
    w = window(DUTY, local(at), KHORRAMABAD)
    assert (w and (clock_of(w.start), clock_of(w.end))) == expected


def test_a_duty_window_may_cross_midnight():
    night = DutySchedule(id="n", type="duty", actuator="fan", on_for="10m", every="1h", between=("22:00", "02:00"))
    assert window(night, local("2025-07-16 01:05"), KHORRAMABAD) is not None
    assert window(night, local("2025-07-16 01:15"), KHORRAMABAD) is None
    assert window(night, local("2025-07-16 02:05"), KHORRAMABAD) is None


def test_sunset_window_with_a_negative_offset():
    lights = SunSchedule(id="l", type="sun", actuator="lights", event="sunset", offset="-30m", duration="2h")
    # Khorramabad, 15 July 2025: sunset about 19:27 local time
    w = window(lights, local("2025-07-15 19:30"), KHORRAMABAD)
    assert "18:55:00" <= clock_of(w.start) <= "19:00:00"
    assert w.end - w.start == 7200
    assert window(lights, local("2025-07-15 18:50"), KHORRAMABAD) is None
    # in January the sun sets about two hours earlier (17:31), and so does the window
    winter = window(lights, local("2025-01-15 17:30"), KHORRAMABAD)
    assert "16:58:00" <= clock_of(winter.start) <= "17:04:00"


def test_a_sun_window_may_run_past_midnight():
    night = SunSchedule(id="n", type="sun", actuator="lights", event="sunset", duration="8h")
    assert window(night, local("2025-07-16 02:00"), KHORRAMABAD) is not None
    assert window(night, local("2025-07-16 04:00"), KHORRAMABAD) is None


def test_sunrise_with_a_positive_offset():
    morning = SunSchedule(id="m", type="sun", actuator="vent", event="sunrise", offset="15m", duration="1h")
    w = window(morning, local("2025-07-15 06:00"), KHORRAMABAD)  # sunrise about 05:18
    assert "05:30:00" <= clock_of(w.start) <= "05:36:00"
