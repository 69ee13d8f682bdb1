"""Alert conditions and the per-alert state machine, as pure functions.

Each configured rule becomes one or more :class:`Watch` objects (a stale rule watches each of its sensors). The
engine measures a watch's *level* from what it has observed, and :func:`step` moves the watch's state:

    OK ──bad──► PENDING ──bad for `for`──► FIRING ──ack──► ACKED
     ▲             │ not bad                 │ clear          │ clear
     └─────────────┘                         ▼                ▼
                                          RESOLVED (behaves as OK)
    any state ──input stale──► STALE: no new firing, and never a resolution, until a fresh good reading decides.

Levels: ``bad`` (condition holds), ``band`` (inside the hysteresis band: no change), ``clear`` (condition gone past its
clearing level), ``unknown`` (the input is stale) and ``none`` (nothing observed yet since start: no change at all).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

OK, PENDING, FIRING, ACKED, RESOLVED, STALE = "OK", "PENDING", "FIRING", "ACKED", "RESOLVED", "STALE"
Level = Literal["bad", "band", "clear", "unknown", "none"]
Action = Literal["fire", "resolve"] | None

#: The default number of sampling intervals without a good reading after which a sensor is stale.
STALE_INTERVALS = 3
#: Kinds that are events rather than conditions: they fire once, need no acknowledgement and never resolve aloud.
ONESHOT = frozenset({"unclean_restart"})
#: The buffer alert clears this far (share of the budget) below its level.
BUFFER_HYSTERESIS = 0.05


@dataclass(frozen=True, slots=True)
class Watch:
    """One alert the engine keeps state for."""

    key: str  # the rule id, or ``rule:sensor`` for a stale rule; ``~stale:<sensor>`` for implicit ones
    rule_id: str
    kind: str
    severity: str
    hold: float = 0.0  # the for-duration (or ``after``) the condition must hold before firing
    label: str | None = None
    subject: str | None = None  # the id of the sensor, actuator or transport concerned (messages name it)
    sensor: str | None = None
    quantity: str | None = None
    unit: str = ""
    threshold: float | None = None  # above/below threshold; rate amount; buffer share
    clear: float | None = None
    direction: int = 1  # rate: +1 rise, -1 fall
    window: float | None = None
    stale_limit: float | None = None  # seconds: how old the newest good reading may be
    actuator: str | None = None
    expect: str | None = None
    by: float = 0.0
    after: float = 0.0  # actuator fault: how long it may take to respond
    budget_bytes: float | None = None

    @property
    def oneshot(self) -> bool:
        return self.kind in ONESHOT


# ------------------------------------------------------------------------------------------------------- levels


def threshold_level(watch: Watch, value: float | None, stale: bool) -> Level:
    if stale:
        return "unknown"
    if value is None:
        return "none"
    assert watch.threshold is not None and watch.clear is not None
    if watch.kind == "above":
        return "bad" if value > watch.threshold else ("clear" if value <= watch.clear else "band")
    return "bad" if value < watch.threshold else ("clear" if value >= watch.clear else "band")


def rate_change(history: Sequence[tuple[float, float]], now: float, window: float, direction: int) -> float | None:
    """How far the value moved in ``direction`` within ``window`` up to now: last value minus the extreme before it."""
    recent = [value for ts, value in history if now - ts <= window]
    if len(recent) < 2:
        return None
    last = recent[-1]
    return last - min(recent) if direction > 0 else max(recent) - last


def rate_level(watch: Watch, change: float | None, stale: bool) -> Level:
    if stale:
        return "unknown"
    if change is None:
        return "none"
    assert watch.threshold is not None
    return "bad" if change >= watch.threshold else ("clear" if change < watch.threshold / 2 else "band")


def stale_level(last_good: Iterable[float], now: float, limit: float) -> Level:
    """Bad when any quantity of the sensor has had no good reading for longer than ``limit``."""
    return "bad" if any(now - ts > limit for ts in last_good) else "clear"


def fault_level(watch: Watch, on_since: float | None, value_at_on: float | None, value_now: float | None,
                feedback_stale: bool, now: float) -> Level:
    """An actuator on for ``after`` seconds whose feedback did not move as expected."""
    if on_since is None:
        return "clear"  # off: nothing to expect
    if now - on_since < watch.after:
        return "band"
    if feedback_stale:
        return "unknown"
    if value_now is None:
        return "none"
    if watch.expect == "positive":
        return "clear" if value_now > watch.by else "bad"
    if value_at_on is None:
        return "none"
    change = (value_now - value_at_on) * (1 if watch.expect == "rise" else -1)
    return "clear" if change > watch.by else "bad"


def link_level(up: bool | None) -> Level:
    return "none" if up is None else ("clear" if up else "bad")


def clock_level(synced: bool) -> Level:
    return "clear" if synced else "bad"


def buffer_level(watch: Watch, size_bytes: float | None) -> Level:
    if size_bytes is None or not watch.budget_bytes:
        return "none"
    share = size_bytes / watch.budget_bytes
    assert watch.threshold is not None
    return "bad" if share >= watch.threshold else (
        "clear" if share < watch.threshold - BUFFER_HYSTERESIS else "band")


# ------------------------------------------------------------------------------------------------ state machine


@dataclass(frozen=True, slots=True)
class Transition:
    state: str
    since: float
    action: Action = None


def step(state: str, since: float, open_incident: bool, acked: bool, level: Level, hold: float,
         now: float) -> Transition:
    """The next state of one watch. Pure."""
    stay = Transition(state, since)
    if level == "none":
        return stay
    if state in (OK, RESOLVED):
        if level == "bad":
            return Transition(FIRING, now, "fire") if hold <= 0 else Transition(PENDING, now)
        return Transition(STALE, now) if level == "unknown" else stay
    if state == PENDING:
        if level == "bad":
            return Transition(FIRING, now, "fire") if now - since >= hold else stay
        return Transition(STALE, now) if level == "unknown" else Transition(OK, now)
    if state in (FIRING, ACKED):
        if level == "clear":
            return Transition(RESOLVED, now, "resolve")
        return Transition(STALE, now) if level == "unknown" else stay
    # STALE
    if level == "unknown":
        return stay
    if open_incident:
        if level == "clear":
            return Transition(RESOLVED, now, "resolve")
        return Transition(ACKED if acked else FIRING, now)
    if level == "bad":
        return Transition(FIRING, now, "fire") if hold <= 0 else Transition(PENDING, now)
    return Transition(OK, now)


# ------------------------------------------------------------------------------------------------- from config


@dataclass(frozen=True, slots=True)
class SensorInfo:
    interval: float
    quantities: tuple[str, ...]
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ActuatorInfo:
    kind: str
    feedback: tuple[str, str] | None = None  # (sensor, quantity)
    name: str | None = None


_FALLS = {"fan", "vent", "mister"}


def default_expect(actuator_kind: str, quantity: str) -> str:
    if quantity in ("flow", "level"):
        return "positive"
    return "fall" if actuator_kind in _FALLS else "rise"


def compile_watches(rules: Sequence[object], sensors: Mapping[str, SensorInfo], actuators: Mapping[str, ActuatorInfo],
                    units: Mapping[str, str], restart_key: str = "", buffer_budget: float | None = None) -> list[Watch]:
    """The watches of a list of validated rule configs, plus an implicit stale watch for every sensor an alert
    reads that no stale rule covers (so a dead sensor always raises its own alert). Raises ``ValueError`` with the
    rule's id for what only the whole config can tell (a stale rule naming an unknown sensor, a fault rule with no
    feedback input)."""
    watches: list[Watch] = []
    covered: dict[str, float] = {}
    inputs: list[str] = []
    for rule in rules:
        watches.extend(_compile(rule, sensors, actuators, units, restart_key, buffer_budget, covered, inputs))
    for sensor in dict.fromkeys(inputs):
        if sensor not in covered and sensor in sensors:
            limit = STALE_INTERVALS * sensors[sensor].interval
            covered[sensor] = limit
            watches.append(Watch(f"~stale:{sensor}", "~stale", "stale", "warning", 0.0,
                                 subject=sensor, sensor=sensor, stale_limit=limit))
    return watches


def _compile(rule, sensors, actuators, units, restart_key, buffer_budget, covered, inputs) -> list[Watch]:
    base = dict(rule_id=rule.id, severity=rule.severity, label=rule.name)
    kind = rule.type
    if kind in ("above", "below", "rate"):
        sensor, quantity = rule.input.sensor, rule.input.quantity
        inputs.append(sensor)
        common = dict(base, key=rule.id, kind=kind, hold=rule.for_ or 0.0, subject=sensor,
                      sensor=sensor, quantity=quantity, unit=units.get(quantity, ""))
        if kind == "rate":
            direction = 1 if rule.rise is not None else -1
            return [Watch(**common, threshold=rule.rise if direction > 0 else rule.fall, direction=direction,
                          window=rule.window)]
        return [Watch(**common, threshold=rule.threshold, clear=rule.clear_level)]
    if kind == "stale":
        names = rule.sensors if rule.sensors is not None else list(sensors)
        unknown = [name for name in names if name not in sensors]
        if unknown:
            raise ValueError(f"alerts rule {rule.id}: unknown sensor {unknown[0]!r} "
                             f"(sensors: {', '.join(sorted(sensors)) or 'none configured'})")
        out = []
        for name in names:
            covered[name] = rule.after * sensors[name].interval
            out.append(Watch(**base, key=f"{rule.id}:{name}", kind="stale", subject=name,
                             sensor=name, stale_limit=covered[name]))
        return out
    if kind == "actuator_fault":
        actuator = actuators[rule.actuator]
        feedback = (rule.feedback.sensor, rule.feedback.quantity) if rule.feedback else actuator.feedback
        if feedback is None:
            raise ValueError(f"alerts rule {rule.id}: actuator {rule.actuator!r} has no feedback input; give the "
                             f"rule a feedback: {{sensor, quantity}}")
        inputs.append(feedback[0])
        return [Watch(**base, key=rule.id, kind=kind, after=rule.after, subject=rule.actuator,
                      actuator=rule.actuator, sensor=feedback[0], quantity=feedback[1],
                      unit=units.get(feedback[1], ""),
                      expect=rule.expect or default_expect(actuator.kind, feedback[1]), by=rule.by)]
    if kind == "link_down":
        return [Watch(**base, key=rule.id, kind=kind, hold=rule.after)]
    if kind == "clock_unsynced":
        return [Watch(**base, key=rule.id, kind=kind, hold=rule.after)]
    if kind == "buffer":
        if not buffer_budget:
            raise ValueError(f"alerts rule {rule.id}: the buffer has no disk budget (buffer.max_size)")
        return [Watch(**base, key=rule.id, kind=kind, threshold=rule.above, budget_bytes=buffer_budget)]
    if kind == "unclean_restart":
        return [Watch(**base, key=f"{rule.id}@{restart_key}", kind=kind)]
    raise ValueError(f"alerts rule {rule.id}: unknown type {kind!r}")  # pragma: no cover - the config refuses it
