"""The greenhouse page: what it shows (:func:`gather`, from the status report, the buffer's charts and the active
alerts) and how (:func:`render`, server-side HTML with inline SVG sparklines; Persian first, English on request).

Persian: ``<html lang="fa" dir="rtl">``, Persian digits, Jalali dates in the greenhouse's time zone, the display
names of the config (``name:``) or the Persian words the SMS alerts use (``edge.gateway.alerts.names``). A value
older than ``web.stale_after`` sampling intervals, or never read, or a failed read, shows «بدون داده» (no data): the
page never passes an old number off as the present.

Charts: the last 24 h of each quantity in 5-minute means (``Buffer.series``), one SVG path whose segments stop
where a bucket has no reading, so a gap stays visible as a gap.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from edge.gateway.alerts.names import Names, names_of, persian_digits
from edge.gateway.status import StatusReport

DAY = 86400.0
STEP = 300.0  # s per chart bucket: 288 buckets a day
BUCKETS = int(DAY / STEP)
#: The durations a manual switch offers (seconds); one past an output's max_manual is refused, with the reason.
DURATIONS = (300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0)
ASSET_VERSION = "3"

JALALI_MONTHS = ("فروردین", "اردیبهشت", "خرداد", "تیر", "مرداد", "شهریور", "مهر", "آبان", "آذر", "دی", "بهمن",
                 "اسفند")
GREGORIAN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

TEXT: dict[str, dict[str, str]] = {
    "fa": {
        "no_data": "بدون داده", "sensors": "حسگرها", "outputs": "خروجی‌ها", "alerts": "هشدارها",
        "uplink": "ارتباط با مرکز", "no_alerts": "هشدار فعالی نیست", "on": "روشن", "off": "خاموش",
        "auto": "خودکار", "left": "مانده", "ago": "پیش", "now": "همین حالا", "login": "ورود", "logout": "خروج",
        "pin": "رمز", "ack": "دیدم", "acked": "دیده شد", "backlog": "در صف ارسال", "daemon_stopped":
        "سامانه کنترل خاموش است: مقادیر آخرین داده‌های ذخیره‌شده‌اند و فرمان‌ها اجرا نمی‌شوند.",
        "no_buffer": "هنوز داده‌ای ذخیره نشده است (سامانه کنترل اجرا نشده).", "for": "مدت",
        "critical": "فوری", "warning": "هشدار", "since": "از", "language": "English", "lang_code": "en",
        "title": "گلخانه", "reason_schedule": "برنامه", "reason_rule": "خودکار", "reason_manual": "دستی",
        "reason_remote": "از راه دور", "reason_safety": "ایمنی", "reason_never switched": "هنوز روشن نشده",
        "reason_shutdown": "توقف سامانه", "reason_auto": "خودکار", "link_up": "وصل", "link_down": "قطع",
        "link_connecting": "در حال اتصال", "link_stalled": "گیر کرده", "link_daemon not running": "سامانه خاموش",
        "link_offline (no broker configured)": "بدون مرکز (فقط ذخیره محلی)", "link_unknown": "نامعلوم",
        "readings": "خوانش", "oldest": "قدیمی‌ترین", "minute": "دقیقه", "hour": "ساعت", "second": "ثانیه",
        "day": "روز", "done": "انجام شد", "code": "کد", "refresh": "به‌روزرسانی",
    },
    "en": {
        "no_data": "no data", "sensors": "Sensors", "outputs": "Outputs", "alerts": "Alerts", "uplink": "Uplink",
        "no_alerts": "no active alerts", "on": "on", "off": "off", "auto": "auto", "left": "left", "ago": "ago",
        "now": "just now", "login": "Log in", "logout": "Log out", "pin": "PIN", "ack": "Acknowledge",
        "acked": "acknowledged", "backlog": "waiting to be sent",
        "daemon_stopped": "The control daemon is stopped: values are the last stored, commands cannot be carried out.",
        "no_buffer": "Nothing stored yet (the control daemon has not run).", "for": "for",
        "critical": "critical", "warning": "warning", "since": "since", "language": "فارسی", "lang_code": "fa",
        "title": "Greenhouse", "reason_schedule": "schedule", "reason_rule": "rule", "reason_manual": "manual",
        "reason_remote": "remote", "reason_safety": "safety", "reason_never switched": "never switched",
        "reason_shutdown": "shutdown", "reason_auto": "auto", "readings": "readings", "oldest": "oldest",
        "minute": "min", "hour": "h", "second": "s", "day": "d", "done": "done", "code": "code",
        "refresh": "Refresh",
    },
}

UNIT_TEXT = {
    "fa": {"°C": "°C", "%": "٪", "lx": "لوکس", "ppm": "ppm", "hPa": "hPa", "l/min": "لیتر/دقیقه", "bool": ""},
    "en": {"bool": ""},
}


# ----------------------------------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class QuantityRow:
    sensor: str
    quantity: str
    value: float | None  # None: «بدون داده»
    unit: str
    age_s: float | None
    stale: bool
    reason: str | None  # why there is no value (a failed read), when there is none
    chart: dict[int, float]


@dataclass(frozen=True)
class OutputRow:
    actuator: str
    state: str
    value: float
    reason: str
    remaining_s: float | None
    pwm: bool


@dataclass(frozen=True)
class AlertRow:
    code: str
    severity: str
    rule_id: str
    fired_ts: float
    acked_by: str | None
    row: dict[str, Any] = field(default_factory=dict, compare=False)  # the incident as stored (its fact)


@dataclass(frozen=True)
class Page:
    now: float
    timezone: str
    greenhouse_fa: str
    greenhouse_en: str
    daemon: str | None  # None: no buffer yet
    link: str = "unknown"
    pending: int = 0
    oldest_pending_age_s: float | None = None
    quantities: list[QuantityRow] = field(default_factory=list)
    outputs: list[OutputRow] = field(default_factory=list)
    alerts: list[AlertRow] = field(default_factory=list)


def gather(config: Any, now: float | None = None, wall=time.time) -> Page:
    """Everything the page shows, read beside the running daemon (reader connections; nothing is written)."""
    from edge.gateway.alerts.store import Store
    from edge.gateway.buffer import Buffer, BufferUnavailable
    from edge.gateway.status import read_status

    names = names_of(config)
    zone = config.gateway.timezone
    try:
        report = read_status(config, now, wall=wall)
    except BufferUnavailable:  # the daemon never ran here: every quantity without data, no output state known
        return Page(now if now is not None else wall(), zone, names.of_greenhouse("fa"), names.of_greenhouse("en"),
                    None, quantities=[QuantityRow(s.id, q, None, "", None, True, None, {})
                                      for s in config.sensors for q in s.quantities()])
    now = now if now is not None else wall()
    since = now - DAY
    buffer = Buffer.reader(config.buffer.path)
    try:
        series = buffer.series((s.id for s in config.sensors), since, STEP)
        incidents = Store(buffer, migrate=False).incidents(active_only=True)
    finally:
        buffer.close()
    return Page(
        now=now, timezone=zone, greenhouse_fa=names.of_greenhouse("fa"), greenhouse_en=names.of_greenhouse("en"),
        daemon=report.daemon, link=report.sync.link, pending=report.buffer.pending,
        oldest_pending_age_s=report.buffer.oldest_pending_age_s,
        quantities=_quantities(config, report, names, series, now),
        outputs=[OutputRow(a.id, view["state"], view["value"], view["reason"], view["remaining_s"],
                           a.type == "pwm")
                 for a in config.actuators for view in (report.actuators[a.id],)],
        alerts=[AlertRow(str(r["code"]), r["severity"], r["rule_id"], r["fired_ts"], r["acked_by"], r)
                for r in incidents],
    )


def _quantities(config: Any, report: StatusReport, names: Names, series: dict[tuple[str, str], dict[int, float]],
                now: float) -> list[QuantityRow]:
    stale_after = config.web.stale_after
    rows = []
    for sensor in config.sensors:
        status = report.sensors[sensor.id]
        for quantity in sensor.quantities():
            latest = status.quantities.get(quantity)
            age = status.age_s
            stale = latest is None or age is None or age > stale_after * sensor.interval
            failed = latest is not None and latest.value is None
            unit = latest.unit if latest is not None else ""
            rows.append(QuantityRow(
                sensor.id, quantity, None if stale or failed else latest.value, unit, age, stale,
                latest.reason if failed else None, series.get((sensor.id, quantity), {})))
    return rows


# ----------------------------------------------------------------------------------------------------- rendering


def digits(text: str, lang: str) -> str:
    return persian_digits(text) if lang == "fa" else text


def number(value: float, lang: str) -> str:
    """``-2.5`` -> ``−۲٫۵``; one decimal below 100, none from 100, thousands grouped (``۲۹٬۹۱۹``)."""
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}".removesuffix(".0")
    if text == "-0":
        text = "0"
    if lang == "fa":
        text = text.replace(",", "٬")
        return ("\u2212" + persian_digits(text[1:])) if text.startswith("-") else persian_digits(text)
    return text


def amount(value: float, unit: str, lang: str) -> str:
    shown = UNIT_TEXT[lang].get(unit, unit)
    if unit == "bool":
        return TEXT[lang]["on"] if value > 0.5 else TEXT[lang]["off"]
    return f"{number(value, lang)}\u00a0{shown}" if shown not in ("%", "٪", "°C") else f"{number(value, lang)}{shown}"


def span(seconds: float, lang: str) -> str:
    """``۱۰ دقیقه`` / ``10 min``: the largest unit, rounded down."""
    t = TEXT[lang]
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            return f"{digits(str(int(seconds // size)), lang)} {t[unit]}"
    return f"{digits(str(int(max(0, seconds))), lang)} {t['second']}"


def ago(seconds: float | None, lang: str) -> str:
    if seconds is None:
        return ""
    if seconds < 2:
        return TEXT[lang]["now"]
    return f"{span(seconds, lang)} {TEXT[lang]['ago']}"


def moment(ts: float, zone: str, lang: str) -> str:
    """``۱۵ آذر ۱۴۰۵، ۱۳:۵۲`` (Jalali) / ``6 Dec 2026 13:52``, in the greenhouse's time zone."""
    import jdatetime

    local = datetime.fromtimestamp(ts, ZoneInfo(zone))
    clock = f"{local.hour:02d}:{local.minute:02d}"
    if lang == "fa":
        j = jdatetime.datetime.fromgregorian(datetime=local)
        return persian_digits(f"{j.day} {JALALI_MONTHS[j.month - 1]} {j.year}، {clock}")
    return f"{local.day} {GREGORIAN_MONTHS[local.month - 1]} {local.year} {clock}"


def reason_text(reason: str, lang: str) -> str:
    t = TEXT[lang]
    kind = reason.split(":", 1)[0]
    if lang == "en":
        return reason
    return t.get(f"reason_{kind}", t.get(f"reason_{reason}", kind))


def sparkline(points: dict[int, float], label: str) -> str:
    """An inline SVG of the last 24 h: x is the bucket (oldest left), y spans the values' range. A missing bucket
    ends a segment, so gaps stay open; a lone bucket is a dot."""
    width, height, pad = BUCKETS, 40.0, 3.0
    if not points:
        return (f'<svg class="spark" viewBox="0 0 {width} {height:.0f}" preserveAspectRatio="none" role="img" '
                f'aria-label="{html.escape(label)}"></svg>')
    low, high = min(points.values()), max(points.values())
    spread = (high - low) or 1.0

    def y(value: float) -> float:
        return height - pad - (value - low) / spread * (height - 2 * pad) if high != low else height / 2

    parts, previous = [], None
    for bucket in sorted(points):
        if not 0 <= bucket < BUCKETS:
            continue
        x = bucket + 0.5
        if previous is not None and bucket == previous + 1:
            parts.append(f"L{x:.1f} {y(points[bucket]):.1f}")
        else:
            parts.append(f"M{x:.1f} {y(points[bucket]):.1f}")
        previous = bucket
    # a lone point: a zero-length segment of its own path, drawn as a round dot
    path, dots = [], []
    for i, part in enumerate(parts):
        lone = part.startswith("M") and (i + 1 == len(parts) or parts[i + 1].startswith("M"))
        (dots if lone else path).append(part + (" l0.01 0" if lone else ""))
    shapes = (f'<path d="{" ".join(path)}"/>' if path else "") + \
        (f'<path class="dot" d="{" ".join(dots)}"/>' if dots else "")
    return (f'<svg class="spark" viewBox="0 0 {width} {height:.0f}" preserveAspectRatio="none" role="img" '
            f'aria-label="{html.escape(label)}">{shapes}</svg>')


def quantity_label(config: Any, names: Names, sensor: str, quantity: str, lang: str) -> str:
    """Persian: as the SMS names it («رطوبت خاک بستر ۱»). English: the quantity, with the sensor's name (or id) only
    when several sensors measure it («air temperature» would repeat what «temperature» says)."""
    if lang == "fa":
        return names.of_quantity(sensor, quantity, lang)
    from edge.gateway.alerts.names import QUANTITY_EN

    word = QUANTITY_EN.get(quantity, quantity)
    peers = [s.id for s in config.sensors if quantity in s.quantities()]
    if len(peers) < 2:
        return word[:1].upper() + word[1:]
    name = next((s.name for s in config.sensors if s.id == sensor), None)
    return f"{name if name and name.isascii() else sensor}: {word}"


def alert_text(alert: AlertRow, names: Names, page: Page, lang: str) -> str:
    """What the alert is about, as its SMS says it («دما ۴۲٫۳° (بالای ۴۰°)»); the rule's id if it cannot be told."""
    import json

    from edge.gateway.alerts.messages import Fact, Style, what

    row = alert.row
    try:
        extra = json.loads(row.get("fact") or "{}")
        fact = Fact(code=alert.code, severity=alert.severity, kind=row["kind"], fired_ts=alert.fired_ts,
                    label=extra.get("label"), subject=extra.get("subject"), quantity=extra.get("quantity"),
                    value=row.get("value"), unit=extra.get("unit") or "", limit=extra.get("limit"),
                    window=extra.get("window"), sensor=extra.get("sensor"), actuator=extra.get("actuator"),
                    direction=extra.get("direction") or 1)
        style = Style(lang, page.greenhouse_fa if lang == "fa" else page.greenhouse_en,  # type: ignore[arg-type]
                      page.timezone, page.now, names=names)
        return what(fact, style)
    except (KeyError, TypeError, ValueError, AttributeError):
        return alert.rule_id


@dataclass(frozen=True)
class Viewer:
    """Who looks: the language, the session's CSRF token (None: not logged in), the login form's token, a notice
    to show (the outcome of the last form), and whether the notice is an error."""

    lang: str = "fa"
    csrf: str | None = None
    login_csrf: str = ""
    notice: str | None = None
    error: bool = False


def render(page: Page, config: Any, viewer: Viewer) -> str:
    lang = viewer.lang
    t = TEXT[lang]
    names = names_of(config)
    e = html.escape
    greenhouse = page.greenhouse_fa if lang == "fa" else page.greenhouse_en
    other = t["lang_code"]
    out = [f'<!doctype html><html lang="{lang}" dir="{"rtl" if lang == "fa" else "ltr"}"><head>'
           '<meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
           f'<title>{e(greenhouse)}</title><link rel="stylesheet" href="/static/style.css?v={ASSET_VERSION}">'
           f'<script src="/static/app.js?v={ASSET_VERSION}" defer></script></head><body>',
           f'<header><h1>{e(greenhouse)}</h1><p class="now" id="now">{e(moment(page.now, page.timezone, lang))}</p>'
           f'<nav><a id="lang" href="/?lang={other}" hreflang="{other}">{t["language"]}</a> '
           f'<a href="/" id="refresh">{t["refresh"]}</a></nav></header>']
    if viewer.notice:
        out.append(f'<p id="notice" class="{"bad" if viewer.error else "good"}" role="status">'
                   f'{e(viewer.notice)}</p>')
    if page.daemon is None:
        out.append(f'<p id="daemon" class="bad">{t["no_buffer"]}</p>')
    elif page.daemon != "running":
        out.append(f'<p id="daemon" class="bad">{t["daemon_stopped"]}</p>')

    # sensors
    out.append(f'<section id="sensors"><h2>{t["sensors"]}</h2><ul class="q">')
    for row in page.quantities:
        label = quantity_label(config, names, row.sensor, row.quantity, lang)
        if row.value is None:
            value = f'<span class="nodata">{t["no_data"]}</span>'
        else:
            value = e(amount(row.value, row.unit, lang))
        age = ago(row.age_s, lang)
        out.append(f'<li id="q-{e(row.sensor)}-{e(row.quantity)}" data-nodata="{str(row.value is None).lower()}">'
                   f'<span class="name">{e(label)}</span><b class="value">{value}</b>'
                   f'<small class="age">{e(age)}</small>{sparkline(row.chart, label)}</li>')
    out.append("</ul></section>")

    # outputs
    logged_in = viewer.csrf is not None
    out.append(f'<section id="outputs"><h2>{t["outputs"]}</h2><ul class="o">')
    for row in page.outputs:
        label = names.of_actuator(row.actuator, lang)
        state = t[row.state] + (f" {number(row.value * 100, lang)}{'٪' if lang == 'fa' else '%'}"
                                if row.pwm and 0 < row.value < 1 else "")
        left = (f' · {span(row.remaining_s, lang)} {t["left"]}' if row.remaining_s else "")
        out.append(f'<li id="o-{e(row.actuator)}" data-state="{row.state}"><span class="name">{e(label)}</span>'
                   f'<b class="state {row.state}">{e(state)}</b>'
                   f'<small class="why">{e(reason_text(row.reason, lang))}{e(left)}</small>')
        if logged_in:
            options = "".join(f'<option value="{int(d)}"{" selected" if d == 1800.0 else ""}>'
                              f'{e(span(d, lang))}</option>' for d in DURATIONS)
            out.append(f'<form method="post" action="/actuate" class="act">'
                       f'<input type="hidden" name="csrf" value="{e(viewer.csrf or "")}">'
                       f'<input type="hidden" name="actuator" value="{e(row.actuator)}">'
                       f'<select name="for" aria-label="{t["for"]}">{options}</select>'
                       f'<button name="action" value="on">{t["on"]}</button>'
                       f'<button name="action" value="off">{t["off"]}</button>'
                       f'<button name="action" value="auto">{t["auto"]}</button></form>')
        out.append("</li>")
    out.append("</ul></section>")

    # alerts
    out.append(f'<section id="alerts"><h2>{t["alerts"]}</h2>')
    if not page.alerts:
        out.append(f'<p class="none">{t["no_alerts"]}</p>')
    else:
        out.append('<ul class="a">')
        for alert in page.alerts:
            fired = moment(alert.fired_ts, page.timezone, lang)
            head = (f'<b class="{e(alert.severity)}">{e(t.get(alert.severity, alert.severity))}</b>'
                    f'<span class="what">{e(alert_text(alert, names, page, lang))}</span>'
                    f'<small class="when">{t["code"]} {e(digits(alert.code, lang))} · {e(fired)}</small>')
            out.append(f'<li id="a-{e(alert.code)}">{head}')
            if alert.acked_by:
                out.append(f' <small class="acked">{t["acked"]}</small>')
            elif logged_in:
                out.append(f'<form method="post" action="/ack" class="ack">'
                           f'<input type="hidden" name="csrf" value="{e(viewer.csrf or "")}">'
                           f'<input type="hidden" name="code" value="{e(alert.code)}">'
                           f'<button>{t["ack"]}</button></form>')
            out.append("</li>")
        out.append("</ul>")
    out.append("</section>")

    # uplink
    link = t.get(f"link_{page.link}", page.link) if lang == "fa" else page.link
    oldest = (f' · {t["oldest"]} {ago(page.oldest_pending_age_s, lang)}' if page.pending else "")
    out.append(f'<section id="uplink"><h2>{t["uplink"]}</h2><p><b id="link">{e(link)}</b> · '
               f'<span id="backlog">{e(digits(f"{page.pending:,}".replace(",", "٬" if lang == "fa" else ","), lang))}'
               f' {t["readings"]} {t["backlog"]}{e(oldest)}</span></p></section>')

    # login / logout
    if logged_in:
        out.append(f'<form method="post" action="/logout" id="logout"><input type="hidden" name="csrf" '
                   f'value="{e(viewer.csrf or "")}"><button>{t["logout"]}</button></form>')
    else:
        kind = "password" if config.web.password_file is not None else "pin"
        mode = (' inputmode="numeric" autocomplete="one-time-code"' if kind == "pin"
                else ' autocomplete="current-password"')
        out.append(f'<form method="post" action="/login" id="login"><input type="hidden" name="csrf" '
                   f'value="{e(viewer.login_csrf)}"><label>{t["pin"]} <input type="password" name="secret" '
                   f'required maxlength="128"{mode}></label><button>{t["login"]}</button></form>')
    out.append("</body></html>")
    return "".join(out)


def message_page(status: int, text: str, lang: str = "fa") -> str:
    """A short page for an answer that is not the greenhouse page (4xx, 5xx): what is wrong, and the way back."""
    back = "بازگشت" if lang == "fa" else "Back"
    return (f'<!doctype html><html lang="{lang}" dir="{"rtl" if lang == "fa" else "ltr"}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{status}</title>'
            f'<link rel="stylesheet" href="/static/style.css?v={ASSET_VERSION}"></head><body>'
            f'<p id="notice" class="bad" role="alert">{html.escape(text)}</p><p><a href="/">{back}</a></p>'
            f'</body></html>')
