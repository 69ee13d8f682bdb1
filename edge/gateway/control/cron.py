"""Five-field crontab lines, read by APScheduler's trigger (the only place control imports APScheduler).

Both the config (to refuse a bad line with its reason) and the schedules (to find windows) use it, so neither needs the
other for it.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=64)
def parse_cron(expression: str, timezone: str):
    """An APScheduler CronTrigger for a five-field crontab line; ValueError names what is wrong."""
    from apscheduler.triggers.cron import CronTrigger

    if len(expression.split()) != 5:
        raise ValueError(f"invalid cron {expression!r}: needs five fields (minute hour day month weekday)")
    try:
        return CronTrigger.from_crontab(expression, timezone=ZoneInfo(timezone))
    except ValueError as exc:
        raise ValueError(f"invalid cron {expression!r}: {exc}") from None
