"""Control rules as pure functions: (rule, its remembered state, its input reading, now) -> a decision.

A rule either *requests* its actuator on (with a value) or requests nothing, so rules, schedules and manual
overrides combine simply (the supervisor turns an output off when nothing requests it). The one exception is a
threshold rule with ``action: off`` (a cut-off): while it holds it requests 0, which beats any "on" of its level.
A rule whose input is missing, in error or stale requests nothing and reports a fault: it releases its actuator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge.gateway.control.config import (Co2Rule, HumidityRule, IrrigationRule, LightIrrigationRule, Profile,
                                         SetpointRule, ThresholdRule)


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


@dataclass(frozen=True)
class Context:
    """What a rule may need besides its input, resolved by the supervisor at each evaluation."""

    setpoint: float | None = None  # a setpoint rule's setpoint now (its profile followed)
    floor: float | None = None  # a humidity rule's not_below now
    guard: Input | None = None  # a humidity rule's air temperature; a light irrigation rule's soil moisture
    daylight: bool = True  # between sunrise and sunset
    vents_open: float = 0.0  # a CO2 rule's vents: the most open one, now or as requested at this evaluation


def profile_value(profile: Profile, now: float, sunrise: float, sunset: float) -> float:
    """A profile's setpoint at ``now``, given the local day's sunrise and sunset (UTC seconds): night, a ramp to
    day from sunrise plus ``day_starts``, day, a ramp back to night from sunset plus ``night_starts``."""
    day_offset, night_offset = profile.offsets()
    day_start, night_start = sunrise + day_offset, sunset + night_offset
    ramp = profile.ramp

    def ramped(start: float, a: float, b: float) -> float:
        return b if ramp <= 0 else a + (b - a) * min(1.0, max(0.0, (now - start) / ramp))

    if now < day_start:
        return profile.night
    if now < night_start:
        return ramped(day_start, profile.night, profile.day)
    return ramped(night_start, profile.day, profile.night)


def setpoint(rule: SetpointRule, state: dict[str, Any], reading: Input | None, now: float, stale_after: float,
             context: Context) -> Decision:
    """Heat below the setpoint until ``band`` above it, or cool above it until ``band`` below it."""
    problem = input_problem(reading, now, stale_after)
    if problem:
        return Decision(None, {"on": False}, problem)
    value, was_on, sp = reading.value, bool(state.get("on")), context.setpoint
    if rule.direction == "heat":
        on = value < sp or (was_on and value < sp + rule.band)
    else:
        on = value > sp or (was_on and value > sp - rule.band)
    return Decision(rule.value if on else None, {"on": on})


def humidity(rule: HumidityRule, state: dict[str, Any], reading: Input | None, now: float, stale_after: float,
             context: Context) -> Decision:
    """Dry while the deficit is below the band, humidify while it is above (with hysteresis into the band); nothing
    while the air is colder than ``not_below``: temperature first."""
    problem = input_problem(reading, now, stale_after)
    if problem is None and rule.temperature is not None:
        guard = input_problem(context.guard, now, stale_after)
        problem = f"temperature {guard}" if guard else None
    if problem:
        return Decision(None, {"on": False}, problem)
    if rule.temperature is not None and context.guard.value < context.floor:
        return Decision(None, {"on": False})
    low, high = rule.night_band if (rule.night_band and not context.daylight) else rule.band
    value, was_on = reading.value, bool(state.get("on"))
    if rule.action == "dry":
        on = value < low or (was_on and value < low + rule.hysteresis)
    else:
        on = value > high or (was_on and value > high - rule.hysteresis)
    return Decision(rule.value if on else None, {"on": on})


def light_irrigation(rule: LightIrrigationRule, state: dict[str, Any], reading: Input | None, now: float,
                     stale_after: float, context: Context) -> Decision:
    """Sum the light since the last start (trapezoids between readings; a gap over ``stale_after`` adds nothing);
    start a run when the sum reaches ``start_at`` (or, in light, ``max_interval`` passed), never within
    ``min_interval`` of the last start, never while the soil is wet. A run's start is remembered across restarts."""
    state = dict(state)
    problem = input_problem(reading, now, stale_after)
    light_sum = float(state.get("sum", 0.0))
    if problem is None:
        ppfd = reading.value if rule.input.quantity == "par" else reading.value * rule.ppfd_per_lux
        last_ts, last_ppfd = state.get("ts"), state.get("ppfd")
        if last_ts is not None and reading.ts > last_ts and reading.ts - last_ts <= stale_after:
            light_sum += (last_ppfd + ppfd) / 2.0 * (reading.ts - last_ts) / 1e6
        if last_ts is None or reading.ts > last_ts:
            state.update(ts=reading.ts, ppfd=ppfd)
    state["sum"] = light_sum
    running_since, last_start = state.get("running_since"), state.get("last_start")
    if running_since is not None:
        ends = running_since + rule.run
        if now < ends:
            return Decision(rule.value, state, problem, until=ends)
        state["running_since"] = None
        return Decision(None, state, problem)
    if problem:
        return Decision(None, state, problem)
    since = None if last_start is None else now - last_start
    if since is not None and since < rule.min_interval:
        return Decision(None, state)
    due = light_sum >= rule.start_at or (
        rule.max_interval is not None and since is not None and since >= rule.max_interval and reading.value > 0)
    if not due:
        return Decision(None, state)
    fault = None
    if rule.soil is not None:
        soil_problem = input_problem(context.guard, now, stale_after)
        if soil_problem is None and context.guard.value >= rule.soil_wet_at:
            return Decision(None, state)  # wet enough: the sum goes on, the next evaluation asks again
        fault = f"soil guard {soil_problem}: watering by light alone" if soil_problem else None
    state.update(running_since=now, last_start=now, sum=0.0)
    return Decision(rule.value, state, fault, until=now + rule.run)


def co2(rule: Co2Rule, state: dict[str, Any], reading: Input | None, now: float, stale_after: float,
        context: Context) -> Decision:
    """Dose below ``on_below`` until ``off_above``, only in daylight and with every vent closed."""
    problem = input_problem(reading, now, stale_after)
    if problem:
        return Decision(None, {"on": False}, problem)
    if not context.daylight or context.vents_open > rule.closed_at:
        return Decision(None, {"on": False})
    value, was_on = reading.value, bool(state.get("on"))
    on = value < rule.on_below or (was_on and value < rule.off_above)
    return Decision(rule.value if on else None, {"on": on})


def decide(rule, state: dict[str, Any], reading: Input | None, now: float, stale_after: float,
           context: Context = Context()) -> Decision:
    if isinstance(rule, ThresholdRule):
        return threshold(rule, state, reading, now, stale_after)
    if isinstance(rule, IrrigationRule):
        return irrigation(rule, state, reading, now, stale_after)
    if isinstance(rule, SetpointRule):
        return setpoint(rule, state, reading, now, stale_after, context)
    if isinstance(rule, HumidityRule):
        return humidity(rule, state, reading, now, stale_after, context)
    if isinstance(rule, LightIrrigationRule):
        return light_irrigation(rule, state, reading, now, stale_after, context)
    if isinstance(rule, Co2Rule):
        return co2(rule, state, reading, now, stale_after, context)
    raise TypeError(f"unknown rule {rule!r}")
