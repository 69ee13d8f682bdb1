"""Control rules as pure functions: (rule, its remembered state, its input reading, now) -> a decision.

A rule either *requests* its actuator on (with a value) or requests nothing, so rules, schedules and manual
overrides combine simply (the supervisor turns an output off when nothing requests it). The one exception is a
threshold rule with ``action: off`` (a cut-off): while it holds it requests 0, which beats any "on" of its level.
A rule whose input is missing, in error or stale requests nothing and reports a fault: it releases its actuator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge.gateway.control.config import IrrigationRule, ThresholdRule


@dataclass(frozen=True)
class Input:
    """The latest reading of a rule's input."""

    value: float | None
    quality: str
    ts: float
    reason: str | None = None


@dataclass(frozen=True)
class Decision:
    request: float | None  # the output value the rule wants, or None for no request
    state: dict[str, Any] = field(default_factory=dict)  # what the rule remembers (persisted by the supervisor)
    fault: str | None = None  # why the input cannot be used, or None
    until: float | None = None  # when the request will end at the latest, if known


def input_problem(reading: Input | None, now: float, stale_after: float) -> str | None:
    """Why a reading cannot drive a rule, or None if it can."""
    if reading is None:
        return "no reading yet"
    if reading.quality != "good" or reading.value is None:
        return f"input {reading.quality}" + (f": {reading.reason}" if reading.reason else "")
    age = now - reading.ts
    if age > stale_after:
        return f"input stale: last reading {age:.0f}s ago (limit {stale_after:.0f}s)"
    return None


def threshold(rule: ThresholdRule, state: dict[str, Any], reading: Input | None, now: float,
              stale_after: float) -> Decision:
    """Hysteresis: switch on past one threshold, off only past the other, so a value hovering does not chatter."""
    problem = input_problem(reading, now, stale_after)
    if problem:
        return Decision(None, {"on": False}, problem)
    value, was_on = reading.value, bool(state.get("on"))
    if rule.on_above is not None:  # cooling, or an over-temperature cut-off
        on = value > rule.on_above or (was_on and value > rule.off_below)
    else:  # heating / frost protection
        on = value < rule.on_below or (was_on and value < rule.off_above)
    if not on:
        return Decision(None, {"on": False})
    return Decision(rule.value if rule.action == "on" else 0.0, {"on": True})


def irrigation(rule: IrrigationRule, state: dict[str, Any], reading: Input | None, now: float,
               stale_after: float) -> Decision:
    """Water when dry, for at most ``max_run``, then lock out. The run's start is remembered across restarts, so a
    restart mid-run waters only for what is left."""
    running_since = state.get("running_since")
    lockout_until = state.get("lockout_until")
    problem = input_problem(reading, now, stale_after)
    if running_since is not None:
        ends = running_since + rule.max_run
        if problem or now >= ends or reading.value >= rule.stop_above:
            return Decision(None, {"running_since": None, "lockout_until": now + rule.lockout}, problem)
        return Decision(rule.value, state, None, until=ends)
    if problem:
        return Decision(None, state, problem)
    if lockout_until is not None and now < lockout_until:
        return Decision(None, state)
    if reading.value < rule.start_below:
        return Decision(rule.value, {"running_since": now, "lockout_until": None}, until=now + rule.max_run)
    return Decision(None, {"running_since": None, "lockout_until": None})


def decide(rule, state: dict[str, Any], reading: Input | None, now: float, stale_after: float) -> Decision:
    if isinstance(rule, ThresholdRule):
        return threshold(rule, state, reading, now, stale_after)
    if isinstance(rule, IrrigationRule):
        return irrigation(rule, state, reading, now, stale_after)
    raise TypeError(f"unknown rule {rule!r}")
