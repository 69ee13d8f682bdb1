"""Who gets which message when: grouping, quiet hours, caps, repeats. Pure functions of owed notices and the time.

A *notice* is one thing a recipient is owed ("17 fired", "17 resolved", "17 again"). For each recipient, every
dispatch round :func:`plan` decides which owed notices go out now, together, in one SMS:

- **Quiet hours**: only critical firing, repeat and escalation notices go; the rest are *deferred* and go out
  together after the quiet hours, headed as a digest.
- **Link down**: notices of stale-sensor alerts are held (and their incident marked *suppressed*): twenty sensors
  going silent because the link or its power went are one link-down alert, not twenty SMS. If a suppressed alert
  resolves before it was told, it is never told.
- **Grouping**: a critical goes at once (with whatever else is owed); warnings wait ``group_window`` from the oldest
  owed notice, so alerts that start together share one message.
- **Caps**: at ``per_hour`` messages in the last hour (or ``per_day`` in the last 24 h) everything owed is held and
  *capped*; when a slot frees, all of it goes as one summary message. Never silence: the summary lists every code.

Answers to a farmer's SMS (:func:`may_reply`) have their own budget and never count against the alerts' caps: a
farmer asking for the status ten times must not silence the next frost alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

URGENT_KINDS = frozenset({"firing", "repeat", "escalation"})
#: Headers of the messages that answer a farmer's SMS (the others tell alerts).
REPLY_KINDS = ("status", "ack", "help")


@dataclass(frozen=True, slots=True)
class Owed:
    notice_id: int
    incident_id: int
    kind: str  # firing | repeat | escalation | resolved
    created_ts: float
    severity: str
    incident_kind: str
    deferred: bool = False
    capped: bool = False

    @property
    def urgent(self) -> bool:
        return self.severity == "critical" and self.kind in URGENT_KINDS


@dataclass
class Plan:
    send: list[Owed] = field(default_factory=list)
    defer: list[int] = field(default_factory=list)  # notice ids held by quiet hours
    suppress: list[int] = field(default_factory=list)  # incident ids held while the link is down
    cap: list[int] = field(default_factory=list)  # notice ids held by a cap
    header: str = "alert"  # alert | digest | summary


def _parse(hhmm: str) -> time:
    hours, minutes = hhmm.split(":")
    return time(int(hours), int(minutes))


def in_quiet_hours(now: float, timezone: str, start: str | None, end: str | None) -> bool:
    """Whether local time is within ``[start, end)``; the span may cross midnight (22:00-06:00)."""
    if start is None or end is None or start == end:
        return False
    local = datetime.fromtimestamp(now, ZoneInfo(timezone)).time()
    first, last = _parse(start), _parse(end)
    return first <= local < last if first < last else (local >= first or local < last)


def repeat_gap(gaps: Sequence[float], repeats_sent: int) -> float:
    """The wait before the next repeat, after ``repeats_sent`` repeats; the last gap repeats for ever."""
    return gaps[min(repeats_sent, len(gaps) - 1)]


def plan(owed: Sequence[Owed], *, now: float, quiet: bool, link_up: bool, group_window: float,
         sent_last_hour: int, sent_last_day: int, per_hour: int, per_day: int) -> Plan:
    """What to send to one recipient now (everything in ``send`` goes in one message)."""
    result = Plan()
    eligible = []
    for notice in owed:
        if quiet and not notice.urgent:
            if not notice.deferred:
                result.defer.append(notice.notice_id)
        elif not link_up and notice.incident_kind == "stale":
            result.suppress.append(notice.incident_id)
        else:
            eligible.append(notice)
    if not eligible:
        return result
    waited = any(n.deferred or n.capped for n in eligible)
    ready = waited or any(n.urgent for n in eligible) or min(n.created_ts for n in eligible) <= now - group_window
    if not ready:
        return result
    if sent_last_hour >= per_hour or sent_last_day >= per_day:
        result.cap = [n.notice_id for n in eligible if not n.capped]
        return result
    result.send = eligible
    if any(n.capped for n in eligible):
        result.header = "summary"
    elif any(n.deferred for n in eligible):
        result.header = "digest"
    return result


def may_reply(kind: str, sent: Sequence[tuple[float, str]], *, now: float, help_every: float, per_hour: int) -> bool:
    """Whether an answer of ``kind`` (``status``, ``ack``, ``help``) may go to a number that was sent the answers
    ``sent`` (``(ts, kind)``, any order): at most ``per_hour`` answers of any kind in an hour, and at most one
    ``help`` in ``help_every``. So a loop with an auto-responder (our help, its reply, our help...) costs one SMS per
    ``help_every``, and a farmer who texts "hello" five times gets one help."""
    if sum(1 for ts, _ in sent if now - ts < 3600.0) >= per_hour:
        return False
    return kind != "help" or not any(k == "help" and now - ts < help_every for ts, k in sent)
