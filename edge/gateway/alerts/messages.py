"""The words of every SMS: Persian (default) or English, Jalali dates, Persian digits, in as few segments as they fit.

Pure functions of plain data: the engine turns incidents into :class:`Fact` objects and asks :func:`compose` for a
text; :func:`compose_status` answers «وضعیت», :func:`compose_ack` and :func:`compose_help` answer other replies.
Names come from :class:`~.names.Names` (the config's Persian names, else Persian words), never Latin ids in Persian.

How a Persian alert reads (the rules, with their reasons, are in ``docs/alerts.md``):

    گلخانه حسن: هشدار فوری ۱۳، دما ۳٫۲° (زیر ۵°). دریچه و بخاری را بررسی کنید.

the greenhouse first, then the alert by its number (the number is what the farmer replies), what is wrong with its
value, and what to check or do. Every text is rendered from the most to the least wordy (:data:`_VARIANTS`: the reply
hint dropped, «را ببینید» for «را بررسی کنید», the limit left out, then names shortened) and the wordiest rendering
among those with the fewest segments is sent: one segment (70 UCS-2 characters) whenever any rendering fits one. The
greenhouse, the number, the value and what to do are never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo


from edge.gateway.alerts.names import Names, persian_digits
from edge.gateway.alerts.numbers import normalize_digits
from edge.gateway.alerts.segments import segment_count

Language = Literal["fa", "en"]
Severity = Literal["warning", "critical"]
NoticeKind = Literal["firing", "repeat", "escalation", "resolved"]
Header = Literal["alert", "digest", "summary"]

#: The most segments a single alert ever takes (when not even its shortest rendering fits one).
CRITICAL_SEGMENTS = 2
#: Alerts about something that happened (not a condition that holds): no "since", no acknowledgement, no "cleared".
EVENT_KINDS = frozenset({"unclean_restart"})
#: A message composed this long after the moment it tells of says when that was (sooner, the phone's time does).
LATE = 120.0

_GREGORIAN_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_JALALI_MONTHS = ["فروردین", "اردیبهشت", "خرداد", "تیر", "مرداد", "شهریور", "مهر", "آبان", "آذر", "دی", "بهمن",
                  "اسفند"]


def to_persian_digits(text: str) -> str:
    """``"42.5"`` -> ``"۴۲٫۵"`` (Latin digits and the decimal point; nothing else changes)."""
    return persian_digits(text)


# ---------------------------------------------------------------------------------------------------- the facts


@dataclass(frozen=True, slots=True)
class Fact:
    """One incident as a message tells it."""

    code: str
    severity: Severity
    kind: str  # above, below, rate, stale, actuator_fault, link_down, buffer, clock_unsynced, unclean_restart, ...
    fired_ts: float
    label: str | None = None  # the rule's own name from the config, when it has one
    subject: str | None = None  # the sensor, actuator or transport concerned (its id)
    quantity: str | None = None
    value: float | None = None  # at firing; for a resolved notice, the value that cleared it
    unit: str = ""
    limit: float | None = None  # the threshold (or rate, or budget share) crossed
    window: float | None = None  # seconds, for a rate of change
    resolved_ts: float | None = None
    acked: bool = False
    sensor: str | None = None  # the sensor read (threshold, rate, stale, the feedback of a fault)
    actuator: str | None = None  # the output of an actuator fault
    direction: int = 1  # a rate: +1 rise, -1 fall


@dataclass(frozen=True, slots=True)
class Item:
    notice: NoticeKind
    fact: Fact


@dataclass(frozen=True, slots=True)
class Style:
    language: Language
    greenhouse: str  # as this language names it (``Names.of_greenhouse``)
    timezone: str = "Asia/Tehran"
    now: float = 0.0
    max_segments: int = 4  # budget of a message about several alerts, and of a status reply
    names: Names = field(default_factory=Names)


# ------------------------------------------------------------------------------------------------- vocabularies

_UNIT = {
    "fa": {"°C": "°", "%": "٪", "lx": " لوکس", "ppm": " پی‌پی‌ام", "hPa": " هکتوپاسکال", "l/min": " لیتر در دقیقه"},
    "en": {"°C": "C", "lx": " lx", "ppm": " ppm", "hPa": " hPa", "l/min": " l/min"},  # GSM 7-bit: no degree sign
}
_LEVEL = {"fa": ("خالی", "پر"), "en": ("empty", "full")}

_WORDS = {
    "fa": {
        "critical": "هشدار فوری", "warning": "هشدار", "sep": "، ", "and": " و ",
        "firing": "{gh}: {head} {code}، {what}{since}. {todo}{ack}",
        "repeat": "{gh}: هنوز {head} {code}، {what}{since}. {todo}{ack}",
        "escalation": "{gh}: هشدار {code} تأیید نشده، {what}{since}. {todo}{ack}",
        "resolved": "{gh}: هشدار {code} رفع شد، {back}{at}.",
        "cleared": "{gh}: {head} {code}، {what}، از {time} تا {until}؛ رفع شد.",
        "event": "{gh}: {what}{at}. {todo}",
        "since": "، از {time}", "at": "، ساعت {time}", "ack": " برای تأیید {code} را بفرستید.",
        "line_firing": "{code} {short}: {what}{since}", "line_repeat": "{code} {short}، هنوز: {what}{since}",
        "line_escalation": "{code} تأیید نشده: {what}{since}",
        "line_resolved": "{code} رفع شد: {back}{at}", "line_cleared": "{code} {short}: {what}، {time} تا {until} "
                                                                       "(رفع شد)",
        "line_event": "{what}، ساعت {time}", "line_acked": " (تأییدشده)",
        "many": "{gh}، {n} هشدار:", "digest": "{gh}، گزارش ساعات سکوت، {n} مورد:",
        "summary": "{gh}، {n} مورد مانده پشت سقف پیامک:", "more": "و {n} مورد دیگر",
        "many_ack": "برای تأیید، شماره هشدار را بفرستید.",
        "check": "{what} را بررسی کنید.", "check_short": "{what} را ببینید.",
        "status": "{gh}، ساعت {time}", "no_data": "بدون داده: {what}", "since_time": " از {time}",
        "now": "الان", "minutes_ago": "{n} دقیقه پیش", "hours_ago": "{n} ساعت پیش", "days_ago": "{n} روز پیش",
        "open_alerts": "هشدار باز: {codes}", "no_alerts": "هشدار بازی نیست.",
        "on": "روشن", "off": "خاموش", "open": "باز", "closed": "بسته",
        "rest_off": "بقیه خاموش", "all_off": "همه خاموش", "rest_off_vent": "بقیه خاموش یا بسته",
        "all_off_vent": "همه خاموش یا بسته",
        "acked_one": "{gh}: هشدار {codes} تأیید شد؛ دیگر تکرار نمی‌شود.",
        "acked_many": "{gh}: هشدارهای {codes} تأیید شد؛ دیگر تکرار نمی‌شوند.",
        "help": "{gh}: شماره هشدار را بفرستید تا تأیید شود، یا «وضعیت» را.",
        "not_open": "{gh}: هشدار {codes} باز نیست. {open}",
        "already": "{gh}: هشدار {codes} قبلاً تأیید شده است.",
        "test": "{gh}: پیام آزمایشی {time}؛ هشدارها به این شماره می‌رسد.",
        "minutes": "{n} دقیقه",
    },
    "en": {
        "critical": "CRITICAL", "warning": "Warning", "sep": ", ", "and": " and ",
        "firing": "{head} {gh}: {what}, since {time}. {todo}{ack}",
        "repeat": "Reminder {head} {gh}: {what}, since {time}. {todo}{ack}",
        "escalation": "Escalated {head} {gh}: {what}, since {time}. {todo}{ack}",
        "resolved": "Resolved {gh}: {back}, {time} (code {code})",
        "cleared": "{head} {gh}: {what}, since {time}. cleared {until} (code {code})",
        "event": "{head} {gh}: {what}, {time} (code {code}) {todo}",
        "since": "", "at": "", "ack": " Reply {code} to acknowledge.",
        "line_firing": "{code} {short}: {what} {when}", "line_repeat": "{code} Reminder {short}: {what} {when}",
        "line_escalation": "{code} Escalated {short}: {what} {when}",
        "line_resolved": "{code} Resolved: {back} {when}", "line_cleared": "{code} {short}: {what} {when} "
                                                                          "(cleared {until})",
        "line_event": "{code} {short}: {what} {when}", "line_acked": " (acknowledged)",
        "many": "{gh}, {n} alert{s}:", "digest": "Quiet-hours digest {gh}, {n} alert{s}:",
        "summary": "Summary {gh}, {n} held back by the SMS cap:", "more": "and {n} more",
        "many_ack": "Reply with a code to acknowledge.",
        "check": "Check {what}.", "check_short": "Check {what}.",
        "status": "Status {gh} {time}:", "no_data": "no data: {what}", "since_time": " since {time}",
        "now": "now", "minutes_ago": "{n} min ago", "hours_ago": "{n} h ago", "days_ago": "{n} d ago",
        "open_alerts": "Open alerts: {codes}", "no_alerts": "No open alerts.",
        "on": "on", "off": "off", "open": "open", "closed": "closed",
        "rest_off": "the rest off", "all_off": "all off", "rest_off_vent": "the rest off or closed",
        "all_off_vent": "all off or closed",
        "acked_one": "{gh}: alert {codes} acknowledged; no more reminders.",
        "acked_many": "{gh}: alerts {codes} acknowledged; no more reminders.",
        "help": "{gh}: reply an alert's code to acknowledge it, or STATUS for a report.",
        "not_open": "{gh}: no open alert {codes}. {open}",
        "already": "{gh}: alert {codes} was already acknowledged.",
        "test": "Test message from {gh}, {time}: alert SMS reach this number.",
        "minutes": "{n} min",
    },
}

_SHORT = {"fa": {"critical": "فوری", "warning": "هشدار"}, "en": {"critical": "CRIT", "warning": "WARN"}}

#: The heart of an alert, by kind; ``*_brief`` is the form without its limit or qualifier (a shorter variant).
_WHAT = {
    "fa": {
        "above": "{subject} {value} (بالای {limit})", "above_brief": "{subject} {value}",
        "below": "{subject} {value} (زیر {limit})", "below_brief": "{subject} {value}",
        "rate_up": "{subject} در {window} {value} بالا رفت", "rate_up_brief": "{subject} {value} بالا رفت",
        "rate_down": "{subject} در {window} {value} پایین آمد", "rate_down_brief": "{subject} {value} پایین آمد",
        "stale": "{sensor} قطع است",
        "actuator_fault": "{actuator} روشن است ولی اثری ندارد", "actuator_fault_brief": "{actuator} کار نمی‌کند",
        "link_down": "اینترنت قطع است",
        "buffer": "حافظه دستگاه {value} پر شده",
        "clock_unsynced": "ساعت دستگاه تنظیم نیست",
        "unclean_restart": "برق دستگاه قطع و وصل شد",
        "sms_credit": "اعتبار پیامک {transport} تمام شده", "sms_credit_brief": "اعتبار پیامک تمام شده",
        "sms_refused": "{transport} پیامک نمی‌فرستد",
    },
    "en": {
        "above": "{subject} {value} (above {limit})",
        "below": "{subject} {value} (below {limit})",
        "rate_up": "{subject} +{value} in {window}",
        "rate_down": "{subject} -{value} in {window}",
        "stale": "no data from {sensor}",
        "actuator_fault": "{actuator} is on but does not respond",
        "link_down": "greenhouse internet link is down",
        "buffer": "gateway storage {value} full",
        "clock_unsynced": "gateway clock is not set",
        "unclean_restart": "gateway restarted after an unclean stop",
        "sms_credit": "SMS credit of {transport} is used up",
        "sms_refused": "SMS account at {transport} refused",
    },
}

#: How a resolved alert reads.
_BACK = {
    "fa": {
        "above": "{subject} {value}", "below": "{subject} {value}", "rate": "{subject} دیگر تند تغییر نمی‌کند",
        "stale": "{sensor} دوباره کار می‌کند",
        "actuator_fault": "{actuator} دوباره کار می‌کند",
        "link_down": "اینترنت وصل شد",
        "buffer": "حافظه دستگاه دوباره جا دارد",
        "clock_unsynced": "ساعت دستگاه تنظیم شد",
        "sms_credit": "{transport} دوباره پیامک می‌فرستد",
        "sms_refused": "{transport} دوباره پیامک می‌فرستد",
    },
    "en": {
        "above": "{subject} {value}", "below": "{subject} {value}", "rate": "{subject} steady again",
        "stale": "{sensor} reports again",
        "actuator_fault": "{actuator} responds again",
        "link_down": "greenhouse internet link is back",
        "buffer": "gateway storage has room again",
        "clock_unsynced": "gateway clock is set",
        "sms_credit": "SMS via {transport} works again",
        "sms_refused": "SMS via {transport} works again",
    },
}

#: What to check, by quantity and direction (+1 too high or rising, -1 too low or falling), by kind of alert, or by
#: kind of output (an actuator fault; ``{name}`` is the output): a tuple of things for «... را بررسی کنید» / "Check
#: ..." (several alerts in one message share one sentence), or a whole sentence ending with a full stop.
_CHECK: dict[str, dict[object, tuple[str, ...] | str]] = {
    "fa": {
        ("temperature", 1): ("دریچه", "فن"), ("temperature", -1): ("دریچه", "بخاری"),
        ("humidity", 1): ("دریچه", "فن"), ("humidity", -1): ("مه‌پاش",),
        ("soil_moisture", 1): ("آبیاری", "زهکشی"), ("soil_moisture", -1): ("آبیاری",),
        ("light", 1): ("سایه‌بان",), ("light", -1): ("چراغ‌ها",),
        ("co2", 1): "دریچه را باز کنید.", ("co2", -1): ("دستگاه گاز کربنیک",),
        ("pressure", 1): "هوای بیرون را زیر نظر بگیرید.", ("pressure", -1): "هوای بیرون را زیر نظر بگیرید.",
        ("flow", 1): ("لوله‌ها",), ("flow", -1): ("پمپ", "لوله‌ها"),
        ("level", 1): ("مخزن",), ("level", -1): ("آب مخزن",),
        ("dew_margin", -1): ("دریچه", "بخاری"), ("vpd", -1): ("دریچه", "بخاری"), ("vpd", 1): ("مه‌پاش",),
        "stale": ("سیم سنسور",), "link_down": ("مودم اینترنت",), "buffer": "به نصاب خبر دهید.",
        "clock_unsynced": ("اینترنت",), "unclean_restart": ("آداپتور و پریز",),
        "sms_credit": "حساب را شارژ کنید.", "sms_refused": "به نصاب خبر دهید.", None: ("گلخانه",),
        "heater": ("سوخت و برق {name}",), "fan": ("برق و تسمه {name}",), "vent": ("موتور {name}",),
        "pump": ("{name} و لوله‌ها",), "light": ("لامپ‌های {name}",), "co2": ("کپسول گاز",),
        "mister": ("آب و نازل‌ها",), "other": ("{name}",),
    },
    "en": {
        ("temperature", 1): ("vents", "fans"), ("temperature", -1): ("vents", "heater"),
        ("humidity", 1): ("vents", "fans"), ("humidity", -1): ("the misters",),
        ("soil_moisture", 1): ("irrigation", "drainage"), ("soil_moisture", -1): ("irrigation",),
        ("light", 1): ("the shade screen",), ("light", -1): ("the lamps",),
        ("co2", 1): "Open a vent.", ("co2", -1): ("the CO2 supply",),
        ("pressure", 1): "Watch the weather.", ("pressure", -1): "Watch the weather.",
        ("flow", 1): ("pipes for leaks",), ("flow", -1): ("pump", "pipes"),
        ("level", 1): ("the tank",), ("level", -1): ("the tank's water",),
        ("dew_margin", -1): ("vents", "heater"), ("vpd", -1): ("vents", "heater"), ("vpd", 1): ("the misters",),
        "stale": ("the sensor's cable",), "link_down": ("the router",), "buffer": "Tell the installer.",
        "clock_unsynced": ("the internet link",), "unclean_restart": ("the power supply",),
        "sms_credit": "Top up the SMS account.", "sms_refused": "Tell the installer.", None: ("the greenhouse",),
        "heater": ("{name} and its fuel",), "fan": ("{name} and its belt",), "vent": ("the motor of {name}",),
        "pump": ("{name} and pipes",), "light": ("the lamps of {name}",), "co2": ("the gas bottle",),
        "mister": ("water and nozzles",), "other": ("{name}",),
    },
}

_REASON = {
    "fa": {"schedule": "برنامه", "rule": "خودکار", "manual": "دستی", "remote": "از راه دور", "safety": "ایمنی"},
    "en": {"schedule": "schedule", "rule": "rule", "manual": "manual", "remote": "remote", "safety": "safety"},
}
#: Reasons worth saying for an output that is off (the others are just "off").
_OFF_REASONS = frozenset({"manual", "remote", "safety"})


# ------------------------------------------------------------------------------------------------------ pieces


def _shorten(text: str, width: int | None) -> str:
    if width is None or len(text) <= width:
        return text
    return text[: max(1, width - 1)] + "…"


def number(value: float, language: Language, signed: bool = False) -> str:
    """``42.3`` / ``۴۲٫۳``; one decimal below 100, none from 100; Persian says a negative «منفی ۲»."""
    text = f"{value:+.1f}" if signed else f"{value:.1f}"
    if abs(value) >= 100:
        text = f"{value:+.0f}" if signed else f"{value:.0f}"
    text = text.removesuffix(".0")
    if text in ("-0", "+0"):
        text = "0"
    if language != "fa":
        return text
    if text.startswith("-"):
        return "منفی " + persian_digits(text[1:])
    return persian_digits(text.removeprefix("+"))


def amount(value: float | None, unit: str, language: Language) -> str:
    """A value with its unit as the language writes it: ``۴۲٫۳°``, ``۴۵۰ پی‌پی‌ام``, ``42.3C``."""
    if value is None:
        return "?"
    if unit == "bool":
        return _LEVEL[language][value > 0.5]
    return number(value, language) + _UNIT[language].get(unit, unit)


def local_time(ts: float, style: Style, with_date: bool = True) -> str:
    """``۲۴ تیر ۱۴:۳۰`` (Jalali, Persian digits) or ``15 Jul 14:30``, in the greenhouse's time zone."""
    moment = datetime.fromtimestamp(ts, ZoneInfo(style.timezone))
    clock = f"{moment.hour:02d}:{moment.minute:02d}"
    if style.language == "fa":
        import jdatetime  # here: a daemon that sends no Persian text never loads it

        jalali = jdatetime.datetime.fromgregorian(datetime=moment)
        text = f"{jalali.day} {_JALALI_MONTHS[jalali.month - 1]} {clock}" if with_date else clock
        return to_persian_digits(text)
    return f"{moment.day} {_GREGORIAN_MONTHS[moment.month - 1]} {clock}" if with_date else clock


def _same_day(a: float, b: float, timezone: str) -> bool:
    zone = ZoneInfo(timezone)
    return datetime.fromtimestamp(a, zone).date() == datetime.fromtimestamp(b, zone).date()


def _when(ts: float, style: Style) -> str:
    """The time alone on the day of ``style.now``, else with the date."""
    return local_time(ts, style, with_date=not _same_day(ts, style.now, style.timezone))


def _code(code: str, language: Language) -> str:
    return to_persian_digits(code) if language == "fa" else code


def _joined(words: Sequence[str], language: Language) -> str:
    """``a``, ``a و b``, ``a، b و c``."""
    if len(words) <= 1:
        return "".join(words)
    sep = _WORDS[language]
    return sep["sep"].join(words[:-1]) + sep["and"] + words[-1]


def _sensor_of(fact: Fact) -> str | None:
    return fact.sensor or (fact.subject if fact.kind in ("above", "below", "rate", "stale") else None)


def _label(text: str, language: Language) -> str:
    """A name from the config as the language shows it (Persian digits in Persian)."""
    return to_persian_digits(text) if language == "fa" else text


def subject_of(fact: Fact, style: Style, width: int | None = None) -> str:
    """What a value alert is about: the rule's name, else the quantity (with its place when it needs one)."""
    if fact.label:
        return _shorten(_label(fact.label, style.language), width)
    return _shorten(style.names.of_quantity(_sensor_of(fact), fact.quantity or "", style.language), width)


def _sensor_name(fact: Fact, style: Style, width: int | None) -> str:
    sensor = _sensor_of(fact) or ""
    if sensor in style.names.quantities or style.language != "fa":
        return _shorten(style.names.of_sensor(sensor, style.language), width)
    return _shorten("سنسور", width)  # a sensor no longer in the config (an old incident)


def _actuator_name(fact: Fact, style: Style, width: int | None) -> str:
    actuator = fact.actuator or fact.subject or ""
    return _shorten(style.names.of_actuator(actuator, style.language), width)


def _value(fact: Fact, lang: Language) -> str:
    if fact.kind == "buffer" and fact.value is not None:
        return number(fact.value * 100, lang) + ("٪" if lang == "fa" else "%")
    return amount(fact.value, fact.unit, lang)


def _fields(fact: Fact, style: Style, width: int | None) -> dict[str, str]:
    lang = style.language
    minutes = number(round((fact.window or 0) / 60), lang)
    limit = "" if fact.limit is None else (amount(fact.limit, fact.unit, lang) if lang == "fa" else
                                           number(fact.limit, lang))
    subject = subject_of(fact, style, width) if fact.kind in ("above", "below", "rate") else ""
    return {
        "subject": subject + ":" if subject[-1:].isdigit() else subject,  # «بستر ۱: ۱۸٫۵٪», not «بستر ۱ ۱۸٫۵٪»
        "sensor": _sensor_name(fact, style, width) if fact.kind == "stale" else "",
        "actuator": _actuator_name(fact, style, width) if fact.kind == "actuator_fault" else "",
        "transport": _shorten(style.names.of_transport(fact.subject or "", lang), width),
        "value": _value(fact, lang), "limit": limit, "window": _WORDS[lang]["minutes"].format(n=minutes),
    }


def what(fact: Fact, style: Style, width: int | None = None, detail: bool = True) -> str:
    """The heart of the alert in a few words: ``دما ۴۲٫۳° (بالای ۴۰°)``; without ``detail``, ``دما ۴۲٫۳°``."""
    kind = fact.kind
    if kind == "rate":
        kind = "rate_up" if fact.direction >= 0 else "rate_down"
    templates = _WHAT[style.language]
    template = templates.get(kind, "{subject}") if detail else templates.get(f"{kind}_brief", templates.get(
        kind, "{subject}"))
    return template.format(**_fields(fact, style, width))


def back(fact: Fact, style: Style, width: int | None = None) -> str:
    """How a resolved alert reads: the value that cleared it, or the thing working again."""
    template = _BACK[style.language].get(fact.kind, "{subject}")
    return template.format(**_fields(fact, style, width))


def _direction(fact: Fact) -> int:
    if fact.kind == "above":
        return 1
    if fact.kind == "below":
        return -1
    return 1 if fact.direction >= 0 else -1


def checks(fact: Fact, style: Style, width: int | None = None) -> tuple[str, ...] | str:
    """What to check for one alert: the things (``("دریچه", "بخاری")``) or a whole sentence."""
    table = _CHECK[style.language]
    if fact.kind in ("above", "below", "rate"):
        found = table.get((fact.quantity, _direction(fact)), table[None])
    elif fact.kind == "actuator_fault":
        actuator = fact.actuator or fact.subject
        found = table.get(style.names.kind_of(actuator) or "other", table["other"])
        name = _shorten(style.names.of_actuator(actuator or "", style.language), width)
        found = tuple(thing.format(name=name) for thing in found) if isinstance(found, tuple) else found
    else:
        found = table.get(fact.kind, table[None])
    return found


def todo(facts: Sequence[Fact], style: Style, short: bool = False, width: int | None = None) -> str:
    """What to check or do about ``facts``, in one or two sentences: ``دریچه، بخاری و فن را بررسی کنید.``
    (``short``: «را ببینید»)."""
    words, lang = _WORDS[style.language], style.language
    things: list[str] = []
    sentences: list[str] = []
    for fact in facts:
        found = checks(fact, style, width)
        if isinstance(found, str):
            sentences += [found] if found not in sentences else []
        else:
            things += [thing for thing in found if thing not in things]
    if things:
        sentence = words["check_short" if short else "check"].format(what=_joined(things, lang))
        sentences.insert(0, sentence)
    return " ".join(sentences)


# ---------------------------------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class _Variant:
    """How wordy a rendering is: the reply hint, the long verb, the limit, and how wide names may be."""

    ack: bool
    detail: bool
    long_verb: bool
    width: int | None = None


#: From the wordiest rendering to the tersest. Names are cut (with "…") only in the last ones.
_VARIANTS = (_Variant(True, True, True), _Variant(False, True, True), _Variant(False, True, False),
             _Variant(False, False, True), _Variant(False, False, False),
             *(_Variant(False, False, False, width) for width in (24, 16, 10, 6)))
#: The renderings that keep every name whole.
_WHOLE = tuple(v for v in _VARIANTS if v.width is None)


def _fewest(renderings: Iterable[str]) -> str:
    """The first (wordiest) rendering among those with the fewest segments."""
    best, best_count = "", None
    for text in renderings:
        count = segment_count(text)
        if best_count is None or count < best_count:
            best, best_count = text, count
        if count == 1:
            break
    return best


def _late(moment: float, style: Style) -> bool:
    return style.now - moment > LATE


def _single(item: Item, style: Style, variant: _Variant) -> str:
    words, fact, lang = _WORDS[style.language], item.fact, style.language
    width = variant.width
    code = _code(fact.code, lang)
    parts = dict(gh=_shorten(style.greenhouse, width), code=code, head=words[fact.severity],
                 what=what(fact, style, width, variant.detail), back=back(fact, style, width),
                 todo=todo([fact], style, short=not variant.long_verb, width=width),
                 time=local_time(fact.fired_ts, style) if lang == "en" else _when(fact.fired_ts, style),
                 until="", since="", at="",
                 ack=words["ack"].format(code=code) if variant.ack or lang == "en" else "")
    if item.notice == "resolved":
        resolved = fact.resolved_ts or style.now
        parts.update(time=local_time(resolved, style),
                     at=words["at"].format(time=_when(resolved, style)) if _late(resolved, style) else "")
        return words["resolved"].format(**parts)
    if fact.kind in EVENT_KINDS:
        if _late(fact.fired_ts, style) or lang == "en":
            parts["at"] = words["at"].format(time=_when(fact.fired_ts, style))
        return words["event"].format(**parts).strip()
    if fact.resolved_ts is not None:  # fired and cleared before its message could go
        return words["cleared"].format(**{**parts, "until": _when(fact.resolved_ts, style)})
    if _late(fact.fired_ts, style) and (item.notice == "firing" or variant.detail):
        parts["since"] = words["since"].format(time=_when(fact.fired_ts, style))  # a reminder may leave it out
    return words[item.notice].format(**parts).strip()


def _line(item: Item, style: Style, variant: _Variant) -> str:
    words, fact, lang = _WORDS[style.language], item.fact, style.language
    resolved = item.notice == "resolved"
    ts = (fact.resolved_ts or style.now) if resolved else fact.fired_ts
    parts = dict(code=_code(fact.code, lang), head=words[fact.severity], short=_SHORT[lang][fact.severity],
                 what=what(fact, style, variant.width, variant.detail), back=back(fact, style, variant.width),
                 when=_when(ts, style), time=_when(fact.fired_ts, style), until="", since="", at="")
    if _late(ts, style):
        parts["at" if resolved else "since"] = words["at" if resolved else "since"].format(time=_when(ts, style))
    if fact.kind in EVENT_KINDS and not resolved:
        return words["line_event"].format(**parts)
    if resolved:
        return words["line_resolved"].format(**parts)
    if fact.resolved_ts is not None:
        return words["line_cleared"].format(**{**parts, "until": _when(fact.resolved_ts, style)})
    line = words[f"line_{item.notice}"].format(**parts)
    if lang == "fa" and fact.severity == "warning" and item.notice == "firing":
        line = line.replace(f" {parts['short']}:", ":", 1)  # «۱۴: ...»: in a list of alerts a warning needs no word
    return line + words["line_acked"] if fact.acked else line


def order(items: Sequence[Item]) -> list[Item]:
    """What still holds before what is resolved; critical first; then by firing time and code."""
    return sorted(items, key=lambda i: (i.notice == "resolved", i.fact.severity != "critical", i.fact.fired_ts,
                                        int(i.fact.code) if i.fact.code.isdigit() else 0))


def _wants_ack(item: Item) -> bool:
    fact = item.fact
    return item.notice != "resolved" and fact.resolved_ts is None and not fact.acked and fact.kind not in EVENT_KINDS


def _many(items: Sequence[Item], style: Style, header: Header, variant: _Variant, shown: int) -> str:
    words, lang = _WORDS[style.language], style.language
    gh = _shorten(style.greenhouse, variant.width)
    title = words["many" if header == "alert" else header].format(
        gh=gh, n=number(len(items), lang), s="" if len(items) == 1 else "s")
    lines = [title, *(_line(item, style, variant) for item in items[:shown])]
    if shown < len(items):
        lines.append(words["more"].format(n=number(len(items) - shown, lang)))
    todos = todo([i.fact for i in items[:shown] if i.notice != "resolved" and i.fact.resolved_ts is None], style,
                 short=not variant.long_verb, width=variant.width)
    if todos:
        lines.append(todos)
    if any(_wants_ack(i) for i in items[:shown]) and (variant.ack or lang == "en"):
        lines.append(words["many_ack"])
    return "\n".join(lines)


def compose(items: Sequence[Item], style: Style, header: Header = "alert") -> str:
    """The text of one SMS about ``items`` (one or more notices to the same person), in as few segments as it
    fits: one alert alone in one segment when any rendering fits one (never more than :data:`CRITICAL_SEGMENTS`),
    several within ``style.max_segments`` (past it, the last ones give way to "N more")."""
    if not items:
        raise ValueError("a message needs at least one item")
    items = order(items)
    if len(items) == 1 and header == "alert":
        return _fewest(_single(items[0], style, v) for v in _VARIANTS)
    text = ""
    for shown in range(len(items), 0, -1):
        text = _fewest(_many(items, style, header, v, shown) for v in _WHOLE)
        if segment_count(text) > style.max_segments:
            text = _fewest(_many(items, style, header, v, shown) for v in _VARIANTS)
        if segment_count(text) <= style.max_segments:
            return text
    return text


# ---------------------------------------------------------------------------------------------- status reply


@dataclass(frozen=True, slots=True)
class Reading:
    """One quantity for the status reply: its fresh value and age, or None when there is no fresh good reading."""

    sensor: str
    quantity: str
    value: float | None
    unit: str = ""
    age: float | None = None  # seconds since the value was read
    since: float | None = None  # no fresh value: when the last good one was read, if ever


@dataclass(frozen=True, slots=True)
class Output:
    """One output for the status reply: its value now (0 off .. 1 on) and the reason it last switched."""

    actuator: str
    value: float
    reason: str | None = None  # schedule:<id>, rule:<id>, manual:<who>, remote:<id>, safety:<what>, startup, ...


def age_text(age: float, language: Language) -> str:
    """``الان`` (under a minute), ``۳ دقیقه پیش``, ``۲ ساعت پیش``, ``۱ روز پیش``."""
    words = _WORDS[language]
    age = max(0.0, age)
    if age < 60:
        return words["now"]
    if age < 3600:
        return words["minutes_ago"].format(n=number(int(age // 60), language))
    if age < 86400:
        return words["hours_ago"].format(n=number(int(age // 3600), language))
    return words["days_ago"].format(n=number(int(age // 86400), language))


def _reading_lines(readings: Sequence[Reading], style: Style, width: int | None) -> list[str]:
    """The values that are fresh, one line per age (``الان: دما ۱۳٫۴°، رطوبت هوا ۷۸٪``), then one line naming
    what has no fresh data, each with when its last good value was read (``بدون داده: رطوبت خاک بستر ۱ از ۰۱:۴۵``)."""
    words, lang, names = _WORDS[style.language], style.language, style.names
    by_age: dict[str, list[str]] = {}
    missing: list[str] = []
    for r in readings:
        label = _shorten(names.of_quantity(r.sensor, r.quantity, lang), width)
        if r.value is None:
            since = words["since_time"].format(time=_when(r.since, style)) if r.since is not None else ""
            missing.append(label + since)
            continue
        value = amount(r.value, r.unit, lang)
        text = f"{label}: {value}" if label[-1:].isdigit() else f"{label} {value}"  # «بستر ۲: ۳۱٪», not «بستر ۲ ۳۱٪»
        by_age.setdefault(age_text(r.age or 0.0, lang), []).append(text)
    lines = [f"{age}: {words['sep'].join(values)}" for age, values in by_age.items()]
    if missing:
        lines.append(words["no_data"].format(what=words["sep"].join(missing)))
    return lines


def _reason(reason: str | None, language: Language) -> str | None:
    if not reason:
        return None
    return _REASON[language].get(reason.split(":", 1)[0])


def _output_lines(outputs: Sequence[Output], style: Style, width: int | None, rest: bool) -> list[str]:
    """``روشن: بخاری (خودکار)، چراغ (برنامه)`` then ``خاموش: ...`` (vents ``باز`` / ``بسته``); with ``rest``, the
    outputs that are off for no reason worth telling become ``بقیه خاموش``."""
    words, lang, names = _WORDS[style.language], style.language, style.names
    groups: dict[str, list[str]] = {key: [] for key in ("on", "open", "off", "closed")}
    quiet: list[Output] = []
    for out in outputs:
        vent = names.kind_of(out.actuator) == "vent"
        on = out.value > 0
        label = _shorten(names.of_actuator(out.actuator, lang), width)
        if on and out.value < 1:
            label += " " + number(round(out.value * 100), lang) + ("٪" if lang == "fa" else "%")
        why = _reason(out.reason, lang)
        if not on and (out.reason or "").split(":", 1)[0] not in _OFF_REASONS:
            why = None
            quiet.append(out)
            if rest:
                continue
        state = ("open" if vent else "on") if on else ("closed" if vent else "off")
        groups[state].append(f"{label} ({why})" if why else label)
    lines = [f"{words[state]}: {words['sep'].join(items)}" for state, items in groups.items() if items]
    if rest and quiet:
        vent = any(names.kind_of(o.actuator) == "vent" for o in quiet)
        everything = len(quiet) == len(outputs)
        lines.append(words[("all_off" if everything else "rest_off") + ("_vent" if vent else "")])
    return lines


def _topic(fact: Fact, style: Style, width: int | None) -> str:
    """A word or two naming what an open alert is about, for the status reply's list."""
    if fact.kind in ("above", "below", "rate"):
        return subject_of(fact, style, width)
    if fact.kind == "stale":
        return _sensor_name(fact, style, width)
    if fact.kind == "actuator_fault":
        return _actuator_name(fact, style, width)
    return _shorten(what(replace(fact, subject=fact.subject or ""), style, width, detail=False), width)


def compose_status(readings: Sequence[Reading], outputs: Sequence[Output], active: Sequence[Fact],
                   style: Style) -> str:
    """The answer to «وضعیت» / ``STATUS``: each value with its age (``بدون داده`` when there is no fresh one),
    the outputs and why they are on, and the alerts still open and unacknowledged; in as few segments as it fits
    with whole names, within ``style.max_segments`` (past it, names are cut, then the last values give way to
    "N more")."""
    words, lang = _WORDS[style.language], style.language

    def render(variant: _Variant, rest: bool, shown: int) -> str:
        head = words["status"].format(gh=_shorten(style.greenhouse, variant.width),
                                      time=local_time(style.now, style, with_date=False))
        values = _reading_lines(readings[:shown], style, variant.width)
        if shown < len(readings):
            values.append(words["more"].format(n=number(len(readings) - shown, lang)))
        if active:
            codes = [_code(f.code, lang) + (f" ({_topic(f, style, variant.width)})" if variant.ack else "")
                     for f in active]
            tail = words["open_alerts"].format(codes=words["sep"].join(codes))
        else:
            tail = words["no_alerts"]
        return "\n".join([head, *values, *_output_lines(outputs, style, variant.width, rest), tail])

    text = ""
    for shown in range(len(readings), -1, -1):
        text = _fewest(render(v, rest, shown) for rest in (False, True) for v in _WHOLE if not v.detail or v.ack)
        if segment_count(text) > style.max_segments:
            text = _fewest(render(v, True, shown) for v in _VARIANTS if v.width is not None)
        if segment_count(text) <= style.max_segments:
            return text
    return text


# ------------------------------------------------------------------------------------------------ other replies


def _fit(render: Callable[[int | None], str]) -> str:
    return _fewest(render(v.width) for v in _VARIANTS if not v.ack and not v.detail and not v.long_verb)


def compose_ack(codes: Sequence[str], style: Style) -> str:
    """The confirmation of an acknowledgement: «گلخانه حسن: هشدار ۱۳ تأیید شد؛ دیگر تکرار نمی‌شود.»"""
    words, lang = _WORDS[style.language], style.language
    key = "acked_one" if len(codes) == 1 else "acked_many"
    shown = _joined([_code(c, lang) for c in codes], lang)
    return _fit(lambda w: words[key].format(gh=_shorten(style.greenhouse, w), codes=shown))


HelpReason = Literal["help", "not_open", "already"]


def compose_help(reason: HelpReason, style: Style, codes: Sequence[str] = (), open_codes: Sequence[str] = ()) -> str:
    """The one-line answer to any other text: what to send (``help``), that a code is not open (with the open
    ones), or that it was acknowledged already."""
    words, lang = _WORDS[style.language], style.language
    if open_codes:
        shown = words["open_alerts"].format(codes=words["sep"].join(_code(c, lang) for c in open_codes)) + "."
    else:
        shown = words["no_alerts"]
    asked = _joined([_code(c, lang) for c in codes], lang)
    return _fit(lambda w: words[reason].format(gh=_shorten(style.greenhouse, w), codes=asked, open=shown))


def compose_test(style: Style) -> str:
    """``edge sms test``: a message that says where it comes from and that alerts will reach this number."""
    return _fit(lambda w: _WORDS[style.language]["test"].format(gh=_shorten(style.greenhouse, w),
                                                                time=local_time(style.now, style)))


_STATUS_WORDS = re.compile(r"^\W*(وضعیت|وضعيت|گزارش|status)(\W|\d|$)", re.IGNORECASE)
_CODE = re.compile(r"(?<!\d)\d{1,4}(?!\d)")


def parse_reply(text: str) -> tuple[Literal["ack", "status", "unknown"], list[str]]:
    """``"۱۷"`` / ``"ok 17"`` -> ``("ack", ["17"])``; ``"وضعیت"`` / ``"STATUS"`` -> ``("status", [])``; anything
    else ``("unknown", [])``. Digits may be Persian, Arabic-Indic or Latin; a longer run of digits (a phone
    number) is no code."""
    if _STATUS_WORDS.match(text):
        return "status", []
    codes = [str(int(c)) for c in _CODE.findall(normalize_digits(text))]
    return ("ack", list(dict.fromkeys(codes))) if codes else ("unknown", [])
