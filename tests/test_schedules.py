"""Schedules open their windows at the right local times in Asia/Tehran, and say when the windows end."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.gateway.control.config import CronSchedule, DutySchedule, SunSchedule
from edge.gateway.control.cron import Crontab, parse_cron
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


# ---------------------------------------------------------------------------------------- cron lines (control/cron.py)


def _plain_lines(count: int, seed: int) -> list[str]:
    """Crontab lines of numbers, *, ranges, steps and lists, each field drawn at random."""
    rng = random.Random(seed)

    def field(low: int, high: int) -> str:
        a = rng.randint(low, high)
        b = rng.randint(a, high)
        stepped = (f"{a}-{b}/{rng.randint(1, b - a)}" if b > a
                   else f"{a}/{rng.randint(1, high - a)}" if a < high else "*")
        return rng.choice(["*", f"*/{rng.randint(1, high - low)}", str(a), f"{a}-{b}", stepped,
                           ",".join(str(rng.randint(low, high)) for _ in range(rng.randint(2, 4)))])

    return [" ".join(field(low, high) for low, high in ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6)))
            for _ in range(count)]


SHIPPED_LINES = ["0 6,18 * * *", "0 17 * 11,12,1,2 *", "0 6 * * *", "0 18 * * *", "* * * * *", "*/15 8-17 * * 0-4",
                 "0 0 29 2 *", "0 0 31 * *", "5/10 * * * *", "0-30/7 3 1-7 * 6", "59 23 31 12 *", "0 0 29 2 0"]


@pytest.mark.parametrize("zone", ["Asia/Tehran", "UTC"])
def test_a_plain_cron_line_fires_when_apschedulers_trigger_says(zone):
    """The lines read here (not by APScheduler, to keep its 5 MB of imports out of the daemon) fire at the times
    APScheduler's CronTrigger, their reader before, names: the config examples' lines and 200 drawn at random, each
    from 10 random moments (some on a whole minute)."""
    from apscheduler.triggers.cron import CronTrigger

    rng = random.Random(zone)
    tz = ZoneInfo(zone)
    for line in SHIPPED_LINES + _plain_lines(200, seed=19):
        ours = parse_cron(line, zone)
        assert isinstance(ours, Crontab), line
        theirs = CronTrigger.from_crontab(line, timezone=tz)
        for _ in range(10):
            now = datetime.fromtimestamp(rng.uniform(1.70e9, 1.80e9), tz)
            if rng.random() < 0.3:
                now = now.replace(second=0, microsecond=0)
            expected = theirs.get_next_fire_time(None, now)
            got = ours.get_next_fire_time(None, now)
            assert (got and got.timestamp()) == (expected and expected.timestamp()), (line, now)
            assert got is None or got.tzinfo == tz


def _first_match(line: str, now: datetime) -> datetime:
    """The first whole minute at or after ``now`` whose local time matches ``line``, minute by minute."""
    plain = parse_cron(line, "UTC")
    minutes, hours, days, months, weekdays = (set(getattr(plain, name)) for name in
                                              ("minutes", "hours", "days", "months", "weekdays"))
    t = math.ceil(now.timestamp() / 60) * 60
    while True:
        d = datetime.fromtimestamp(t, now.tzinfo)
        if (d.minute in minutes and d.hour in hours and d.day in days and d.month in months
                and d.weekday() in weekdays):
            return d
        t += 60


@pytest.mark.parametrize("line, now", [
    ("43,15,26 * */24 * 1", "2025-03-27T13:10:00+01:00"),  # APScheduler 3.x: 01:15 on April 1st, skipping 00:15
    ("8-31 */22 */11 3-6 1-4/3", "2025-03-15T12:09:00+01:00"),  # APScheduler 3.x: 22:08, skipping 00:08
    ("30 2 * * *", "2025-10-26T01:00:00+02:00"),  # 02:30 happens twice on October 26th
    ("*/20 1-3 * * *", "2025-10-26T02:50:00+01:00"),  # in the repeated hour
])
def test_in_a_zone_with_summer_time_a_cron_line_fires_at_its_first_matching_minute(line, now):
    start = datetime.fromisoformat(now).astimezone(ZoneInfo("Europe/Berlin"))
    fire = parse_cron(line, "Europe/Berlin").get_next_fire_time(None, start)
    assert fire.timestamp() == _first_match(line, start).timestamp()


def test_a_time_that_summer_time_skips_fires_an_hour_later_as_with_apscheduler():
    """02:30 does not exist in Berlin on 2025-03-30 (02:00 became 03:00): like APScheduler's trigger, the line fires
    at 02:30 by the winter offset, 03:30 by the summer one, that day, rather than skipping it."""
    from apscheduler.triggers.cron import CronTrigger

    berlin = ZoneInfo("Europe/Berlin")
    start = datetime.fromisoformat("2025-03-29T12:00:00+01:00").astimezone(berlin)
    fire = parse_cron("30 2 * * *", "Europe/Berlin").get_next_fire_time(None, start)
    assert fire == datetime.fromisoformat("2025-03-30T03:30:00+02:00")
    assert fire.timestamp() == CronTrigger.from_crontab("30 2 * * *", timezone=berlin).get_next_fire_time(
        None, start).timestamp()


def test_names_and_special_forms_are_read_by_apscheduler_and_mistakes_keep_its_reasons():
    assert isinstance(parse_cron("0 6 * * *", "Asia/Tehran"), Crontab)
    assert type(parse_cron("0 6 * * mon-fri", "Asia/Tehran")).__name__ == "CronTrigger"
    assert type(parse_cron("0 6 last * *", "Asia/Tehran")).__name__ == "CronTrigger"
    for line, reason in [
        ("0 24 * * *", "Error validating expression '24': the last value (24) is higher than the maximum value (23)"),
        ("0 6 0 * *", "Error validating expression '0': the first value (0) is lower than the minimum value (1)"),
        ("*/0 * * * *", "Increment must be higher than 0"),
        ("0 9-5 * * *", "The minimum value in a range must not be higher than the maximum"),
        ("0 6 * * 7", "Error validating expression '7': the last value (7) is higher than the maximum value (6)"),
        ("0 6 * * * *", "needs five fields (minute hour day month weekday)"),
    ]:
        with pytest.raises(ValueError) as raised:
            parse_cron(line, "Asia/Tehran")
        assert str(raised.value) == f"invalid cron {line!r}: {reason}"


def test_a_config_with_cron_lines_runs_its_schedules_without_apscheduler(tmp_path):
    """The demo's and the examples' lines are plain: reading the config and opening a window import no APScheduler
    (nor the asyncio, tzlocal and importlib.metadata it brings)."""
    check = textwrap.dedent("""
        import sys
        from edge.gateway.config import parse_config
        from edge.gateway.control.schedules import Place, window
        config = parse_config(open(sys.argv[1]).read())
        place = Place(33.487, 48.356, "Asia/Tehran")
        for schedule in config.schedules:
            window(schedule, 1.75e9, place)
        print(sorted(m for m in ("apscheduler", "asyncio", "tzlocal") if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", check, "config/demo.yaml"], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
