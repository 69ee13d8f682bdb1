"""The supervisor: the only code that switches an output.

At every evaluation it gathers, for each actuator, what wants it on or off (a safety rule, a manual override, a
rule, a schedule: in that priority; manual and remote overrides are bounded by the actuator's ``max_manual``), then
lets the safety limits have the last word: ``max_on`` (continuous on-time, counted across a restart,
then latched off until the request goes away), ``min_on``, ``min_off``, interlocks with their wait, and the power
budget (``max_outputs_on``). Requests are level-triggered: after a restart only a reason that still holds switches an
output on again, for the time it has left.

Every change is an event in the buffer with its reason (``schedule:<id>``, ``rule:<id>``, ``manual:<who>``,
``safety:max_on``, ``safety:stale_input``, ``startup``, ``shutdown``); the state that must survive a restart (on-times,
latches, overrides, rule memories) lives in the buffer's SQLite file, kept by :class:`.state.ControlState`. Code in
the same process learns of every switch at once from :attr:`Supervisor.on_switch` (the alert service does), called
once the supervisor's lock is released, never by reading the events back.

A buffer that cannot store (a full disk) never stops an output from being switched: the switch happens first, the
event waits in the buffer's memory, and the state is saved at a later evaluation once there is room. Switching on is
not refused for want of a record either: ``max_on`` is enforced from memory meanwhile, and only its count across a
restart during the outage is lost (docs/operations.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from edge.contract.events import (ActuatorChange, ActuatorFault, ActuatorRefused, CommandActuate, RuleFault,
                                  RuleRecovered)
from edge.contract.protocol import Reading
from edge.durations import counted, format_duration
from edge.errors import BufferUnavailable, BufferWriteError
from edge.gateway.control import rules as rule_logic
from edge.gateway.control.config import Co2Rule, HumidityRule, LightIrrigationRule, SetpointRule
from edge.gateway.control.commands import Actuate, CommandParser, Refused
from edge.gateway.control.schedules import Place, sun_times, window
from edge.gateway.control.state import ControlState
from edge.gateway.control.types import ActuatorState, ActuatorView, Override, describe_state

if TYPE_CHECKING:
    from edge.gateway.buffer import Buffer
    from edge.gateway.clock import Clock
    from edge.gateway.config import GatewayConfig
    from edge.gateway.hardware.base import Actuator

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Request:
    value: float
    reason: str
    until: float | None = None


class LatestReadings:
    """The latest reading of each sensor quantity: a sampler listener that the rules read."""

    def __init__(self):
        self._latest: dict[tuple[str, str], rule_logic.Input] = {}
        self._lock = threading.Lock()

    def __call__(self, readings: Sequence[Reading]) -> None:
        with self._lock:
            for r in readings:
                self._latest[(r.sensor, r.quantity)] = rule_logic.Input(r.value, r.quality, r.ts, r.reason)

    def get(self, sensor: str, quantity: str) -> rule_logic.Input | None:
        with self._lock:
            return self._latest.get((sensor, quantity))


#: ``listener(actuator_id, change, ts)``: an output was switched (``change`` as recorded in its event).
SwitchListener = Callable[[str, ActuatorChange, float], None]


class Supervisor:
    def __init__(self, config: GatewayConfig, actuators: Mapping[str, Actuator], buffer: Buffer, clock: Clock,
                 latest: LatestReadings | None = None):
        self.config = config
        self.control = config.control
        self.actuators = dict(actuators)
        self.limits = {a.id: a for a in config.actuators}
        self.commands = CommandParser.of(config)  # reads this gateway's commands, for every door (socket, downlink)
        self.buffer = buffer
        self.clock = clock
        self.latest = latest or LatestReadings()
        self.place = Place(config.gateway.latitude, config.gateway.longitude, config.gateway.timezone)
        self.intervals = {s.id: s.interval for s in config.sources()}
        self.profiles = {p.id: p for p in self.control.profiles}
        #: outputs a CO2 rule doses through -> (its vents, how open counts as closed): a safety limit, like an interlock
        self.vent_guards: dict[str, tuple[list[str], float]] = {}
        for rule in config.rules:
            if isinstance(rule, Co2Rule):
                vents, closed_at = self.vent_guards.get(rule.actuator, ([], 1.0))
                self.vent_guards[rule.actuator] = (sorted({*vents, *rule.vents}), min(closed_at, rule.closed_at))
        self.started = clock.time()
        self._lock = threading.RLock()  # re-entrant: execute() evaluates under it, so nothing runs between the two
        self.state = {a: ActuatorState(since=self.started) for a in self.actuators}
        self.overrides: dict[str, Override] = {}
        self.rule_state: dict[str, dict[str, Any]] = {}
        self.rule_faults: dict[str, str | None] = {}
        self._carried_on_time: dict[str, float] = {}  # seconds already on before the restart, per actuator
        self._unsaved: set[str] = set()  # actuators whose last change is not on disk yet (no room)
        self._faulty: set[str] = set()  # actuators whose last switch failed: a fault episode, recorded once
        self.on_switch: list[SwitchListener] = []
        self._switched: list[tuple[str, ActuatorChange, float]] = []  # told to on_switch once the lock is released
        self._told = threading.Lock()
        self.store: ControlState | None = None
        try:
            self.store = ControlState(buffer)
            self._load(self.started)
        except BufferUnavailable as exc:  # a full disk at start: control runs from nothing rather than not at all
            log.warning("control state could not be read (%s): starting without it (outputs are off)", exc)

    # ------------------------------------------------------------------------------------------- persistence

    def _load(self, now: float) -> None:
        """Restore what must survive a restart. An output that was on when the daemon stopped is off now (outputs
        are constructed off); the on-time it had already run is carried, so ``max_on`` still counts it if a reason
        switches it straight back on."""
        store = self.store
        last_alive = self.buffer.last_reading_ts() or now
        for actuator_id, row in store.actuators().items():
            st = self.state.get(actuator_id)
            if st is None:
                continue
            st.latched = row.latched
            if row.value > 0:  # the daemon died with it on: it ran until the last sign of life
                self._carried_on_time[actuator_id] = max(0.0, last_alive - row.on_since)
                st.value, st.on_since = row.value, row.on_since
                self._record(actuator_id, st, 0.0, "startup", now)
                st.off_at = now
            else:
                st.reason, st.since = row.reason, row.since
                st.off_at = row.since  # min_off and interlock waits count from the last switch-off
                if row.reason == "shutdown" and row.on_since is not None:
                    self._carried_on_time[actuator_id] = max(0.0, row.since - row.on_since)
        for stored in store.overrides():
            if stored.actuator in self.state:  # bounded by max_manual, even one stored by an older version
                bound = stored.issued + self.limits[stored.actuator].manual_limit()
                self.overrides[stored.actuator] = Override(stored.actuator, stored.value, min(stored.until, bound),
                                                           stored.who, stored.issued)
        self.rule_state.update(store.rule_memory())

    def _record(self, actuator_id: str, st: ActuatorState, value: float, reason: str, now: float,
                until: float | None = None) -> None:
        """Persist a change and its event in one transaction. If the buffer cannot store them (no room), the change
        stands all the same: the event waits in the buffer's memory and the state is saved by a later evaluation."""
        previous = st.value
        if value <= 0 and previous > 0:
            st.off_at = now
            if reason != "shutdown":  # a shutdown keeps the on-time so that max_on counts it after the restart
                st.on_since = None
        st.value, st.reason, st.since, st.until = value, reason, now, until
        change = ActuatorChange(value, previous, reason, round(until, 3) if until else None)
        event = change.to_data()
        try:
            if self.store is None:
                raise BufferUnavailable("the control state could not be opened at start")
            with self.buffer.transaction():
                self.store.save_actuator(actuator_id, st)
                self.buffer.append_event(ActuatorChange.KIND, actuator_id, event, ts=now)
            self._unsaved.discard(actuator_id)
        except (BufferWriteError, BufferUnavailable) as exc:
            log.debug("%s: change not stored yet: %s", actuator_id, exc)
            self._unsaved.add(actuator_id)
            self.buffer.append_event(ActuatorChange.KIND, actuator_id, event, ts=now)  # waits in memory for room
        with self._told:
            self._switched.append((actuator_id, change, now))
        log.info("%s %s (%s)", actuator_id, _describe(value), reason)

    def _tell(self) -> None:
        """Tell ``on_switch`` of the switches made since last time, in order; called with the lock released, so a
        listener may take its own locks (or call :meth:`describe`). A listener that fails is logged and skipped."""
        with self._told:
            switched, self._switched = self._switched, []
        for actuator_id, change, ts in switched:
            for listener in list(self.on_switch):
                try:
                    listener(actuator_id, change, ts)
                except Exception:
                    log.exception("a listener of %s's switch failed", actuator_id)

    def _save_unsaved(self) -> None:
        """Store the state of actuators whose change could not be stored when it happened (a full disk)."""
        for actuator_id in sorted(self._unsaved):
            try:
                if self.store is None:
                    self.store = ControlState(self.buffer)
                self.store.save_actuator(actuator_id, self.state[actuator_id])
            except (BufferWriteError, BufferUnavailable):
                return  # still no room: the next evaluation tries again
            self._unsaved.discard(actuator_id)

    @contextmanager
    def _saving(self) -> Iterator[ControlState | None]:
        """A write of the control state whose refusal (a full disk) does not stop control: the state in memory goes
        on, and the buffer has already reported why it cannot store. Gives None while the state could not be opened
        (nothing is written then)."""
        try:
            yield self.store
        except BufferWriteError as exc:
            log.debug("control state not stored: %s", exc)

    # -------------------------------------------------------------------------------------------- evaluation

    def evaluate(self, now: float | None = None) -> None:
        """Decide every output from the current requests and limits, and switch what must change."""
        now = self.clock.time() if now is None else now
        with self._lock:
            self._evaluate(now)
        self._tell()

    def _evaluate(self, now: float) -> None:
        with self._lock:
            if self._unsaved:
                self._save_unsaved()
            self._expire_overrides(now)
            requests, faults = self._requests(now)
            # outputs behind a vent guard (CO2) first, so they are off before a vent opens; then those already on
            # (they keep priority), then the rest
            order = sorted(self.actuators, key=lambda a: (a not in self.vent_guards, self.state[a].value <= 0))
            for actuator_id in order:
                self._settle(actuator_id, requests.get(actuator_id), faults, now, requests)
            self._carried_on_time.clear()

    def _expire_overrides(self, now: float) -> None:
        for actuator_id, override in list(self.overrides.items()):
            if now >= override.until:
                del self.overrides[actuator_id]
                with self._saving() as store:
                    if store is not None:
                        store.drop_override(actuator_id)
                log.info("manual override of %s by %s expired", actuator_id, override.who)

    def _requests(self, now: float) -> tuple[dict[str, Request], dict[str, str]]:
        """The winning request of each actuator (safety rule > manual > rule > schedule), and the rules whose input
        failed. The safety limits come after, in ``_settle``."""
        levels: list[list[tuple[str, Request]]] = [[], [], [], []]  # schedule, rule, manual, safety rule: later win
        for schedule in self.config.schedules:
            w = window(schedule, now, self.place)
            if w is not None:
                levels[0].append((schedule.actuator, Request(schedule.value, f"schedule:{schedule.id}", w.end)))
        faults: dict[str, str] = {}
        for actuator_id, override in self.overrides.items():
            levels[2].append((actuator_id, Request(override.value, override.reason, override.until)))
        co2_rules = [rule for rule in self.config.rules if isinstance(rule, Co2Rule)]
        for rule in self.config.rules:
            if not isinstance(rule, Co2Rule):
                self._add_rule(rule, now, levels, faults)
        if co2_rules:  # after the others: the vents' requests of this evaluation count
            planned = _winners(levels)
            for rule in co2_rules:
                self._add_rule(rule, now, levels, faults, planned)
        return _winners(levels), faults

    def _add_rule(self, rule: Any, now: float, levels: list[list[tuple[str, Request]]], faults: dict[str, str],
                  planned: dict[str, Request] | None = None) -> None:
        decision = self._decide(rule, now, self._context(rule, now, planned or {}))
        if decision.fault:
            faults[rule.id] = decision.fault
        if decision.request is not None:
            level = 3 if getattr(rule, "priority", "normal") == "safety" else 1
            levels[level].append((rule.actuator, Request(decision.request, f"rule:{rule.id}", decision.until)))

    def _setpoint(self, value: float | str, now: float) -> float:
        """A rule's setpoint now: a number, or its profile's value at this moment of the local day."""
        if not isinstance(value, str):
            return float(value)
        sun = sun_times(datetime.fromtimestamp(now, self.place.tz).date(), self.place)
        return rule_logic.profile_value(self.profiles[value], now, sun["sunrise"], sun["sunset"])

    def _daylight(self, now: float) -> bool:
        sun = sun_times(datetime.fromtimestamp(now, self.place.tz).date(), self.place)
        return sun["sunrise"] <= now < sun["sunset"]

    def _vents_open(self, vents: Sequence[str], planned: Mapping[str, Request]) -> float:
        """How open the most open of ``vents`` is: as last switched, as the output reports itself (a motor vent
        still closing), or as asked at this evaluation."""
        opening = 0.0
        for vent in vents:
            current = self.state[vent].value if vent in self.state else 0.0
            asked = planned[vent].value if vent in planned else 0.0
            try:
                moving = float(self.actuators[vent].value) if vent in self.actuators else 0.0
            except Exception:  # an output that cannot say where it is counts as open
                moving = 1.0
            opening = max(opening, current, asked, moving)
        return opening

    def _context(self, rule: Any, now: float, planned: Mapping[str, Request]) -> rule_logic.Context:
        if isinstance(rule, SetpointRule):
            return rule_logic.Context(setpoint=self._setpoint(rule.setpoint, now))
        if isinstance(rule, HumidityRule):
            guard = None if rule.temperature is None else self.latest.get(rule.temperature.sensor,
                                                                         rule.temperature.quantity)
            floor = None if rule.not_below is None else self._setpoint(rule.not_below, now)
            return rule_logic.Context(floor=floor, guard=guard, daylight=self._daylight(now))
        if isinstance(rule, LightIrrigationRule):
            guard = None if rule.soil is None else self.latest.get(rule.soil.sensor, rule.soil.quantity)
            return rule_logic.Context(guard=guard)
        if isinstance(rule, Co2Rule):
            return rule_logic.Context(daylight=self._daylight(now), vents_open=self._vents_open(rule.vents, planned))
        return rule_logic.Context()

    def _decide(self, rule: Any, now: float, context: rule_logic.Context = rule_logic.Context()) -> rule_logic.Decision:
        sensor, quantity = rule.input.sensor, rule.input.quantity
        stale_after = rule.stale_after or 3 * self.intervals.get(sensor, 60.0)
        reading = self.latest.get(sensor, quantity)
        state = self.rule_state.get(rule.id, {})
        if reading is None and now - self.started < stale_after:
            return rule_logic.Decision(None, state)  # just started: the first reading is on its way
        decision = rule_logic.decide(rule, state, reading, now, stale_after, context)
        if decision.state != state:
            self.rule_state[rule.id] = decision.state
            with self._saving() as store:
                if store is not None:
                    store.save_rule(rule.id, decision.state)
        if decision.fault != self.rule_faults.get(rule.id):
            self.rule_faults[rule.id] = decision.fault
            event = (RuleFault if decision.fault else RuleRecovered)(rule.actuator, decision.fault)
            self.buffer.append_event(event.KIND, rule.id, event.to_data(), ts=now)
            (log.warning if decision.fault else log.info)("rule %s: %s", rule.id, decision.fault or "input back")
        return decision

    def _settle(self, actuator_id: str, request: Request | None, faults: dict[str, str], now: float,
                planned: Mapping[str, Request] | None = None) -> None:
        st = self.state[actuator_id]
        limits = self.limits[actuator_id]
        want = request.value if request else 0.0
        if want <= 0:
            st.latched = False
            st.refused = None
        vent = self._vent_refusal(actuator_id, planned or {})
        if vent is not None:  # a safety limit: off before the vent opens, whatever asks (min_on included)
            if st.value > 0:
                self._switch(actuator_id, 0.0, "safety:vent_open", now)
            elif want > 0 and vent != st.refused:
                st.refused = vent
                log.info("%s not switched on for %s: %s", actuator_id, request.reason, vent)
                self.buffer.append_event(ActuatorRefused.KIND, actuator_id,
                                         ActuatorRefused(request.reason, vent).to_data(), ts=now)
            return
        if st.value > 0:
            on_for = now - st.on_since
            if limits.max_on is not None and on_for >= limits.max_on:
                st.latched = True
                self._switch(actuator_id, 0.0, "safety:max_on", now)
            elif want <= 0 and not (limits.min_on is not None and on_for < limits.min_on):
                self._switch(actuator_id, 0.0, self._off_reason(st, request, faults), now)
            elif want > 0 and (want != st.value or request.reason != st.reason):
                self._switch(actuator_id, want, request.reason, now, request.until)
            elif want > 0 and self._until(actuator_id, request.until) != st.until:
                st.until = self._until(actuator_id, request.until)  # e.g. an override extended
                with self._saving() as store:
                    if store is not None:
                        store.save_actuator(actuator_id, st)
            return
        if want <= 0:
            return
        refusal = self._refusal(actuator_id, now)
        if refusal is None:
            st.refused = None
            self._switch(actuator_id, want, request.reason, now, request.until)
        elif refusal != st.refused:
            st.refused = refusal
            log.info("%s not switched on for %s: %s", actuator_id, request.reason, refusal)
            self.buffer.append_event(ActuatorRefused.KIND, actuator_id,
                                     ActuatorRefused(request.reason, refusal).to_data(), ts=now)

    @staticmethod
    def _off_reason(st: ActuatorState, request: Request | None, faults: dict[str, str]) -> str:
        """An explicit off (a manual override) names itself; otherwise the reason that ended, or a stale input."""
        if request is not None:
            return request.reason
        if st.reason.startswith("rule:") and st.reason.removeprefix("rule:") in faults:
            return "safety:stale_input"
        return st.reason

    def _until(self, actuator_id: str, until: float | None) -> float | None:
        """When the current on-period ends at the latest: the reason's end, capped by max_on."""
        st, limits = self.state[actuator_id], self.limits[actuator_id]
        if limits.max_on is None or st.on_since is None:
            return until
        cap = st.on_since + limits.max_on
        return cap if until is None else min(until, cap)

    def _vent_refusal(self, actuator_id: str, planned: Mapping[str, Request]) -> str | None:
        """Why a CO2 output may not be on: a vent of its CO2 rule open (now, or as asked at this evaluation)."""
        guard = self.vent_guards.get(actuator_id)
        if guard is None:
            return None
        vents, closed_at = guard
        for vent in vents:
            opening = self._vents_open([vent], planned)
            if opening > closed_at:
                return f"vent {vent} open ({opening:.0%}; dosing only at most {closed_at:.0%})"
        return None

    def _refusal(self, actuator_id: str, now: float) -> str | None:
        """Why ``actuator_id`` may not go on now, or None."""
        st, limits = self.state[actuator_id], self.limits[actuator_id]
        vent = self._vent_refusal(actuator_id, {})
        if vent is not None:
            return vent
        if st.latched:
            return f"latched off by max_on {format_duration(limits.max_on)} until nothing requests it"
        if limits.min_off is not None and st.off_at is not None and now - st.off_at < limits.min_off:
            return f"min_off {format_duration(limits.min_off)} not yet elapsed"
        for interlock in self.control.interlocks:
            if actuator_id not in interlock.actuators:
                continue
            for other in interlock.actuators:
                if other == actuator_id or other not in self.state:
                    continue
                other_st = self.state[other]
                if other_st.value > 0:
                    return f"interlock with {other}"
                if other_st.off_at is not None and now - other_st.off_at < interlock.wait:
                    return f"interlock with {other}: waiting {format_duration(interlock.wait)} after it went off"
        budget = self.control.max_outputs_on
        if budget is not None and sum(s.value > 0 for s in self.state.values()) >= budget:
            return f"power budget: {counted(budget, 'output')} already on"
        return None

    def _switch(self, actuator_id: str, value: float, reason: str, now: float, until: float | None = None) -> None:
        st = self.state[actuator_id]
        try:
            self.actuators[actuator_id].apply(value)
        except Exception as exc:
            if actuator_id in self._faulty:  # the same episode: every evaluation tries again, the record is made once
                log.debug("%s still cannot be switched %s: %s", actuator_id, _describe(value), exc)
                return
            self._faulty.add(actuator_id)
            log.error("%s could not be switched %s: %s (tried again at every evaluation; recorded once until it "
                      "switches)", actuator_id, _describe(value), exc)
            self.buffer.append_event(ActuatorFault.KIND, actuator_id, ActuatorFault(value, str(exc)).to_data(), ts=now)
            return
        if actuator_id in self._faulty:
            self._faulty.discard(actuator_id)
            log.warning("%s switches again", actuator_id)
        if value > 0 and st.value <= 0:
            st.on_since = now - self._carried_on_time.get(actuator_id, 0.0)
        self._record(actuator_id, st, value, reason, now, self._until(actuator_id, until) if value > 0 else None)

    # -------------------------------------------------------------------------------------------- commands

    def execute(self, command: Actuate, now: float | None = None) -> ActuatorView:
        """Carry out a manual command, parsed and bounded by ``commands.CommandParser``: hold the actuator ``on`` or
        ``off`` for its duration, or hand it back (``auto``). Raises Refused when the moment forbids switching on
        (a latch, ``min_off``, an interlock, the power budget); an ``off`` always goes through."""
        now = self.clock.time() if now is None else now
        actuator_id = command.actuator
        with self._lock:
            if command.action == "auto":
                self.overrides.pop(actuator_id, None)
                with self._saving() as store:
                    if store is not None:
                        store.drop_override(actuator_id)
            else:
                if command.action == "on" and self.state[actuator_id].value <= 0:
                    refusal = self._refusal(actuator_id, now)
                    if refusal:
                        raise Refused(refusal)
                override = Override(actuator_id, 1.0 if command.action == "on" else 0.0, now + command.duration,
                                    command.who, now)
                self.overrides[actuator_id] = override
                with self._saving() as store:
                    if store is not None:
                        store.save_override(override)
            self.buffer.append_event(CommandActuate.KIND, actuator_id,
                                     CommandActuate(command.action, command.duration, command.who).to_data(), ts=now)
            self._evaluate(now)
            st = self.state[actuator_id]
            if command.action == "auto" and st.value <= 0 and st.reason.startswith("manual:"):
                # nothing asks for it: it stays off, now on behalf of its schedules and rules, not the hand
                st.reason = "auto"
                with self._saving() as store:
                    if store is not None:
                        store.save_actuator(actuator_id, st)
            view = self.describe(actuator_id, now)
        self._tell()
        return view

    def command(self, actuator_id: str, action: str, duration: float | None, who: str,
                now: float | None = None) -> ActuatorView:
        """``execute`` from plain values (for code in the same process), read by the same parser as every request."""
        return self.execute(self.commands.actuate(actuator_id, action, duration, who), now)

    def describe(self, actuator_id: str, now: float | None = None) -> ActuatorView:
        now = self.clock.time() if now is None else now
        with self._lock:
            return describe_state(actuator_id, self.state[actuator_id], now, self.overrides.get(actuator_id))

    def snapshot(self, now: float | None = None) -> dict[str, ActuatorView]:
        """Every actuator as ``describe`` shows it: what ``edge status`` over the socket and the web page print."""
        return {a: self.describe(a, now) for a in self.actuators}

    def shutdown(self, now: float | None = None) -> list[str]:
        """Every output to its safe state, recorded with reason ``shutdown``; on-times are kept for ``max_on``.
        Every output is tried whatever the others do; returns the ids that failed (each is logged)."""
        now = self.clock.time() if now is None else now
        failed = []
        with self._lock:
            for actuator_id, st in self.state.items():
                try:
                    self.actuators[actuator_id].safe_state()
                except Exception as exc:
                    log.exception("%s could not be driven to its safe state", actuator_id)
                    failed.append(actuator_id)
                    try:  # still driven as it was: recording it off would be a lie; the fault is recorded
                        self.buffer.append_event(ActuatorFault.KIND, actuator_id,
                                                 ActuatorFault(0.0, str(exc), "shutdown").to_data(), ts=now)
                    except Exception:
                        log.exception("%s: its fault could not be recorded", actuator_id)
                    continue
                if st.value > 0:
                    try:
                        self._record(actuator_id, st, 0.0, "shutdown", now)
                    except Exception:
                        log.exception("%s: its switch-off could not be recorded", actuator_id)
        self._tell()
        return failed


def _winners(levels: list[list[tuple[str, Request]]]) -> dict[str, Request]:
    """The winning request of each actuator: a later level beats an earlier one; within a level, the strongest."""
    winners: dict[str, Request] = {}
    for level in levels:
        best: dict[str, Request] = {}
        for actuator_id, request in level:
            if _stronger(request, best.get(actuator_id)):
                best[actuator_id] = request
        winners.update(best)
    return winners


def _stronger(request: Request, than: Request | None) -> bool:
    """Within one level: an off request (a cut-off) beats any on request; otherwise the higher value wins."""
    if than is None:
        return True
    if (request.value <= 0) != (than.value <= 0):
        return request.value <= 0
    return request.value > than.value


def _describe(value: float) -> str:
    return "off" if value <= 0 else ("on" if value >= 1 else f"at {value:.0%}")
