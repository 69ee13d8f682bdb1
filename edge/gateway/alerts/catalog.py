"""Every kind of SMS the gateway sends, with an example and its segment count: the table in ``docs/alerts.md``.

The examples are composed by the real composer (:mod:`.messages`) for the demo greenhouse's names
(``config/demo.yaml``) on a December night, so the table cannot drift from the code: ``tests/test_docs.py`` fails
when the docs' table differs from :func:`markdown`, and ``python -m edge.gateway.alerts.catalog --write`` rewrites it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from edge.gateway.alerts.messages import (Fact, Item, Output, Reading, Style, compose, compose_ack, compose_help,
                                          compose_status, compose_test)
from edge.gateway.alerts.names import Names
from edge.gateway.alerts.segments import measure

#: 15 Azar 1405, 02:10 in Khorramabad: a December night.
NIGHT = datetime.fromisoformat("2026-12-06T02:10:00+03:30").timestamp()
MINUTE = 60.0
BEGIN, END = "<!-- sms-catalog:begin -->", "<!-- sms-catalog:end -->"


def demo_names() -> Names:
    """The names of the demo greenhouse (``config/demo.yaml``)."""
    from edge.gateway.alerts.names import names_of
    from edge.gateway.config import load_config

    return names_of(load_config(None))


@dataclass(frozen=True)
class Example:
    kind: str  # what the message is, in the docs' words
    text: str

    @property
    def segments(self) -> int:
        return measure(self.text).segments

    @property
    def characters(self) -> int:
        return measure(self.text).units


def _fact(code: str, kind: str, severity: str = "warning", **extra) -> Fact:
    return Fact(code=code, severity=severity, kind=kind, fired_ts=NIGHT, **extra)  # type: ignore[arg-type]


def examples(names: Names | None = None, language: str = "fa") -> Iterator[Example]:
    """One example of every message kind, as the demo greenhouse would send it."""
    names = names or demo_names()
    style = Style(language, names.of_greenhouse(language), "Asia/Tehran", NIGHT, 4, names)  # type: ignore[arg-type]
    frost = _fact("13", "below", "critical", label=None, sensor="air", subject="air", quantity="temperature",
                  value=3.2, unit="°C", limit=5.0)
    humid = _fact("14", "above", sensor="air", subject="air", quantity="humidity", value=93.0, unit="%", limit=90.0)
    dry = _fact("15", "below", sensor="soil-bed-1", subject="soil-bed-1", quantity="soil_moisture", value=18.5,
                unit="%", limit=20.0)
    rise = _fact("16", "rate", sensor="air", subject="air", quantity="temperature", value=6.0, unit="°C",
                 limit=5.0, window=600.0)
    stale = _fact("17", "stale", sensor="soil-bed-1", subject="soil-bed-1")
    fault = _fact("18", "actuator_fault", actuator="heater-1", subject="heater-1", sensor="air",
                  quantity="temperature", unit="°C")
    one = lambda notice, fact, at=NIGHT: compose([Item(notice, fact)], replace(style, now=at))  # noqa: E731

    yield Example("critical, a value below its limit", one("firing", frost))
    yield Example("warning, a value above its limit", one("firing", humid))
    yield Example("warning, soil too dry (two sensors of one quantity: the place is named)", one("firing", dry))
    yield Example("warning, a fast rise", one("firing", rise))
    yield Example("warning, a sensor without data", one("firing", stale))
    yield Example("warning, an output that does not respond", one("firing", fault))
    yield Example("warning, internet down", one("firing", _fact("19", "link_down")))
    yield Example("warning, storage filling", one("firing", _fact("20", "buffer", value=0.92, limit=0.9)))
    yield Example("warning, clock not set", one("firing", _fact("21", "clock_unsynced")))
    yield Example("warning, power cut (an event: nothing to acknowledge)",
                  one("firing", _fact("22", "unclean_restart")))
    yield Example("warning, SMS credit used up", one("firing", _fact("23", "sms_credit", subject="kavenegar")))
    yield Example("warning, SMS account refused", one("firing", _fact("24", "sms_refused", subject="kavenegar")))
    yield Example("warning sent late (a quiet or capped hour): says since when",
                  one("firing", humid, NIGHT + 40 * MINUTE))
    yield Example("reminder of an unacknowledged critical", one("repeat", frost, NIGHT + 15 * MINUTE))
    yield Example("escalation to the next contact", one("escalation", frost, NIGHT + 30 * MINUTE))
    yield Example("resolved, with the value that cleared it",
                  one("resolved", replace(frost, value=7.4, resolved_ts=NIGHT + 20 * MINUTE), NIGHT + 20 * MINUTE))
    yield Example("resolved, a sensor back", one("resolved", replace(stale, resolved_ts=NIGHT + 5 * MINUTE),
                                                 NIGHT + 5 * MINUTE))
    yield Example("fired and cleared before it could be sent",
                  one("firing", replace(humid, resolved_ts=NIGHT + 20 * MINUTE), NIGHT + 45 * MINUTE))
    yield Example("a critical grouped with warnings",
                  compose([Item("firing", frost), Item("firing", humid), Item("firing", stale)], style))
    yield Example("quiet-hours digest", compose([Item("firing", dry), Item("resolved", replace(
        humid, value=84.0, resolved_ts=NIGHT + 3 * 3600))], replace(style, now=NIGHT + 4 * 3600), "digest"))
    yield Example("summary after the hourly cap", compose(
        [Item("firing", f) for f in (humid, dry, stale)], replace(style, now=NIGHT + 50 * MINUTE), "summary"))
    readings = [Reading("air", "temperature", 13.4, "°C", age=8), Reading("air", "humidity", 78.0, "%", age=8),
                Reading("light", "light", 0.0, "lx", age=20), Reading("co2", "co2", 512.0, "ppm", age=20),
                Reading("soil-bed-1", "soil_moisture", None, "%", since=NIGHT - 25 * MINUTE),
                Reading("soil-bed-2", "soil_moisture", 31.0, "%", age=40)]
    outputs = [Output("fan-1", 0.0, "rule:cooling"), Output("roof-vent", 0.0, "rule:venting"),
               Output("heater-1", 1.0, "rule:frost-protection"), Output("pump-bed-1", 0.0, "manual:cli:root"),
               Output("pump-bed-2", 0.0, "schedule:irrigation-evening"),
               Output("grow-lights", 0.0, "schedule:winter-lights"), Output("mister-1", 0.0, "rule:misting")]
    yield Example("answer to «وضعیت» (status)", compose_status(readings, outputs, [stale], style))
    yield Example("answer to «وضعیت», nothing open, everything off", compose_status(
        readings, [replace(o, value=0.0, reason="startup") for o in outputs], [], style))
    yield Example("answer to an acknowledgement («۱۳»)", compose_ack(["13"], style))
    yield Example("answer to anything else («سلام، چه خبر؟»)", compose_help("help", style, open_codes=["13"]))
    yield Example("answer to a code that is not open («۹۹»)", compose_help("not_open", style, ["99"], ["13", "17"]))
    yield Example("answer to a code acknowledged already", compose_help("already", style, ["13"]))
    yield Example("`edge sms test`", compose_test(style))


def markdown(names: Names | None = None) -> str:
    """The table for ``docs/alerts.md``: every message kind, an example, its length and segments."""
    rows = ["| message | example (Persian, the demo greenhouse) | characters | segments |", "|---|---|---|---|"]
    for example in examples(names):
        text = example.text.replace("|", "\\|").replace("\n", "<br>")
        rows.append(f"| {example.kind} | {text} | {example.characters} | {example.segments} |")
    return "\n".join(rows)


def rewrite(path: Path) -> bool:
    """Put the current table between the markers in ``path``; True when it changed."""
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{markdown()}\n{END}{tail}"
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str]) -> int:
    if argv[:1] == ["--write"]:
        path = Path(argv[1]) if len(argv) > 1 else Path("docs/alerts.md")
        print(f"{path}: {'rewritten' if rewrite(path) else 'up to date'}")
        return 0
    for example in examples():
        print(f"[{example.segments} seg, {example.characters} ch] {example.kind}\n{example.text}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
