"""The contract between gateways and the data center: topics, batch encoding, acks, status and commands.

Both sides import this module and nothing else of each other. ``docs/protocol.md`` describes the same in prose.

Every payload starts with a 4-byte header: ``b"GH"``, the protocol version (1) and a kind byte; the rest is a
zlib-compressed JSON object. Reading batches are columnar and delta-encoded before compression (about 3 bytes per
reading for typical greenhouse data); values are carried exactly (a decimal scale per series where one is exact,
else the float itself). Decoders raise :class:`ProtocolError` naming what is wrong; they never return half a batch.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edge.errors import EdgeError

VERSION = 1
MAGIC = b"GH"
KIND_READINGS, KIND_EVENTS, KIND_ACK, KIND_STATUS, KIND_COMMAND = b"R", b"E", b"A", b"S", b"C"
KIND_PRESENCE = b"P"
KINDS = {KIND_READINGS: "readings", KIND_EVENTS: "events", KIND_ACK: "ack", KIND_STATUS: "status",
         KIND_COMMAND: "command", KIND_PRESENCE: "presence"}

#: Largest payload a decoder accepts, compressed and decompressed (a defence against zip bombs).
MAX_PAYLOAD = 4 * 1024 * 1024
MAX_DECOMPRESSED = 32 * 1024 * 1024
MAX_ROWS = 100_000

QUALITIES = ("good", "error", "implausible")
TOPIC_ROOT = "greenhouse/v1"


class ProtocolError(EdgeError, ValueError):
    """A payload or topic that does not follow this protocol."""


# ------------------------------------------------------------------------------------------------------------ topics


def topic(gateway_id: str, leaf: str) -> str:
    """``greenhouse/v1/{gateway_id}/{leaf}``; leaf is ``up/readings``, ``up/events``, ``status``, ``down/ack`` or
    ``down/cmd``."""
    return f"{TOPIC_ROOT}/{gateway_id}/{leaf}"


UP_READINGS, UP_EVENTS, STATUS, DOWN_ACK, DOWN_CMD = "up/readings", "up/events", "status", "down/ack", "down/cmd"
LEAVES = (UP_READINGS, UP_EVENTS, STATUS, DOWN_ACK, DOWN_CMD)

#: Retained; every collector publishes a new start id here each time it has (re)subscribed to the uplink, so that
#: gateways re-send at once what the broker may have dropped while no collector was there. No gateway id can be
#: ``$collector`` (ids are letters, digits, - and _), and no collector subscription matches this topic.
PRESENCE_TOPIC = f"{TOPIC_ROOT}/$collector/presence"


def parse_topic(name: str) -> tuple[str, str]:
    """``(gateway_id, leaf)`` of a topic of this protocol."""
    prefix = TOPIC_ROOT + "/"
    if not name.startswith(prefix):
        raise ProtocolError(f"topic {name!r} is not under {TOPIC_ROOT}/")
    gateway_id, _, leaf = name[len(prefix):].partition("/")
    if not gateway_id or leaf not in LEAVES:
        raise ProtocolError(f"topic {name!r} is not greenhouse/v1/<gateway>/<{'|'.join(LEAVES)}>")
    return gateway_id, leaf


def check_broker_url(value: str) -> str:
    """``mqtt://host:1883`` or ``mqtts://host:8883`` (stripped), or ValueError naming what is wrong."""
    from urllib.parse import urlsplit

    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"invalid broker url {value!r}: use mqtt://host:1883 or mqtts://host:8883")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"invalid broker url {value!r}: bad port") from None
    return value


# ---------------------------------------------------------------------------------------------------------- framing


def _frame(kind: bytes, body: dict[str, Any]) -> bytes:
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return MAGIC + bytes([VERSION]) + kind + zlib.compress(text.encode(), 6)


def _unframe(payload: bytes, expected: bytes) -> dict[str, Any]:
    if not isinstance(payload, (bytes, bytearray)):
        raise ProtocolError("payload must be bytes")
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds the limit of {MAX_PAYLOAD}")
    if len(payload) < 4 or payload[:2] != MAGIC:
        raise ProtocolError("not a greenhouse protocol payload (bad magic)")
    if payload[2] != VERSION:
        raise ProtocolError(f"unsupported protocol version {payload[2]} (this side speaks {VERSION})")
    kind = payload[3:4]
    if kind != expected:
        raise ProtocolError(f"expected a {KINDS.get(expected)} payload, got kind {kind!r}")
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(payload[4:], MAX_DECOMPRESSED)
        if inflater.unconsumed_tail:
            raise ProtocolError(f"payload decompresses to more than {MAX_DECOMPRESSED} bytes")
        if not inflater.eof:
            raise ProtocolError("truncated payload (compressed stream incomplete)")
        body = json.loads(raw)
    except zlib.error as exc:
        raise ProtocolError(f"corrupt payload: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"corrupt payload: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ProtocolError("corrupt payload: body is not an object")
    return body


def _need(body: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ProtocolError(f"{what}: field {key!r} missing or not {_type_name(kind)}")
    return value


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"{what} must be a non-negative integer, not {value!r}")
    return value


# ---------------------------------------------------------------------------------------------------------- readings


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading as it crosses the wire."""

    seq: int
    ts: float  # UTC seconds, millisecond resolution
    sensor: str
    quantity: str
    value: float | None
    unit: str
    quality: str = "good"
    reason: str | None = None
    clock: int = 1  # 0 unsynced, 1 synced, 2 corrected
    boot_id: str | None = None
    mono: float | None = None


@dataclass(frozen=True)
class ReadingBatch:
    gateway_id: str
    epoch: int
    readings: tuple[Reading, ...]

    @property
    def first(self) -> int:
        return self.readings[0].seq

    @property
    def last(self) -> int:
        return self.readings[-1].seq

    def ranges(self) -> list[tuple[int, int]]:
        return seq_ranges([r.seq for r in self.readings])


def seq_ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """``[1, 2, 3, 7, 8]`` -> ``[(1, 3), (7, 8)]`` (input sorted)."""
    ranges: list[tuple[int, int]] = []
    for seq in seqs:
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def _exact_scale(values: list[float]) -> int | None:
    """The smallest number of decimals (0..6) that carries every value exactly, or None."""
    for scale in range(7):
        factor = 10 ** scale
        if all(abs(v) < 1e12 and round(v * factor) / factor == v for v in values):
            return scale
    return None


def encode_readings(gateway_id: str, epoch: int, readings: Sequence[Reading]) -> bytes:
    """A batch of readings of one epoch, in seq order, as one payload."""
    if not readings:
        raise ValueError("a batch needs at least one reading")
    series_index: dict[tuple[str, str, str], int] = {}
    si, seq_d, ts_d = [], [], []
    prev_seq, prev_ts = readings[0].seq, round(readings[0].ts * 1000)
    sparse_quality: dict[str, list[Any]] = {}
    sparse_clock: dict[str, list[Any]] = {}
    for i, r in enumerate(readings):
        key = (r.sensor, r.quantity, r.unit)
        si.append(series_index.setdefault(key, len(series_index)))
        ts = round(r.ts * 1000)
        if i:
            if r.seq <= prev_seq:
                raise ValueError("readings must be in increasing seq order")
            seq_d.append(r.seq - prev_seq)
            ts_d.append(ts - prev_ts)
        prev_seq, prev_ts = r.seq, ts
        if r.quality != "good" or r.reason:
            sparse_quality[str(i)] = [QUALITIES.index(r.quality), r.reason]
        if r.clock != 1:
            sparse_clock[str(i)] = [r.clock, r.boot_id, None if r.mono is None else round(r.mono * 1000)]
    scales: list[int | None] = []
    per_series: list[list[float]] = [[] for _ in series_index]
    for r, s in zip(readings, si):
        if r.value is not None:
            if not math.isfinite(r.value):
                raise ValueError(f"reading {r.seq}: value {r.value} is not finite")
            per_series[s].append(r.value)
    scales = [_exact_scale(values) for values in per_series]
    previous = [0] * len(series_index)
    values: list[Any] = []
    for r, s in zip(readings, si):
        if r.value is None:
            values.append(None)
        elif scales[s] is None:
            values.append(float(r.value))
        else:
            mantissa = round(r.value * 10 ** scales[s])
            values.append(mantissa - previous[s])
            previous[s] = mantissa
    body = {
        "g": gateway_id, "e": epoch, "s0": readings[0].seq, "t0": round(readings[0].ts * 1000),
        "sd": seq_d if any(d != 1 for d in seq_d) else len(seq_d), "td": ts_d,
        "series": [list(k) for k in series_index], "sc": scales, "si": si, "v": values,
        "q": sparse_quality, "c": sparse_clock,
    }
    return _frame(KIND_READINGS, body)


def decode_readings(payload: bytes) -> ReadingBatch:
    body = _unframe(payload, KIND_READINGS)
    what = "readings batch"
    gateway_id = _need(body, "g", str, what)
    epoch = _uint(body.get("e"), "epoch")
    seq0 = _uint(body.get("s0"), "s0")
    t0 = _need(body, "t0", int, what)
    sd, td = body.get("sd"), _need(body, "td", list, what)
    series = _need(body, "series", list, what)
    scales, si, values = _need(body, "sc", list, what), _need(body, "si", list, what), _need(body, "v", list, what)
    quality, clocks = _need(body, "q", dict, what), _need(body, "c", dict, what)
    count = len(si)
    if not 0 < count <= MAX_ROWS:
        raise ProtocolError(f"{what}: {count} rows (1..{MAX_ROWS} allowed)")
    seq_deltas = [1] * (count - 1) if isinstance(sd, int) and not isinstance(sd, bool) and sd == count - 1 else sd
    if not isinstance(seq_deltas, list) or len(seq_deltas) != count - 1 or len(td) != count - 1 \
            or len(values) != count:
        raise ProtocolError(f"{what}: column lengths do not match its {count} rows")
    if len(scales) != len(series) or not all(isinstance(s, list) and len(s) == 3 and all(isinstance(x, str)
                                                                                         for x in s) for s in series):
        raise ProtocolError(f"{what}: malformed series table")
    readings = []
    seq, ts = seq0, t0
    previous = [0] * len(series)
    try:
        for i in range(count):
            if i:
                seq += _positive(seq_deltas[i - 1], "seq delta")
                ts += _int(td[i - 1], "ts delta")
            s = si[i]
            if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < len(series):
                raise ProtocolError(f"{what}: row {i} names series {s!r}, which does not exist")
            value = _decode_value(values[i], scales[s], previous, s, i)
            q = quality.get(str(i), [0, None])
            c = clocks.get(str(i), [1, None, None])
            if not (isinstance(q, list) and len(q) == 2 and q[0] in (0, 1, 2)) or \
                    not (isinstance(c, list) and len(c) == 3 and c[0] in (0, 1, 2)):
                raise ProtocolError(f"{what}: row {i} has a malformed quality or clock entry")
            if (q[0] == 1) != (value is None):
                raise ProtocolError(f"{what}: row {i}: an error reading has no value and only an error lacks one")
            sensor, quantity, unit = series[s]
            readings.append(Reading(
                seq=seq, ts=ts / 1000, sensor=sensor, quantity=quantity, value=value, unit=unit,
                quality=QUALITIES[q[0]], reason=q[1] if isinstance(q[1], str) else None, clock=c[0],
                boot_id=c[1] if isinstance(c[1], str) else None,
                mono=c[2] / 1000 if isinstance(c[2], int) and not isinstance(c[2], bool) else None,
            ))
    except (TypeError, IndexError) as exc:
        raise ProtocolError(f"{what}: malformed ({exc})") from None
    return ReadingBatch(gateway_id, epoch, tuple(readings))


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{what} must be an integer, not {value!r}")
    return value


def _positive(value: Any, what: str) -> int:
    if _int(value, what) < 1:
        raise ProtocolError(f"{what} must be positive, not {value!r}")
    return value


def _decode_value(raw: Any, scale: Any, previous: list[int], s: int, row: int) -> float | None:
    if raw is None:
        return None
    if scale is None:
        if not isinstance(raw, (int, float)) or isinstance(raw, bool) or not math.isfinite(raw):
            raise ProtocolError(f"row {row}: value {raw!r} is not a finite number")
        return float(raw)
    if not isinstance(scale, int) or isinstance(scale, bool) or not 0 <= scale <= 6:
        raise ProtocolError(f"series {s}: bad scale {scale!r}")
    previous[s] += _int(raw, f"row {row} value delta")
    return previous[s] / 10 ** scale if scale else float(previous[s])


# ------------------------------------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    ts: float
    kind: str
    source: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EventBatch:
    gateway_id: str
    epoch: int
    events: tuple[Event, ...]

    def ranges(self) -> list[tuple[int, int]]:
        return seq_ranges([e.seq for e in self.events])


def encode_events(gateway_id: str, epoch: int, events: Sequence[Event]) -> bytes:
    if not events:
        raise ValueError("a batch needs at least one event")
    return _frame(KIND_EVENTS, {"g": gateway_id, "e": epoch, "events": [
        [e.seq, round(e.ts * 1000), e.kind, e.source, e.data] for e in events]})


def decode_events(payload: bytes) -> EventBatch:
    body = _unframe(payload, KIND_EVENTS)
    gateway_id = _need(body, "g", str, "events batch")
    epoch = _uint(body.get("e"), "epoch")
    rows = _need(body, "events", list, "events batch")
    if not 0 < len(rows) <= MAX_ROWS:
        raise ProtocolError(f"events batch: {len(rows)} events (1..{MAX_ROWS} allowed)")
    events = []
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 5 and isinstance(row[2], str) and isinstance(row[3], str)
                and isinstance(row[4], dict)):
            raise ProtocolError(f"events batch: event {i} is malformed")
        events.append(Event(_uint(row[0], "event seq"), _int(row[1], "event ts") / 1000, row[2], row[3], row[4]))
    if any(b.seq <= a.seq for a, b in zip(events, events[1:])):
        raise ProtocolError("events batch: seqs are not increasing")
    return EventBatch(gateway_id, epoch, tuple(events))


# -------------------------------------------------------------------------------------------------------------- acks


@dataclass(frozen=True)
class Ack:
    """The data center committed these ``(first, last)`` seq ranges of one stream and epoch."""

    stream: str  # readings | events
    epoch: int
    ranges: tuple[tuple[int, int], ...]


def encode_ack(ack: Ack) -> bytes:
    return _frame(KIND_ACK, {"s": ack.stream, "e": ack.epoch, "r": [list(r) for r in ack.ranges]})


def decode_ack(payload: bytes) -> Ack:
    body = _unframe(payload, KIND_ACK)
    stream = body.get("s")
    if stream not in ("readings", "events"):
        raise ProtocolError(f"ack: unknown stream {stream!r}")
    ranges = _need(body, "r", list, "ack")
    parsed = []
    for r in ranges:
        if not (isinstance(r, list) and len(r) == 2):
            raise ProtocolError("ack: a range must be [first, last]")
        first, last = _uint(r[0], "ack first"), _uint(r[1], "ack last")
        if last < first:
            raise ProtocolError(f"ack: range [{first}, {last}] is backwards")
        parsed.append((first, last))
    return Ack(stream, _uint(body.get("e"), "epoch"), tuple(parsed))


# ------------------------------------------------------------------------------------------------- status, commands


def encode_status(state: str, **fields: Any) -> bytes:
    """Birth (``online``, with version, epoch, backlog) or last will (``offline``)."""
    return _frame(KIND_STATUS, {"state": state, **fields})


def decode_status(payload: bytes) -> dict[str, Any]:
    body = _unframe(payload, KIND_STATUS)
    if body.get("state") not in ("online", "offline"):
        raise ProtocolError(f"status: unknown state {body.get('state')!r}")
    return body


def encode_presence(start: str, **fields: Any) -> bytes:
    """A collector's presence: ``start`` is new at every (re)subscription (a fresh random id)."""
    return _frame(KIND_PRESENCE, {"start": start, **fields})


def decode_presence(payload: bytes) -> dict[str, Any]:
    body = _unframe(payload, KIND_PRESENCE)
    start = body.get("start")
    if not isinstance(start, str) or not 1 <= len(start) <= 128:
        raise ProtocolError("presence: field 'start' missing or not a string of 1-128 characters")
    return body


COMMAND_OPS = ("actuate", "ping")
ACTIONS = ("on", "off", "auto")
#: Longest override a command may ask for at all; each actuator's ``max_manual`` is usually far shorter.
MAX_COMMAND_DURATION = 366 * 86400.0
#: Latest ``issued`` time a command may carry (UTC seconds; about the year 5138).
MAX_ISSUED = 1e11
_COMMAND_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_ACTUATOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_COMMAND_FIELDS = {"id", "issued", "op", "args"}
_COMMAND_ARGS = {"actuate": {"actuator", "action", "for"}, "ping": set()}


class BadCommand(ProtocolError):
    """A command that does not follow the protocol; ``command_id`` is its id when that much was valid, so the
    refusal can still name the command it answers."""

    def __init__(self, message: str, command_id: str | None = None):
        super().__init__(message)
        self.command_id = command_id


@dataclass(frozen=True)
class Command:
    id: str
    issued: float  # UTC seconds, set by the data center
    op: str
    args: dict[str, Any]


def encode_command(command: Command) -> bytes:
    return _frame(KIND_COMMAND, {"id": command.id, "issued": command.issued, "op": command.op,
                                 "args": command.args})


def decode_command(payload: bytes) -> Command:
    """A command with every field strictly typed: an id of 1-64 letters, digits, ``.``, ``_``, ``:`` or ``-``; a
    finite ``issued`` time; a known op; exactly the arguments of that op (``actuate``: an actuator id, an action
    ``on``/``off``/``auto`` and an optional ``for`` of seconds, a number, not a boolean, within 0 and
    :data:`MAX_COMMAND_DURATION`; ``ping``: none). Unknown fields are refused, not ignored."""
    body = _unframe(payload, KIND_COMMAND)
    command_id = body.get("id")
    if not isinstance(command_id, str) or not _COMMAND_ID.fullmatch(command_id):
        raise BadCommand("command: id must be 1-64 letters, digits, '.', '_', ':' or '-' (got "
                         f"{_show(command_id)})")
    unknown = set(body) - _COMMAND_FIELDS
    if unknown:
        raise BadCommand(f"command: unknown field(s) {_names(unknown)}", command_id)
    issued = body.get("issued")
    if not _is_number(issued) or not 0 <= issued <= MAX_ISSUED:
        raise BadCommand(f"command: issued must be a time in UTC seconds (got {_show(issued)})", command_id)
    op = body.get("op")
    if op not in COMMAND_OPS:
        raise BadCommand(f"command: unknown op {_show(op)} (ops: {', '.join(COMMAND_OPS)})", command_id)
    args = body.get("args")
    if not isinstance(args, dict):
        raise BadCommand(f"command: args must be an object (got {_show(args)})", command_id)
    unknown = set(args) - _COMMAND_ARGS[op]
    if unknown:
        raise BadCommand(f"command {op}: unknown argument(s) {_names(unknown)}", command_id)
    if op == "actuate":
        args = _actuate_args(args, command_id)
    return Command(command_id, float(issued), op, args)


def _actuate_args(args: dict[str, Any], command_id: str) -> dict[str, Any]:
    actuator, action, duration = args.get("actuator"), args.get("action"), args.get("for")
    if not isinstance(actuator, str) or not _ACTUATOR_ID.fullmatch(actuator):
        raise BadCommand(f"command actuate: actuator must be an actuator id (got {_show(actuator)})", command_id)
    if action not in ACTIONS:
        raise BadCommand(f"command actuate: action must be one of {', '.join(ACTIONS)} (got {_show(action)})",
                         command_id)
    if duration is not None and (not _is_number(duration) or not 0 < duration <= MAX_COMMAND_DURATION):
        raise BadCommand(f'command actuate: "for" must be a number of seconds, more than 0 and at most '
                         f"{MAX_COMMAND_DURATION:.0f} (got {_show(duration)})", command_id)
    return {"actuator": actuator, "action": action, "for": None if duration is None else float(duration)}


def _is_number(value: Any) -> bool:
    """An int or a finite float, not a bool (JSON ``true`` is not 1). Huge integers are compared, never converted."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -2**63 <= value < 2**63
    return isinstance(value, float) and math.isfinite(value)


def _show(value: Any) -> str:
    """A short, printable rendering of a JSON value for an error message (never the whole of a hostile input)."""
    if isinstance(value, (list, dict)):
        return "an array" if isinstance(value, list) else "an object"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        return "a huge integer"
    text = json.dumps(value)  # ensure_ascii: a lone surrogate shows as \udc80, not as itself
    return text if len(text) <= 40 else text[:37] + "..."


def _names(keys: set[str]) -> str:
    shown = sorted(keys)[:5]
    return ", ".join(_show(k) for k in shown) + (f" and {len(keys) - len(shown)} more" if len(keys) > 5 else "")
