"""The alert engine: observations in, per-alert state machines, notices owed, messages queued in the SMS outbox.

Inputs (each takes ``now`` from the injected clock unless given):

- :meth:`Engine.observe_readings`, a sampler listener (``Sequence[protocol.Reading]``);
- :meth:`Engine.observe_link` (the uplink is up or down; until someone calls it, link alerts never fire);
- :meth:`Engine.observe_event` (``actuator.change`` events, ``sms.no_credit`` / ``sms.refused`` / ``sms.sent`` from
  the outbox);
- :meth:`Engine.tick`, periodic: time-based conditions, repeats, escalation, quiet hours ending, caps freeing;
- :meth:`Engine.handle_reply`: an SMS from a farmer: an alert code to acknowledge (confirmed by SMS), ``وضعیت`` /
  ``STATUS`` (the greenhouse now), or anything else (a one-line help); answers are rate-limited per number.

Every decision is a pure function (:mod:`.conditions`, :mod:`.policy`, :mod:`.messages`); this module keeps the
observations, applies the decisions and persists them (:mod:`.store`) in the same transaction as the SMS they queue
(:mod:`.outbox`). It never talks to a network: sending is the outbox's job.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edge.contract.events import (AlertAcked, AlertEscalated, AlertFired, AlertMessage, AlertReplyIgnored,
                                  AlertResolved)
from edge.gateway.alerts.conditions import (ACKED, FIRING, OK, RESOLVED, STALE, STALE_INTERVALS,
                                            SensorInfo, Transition, Watch, buffer_level, clock_level, fault_level,
                                            link_level, rate_change, rate_level, stale_level, step,
                                            threshold_level)
from edge.gateway.alerts.messages import (Fact, Item, Output, Reading, Style, compose, compose_ack, compose_help,
                                          compose_status, parse_reply)
from edge.gateway.alerts.names import Names
from edge.gateway.alerts.numbers import canonical, masked
from edge.gateway.alerts.outbox import Outbox
from edge.gateway.alerts.policy import Owed, in_quiet_hours, may_reply, plan, repeat_gap
from edge.gateway.alerts.segments import segment_count
from edge.gateway.alerts.store import Store, TrackRow

log = logging.getLogger(__name__)

HOUR, DAY = 3600.0, 86400.0


@dataclass(frozen=True, slots=True)
class Person:
    key: str  # canonical number
    name: str
    role: str  # owner | escalation
    language: str


@dataclass(frozen=True)
class Settings:
    greenhouse: str
    timezone: str = "Asia/Tehran"
    group_window: float = 60.0
    repeat: tuple[float, ...] = (900.0, 1800.0, 3600.0, 7200.0)
    escalate_after: float | None = 1800.0
    quiet_start: str | None = None
    quiet_end: str | None = None
    per_hour: int = 6
    per_day: int = 30
    max_segments: int = 4
    country: str = "98"
    names: Names = field(default_factory=Names)
    help_every: float = 3600.0  # at most one help (or "not open") answer per number in this time
    replies_per_hour: int = 6  # answers of any kind (status, confirmation, help) per number per hour


@dataclass
class World:
    """What the engine has observed. Values are the latest *good* readings only."""

    started: float
    values: dict[tuple[str, str], float] = field(default_factory=dict)
    last_good: dict[tuple[str, str], float] = field(default_factory=dict)  # from the start: staleness counts from it
    read: dict[tuple[str, str], tuple[float, bool]] = field(default_factory=dict)  # latest reading: when, good
    good_ts: dict[tuple[str, str], float] = field(default_factory=dict)  # when the latest good reading came
    history: dict[tuple[str, str], deque] = field(default_factory=dict)
    link_up: bool | None = None
    synced: bool = True
    buffer_bytes: float | None = None
    on_since: dict[str, float] = field(default_factory=dict)  # actuator -> when it went on
    outputs: dict[str, tuple[float, str]] = field(default_factory=dict)  # actuator -> (value, reason) now
    at_on: dict[tuple[str, str, str], float | None] = field(default_factory=dict)  # (actuator, sensor, q) -> value
    no_credit: dict[str, bool] = field(default_factory=dict)  # transport -> out of credit
    refused: dict[str, bool] = field(default_factory=dict)  # transport -> the provider refuses its account


class Engine:
    def __init__(self, *, watches: Sequence[Watch], people: Sequence[Person], store: Store, outbox: Outbox,
                 clock: Any, settings: Settings, sensors: Mapping[str, SensorInfo],
                 units: Mapping[str, str] | None = None, buffer_size: Callable[[], float | None] | None = None,
                 unclean_start: bool = False):
        self.watches = list(watches)
        self.people = {p.key: p for p in people}
        self.store = store
        self.outbox = outbox
        self.buffer = store.buffer
        self.clock = clock
        self.settings = settings
        self.sensors = dict(sensors)
        self.units = dict(units or {})
        self.buffer_size = buffer_size
        self.unclean_start = unclean_start
        # Not re-entrant: each public entry point takes it once and only calls private steps, which never take it
        # (the outbox's wake only submits to the SMS sender thread). Order: this lock, then the buffer's write lock.
        self._lock = threading.Lock()
        now = clock.time()
        self.world = World(started=now)
        for sensor, info in self.sensors.items():
            for quantity in info.quantities:
                self.world.last_good[(sensor, quantity)] = now
        self.stale_limits = {s: STALE_INTERVALS * info.interval for s, info in self.sensors.items()}
        self.stale_limits.update({w.sensor: w.stale_limit for w in self.watches
                                  if w.kind == "stale" and w.sensor and w.stale_limit})
        self._rate_inputs = {(w.sensor, w.quantity): w.window or 0.0 for w in self.watches if w.kind == "rate"}
        self.tracks: dict[str, TrackRow] = store.tracks()
        self._forget_removed(now)

    def _forget_removed(self, now: float) -> None:
        """Alerts whose rule left the config: their open incidents close quietly (no repeats for ever)."""
        current = {w.key for w in self.watches}
        for key in [k for k in self.tracks if k not in current]:
            track = self.tracks.pop(key)
            with self.store.transaction():
                if track.incident_id is not None:
                    self._resolve(track.incident_id, None, now, quietly=True)
                self.store.delete_track(key)

    # ================================================================================================= inputs

    def observe_readings(self, readings: Sequence[Any]) -> None:
        with self._lock:
            now = self.clock.time()
            for reading in readings:
                self._note_reading(reading, now)
            self._evaluate(now)
            self._dispatch(now)

    def observe_link(self, up: bool, now: float | None = None) -> None:
        with self._lock:
            now = self.clock.time() if now is None else now
            if self.world.link_up != up:
                log.info("uplink %s", "up" if up else "down")
            self.world.link_up = up
            self._evaluate(now)
            self._dispatch(now)

    def observe_event(self, kind: str, source: str, data: Mapping[str, Any] | None = None,
                      now: float | None = None) -> None:
        with self._lock:
            at = self.clock.time() if now is None else now  # when it happened (an event read from the buffer)
            now = max(at, self.clock.time())
            data = data or {}
            if kind == "actuator.change" and isinstance(data.get("value"), (int, float)):
                self.world.outputs[source] = (float(data["value"]), str(data.get("reason") or ""))
                self._note_actuator(source, float(data["value"]) > 0, at)
            elif kind == "sms.no_credit":
                self.world.no_credit[source] = True
            elif kind == "sms.refused":
                self.world.refused[source] = True
            elif kind == "sms.sent":
                self.world.no_credit[source] = False
                self.world.refused[source] = False
            else:
                return
            self._evaluate(now)
            self._dispatch(now)

    def tick(self, now: float | None = None) -> None:
        """Time-based work: for-durations ending, stale inputs, repeats, escalation, quiet hours, caps freeing."""
        with self._lock:
            now = self.clock.time() if now is None else now
            self.world.synced = self.clock.is_synced()
            if self.buffer_size is not None:
                self.world.buffer_bytes = self.buffer_size()
            self._evaluate(now)
            self._schedule_repeats(now)
            self._escalate(now)
            self._dispatch(now)

    def handle_reply(self, number: str, text: str, now: float | None = None) -> str:
        """Act on an SMS from ``number`` and answer it: ``acked`` (confirmed by SMS), ``status`` (the greenhouse
        now), ``unknown`` (a one-line help, or which alerts are open) or ``ignored`` (not a recipient: no answer).
        Answers to one number are limited (``help_every``, ``replies_per_hour``): a chatty farmer or an
        auto-responder answering our answers costs a few SMS, not a fortune."""
        with self._lock:
            now = self.clock.time() if now is None else now
            try:
                person = self.people.get(canonical(number, self.settings.country))
            except ValueError:
                person = None
            if person is None:
                log.info("ignoring an SMS from %s: not a registered recipient", masked(number))
                self.buffer.append_event(AlertReplyIgnored.KIND, "alerts", AlertReplyIgnored(masked(number)).to_data(),
                                         ts=now)
                return "ignored"
            kind, codes = parse_reply(text)
            if kind == "status":
                self._answer(person, "status", lambda style: self._status_text(style, now), now)
                return "status"
            acked = [code for code in codes if self._ack(code, person.name, now)]
            if acked:
                self._answer(person, "ack", lambda style: compose_ack(acked, style), now)
                return "acked"
            log.info("reply from %s names no open alert: %r", person.name, text[:40])
            self._answer(person, "help", lambda style: self._help_text(codes, style), now)
            return "unknown"

    # ============================================================================================ observations

    def _note_reading(self, reading: Any, now: float) -> None:
        key = (reading.sensor, reading.quantity)
        good = reading.quality == "good" and reading.value is not None
        self.world.read[key] = (now, good)
        if not good:
            return
        self.world.values[key] = reading.value
        self.world.last_good[key] = now
        self.world.good_ts[key] = now
        if key in self._rate_inputs:
            history = self.world.history.setdefault(key, deque())
            history.append((now, reading.value))
            while history and now - history[0][0] > self._rate_inputs[key]:
                history.popleft()

    def _note_actuator(self, actuator: str, on: bool, now: float) -> None:
        if not on:
            self.world.on_since.pop(actuator, None)
            return
        if actuator in self.world.on_since:
            return
        self.world.on_since[actuator] = now
        for watch in self.watches:
            if watch.kind == "actuator_fault" and watch.actuator == actuator:
                key = (watch.sensor, watch.quantity)
                self.world.at_on[(actuator, *key)] = self.world.values.get(key)

    def _input_stale(self, sensor: str, quantity: str, now: float) -> bool:
        last = self.world.last_good.get((sensor, quantity), self.world.started)
        return now - last > self.stale_limits.get(sensor, float("inf"))

    def _measure(self, watch: Watch, track: TrackRow, now: float) -> tuple[str, float | None]:
        """The watch's level now, and the value a message would quote."""
        w, world = watch, self.world
        if w.kind in ("above", "below"):
            value = world.values.get((w.sensor, w.quantity))
            return threshold_level(w, value, self._input_stale(w.sensor, w.quantity, now)), value
        if w.kind == "rate":
            change = rate_change(world.history.get((w.sensor, w.quantity), ()), now, w.window or 0.0, w.direction)
            return rate_level(w, change, self._input_stale(w.sensor, w.quantity, now)), change
        if w.kind == "stale":
            quantities = self.sensors[w.sensor].quantities if w.sensor in self.sensors else ()
            ages = [world.last_good.get((w.sensor, q), world.started) for q in quantities]
            return stale_level(ages, now, w.stale_limit or 0.0), None
        if w.kind == "actuator_fault":
            value = world.values.get((w.sensor, w.quantity))
            level = fault_level(w, world.on_since.get(w.actuator), world.at_on.get((w.actuator, w.sensor, w.quantity)),
                                value, self._input_stale(w.sensor, w.quantity, now), now)
            return level, value
        if w.kind == "link_down":
            return link_level(world.link_up), None
        if w.kind == "clock_unsynced":
            return clock_level(world.synced), None
        if w.kind == "buffer":
            share = None if not world.buffer_bytes or not w.budget_bytes else world.buffer_bytes / w.budget_bytes
            return buffer_level(w, world.buffer_bytes), share
        if w.kind == "unclean_restart":
            return ("bad" if self.unclean_start and track.state == OK else "none"), None
        if w.kind in ("sms_credit", "sms_refused"):
            known = (world.no_credit if w.kind == "sms_credit" else world.refused).get(w.subject or "")
            return ("none" if known is None else ("bad" if known else "clear")), None
        return "none", None

    # ============================================================================================= evaluation

    def _track(self, watch: Watch, now: float) -> TrackRow:
        return self.tracks.get(watch.key) or TrackRow(watch.key, watch.rule_id, OK, now)

    def _evaluate(self, now: float) -> None:
        for watch in self.watches:
            track = self._track(watch, now)
            level, value = self._measure(watch, track, now)
            acked = track.state == ACKED or (track.state == STALE and self._incident_acked(track.incident_id))
            change = step(track.state, track.since, track.incident_id is not None, acked, level, watch.hold, now)
            if (change.state, change.since) != (track.state, track.since):
                self._apply(watch, track, change, value, now)

    def _incident_acked(self, incident_id: int | None) -> bool:
        incident = self.store.incident(incident_id) if incident_id is not None else None
        return bool(incident and incident["acked_ts"])

    def _apply(self, watch: Watch, track: TrackRow, change: Transition, value: float | None, now: float) -> None:
        """Carry out a transition in one transaction. The track in memory changes only once it committed: a buffer
        that cannot store it (a full disk) leaves the alert where it was, and the next evaluation tries again."""
        track, code = replace(track), None
        with self.store.transaction():
            if change.action == "fire":
                track.incident_id, code = self._fire(watch, value, now)
                if watch.oneshot:  # an event, not a condition: told once, never repeated nor resolved aloud
                    self._resolve(track.incident_id, value, now, quietly=True)
                    track.incident_id, change = None, Transition(RESOLVED, now)
            elif change.action == "resolve" and track.incident_id is not None:
                self._resolve(track.incident_id, value, now)
                track.incident_id = None
            track.state, track.since = change.state, change.since
            self.store.save_track(track)
        self.tracks[track.key] = track
        if code is not None:  # said once it is stored (a full disk retries it at every evaluation)
            log.warning("alert %s fired (code %s, %s, value %s)", watch.key, code, watch.severity, value)
        log.debug("alert %s: %s", watch.key, change.state)

    def _fire(self, watch: Watch, value: float | None, now: float) -> tuple[int, str]:
        fact = {"label": watch.label, "subject": watch.subject, "quantity": watch.quantity, "unit": watch.unit,
                "limit": watch.threshold, "window": watch.window, "sensor": watch.sensor, "actuator": watch.actuator,
                "direction": watch.direction}
        incident_id, code = self.store.new_incident(key=watch.key, rule_id=watch.rule_id,
                                                    severity=watch.severity, kind=watch.kind, fact=fact,
                                                    fired_ts=now, value=value)
        for person in self._owners():
            self.store.add_notice(incident_id, person.key, "firing", now)
        self.buffer.append_event(AlertFired.KIND, watch.key,
                                 AlertFired(code, watch.rule_id, watch.severity, value).to_data(), ts=now)
        return incident_id, code

    def _resolve(self, incident_id: int, value: float | None, now: float, quietly: bool = False) -> None:
        incident = self.store.incident(incident_id)
        self.store.resolve(incident_id, now, value)
        self.store.drop_owed(incident_id, ("repeat", "escalation"))
        told = self.store.told(incident_id)
        if incident["suppressed"] and not told:
            self.store.drop_owed(incident_id, ("firing",))  # never told, and no longer true: never tell
        elif not quietly:
            for recipient in told:
                self.store.add_notice(incident_id, recipient, "resolved", now)
        self.buffer.append_event(AlertResolved.KIND, incident["key"], AlertResolved(incident["code"], value).to_data(),
                                 ts=now)
        log.info("alert %s resolved (code %s)", incident["key"], incident["code"])

    # ======================================================================================= repeats, escalation

    def _owners(self) -> list[Person]:
        return [p for p in self.people.values() if p.role == "owner"]

    def _escalation(self) -> list[Person]:
        return [p for p in self.people.values() if p.role == "escalation"]

    def _schedule_repeats(self, now: float) -> None:
        gaps = self.settings.repeat
        for incident in self.store.repeats_due(now):
            audience = self._owners() + (self._escalation() if incident["escalated_ts"] else [])
            repeats, next_ts = incident["repeats"] + 1, incident["next_repeat_ts"]
            while next_ts <= now:
                next_ts += repeat_gap(gaps, repeats)
            with self.store.transaction():
                for person in audience:
                    if not self.store.owes(incident["id"], person.key, ("firing", "repeat", "escalation")):
                        self.store.add_notice(incident["id"], person.key, "repeat", now)
                self.store.update_incident(incident["id"], repeats=repeats, next_repeat_ts=next_ts)

    def _escalate(self, now: float) -> None:
        if self.settings.escalate_after is None:
            return
        for incident in self.store.escalations_due(now, self.settings.escalate_after):
            with self.store.transaction():
                for person in self._escalation():
                    self.store.add_notice(incident["id"], person.key, "escalation", now)
                self.store.update_incident(incident["id"], escalated_ts=now)
            if self._escalation():
                self.buffer.append_event(AlertEscalated.KIND, incident["key"],
                                         AlertEscalated(incident["code"]).to_data(), ts=now)

    # ================================================================================================ replies

    def acknowledge(self, code: str, by: str, now: float | None = None) -> bool:
        """Acknowledge an open alert by its code (``edge alerts ack``): repeats and escalation stop."""
        with self._lock:
            return self._ack(code, by, self.clock.time() if now is None else now)

    def _ack(self, code: str, by: str, now: float) -> bool:
        incident = self.store.open_by_code(code)
        if incident is None or incident["acked_ts"] is not None:
            return False
        track = self.tracks.get(incident["key"])
        with self.store.transaction():
            self.store.ack(incident["id"], now, by)
            self.store.drop_owed(incident["id"], ("repeat", "escalation"))
            self.store.update_incident(incident["id"], next_repeat_ts=None)
            if track is not None and track.state == FIRING and track.incident_id == incident["id"]:
                track = replace(track, state=ACKED)
                self.store.save_track(track)
            self.buffer.append_event(AlertAcked.KIND, incident["key"], AlertAcked(code, by).to_data(), ts=now)
        if track is not None:
            self.tracks[track.key] = track  # only once committed
        log.info("alert %s (code %s) acknowledged by %s", incident["key"], code, by)
        return True

    def _answer(self, person: Person, kind: str, text_for: Callable[[Style], str], now: float) -> None:
        """Queue an answer to ``person`` unless their answers are used up (``may_reply``)."""
        s = self.settings
        sent = self.store.replies_since(person.key, now - max(HOUR, s.help_every))
        if not may_reply(kind, sent, now=now, help_every=s.help_every, per_hour=s.replies_per_hour):
            log.info("no %s answer to %s: answers to that number are used up for now", kind, person.name)
            return
        text = text_for(self._style(person, now))
        with self.store.transaction():
            local_id = self.outbox.enqueue(recipient=person.name, number=person.key, text=text, critical=False,
                                           now=now)
            self.store.add_message(person.key, now, kind, local_id, segment_count(text), ())
        self.outbox.wake(now)

    def _status_text(self, style: Style, now: float) -> str:
        """Each configured quantity with its age, or no value when it has no fresh good reading (a failing or a
        silent sensor never shows its last good value as current); every output and why; the alerts still open
        and not acknowledged."""
        world, readings = self.world, []
        for sensor, info in self.sensors.items():
            limit = self.stale_limits.get(sensor, STALE_INTERVALS * info.interval)
            for quantity in info.quantities:
                key = (sensor, quantity)
                at, good = world.read.get(key, (None, False))
                unit = self.units.get(quantity, "")
                if at is not None and good and now - at <= limit and key in world.values:
                    readings.append(Reading(sensor, quantity, world.values[key], unit, age=now - at))
                else:
                    readings.append(Reading(sensor, quantity, None, unit, since=world.good_ts.get(key)))
        names = self.settings.names
        outputs = [Output(a, *world.outputs.get(a, (0.0, None))) for a in names.actuators]
        active = [self._fact(i, "firing") for i in self.store.open_incidents() if i["acked_ts"] is None]
        return compose_status(readings, outputs, active, style)

    def _help_text(self, codes: Sequence[str], style: Style) -> str:
        open_codes = [i["code"] for i in self.store.open_incidents() if i["acked_ts"] is None]
        if not codes:
            return compose_help("help", style, open_codes=open_codes)
        incident = self.store.open_by_code(codes[0])
        if incident is not None and incident["acked_ts"] is not None:
            return compose_help("already", style, codes=codes[:1])
        return compose_help("not_open", style, codes=codes[:1], open_codes=open_codes)

    # =============================================================================================== dispatch

    def _style(self, person: Person, now: float) -> Style:
        s = self.settings
        greenhouse = s.names.of_greenhouse(person.language) if s.names.gateway_id else s.greenhouse
        return Style(person.language, greenhouse, s.timezone, now, s.max_segments, s.names)  # type: ignore[arg-type]

    @staticmethod
    def _fact(row: Mapping[str, Any], notice: str) -> Fact:
        extra = json.loads(row["fact"])
        value = row["resolved_value"] if notice == "resolved" else row["value"]
        return Fact(code=row["code"], severity=row["severity"], kind=row["kind"], fired_ts=row["fired_ts"],
                    label=extra.get("label"), subject=extra.get("subject"), quantity=extra.get("quantity"),
                    value=value, unit=extra.get("unit") or "", limit=extra.get("limit"), window=extra.get("window"),
                    resolved_ts=row["resolved_ts"], acked=row["acked_ts"] is not None, sensor=extra.get("sensor"),
                    actuator=extra.get("actuator"), direction=extra.get("direction") or 1)

    def _current(self, fact: Fact, notice: str, now: float) -> Fact:
        """A reminder or an escalation of a value alert quotes the value now (when fresh), not the one it fired at."""
        if notice not in ("repeat", "escalation") or fact.kind not in ("above", "below") or not fact.sensor:
            return fact
        key = (fact.sensor, fact.quantity or "")
        if key not in self.world.values or self._input_stale(fact.sensor, key[1], now):
            return fact
        return replace(fact, value=self.world.values[key])

    def _dispatch(self, now: float) -> None:
        owed: dict[str, list[dict[str, Any]]] = {}
        for row in self.store.owed():
            owed.setdefault(row["recipient"], []).append(row)
        if not owed:
            return
        s = self.settings
        quiet = in_quiet_hours(now, s.timezone, s.quiet_start, s.quiet_end)
        for key, rows in owed.items():
            person = self.people.get(key)
            if person is None:
                continue  # a recipient removed from the config
            decision = plan(
                [Owed(r["notice_id"], r["id"], r["notice_kind"], r["created_ts"], r["severity"], r["kind"],
                      bool(r["deferred"]), bool(r["capped"])) for r in rows],
                now=now, quiet=quiet, link_up=self.world.link_up is not False, group_window=s.group_window,
                sent_last_hour=self.store.sent_since(key, now - HOUR),
                sent_last_day=self.store.sent_since(key, now - DAY), per_hour=s.per_hour, per_day=s.per_day)
            self._carry_out(person, {r["notice_id"]: r for r in rows}, decision, now)

    def _carry_out(self, person: Person, rows: Mapping[int, dict[str, Any]], decision: Any, now: float) -> None:
        if not (decision.send or decision.defer or decision.suppress or decision.cap):
            return
        with self.store.transaction():
            self.store.flag_notices(decision.defer, "deferred")
            self.store.flag_notices(decision.cap, "capped")
            for incident_id in set(decision.suppress):
                self.store.update_incident(incident_id, suppressed=1)
            if not decision.send:
                if decision.cap:
                    log.warning("%s reached the SMS cap: %d alert(s) held for one summary", person.name,
                                len(decision.cap))
                return
            sent = [rows[n.notice_id] for n in decision.send]
            items = [Item(r["notice_kind"], self._current(self._fact(r, r["notice_kind"]), r["notice_kind"], now))
                     for r in sent]
            text = compose(items, self._style(person, now), decision.header)
            critical = any(n.urgent for n in decision.send)
            local_id = self.outbox.enqueue(recipient=person.name, number=person.key, text=text,
                                           critical=critical, now=now)
            self.store.add_message(person.key, now, decision.header, local_id, segment_count(text),
                                   [r["notice_id"] for r in sent])
            for incident_id in dict.fromkeys(r["id"] for r in sent):
                self._after_telling(incident_id, now)
            self.buffer.append_event(AlertMessage.KIND, "alerts", AlertMessage(
                person.name, tuple(sorted({r["code"] for r in sent})), decision.header, local_id,
                segment_count(text)).to_data(), ts=now)
        self.outbox.wake(now)
        log.info("alert message to %s queued (%s, codes %s)", person.name, decision.header,
                 ", ".join(sorted({r["code"] for r in sent})))

    def _after_telling(self, incident_id: int, now: float) -> None:
        """The first message about an incident starts its repeat schedule (criticals not yet acknowledged)."""
        incident = self.store.incident(incident_id)
        if incident is None or incident["notified_ts"] is not None:
            return
        repeat = incident["severity"] == "critical" and incident["resolved_ts"] is None and \
            incident["acked_ts"] is None
        self.store.update_incident(incident_id, notified_ts=now,
                                   next_repeat_ts=now + repeat_gap(self.settings.repeat, 0) if repeat else None)
