"""The events a gateway records, each kind with its typed payload: what both sides agree an event's ``data`` holds.

An event crosses the wire as ``[seq, ts_ms, kind, source, data]`` (:func:`edge.contract.protocol.encode_events`);
``data`` is a JSON object whose shape depends on ``kind``. Each kind has one frozen dataclass here (``KIND`` names
it; :data:`KINDS` maps every kind to its class). The gateway builds an event's data with it::

    buffer.append_event(ActuatorChange.KIND, actuator_id, ActuatorChange(1.0, 0.0, "rule:cooling").to_data(), ts=now)

``to_data()`` is the exact JSON object on the wire (an optional field left empty is left out, as it always was), and
``from_data(data)`` reads one back. The data center never trusts a gateway, and reads what older gateways stored
too, so ``from_data`` takes any value and never raises: it returns None for a payload that is not an object or whose
required field (marked so in ``docs/protocol.md``) is missing or of the wrong type; an optional field of the wrong
type reads as absent (unless the field says otherwise); keys it does not know are ignored. A value is checked for
its JSON type and, where the data center relies on it, its range (keys fit a bigint, times the years 1..9999, read
as floats); otherwise it is kept as sent (an integer stays an integer where a number is expected).

:data:`KINDS` lists the kinds in use; ``docs/protocol.md`` ("Events") describes each (a test holds the two
together). An event of another kind is still carried and stored (the protocol checks only that ``data`` is an
object); :func:`read` gives None for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Self

from edge.contract.protocol import MAX_KEY, MAX_TS_MS, MIN_TS_MS

__all__ = [
    "Payload", "KINDS", "read",
    "DaemonStart", "DaemonStop", "ClockSynced",
    "BufferCorrupt", "BufferRolledBack", "BufferEpoch", "BufferRekey", "BufferGap", "BufferEventsLost",
    "BufferSetAside", "BufferWindowLost",
    "ActuatorChange", "ActuatorRefused", "ActuatorFault", "RuleFault", "RuleRecovered",
    "CommandActuate", "CommandResult",
    "AlertFired", "AlertResolved", "AlertEscalated", "AlertAcked", "AlertMessage", "AlertReplyIgnored",
    "SmsSent", "SmsAttemptFailed", "SmsFailed", "SmsExpired",
]


# ------------------------------------------------------------------------------------------------ field readers


class _Bad(Exception):
    """A value of the wrong JSON type or out of range (internal: ``from_data`` turns it into None or absent)."""


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad
    return value


def _key(value: Any) -> int:
    """An epoch, seq or count: an integer from 0 to 2**63-1 (a bigint), not a boolean."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_KEY:
        raise _Bad
    return value


def _number(value: Any) -> float:
    """A finite number (int or float, kept as sent), not a boolean."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad
    if isinstance(value, float) and not math.isfinite(value):
        raise _Bad
    return value


def _seconds(value: Any) -> float:
    """A time in UTC seconds within the years the protocol allows (1..9999)."""
    if not MIN_TS_MS <= _number(value) * 1000 <= MAX_TS_MS:
        raise _Bad
    return float(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad
    return value


def _anything(value: Any) -> Any:
    return value


def _nullable(read: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``read``, or JSON ``null``."""
    return lambda value: None if value is None else read(value)


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Bad
    return tuple(_text(v) for v in value)


def _epoch_or_hex(value: Any) -> int | str:
    """A key, or the text (``x'..'``, its cells in hex) of a key that was not a pair of integers."""
    return value if isinstance(value, str) else _key(value)


def _intervals(value: Any) -> dict[str, float]:
    """``{sensor: seconds}``; an entry whose seconds are not a believable interval (1 ms .. 31 years) is left out."""
    if not isinstance(value, dict):
        raise _Bad
    return {sensor: seconds for sensor, seconds in value.items()
            if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and 1e-3 <= seconds < 10**9}


def _names(value: Any) -> dict[str, str]:
    """``{id: display name}``; an entry that is not text to text (1-64 characters) is left out."""
    if not isinstance(value, dict):
        raise _Bad
    return {key: name for key, name in value.items()
            if isinstance(key, str) and isinstance(name, str) and 0 < len(name) <= 64}


def _ranges(value: Any) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list):
        raise _Bad
    ranges = []
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            raise _Bad
        ranges.append((_key(pair[0]), _key(pair[1])))
    return tuple(ranges)


def _stream(value: Any) -> str:
    if value not in ("readings", "events"):
        raise _Bad
    return value


_SPEC = "edge.contract.events"


@dataclass(frozen=True)
class _Spec:
    read: Callable[[Any], Any]
    key: str | None
    required: bool
    strict: bool
    omit_empty: bool


def _field(read: Callable[[Any], Any], *, key: str | None = None, default: Any = MISSING, strict: bool = False,
           omit_empty: bool = False) -> Any:
    """A payload field: its reader, its name in ``data`` (``key``, when it is a Python keyword), and, with a
    ``default``, optional: absent (or, unless ``strict``, of the wrong type) it reads as the default; with
    ``omit_empty`` it is left out of ``to_data()`` when None or empty."""
    spec = _Spec(read, key, default is MISSING, strict, omit_empty)
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={_SPEC: spec})
    return field(default=default, metadata={_SPEC: spec})


def _plain(value: Any) -> Any:
    """The JSON form of a field's value: tuples become lists (nested ones too)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------------------ payloads


@dataclass(frozen=True)
class Payload:
    """The data of one event kind. Subclasses are frozen dataclasses whose fields are declared with ``_field``."""

    KIND: ClassVar[str]

    def to_data(self) -> dict[str, Any]:
        """The JSON object this payload is on the wire."""
        data: dict[str, Any] = {}
        for f in fields(self):
            spec: _Spec = f.metadata[_SPEC]
            value = getattr(self, f.name)
            if spec.omit_empty and (value is None or value == () or value == [] or value == {}):
                continue
            data[spec.key or f.name] = _plain(value)
        return data

    @classmethod
    def from_data(cls, data: Any) -> Self | None:
        """The payload ``data`` holds, or None when it is malformed (never raises, whatever ``data`` is)."""
        if not isinstance(data, Mapping):
            return None
        values: dict[str, Any] = {}
        for f in fields(cls):
            spec: _Spec = f.metadata[_SPEC]
            key = spec.key or f.name
            if key not in data:
                if spec.required:
                    return None
                continue  # the dataclass default
            try:
                values[f.name] = spec.read(data[key])
            except (_Bad, TypeError, ValueError, OverflowError):
                if spec.required or spec.strict:
                    return None
        return cls(**values)


# ------------------------------------------------------------------------------------------------------- daemon


@dataclass(frozen=True)
class DaemonStart(Payload):
    """The daemon started (source ``daemon``). ``epoch`` is None while the buffer had no room to start one;
    ``previous_stop`` is ``clean``, ``unclean``, ``none`` (a new buffer) or ``unknown``; ``intervals`` are the
    sensors' sampling intervals in seconds, from which the data center counts the readings it expects (gateways
    before the history API did not send them). ``name`` is the greenhouse's display name and ``names`` its
    sensors' and actuators' (``{id: name}``), as the farmer calls them, for the data center's lists and charts;
    both are left out when the config gives none."""

    KIND: ClassVar[str] = "daemon.start"
    version: str = _field(_text)
    epoch: int | None = _field(_nullable(_key))
    previous_stop: str = _field(_text)
    clock_synced: bool = _field(_flag)
    intervals: dict[str, float] = _field(_intervals, default={})
    name: str | None = _field(_nullable(_text), default=None, omit_empty=True)
    names: dict[str, str] = _field(_names, default={}, omit_empty=True)


@dataclass(frozen=True)
class DaemonStop(Payload):
    """The daemon stopped (source ``daemon``): why (``SIGTERM``, ...), and the outputs it could NOT drive to their
    safe state, if any."""

    KIND: ClassVar[str] = "daemon.stop"
    reason: str = _field(_text)
    not_safe: tuple[str, ...] = _field(_texts, default=(), omit_empty=True)


@dataclass(frozen=True)
class ClockSynced(Payload):
    """The wall clock synced (source ``clock``); this boot's readings taken before were re-timed."""

    KIND: ClassVar[str] = "clock.synced"
    corrected_readings: int = _field(_key)


# ------------------------------------------------------------------------------------------------------- buffer


@dataclass(frozen=True)
class BufferCorrupt(Payload):
    """The buffer file was damaged and moved aside (source ``buffer``); a fresh one was started."""

    KIND: ClassVar[str] = "buffer.corrupt"
    moved_to: str = _field(_text)
    reason: str = _field(_text)


@dataclass(frozen=True)
class BufferRolledBack(Payload):
    """The buffer went back in time (a deleted write-ahead log, a restored backup): its last epoch is below one the
    gateway already used (source ``buffer``)."""

    KIND: ClassVar[str] = "buffer.rolled_back"
    last_epoch_in_file: int = _field(_key)
    epoch_used: int = _field(_key)


@dataclass(frozen=True)
class BufferEpoch(Payload):
    """The gateway moved to a new epoch above one the data center holds (source ``buffer``)."""

    KIND: ClassVar[str] = "buffer.epoch"
    previous: int | None = _field(_nullable(_key))
    epoch: int = _field(_key)
    reason: str = _field(_text)


@dataclass(frozen=True)
class BufferRekey(Payload):
    """Pending rows whose keys the data center holds with other content got new keys (source ``buffer``): ``count``
    rows of ``stream`` from ``from_ranges`` of ``from_epoch`` are now ``to_first_seq..to_last_seq`` of
    ``to_epoch``. On the wire: ``{"stream", "count", "from": {"epoch", "ranges"}, "to": {"epoch", "first_seq",
    "last_seq"}}``."""

    KIND: ClassVar[str] = "buffer.rekey"
    stream: str = _field(_stream)
    count: int = _field(_key)
    from_epoch: int = _field(_key)
    from_ranges: tuple[tuple[int, int], ...] = _field(_ranges)
    to_epoch: int = _field(_key)
    to_first_seq: int = _field(_key)
    to_last_seq: int = _field(_key)

    def to_data(self) -> dict[str, Any]:
        return {"stream": self.stream, "count": self.count,
                "from": {"epoch": self.from_epoch, "ranges": _plain(self.from_ranges)},
                "to": {"epoch": self.to_epoch, "first_seq": self.to_first_seq, "last_seq": self.to_last_seq}}

    @classmethod
    def from_data(cls, data: Any) -> Self | None:
        if not isinstance(data, Mapping) or not isinstance(data.get("from"), Mapping) \
                or not isinstance(data.get("to"), Mapping):
            return None
        flat = {"stream": data.get("stream", ...), "count": data.get("count", ...),
                **{f"from_{k}": v for k, v in data["from"].items()}, **{f"to_{k}": v for k, v in data["to"].items()}}
        return super().from_data({k: v for k, v in flat.items() if v is not ...})


@dataclass(frozen=True)
class BufferGap(Payload):
    """Readings the data center will never receive, seqs ``first_seq..last_seq`` of ``epoch`` (source ``buffer``,
    or ``sync`` for a row set aside): dropped for the disk budget (no ``reason``), never stored because the disk was
    full (``sensor``, ``quantities`` and ``reason``), or set aside because they could not be sent (``reason``).
    ``stream`` defaults to ``readings`` (and must be ``readings`` or ``events`` when given); ``first_ts`` /
    ``last_ts`` are null when unknown and read as None when not a time."""

    KIND: ClassVar[str] = "buffer.gap"
    epoch: int = _field(_key)
    first_seq: int = _field(_key)
    last_seq: int = _field(_key)
    count: int = _field(_key)
    first_ts: float | None = _field(_nullable(_seconds), default=None)
    last_ts: float | None = _field(_nullable(_seconds), default=None)
    stream: str = _field(_stream, default="readings", strict=True)
    sensor: str | None = _field(_text, default=None, omit_empty=True)
    quantities: tuple[str, ...] | None = _field(_texts, default=None, omit_empty=True)
    reason: str | None = _field(_text, default=None, omit_empty=True)


@dataclass(frozen=True)
class BufferWindowLost(Payload):
    """The previous run of the gateway (``epoch``) did not stop cleanly (a power cut, ``kill -9``, a watchdog
    restart) while it held readings in memory for its commit window (``buffer.commit_every``, ``window`` seconds):
    readings of that epoch after ``after_seq`` never reached the gateway's disk. They were taken after ``after_ts``
    (the last reading on disk; null when unknown) and at most ``window`` seconds later (plus the window's 5 s
    check), and the data center holds those the uplink had already sent (source ``buffer``)."""

    KIND: ClassVar[str] = "buffer.window_lost"
    epoch: int = _field(_key)
    after_seq: int = _field(_key)
    after_ts: float | None = _field(_nullable(_seconds), default=None)
    window: float = _field(_number, default=0.0)


@dataclass(frozen=True)
class BufferEventsLost(Payload):
    """More events waited in memory for room than the gateway keeps: ``count`` of them, from ``first_ts`` to
    ``last_ts``, are lost (source ``buffer``)."""

    KIND: ClassVar[str] = "buffer.events_lost"
    count: int = _field(_key)
    first_ts: float = _field(_number)
    last_ts: float = _field(_number)
    reason: str = _field(_text)


@dataclass(frozen=True)
class BufferSetAside(Payload):
    """An event that could not be sent, or a row whose key is garbled, was moved to the gateway's quarantine
    (source ``sync``). ``epoch`` and ``seq`` are integers, or for a garbled key the text ``x'..'`` of its cells."""

    KIND: ClassVar[str] = "buffer.set_aside"
    stream: str = _field(_stream)
    epoch: int | str = _field(_epoch_or_hex)
    seq: int | str = _field(_epoch_or_hex)
    reason: str = _field(_text)


# ---------------------------------------------------------------------------------------------------- actuators


@dataclass(frozen=True)
class ActuatorChange(Payload):
    """An output switched (source: the actuator's id): its new ``value`` (0 off, 1 on, or a PWM level), the one
    before, the reason (``schedule:ID``, ``rule:ID``, ``manual:WHO``, ``safety:max_on``, ``startup``,
    ``shutdown``, ...) and, while on, when it goes off at the latest (UTC seconds)."""

    KIND: ClassVar[str] = "actuator.change"
    value: float = _field(_number)
    previous: float = _field(_number)
    reason: str = _field(_text)
    until: float | None = _field(_number, default=None, omit_empty=True)

    @property
    def on(self) -> bool:
        return self.value > 0


@dataclass(frozen=True)
class ActuatorRefused(Payload):
    """An output was not switched on for ``request`` (a reason) because of a limit (``refused``: min_off, an
    interlock, the power budget, a latch); said once until the refusal changes."""

    KIND: ClassVar[str] = "actuator.refused"
    request: str = _field(_text)
    refused: str = _field(_text)


@dataclass(frozen=True)
class ActuatorFault(Payload):
    """An output could not be driven to ``value`` (``reason`` ``shutdown`` when stopping)."""

    KIND: ClassVar[str] = "actuator.fault"
    value: float = _field(_number)
    error: str = _field(_text)
    reason: str | None = _field(_text, default=None, omit_empty=True)


@dataclass(frozen=True)
class RuleFault(Payload):
    """A rule stopped driving its actuator (source: the rule's id): its input is stale or failing (``reason``)."""

    KIND: ClassVar[str] = "rule.fault"
    actuator: str = _field(_text)
    reason: str | None = _field(_nullable(_text))


@dataclass(frozen=True)
class RuleRecovered(RuleFault):
    """A rule's input is back (``reason`` is null)."""

    KIND: ClassVar[str] = "rule.recovered"


# ----------------------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class CommandActuate(Payload):
    """A manual command reached the supervisor (source: the actuator's id): ``on``/``off`` for ``for`` seconds
    (``for_`` here), or ``auto`` (``for`` null); ``who`` gave it (``cli:USER``, ``remote:ID``, ``sms:NAME``)."""

    KIND: ClassVar[str] = "command.actuate"
    action: str = _field(_text)
    for_: float | None = _field(_nullable(_number), key="for")
    who: str = _field(_text)


_ABSENT: Any = type("_Absent", (), {"__repr__": lambda self: "<absent>", "__bool__": lambda self: False})()


@dataclass(frozen=True)
class CommandResult(Payload):
    """The answer to a command from the data center (source ``sync``): ``ok`` with its ``result``, or not ``ok``
    with the ``error``. ``id`` is null for a command whose id itself was malformed, and ``op`` is absent for a
    command that could not be decoded at all."""

    KIND: ClassVar[str] = "command.result"
    id: str | None = _field(_nullable(_text))
    ok: bool = _field(_flag)
    op: str | None = _field(_text, default=None, omit_empty=True)
    result: Any = _field(_anything, default=_ABSENT)
    error: str | None = _field(_text, default=None, omit_empty=True)

    def to_data(self) -> dict[str, Any]:
        data = super().to_data()
        if self.result is _ABSENT:
            del data["result"]
        return data


# ------------------------------------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class AlertFired(Payload):
    """An alert fired (source: the alert's key, ``RULE:SUBJECT``): its reply code, rule, severity and the value
    that fired it (null for a condition without one, such as a stale sensor)."""

    KIND: ClassVar[str] = "alert.fired"
    code: str = _field(_text)
    rule: str = _field(_text)
    severity: str = _field(_text)
    value: float | None = _field(_nullable(_number))


@dataclass(frozen=True)
class AlertResolved(Payload):
    """An alert's condition ended (source: the alert's key)."""

    KIND: ClassVar[str] = "alert.resolved"
    code: str = _field(_text)
    value: float | None = _field(_nullable(_number))


@dataclass(frozen=True)
class AlertEscalated(Payload):
    """An alert nobody acknowledged was escalated (source: the alert's key)."""

    KIND: ClassVar[str] = "alert.escalated"
    code: str = _field(_text)


@dataclass(frozen=True)
class AlertAcked(Payload):
    """An alert was acknowledged (source: the alert's key) by ``by`` (a recipient's name, or ``cli:USER``)."""

    KIND: ClassVar[str] = "alert.acked"
    code: str = _field(_text)
    by: str = _field(_text)


@dataclass(frozen=True)
class AlertMessage(Payload):
    """An SMS about alerts was queued (source ``alerts``) to a recipient (by name, never the number): the codes it
    tells, its ``header`` (``alert``, ``digest`` or ``summary``), its outbox id and its segments."""

    KIND: ClassVar[str] = "alert.message"
    to: str = _field(_text)
    codes: tuple[str, ...] = _field(_texts)
    header: str = _field(_text)
    local_id: str = _field(_text)
    segments: int = _field(_key)


@dataclass(frozen=True)
class AlertReplyIgnored(Payload):
    """An SMS came from a number that is not a recipient (source ``alerts``); ``from`` is the number masked."""

    KIND: ClassVar[str] = "alert.reply_ignored"
    from_: str = _field(_text, key="from")


# ---------------------------------------------------------------------------------------------------------- SMS


@dataclass(frozen=True)
class SmsSent(Payload):
    """A provider or the modem accepted an SMS (source ``sms``): recipient's name, transport, outcome, detail,
    segments and the provider's id (null when it gives none). Never the text or the number."""

    KIND: ClassVar[str] = "sms.sent"
    local_id: str = _field(_text)
    to: str = _field(_text)
    transport: str = _field(_text)
    outcome: str = _field(_text)
    detail: str = _field(_text)
    segments: int = _field(_key)
    provider_id: str | None = _field(_nullable(_text))


@dataclass(frozen=True)
class SmsAttemptFailed(Payload):
    """One attempt to send an SMS failed and it will be tried again (source ``sms``); ``parts_done``: parts of a
    long message known to be out already (``partial``, ``ambiguous``)."""

    KIND: ClassVar[str] = "sms.attempt_failed"
    local_id: str = _field(_text)
    to: str = _field(_text)
    transport: str = _field(_text)
    outcome: str = _field(_text)
    detail: str = _field(_text)
    parts_done: int | None = _field(_key, default=None, omit_empty=True)


@dataclass(frozen=True)
class SmsFailed(SmsAttemptFailed):
    """An SMS failed for good (source ``sms``): the provider refused it for a reason a retry cannot change."""

    KIND: ClassVar[str] = "sms.failed"


@dataclass(frozen=True)
class SmsExpired(Payload):
    """An SMS stayed unsent past ``sms.expire_after`` (source ``sms``)."""

    KIND: ClassVar[str] = "sms.expired"
    local_id: str = _field(_text)
    to: str = _field(_text)
    attempts: int = _field(_key)


# ------------------------------------------------------------------------------------------------------ registry

KINDS: dict[str, type[Payload]] = {cls.KIND: cls for cls in (
    DaemonStart, DaemonStop, ClockSynced,
    BufferCorrupt, BufferRolledBack, BufferEpoch, BufferRekey, BufferGap, BufferEventsLost, BufferSetAside,
    BufferWindowLost,
    ActuatorChange, ActuatorRefused, ActuatorFault, RuleFault, RuleRecovered,
    CommandActuate, CommandResult,
    AlertFired, AlertResolved, AlertEscalated, AlertAcked, AlertMessage, AlertReplyIgnored,
    SmsSent, SmsAttemptFailed, SmsFailed, SmsExpired,
)}


def read(kind: str, data: Any) -> Payload | None:
    """The payload of an event of ``kind``, or None for a kind this contract does not define or a malformed one."""
    cls = KINDS.get(kind)
    return None if cls is None else cls.from_data(data)
