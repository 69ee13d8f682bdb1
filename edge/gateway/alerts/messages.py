"""The words of every SMS: Persian (default) or English, Jalali dates, Persian digits, within a segment budget.

Pure functions of plain data: the engine turns incidents into :class:`Fact` objects and asks :func:`compose` for a
text. A single critical alert always fits in two UCS-2 segments (134 code units): names are shortened, never the
code, the value or the instruction to reply. A message about several alerts lists the critical ones first and, past
its segment budget, ends with "+N more" rather than growing without bound.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import jdatetime

from edge.gateway.alerts.numbers import PERSIAN_DIGITS, normalize_digits
from edge.gateway.alerts.segments import segment_count

Language = Literal["fa", "en"]
Severity = Literal["warning", "critical"]
NoticeKind = Literal["firing", "repeat", "escalation", "resolved"]
Header = Literal["alert", "digest", "summary"]

#: Segments a single critical alert may take.
CRITICAL_SEGMENTS = 2
#: Alerts about something that happened (not a condition that holds): no "since", no acknowledgement, no "cleared".
EVENT_KINDS = frozenset({"unclean_restart"})

_TO_PERSIAN = str.maketrans("0123456789.", PERSIAN_DIGITS + "٫")
_GREGORIAN_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_JALALI_MONTHS = ["فروردین", "اردیبهشت", "خرداد", "تیر", "مرداد", "شهریور", "مهر", "آبان", "آذر", "دی", "بهمن",
                  "اسفند"]


def to_persian_digits(text: str) -> str:
    """``"42.5"`` -> ``"۴۲٫۵"`` (Latin digits and the decimal point; nothing else changes)."""
    return text.translate(_TO_PERSIAN)


# ---------------------------------------------------------------------------------------------------- the facts


@dataclass(frozen=True, slots=True)
class Fact:
    """One incident as a message tells it."""

    code: str
    severity: Severity
    kind: str  # above, below, rate, stale, actuator_fault, link_down, buffer, clock_unsynced, unclean_restart, ...
    fired_ts: float
    label: str | None = None  # the rule's own name from the config, when it has one
    subject: str | None = None  # the sensor, actuator or transport concerned, as the farmer knows it
    quantity: str | None = None
    value: float | None = None  # at firing; for a resolved notice, the value that cleared it
    unit: str = ""
    limit: float | None = None  # the threshold (or rate, or budget share) crossed
    window: float | None = None  # seconds, for a rate of change
    resolved_ts: float | None = None
    acked: bool = False


@dataclass(frozen=True, slots=True)
class Item:
    notice: NoticeKind
    fact: Fact


@dataclass(frozen=True, slots=True)
class Style:
    language: Language
    greenhouse: str
    timezone: str = "Asia/Tehran"
    now: float = 0.0
    max_segments: int = 4  # budget of a message about several alerts


# ------------------------------------------------------------------------------------------------- vocabularies

_QUANTITY = {
    "fa": {"temperature": "دما", "humidity": "رطوبت هوا", "soil_moisture": "رطوبت خاک", "light": "نور",
           "co2": "CO2", "pressure": "فشار هوا", "flow": "جریان آب", "level": "سطح آب"},
    "en": {"temperature": "temperature", "humidity": "humidity", "soil_moisture": "soil moisture",
           "light": "light", "co2": "CO2", "pressure": "pressure", "flow": "water flow", "level": "water level"},
}
_UNIT = {"fa": {"%": "٪"}, "en": {"°C": "C"}}  # English stays in the GSM 7-bit alphabet: no degree sign

_WORDS = {
    "fa": {
        "critical": "هشدار فوری", "warning": "هشدار", "repeat": "یادآوری", "escalation": "ارجاع",
        "resolved": "رفع شد", "since": "از", "ack": "برای تأیید {code} را بفرستید.", "code": "کد {code}",
        "cleared": "رفع شد {time}", "acked": "تأییدشده", "more": "و {n} مورد دیگر", "sep": "، ",
        "many": "{gh}، {n} مورد:", "many_ack": "برای تأیید، کد را بفرستید.",
        "digest": "گزارش ساعات سکوت {gh}، {n} مورد:", "summary": "خلاصه {gh}، {n} مورد معوق (سقف پیامک):",
        "status": "وضعیت {gh} {time}:", "no_alerts": "هشدار فعالی نیست.", "active": "هشدار فعال: {codes}",
        "test": "پیام آزمایشی {gh} از راه {transport}، {time}.", "minutes": "{n} دقیقه",
        "short_critical": "فوری", "short_warning": "هشدار",
    },
    "en": {
        "critical": "CRITICAL", "warning": "Warning", "repeat": "Reminder", "escalation": "Escalated",
        "resolved": "Resolved", "since": "since", "ack": "Reply {code} to acknowledge.", "code": "code {code}",
        "cleared": "cleared {time}", "acked": "acknowledged", "more": "and {n} more", "sep": ", ",
        "many": "{gh}, {n} alert{s}:", "many_ack": "Reply with a code to acknowledge.",
        "digest": "Quiet-hours digest {gh}, {n} alert{s}:", "summary": "Summary {gh}, {n} held back by the SMS cap:",
        "status": "Status {gh} {time}:", "no_alerts": "No active alerts.", "active": "Active alerts: {codes}",
        "test": "Test message from {gh} via {transport}, {time}.", "minutes": "{n} min",
        "short_critical": "CRIT", "short_warning": "WARN",
    },
}

_WHAT = {
    "fa": {
        "above": "{subject} {value} (بیش از {limit})",
        "below": "{subject} {value} (کمتر از {limit})",
        "rate": "{subject} {value} در {window}",
        "stale": "از {subject} داده‌ای نمی‌رسد",
        "actuator_fault": "{subject} روشن است ولی پاسخ نمی‌دهد",
        "link_down": "اینترنت گلخانه قطع است",
        "buffer": "حافظه دستگاه {value} پر است",
        "clock_unsynced": "ساعت دستگاه تنظیم نیست",
        "unclean_restart": "دستگاه بی‌خبر خاموش و دوباره روشن شد",
        "sms_credit": "اعتبار پیامک {subject} تمام شده",
        "sms_refused": "حساب پیامک {subject} پذیرفته نمی‌شود",
    },
    "en": {
        "above": "{subject} {value} (above {limit})",
        "below": "{subject} {value} (below {limit})",
        "rate": "{subject} {value} in {window}",
        "stale": "no data from {subject}",
        "actuator_fault": "{subject} is on but does not respond",
        "link_down": "greenhouse internet link is down",
        "buffer": "gateway storage {value} full",
        "clock_unsynced": "gateway clock is not set",
        "unclean_restart": "gateway restarted after an unclean stop",
        "sms_credit": "SMS credit of {subject} is used up",
        "sms_refused": "SMS account at {subject} refused",
    },
}


# ------------------------------------------------------------------------------------------------------ pieces


#: How a resolved alert of a kind that has no value reads.
_BACK = {
    "fa": {
        "stale": "از {subject} دوباره داده می‌رسد",
        "actuator_fault": "{subject} دوباره پاسخ می‌دهد",
        "link_down": "اینترنت گلخانه وصل شد",
        "buffer": "حافظه دستگاه دوباره جا دارد",
        "clock_unsynced": "ساعت دستگاه تنظیم شد",
        "sms_credit": "پیامک {subject} دوباره کار می‌کند",
        "sms_refused": "پیامک {subject} دوباره کار می‌کند",
    },
    "en": {
        "stale": "{subject} reports again",
        "actuator_fault": "{subject} responds again",
        "link_down": "greenhouse internet link is back",
        "buffer": "gateway storage has room again",
        "clock_unsynced": "gateway clock is set",
        "sms_credit": "SMS via {subject} works again",
        "sms_refused": "SMS via {subject} works again",
    },
}


def _shorten(text: str, width: int | None) -> str:
    if width is None or len(text) <= width:
        return text
    return text[: max(1, width - 1)] + "…"


def number(value: float, language: Language, signed: bool = False) -> str:
    text = f"{value:+.1f}" if signed else f"{value:.1f}"
    if abs(value) >= 100:
        text = f"{value:+.0f}" if signed else f"{value:.0f}"
    text = text.removesuffix(".0")
    if text in ("-0", "+0"):
        text = "0"
    return to_persian_digits(text) if language == "fa" else text


def _unit(unit: str, language: Language) -> str:
    return _UNIT[language].get(unit, unit)


def _quantity_value(value: float | None, unit: str, language: Language, signed: bool = False) -> str:
    if value is None:
        return "?"
    return number(value, language, signed) + _unit(unit, language)


def local_time(ts: float, style: Style, with_date: bool = True) -> str:
    """``۲۴ تیر ۱۴:۳۰`` (Jalali, Persian digits) or ``15 Jul 14:30``, in the greenhouse's time zone."""
    moment = datetime.fromtimestamp(ts, ZoneInfo(style.timezone))
    clock = f"{moment.hour:02d}:{moment.minute:02d}"
    if style.language == "fa":
        jalali = jdatetime.datetime.fromgregorian(datetime=moment)
        text = f"{jalali.day} {_JALALI_MONTHS[jalali.month - 1]} {clock}" if with_date else clock
        return to_persian_digits(text)
    return f"{moment.day} {_GREGORIAN_MONTHS[moment.month - 1]} {clock}" if with_date else clock


def _same_day(a: float, b: float, timezone: str) -> bool:
    zone = ZoneInfo(timezone)
    return datetime.fromtimestamp(a, zone).date() == datetime.fromtimestamp(b, zone).date()


def _when(ts: float, style: Style) -> str:
    return local_time(ts, style, with_date=not _same_day(ts, style.now, style.timezone))


def subject_of(fact: Fact, language: Language) -> str:
    """What the alert is about: the rule's name, else ``quantity (sensor)``, else the sensor or actuator."""
    if fact.label:
        return fact.label
    if fact.quantity and fact.kind in ("above", "below", "rate"):
        return quantity_of(fact.quantity, fact.subject, language)
    return fact.subject or ""


def quantity_of(quantity: str, sensor: str | None, language: Language) -> str:
    """``دما (air)`` / ``air temperature``."""
    name = _QUANTITY[language].get(quantity, quantity)
    if not sensor:
        return name
    return f"{name} ({sensor})" if language == "fa" else f"{sensor} {name}"


def what(fact: Fact, language: Language, width: int | None = None, resolved: bool = False) -> str:
    """The heart of the alert in a few words: ``دما (air) ۴۲٫۳°C (بیش از ۴۰)``; once resolved, the value now."""
    template = _WHAT[language].get(fact.kind, "{subject}")
    if resolved:
        template = "{subject} {value}" if fact.kind in ("above", "below", "rate") else \
            _BACK[language].get(fact.kind, template)
    if fact.kind == "buffer" and fact.value is not None:
        value = number(fact.value * 100, language) + ("٪" if language == "fa" else "%")
    else:
        value = _quantity_value(fact.value, fact.unit, language, signed=fact.kind == "rate")
    window = _WORDS[language]["minutes"].format(n=number(round((fact.window or 0) / 60), language))
    limit = "" if fact.limit is None else number(fact.limit, language)
    return template.format(subject=_shorten(subject_of(fact, language), width), value=value, limit=limit,
                           window=window)


# ---------------------------------------------------------------------------------------------------- messages


def _single(item: Item, style: Style, width: int | None) -> str:
    words, fact, lang = _WORDS[style.language], item.fact, style.language
    code = to_persian_digits(fact.code) if lang == "fa" else fact.code
    gh = _shorten(style.greenhouse, width)
    if item.notice == "resolved":
        when = local_time(fact.resolved_ts or style.now, style)
        return f"{words['resolved']} {gh}: {what(fact, lang, width, resolved=True)}{words['sep']}{when} " \
               f"({words['code'].format(code=code)})"
    head = words[fact.severity]
    if fact.kind in EVENT_KINDS:
        return f"{head} {gh}: {what(fact, lang, width)}{words['sep']}{local_time(fact.fired_ts, style)} " \
               f"({words['code'].format(code=code)})"
    if item.notice in ("repeat", "escalation"):
        head = f"{words[item.notice]} {head}"
    text = f"{head} {gh}: {what(fact, lang, width)}{words['sep']}{words['since']} {local_time(fact.fired_ts, style)}."
    if fact.resolved_ts is not None:
        return f"{text} {words['cleared'].format(time=_when(fact.resolved_ts, style))} " \
               f"({words['code'].format(code=code)})"
    return f"{text} {words['ack'].format(code=code)}"


def _line(item: Item, style: Style, width: int | None) -> str:
    words, fact, lang = _WORDS[style.language], item.fact, style.language
    code = to_persian_digits(fact.code) if lang == "fa" else fact.code
    if item.notice == "resolved":
        status, ts = words["resolved"], fact.resolved_ts or style.now
    else:
        status, ts = words[f"short_{fact.severity}"], fact.fired_ts
        if item.notice in ("repeat", "escalation"):
            status = f"{words[item.notice]} {status}"
    line = f"{code} {status}: {what(fact, lang, width, item.notice == 'resolved')} {_when(ts, style)}"
    if fact.kind in EVENT_KINDS:
        return line
    if item.notice != "resolved" and fact.resolved_ts is not None:
        line += f" ({words['cleared'].format(time=_when(fact.resolved_ts, style))})"
    elif fact.acked and item.notice != "resolved":
        line += f" ({words['acked']})"
    return line


def order(items: Sequence[Item]) -> list[Item]:
    """What still holds before what is resolved; critical first; then by firing time and code."""
    return sorted(items, key=lambda i: (i.notice == "resolved", i.fact.severity != "critical", i.fact.fired_ts,
                                        int(i.fact.code) if i.fact.code.isdigit() else 0))


def _many(items: Sequence[Item], style: Style, header: Header, width: int | None, shown: int) -> str:
    words, lang = _WORDS[style.language], style.language
    gh = _shorten(style.greenhouse, width)
    n = number(len(items), lang)
    plural = "" if len(items) == 1 else "s"
    title = words["many" if header == "alert" else header].format(gh=gh, n=n, s=plural)
    lines = [title, *(_line(item, style, width) for item in items[:shown])]
    if shown < len(items):
        lines.append(words["more"].format(n=number(len(items) - shown, lang)))
    if any(i.notice != "resolved" and i.fact.resolved_ts is None and not i.fact.acked and
           i.fact.kind not in EVENT_KINDS for i in items[:shown]):
        lines.append(words["many_ack"])
    return "\n".join(lines)


_WIDTHS = (None, 40, 24, 16, 10, 6)


def _fit(render: Callable[[int | None], str], budget: int) -> str:
    """The first rendering, with ever shorter names, that fits ``budget`` segments (else the shortest one)."""
    text = ""
    for width in _WIDTHS:
        text = render(width)
        if segment_count(text) <= budget:
            return text
    return text


def compose(items: Sequence[Item], style: Style, header: Header = "alert") -> str:
    """The text of one SMS about ``items`` (one or more notices to the same person)."""
    if not items:
        raise ValueError("a message needs at least one item")
    items = order(items)
    if len(items) == 1 and header == "alert":
        budget = CRITICAL_SEGMENTS if items[0].fact.severity == "critical" else style.max_segments
        return _fit(lambda width: _single(items[0], style, width), budget)
    for shown in range(len(items), 0, -1):
        text = _fit(lambda width: _many(items, style, header, width, shown), style.max_segments)
        if segment_count(text) <= style.max_segments:
            return text
    return text


@dataclass(frozen=True, slots=True)
class Reading:
    """A current value for the status reply."""

    label: str
    quantity: str
    value: float
    unit: str


def compose_status(readings: Sequence[Reading], active: Sequence[Fact], style: Style) -> str:
    """The answer to a ``وضعیت`` / ``STATUS`` reply: current values and the codes of active alerts, one message."""
    words, lang = _WORDS[style.language], style.language
    codes = words["sep"].join(to_persian_digits(f.code) if lang == "fa" else f.code for f in active)
    tail = words["active"].format(codes=codes) if active else words["no_alerts"]

    def render(width: int | None, shown: int) -> str:
        head = words["status"].format(gh=_shorten(style.greenhouse, width), time=local_time(style.now, style))
        values = [f"{quantity_of(r.quantity, _shorten(r.label, width), lang)} "
                  f"{_quantity_value(r.value, r.unit, lang)}" for r in readings[:shown]]
        if shown < len(readings):
            values.append(words["more"].format(n=number(len(readings) - shown, lang)))
        return "\n".join([head, *values, tail])

    text = ""
    for shown in range(len(readings), -1, -1):
        text = _fit(lambda width: render(width, shown), style.max_segments)
        if segment_count(text) <= style.max_segments:
            return text
    return text


def compose_test(transport: str, style: Style) -> str:
    return _WORDS[style.language]["test"].format(gh=style.greenhouse, transport=transport,
                                                 time=local_time(style.now, style))


_STATUS_WORDS = re.compile(r"^\s*(وضعیت|وضعيت|status)\s*[.!؟?]?\s*$", re.IGNORECASE)
_CODE = re.compile(r"\d{1,4}")


def parse_reply(text: str) -> tuple[Literal["ack", "status", "unknown"], list[str]]:
    """``"۱۷"`` / ``"ok 17"`` -> ``("ack", ["17"])``; ``"وضعیت"`` / ``"STATUS"`` -> ``("status", [])``."""
    if _STATUS_WORDS.match(text):
        return "status", []
    codes = [str(int(c)) for c in _CODE.findall(normalize_digits(text))]
    return ("ack", codes) if codes else ("unknown", [])
