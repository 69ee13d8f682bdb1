"""The wire of the contract between gateways and the data center: topics, batch encoding, acks, status and commands.

Both sides import the ``edge.contract`` package (this module; ``events`` for what an event's data holds;
``history`` for the history export) and nothing else of each other. ``docs/protocol.md`` describes the same in prose.

Every payload starts with a 4-byte header: ``b"GH"``, the protocol version (1) and a kind byte; the rest is a
zlib-compressed JSON object. Reading batches are columnar and delta-encoded before compression (about 3 bytes per
reading for typical greenhouse data); values are carried exactly (a decimal scale per series where one is exact,
else the float itself). Decoders raise :class:`ProtocolError` naming what is wrong; they never return half a batch.

Decoders take any bytes, hostile ones included, and raise nothing but :class:`ProtocolError`: the JSON is valid
UTF-8 with no lone surrogate and no NUL in any text, nested at most ``MAX_DEPTH`` deep, its integers have at most
``MAX_INT_DIGITS`` digits and its numbers are finite; keys (epoch, seq) fit a signed 64-bit integer, timestamps a
calendar year 1..9999, names (gateway, sensor, quantity, unit, event kind and source) 1-128 characters without
control characters. What is well-formed but not believable (a value outside the physical range of its quantity, a
time outside the window a synced clock can give) is not the decoder's business: :func:`flag_implausible` marks it.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import accumulate, repeat
from operator import itemgetter, mul, sub, truediv
from typing import Any, NamedTuple

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
#: Rows (readings or events) in one batch at most. The gateway's ``sync.batch_size`` is bounded by it; the
#: collector's per-round and per-gateway budgets (docs/datacenter.md) are counted in the same rows.
MAX_ROWS = 10_000
#: JSON nesting (objects and arrays) a payload may use: a batch needs 4-5 levels, event data a few more.
MAX_DEPTH = 32
#: Digits of one JSON integer at most (2**64 has 20): Python refuses to parse more than 4,300 anyway, slowly.
MAX_INT_DIGITS = 24
#: Largest epoch, seq or other key: what a PostgreSQL ``bigint`` (and SQLite's INTEGER) holds.
MAX_KEY = 2**63 - 1
#: Timestamps (UTC milliseconds) a payload may carry: calendar years 1..9999, which every side can represent.
MIN_TS_MS = round(datetime(1, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
MAX_TS_MS = round(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc).timestamp() * 1000)
#: Monotonic milliseconds at most (a float carries them exactly up to 2**53).
MAX_MONO_MS = 2**53
MAX_NAME = 128

QUALITIES = ("good", "error", "implausible")
TOPIC_ROOT = "greenhouse/v1"


class ProtocolError(EdgeError, ValueError):
    """A payload or topic that does not follow this protocol. The message is cut at ``MAX_REASON`` characters: it
    may quote hostile input, and it is logged and stored."""

    def __init__(self, message: str):
        super().__init__(message if len(message) <= MAX_REASON else message[:MAX_REASON - 3] + "...")


MAX_REASON = 300


_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxdict, _short.maxlevel = 40, 40, 4, 4, 2


def _show(value: Any) -> str:
    """A short, printable rendering of a JSON value for an error message: a hostile value never makes a huge or
    unprintable reason (a lone surrogate shows as ``\\udc80``, not as itself)."""
    if isinstance(value, (list, dict)):
        return "an array" if isinstance(value, list) else "an object"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**MAX_INT_DIGITS:
        return "a huge integer"
    try:
        text = json.dumps(value)  # ensure_ascii: printable, whatever the value holds
    except (TypeError, ValueError):
        return _short.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
    except zlib.error as exc:
        raise ProtocolError(f"corrupt payload: {exc}") from None
    body = _parse_json(raw)
    if not isinstance(body, dict):
        raise ProtocolError("corrupt payload: body is not an object")
    return body


def _parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, finite numbers, short integers, bounded depth, no NUL or lone surrogate in any text."""
    try:
        text = raw.decode("utf-8")  # strict: refuses invalid UTF-8, and surrogates encoded as UTF-8 too
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"corrupt payload: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    # Only a number with many digits or a 3-digit exponent can be too long or overflow to infinity: such a text
    # (rare, and maybe only inside a string) takes the slow path, whose hooks look at every number.
    hooks = ({"parse_int": _json_int, "parse_float": _json_float}
             if _LONG_INTEGER.search(text) or _BIG_EXPONENT.search(text) else {})
    try:
        body = json.loads(text, parse_constant=_json_constant, **hooks)
    except RecursionError:  # the parser's own guard (about 1,000 levels): it never recurses past it
        raise ProtocolError(f"corrupt payload: JSON nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"corrupt payload: not JSON ({exc})") from None
    _check_tree(body)
    return body


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError(f"corrupt payload: an integer of {len(text.lstrip('-'))} digits "
                            f"(at most {MAX_INT_DIGITS})")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"corrupt payload: number {text[:40]!r} is out of range")
    return value


def _json_constant(text: str) -> float:
    raise ProtocolError(f"corrupt payload: {text} is not a JSON number")


#: JSON numbers are written in ASCII digits. Two plain searches: one pattern with both alternatives (or ``\d``,
#: which matches every script's digits) took longer than parsing the JSON.
_LONG_INTEGER = re.compile(r"[0-9]{%d}" % (MAX_INT_DIGITS + 1))
_BIG_EXPONENT = re.compile(r"[eE]\+?[0-9]{3}")
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_SCALARS = frozenset({int, float, bool, type(None)})


def _check_tree(body: Any) -> None:
    """Depth and texts of a parsed document, without recursion (a list of numbers is checked in C)."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ProtocolError(f"corrupt payload: JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for key, value in node.items():
                _check_text(key)
                if isinstance(value, str):
                    _check_text(value)
                elif isinstance(value, (dict, list)):
                    stack.append((value, depth + 1))
        elif isinstance(node, list):
            if set(map(type, node)) <= _SCALARS:
                continue
            for value in node:
                if isinstance(value, str):
                    _check_text(value)
                elif isinstance(value, (dict, list)):
                    stack.append((value, depth + 1))
        elif isinstance(node, str):
            _check_text(node)


def _check_text(text: str) -> None:
    bad = _BAD_TEXT.search(text)
    if bad:
        what = "a NUL character" if bad.group() == "\x00" else f"a lone surrogate U+{ord(bad.group()):04X}"
        raise ProtocolError(f"corrupt payload: a text holds {what} (texts must be valid Unicode without NUL)")


def _need(body: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ProtocolError(f"{what}: field {key!r} missing or not {_type_name(kind)}")
    return value


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _uint(value: Any, what: str) -> int:
    """A key: a non-negative integer that fits a signed 64-bit column."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_KEY:
        raise ProtocolError(f"{what} must be an integer from 0 to 2**63-1, not {_show(value)}")
    return value


_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,%d}" % MAX_NAME)


def _name(value: Any, what: str, *, empty: bool = False) -> str:
    """A gateway, sensor, quantity, unit, event kind or source: 1-128 characters, no control characters."""
    if not isinstance(value, str) or not (_NAME.fullmatch(value) or (empty and value == "")):
        raise ProtocolError(f"{what} must be 1-{MAX_NAME} characters without control characters, "
                            f"not {_show(value)}")
    return value


def _ts_ms(value: int, what: str) -> int:
    if not MIN_TS_MS <= value <= MAX_TS_MS:
        raise ProtocolError(f"{what} {_show(value)} ms is outside the years 1..9999")
    return value


# ---------------------------------------------------------------------------------------------------------- readings


class Reading(NamedTuple):
    """One reading, the gateway's one reading type from the sampler to the wire (and the data center's, in a
    :class:`ReadingBatch`). A reading just taken has no ``seq`` yet (:meth:`taken`, ``seq`` 0): the buffer gives it
    one, from 1 up, in the transaction that stores it.

    A named tuple (immutable; ``_replace`` for a changed copy): a backlog makes hundreds of thousands of them on
    each side, and a tuple is built several times faster than a frozen dataclass."""

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

    @classmethod
    def taken(cls, ts: float, sensor: str, quantity: str, value: float | None, unit: str, quality: str = "good",
              reason: str | None = None, clock: int = 1, boot_id: str | None = None,
              mono: float | None = None) -> "Reading":
        """A reading as a sensor gave it, not stored yet (``seq`` 0: :data:`UNSTORED`)."""
        return cls(UNSTORED, ts, sensor, quantity, value, unit, quality, reason, clock, boot_id, mono)


#: The ``seq`` of a reading not stored yet (stored ones are numbered from 1).
UNSTORED = 0


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
        seqs = list(map(_SEQ, self.readings))
        if seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs))):  # the usual batch: one run, found in C
            return [(seqs[0], seqs[-1])]
        return seq_ranges(seqs)


def seq_ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """``[1, 2, 3, 7, 8]`` -> ``[(1, 3), (7, 8)]`` (input sorted)."""
    ranges: list[tuple[int, int]] = []
    for seq in seqs:
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def _exact_scale(values: list[float]) -> tuple[int | None, list[int] | None]:
    """The smallest number of decimals (0..6) that carries every value exactly, with the values' mantissas at that
    scale (``round(v * 10**scale)``); ``(None, None)`` if none does. Each try is a few passes in C over the values."""
    if not values:
        return 0, []
    if max(map(abs, values)) >= 1e12:
        return None, None
    for scale in range(7):
        factor = 10 ** scale
        mantissas = list(map(round, map(mul, values, repeat(factor))))
        if list(map(truediv, mantissas, repeat(factor))) == values:  # int / int: the exact quotient, rounded once
            return scale, mantissas
    return None, None


_COLUMN = tuple(itemgetter(i) for i in range(len(Reading._fields)))
_SEQ, _TS, _SENSOR, _QUANTITY, _VALUE, _UNIT, _QUALITY, _REASON, _CLOCK, _BOOT_ID, _MONO = _COLUMN


def encode_readings(gateway_id: str, epoch: int, readings: Sequence[Reading]) -> bytes:
    """A batch of readings of one epoch, in seq order, as one payload."""
    if not readings:
        raise ValueError("a batch needs at least one reading")
    count = len(readings)
    sparse_quality: dict[str, list[Any]] = {}
    if list(map(_QUALITY, readings)).count("good") != count or any(map(_REASON, readings)):
        for i, r in enumerate(readings):
            if r.quality != "good" or r.reason:
                sparse_quality[str(i)] = [QUALITIES.index(r.quality), r.reason]
    sparse_clock: dict[str, list[Any]] = {}
    if list(map(_CLOCK, readings)).count(1) != count:
        for i, r in enumerate(readings):
            if r.clock != 1:
                sparse_clock[str(i)] = [r.clock, r.boot_id, None if r.mono is None else round(r.mono * 1000)]
    return _encode(gateway_id, epoch, list(map(_SEQ, readings)), list(map(_TS, readings)),
                   list(zip(map(_SENSOR, readings), map(_QUANTITY, readings), map(_UNIT, readings))),
                   list(map(_VALUE, readings)), sparse_quality, sparse_clock)


def encode_good_readings(gateway_id: str, epoch: int, seqs: list[int], times: list[float], sensors: list[str],
                         quantities: list[str], units: list[str], values: list[float]) -> bytes:
    """The payload :func:`encode_readings` makes of these readings given column by column, every one of them good
    (quality ``good``, no reason, a value) and from a synced clock: a backlog's usual batch, read from the buffer
    as columns, without a :class:`Reading` per row."""
    if not seqs:
        raise ValueError("a batch needs at least one reading")
    if not len(seqs) == len(times) == len(sensors) == len(quantities) == len(units) == len(values):
        raise ValueError("the columns of a batch must have the same length")
    if None in values:
        raise ValueError("a good reading has a value")
    return _encode(gateway_id, epoch, seqs, times, list(zip(sensors, quantities, units)), values, {}, {})


def _encode(gateway_id: str, epoch: int, seqs: list[int], times: list[float], keys: list[tuple[str, str, str]],
            column: list[float | None], sparse_quality: dict[str, list[Any]],
            sparse_clock: dict[str, list[Any]]) -> bytes:
    """The payload of a batch given as columns (``keys``: each row's sensor, quantity and unit). A backlog drains
    through here thousands of rows at a time, so each column is delta-encoded and checked in a few passes in C
    (``map``, ``zip``, list comparison), not a loop in Python per row."""
    seq_d = list(map(sub, seqs[1:], seqs[:-1]))
    if seq_d and min(seq_d) <= 0:
        raise ValueError("readings must be in increasing seq order")
    ts_ms = list(map(round, map(mul, times, repeat(1000))))
    series_index = dict.fromkeys(keys)  # in order of first appearance
    for index, key in enumerate(series_index):
        series_index[key] = index
    si = list(map(series_index.__getitem__, keys))
    scales, values = _encode_values(column, seqs, si, len(series_index))
    body = {
        "g": gateway_id, "e": epoch, "s0": seqs[0], "t0": ts_ms[0],
        "sd": seq_d if seq_d.count(1) != len(seq_d) else len(seq_d), "td": list(map(sub, ts_ms[1:], ts_ms[:-1])),
        "series": [list(k) for k in series_index], "sc": scales, "si": si, "v": values,
        "q": sparse_quality, "c": sparse_clock,
    }
    return _frame(KIND_READINGS, body)


def _encode_values(column: list[float | None], seqs: list[int], si: list[int],
                   nseries: int) -> tuple[list[int | None], list[Any]]:
    """The scale of each series and the value column: where a series has an exact scale, each value's mantissa at
    that scale less the previous one of the same series (the first less 0); else the float itself; None stays None.

    The rows are grouped by series (a stable sort), each group encoded in a few passes in C, and the groups' results
    put back in row order."""
    order = sorted(range(len(column)), key=si.__getitem__)
    grouped = list(map(column.__getitem__, order))
    sizes = [0] * nseries
    for s, size in Counter(si).items():
        sizes[s] = size
    scales: list[int | None] = []
    encoded: list[Any] = []
    start = 0
    for size in sizes:
        group = grouped[start:start + size]
        present = group if None not in group else [v for v in group if v is not None]
        if not all(map(math.isfinite, present)):
            bad = next(v for v in present if not math.isfinite(v))
            raise ValueError(f"reading {seqs[next(i for i, v in enumerate(column) if v is bad)]}: value {bad} "
                             "is not finite")
        scale, mantissas = _exact_scale(present)
        scales.append(scale)
        if scale is None:
            out: list[Any] = list(map(float, present))
        else:
            out = list(map(sub, mantissas, [0, *mantissas[:-1]]))
        if present is not group:  # put the Nones back where they were
            found = iter(out)
            out = [None if v is None else next(found) for v in group]
        encoded.extend(out)
        start += size
    values: list[Any] = [None] * len(column)
    for position, value in zip(order, encoded):
        values[position] = value
    return scales, values


def decode_readings(payload: bytes) -> ReadingBatch:
    body = _unframe(payload, KIND_READINGS)
    what = "readings batch"
    gateway_id = _name(body.get("g"), f"{what}: gateway id")
    epoch = _uint(body.get("e"), "epoch")
    seq0 = _uint(body.get("s0"), "s0")
    t0 = _ts_ms(_need(body, "t0", int, what), "t0")
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
    if len(scales) != len(series) or not all(isinstance(s, list) and len(s) == 3 for s in series):
        raise ProtocolError(f"{what}: malformed series table")
    series = [(_name(s[0], "sensor"), _name(s[1], "quantity"), _name(s[2], "unit", empty=True)) for s in series]
    readings = []
    seq, ts = seq0, t0
    previous = [0] * len(series)
    nseries = len(series)
    new = tuple.__new__  # a Reading from its eleven fields, without the named tuple's keyword handling
    # The collector's hot path: every row is checked as below, but the checks that pass are inlined and a check's
    # message is only built (by the same helpers) when it fails.
    try:
        if not quality and not clocks:  # every row good and from a synced clock: a backlog's usual batch
            good = _decode_good(seq0, seq_deltas, t0, td, series, scales, si, values)
            if good is not None:
                return ReadingBatch(gateway_id, epoch, good)
        for i in range(count):
            if i:
                delta = seq_deltas[i - 1]
                if type(delta) is not int or delta < 1:
                    _positive(delta, "seq delta")
                seq += delta
                if seq > MAX_KEY:
                    _uint(seq, f"row {i}: seq")
                delta = td[i - 1]
                if type(delta) is not int:
                    _int(delta, "ts delta")
                ts += delta
                if not MIN_TS_MS <= ts <= MAX_TS_MS:
                    _ts_ms(ts, f"row {i}: ts")
            s = si[i]
            if type(s) is not int or not 0 <= s < nseries:
                raise ProtocolError(f"{what}: row {i} names series {_show(s)}, which does not exist")
            raw, scale = values[i], scales[s]
            if type(raw) is int and type(scale) is int and 0 < scale <= 6 and abs(raw) < _FAST_DELTA:
                mantissa = previous[s] = previous[s] + raw
                value = mantissa / _POWERS[scale]
            else:
                value = _decode_value(raw, scale, previous, s, i)
            q = quality.get(str(i), _GOOD) if quality else _GOOD
            c = clocks.get(str(i), _SYNCED) if clocks else _SYNCED
            if q is not _GOOD and not (isinstance(q, list) and len(q) == 2 and q[0] in (0, 1, 2)
                                       and not isinstance(q[0], bool)) or \
                    c is not _SYNCED and not (isinstance(c, list) and len(c) == 3 and c[0] in (0, 1, 2)
                                              and not isinstance(c[0], bool)):
                raise ProtocolError(f"{what}: row {i} has a malformed quality or clock entry")
            if (q[0] == 1) != (value is None):
                raise ProtocolError(f"{what}: row {i}: an error reading has no value and only an error lacks one")
            sensor, quantity, unit = series[s]
            if c is _SYNCED:
                readings.append(new(Reading, (seq, ts / 1000, sensor, quantity, value, unit, QUALITIES[q[0]],
                                              q[1] if isinstance(q[1], str) else None, 1, None, None)))
            else:
                readings.append(new(Reading, (
                    seq, ts / 1000, sensor, quantity, value, unit, QUALITIES[q[0]],
                    q[1] if isinstance(q[1], str) else None, int(c[0]),
                    _name(c[1], f"row {i}: boot id") if isinstance(c[1], str) else None, _mono(c[2], i))))
    except (TypeError, IndexError) as exc:
        raise ProtocolError(f"{what}: malformed ({exc})") from None
    return ReadingBatch(gateway_id, epoch, tuple(readings))


def _decode_good(seq0: int, seq_deltas: list[Any], t0: int, td: list[Any], series: list[tuple[str, str, str]],
                 scales: list[Any], si: list[Any], values: list[Any]) -> tuple[Reading, ...] | None:
    """The readings of a batch whose every row is good and from a synced clock, decoded column by column in a few
    passes in C each (the inverse of :func:`_encode`), or None when any check fails: the row-by-row decoder then
    finds the first row at fault and names it. The checks are the row-by-row decoder's, made per column."""
    if not (set(map(type, seq_deltas)) <= _INT and set(map(type, td)) <= _INT and set(map(type, si)) <= _INT):
        return None
    if seq_deltas and min(seq_deltas) < 1 or min(si) < 0 or max(si) >= len(series):
        return None
    seqs = list(accumulate(seq_deltas, initial=seq0))
    times = list(accumulate(td, initial=t0))
    if seqs[-1] > MAX_KEY or min(times) < MIN_TS_MS or max(times) > MAX_TS_MS:
        return None
    order = sorted(range(len(si)), key=si.__getitem__)  # the rows grouped by series, each group in row order
    grouped = list(map(values.__getitem__, order))
    sizes = [0] * len(series)
    for s, size in Counter(si).items():
        sizes[s] = size
    decoded: list[float] = []
    start = 0
    for s, size in enumerate(sizes):
        group, scale = grouped[start:start + size], scales[s]
        start += size
        if not group:
            continue
        if type(scale) is int and 0 <= scale <= 6:
            if not set(map(type, group)) <= _INT or max(map(abs, group)) >= _FAST_DELTA:
                return None
            decoded.extend(map(truediv, accumulate(group), repeat(_POWERS[scale])))
        elif scale is None:
            if not set(map(type, group)) <= _NUMBER or not all(map(math.isfinite, group)):
                return None
            decoded.extend(map(float, group))
        else:
            return None
    column: list[float] = [0.0] * len(si)
    for position, value in zip(order, decoded):
        column[position] = value
    sensors, quantities, units = (list(map(itemgetter(i), series)) for i in range(3))
    return tuple(map(tuple.__new__, repeat(Reading), zip(
        seqs, map(truediv, times, repeat(1000)), map(sensors.__getitem__, si), map(quantities.__getitem__, si),
        column, map(units.__getitem__, si), repeat("good"), repeat(None), repeat(1), repeat(None), repeat(None))))


_INT, _NUMBER = frozenset({int}), frozenset({int, float})
_GOOD = [0, None]  # a row without a quality entry (never changed)
_SYNCED = [1, None, None]  # a row without a clock entry (never changed)
_POWERS = [10 ** scale for scale in range(7)]
#: Deltas this small keep a mantissa far below 2**53 for any 10,000 rows, so the fast path needs no finiteness check.
_FAST_DELTA = 10 ** 12


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{what} must be an integer, not {_show(value)}")
    return value


def _positive(value: Any, what: str) -> int:
    if _int(value, what) < 1:
        raise ProtocolError(f"{what} must be positive, not {_show(value)}")
    return value


def _mono(value: Any, row: int) -> float | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    if abs(value) > MAX_MONO_MS:
        raise ProtocolError(f"row {row}: monotonic time {_show(value)} ms is out of range")
    return value / 1000


def _decode_value(raw: Any, scale: Any, previous: list[int], s: int, row: int) -> float | None:
    if raw is None:
        return None
    if scale is None:
        if not isinstance(raw, (int, float)) or isinstance(raw, bool) or not math.isfinite(raw):
            raise ProtocolError(f"row {row}: value {_show(raw)} is not a finite number")
        return float(raw)
    if not isinstance(scale, int) or isinstance(scale, bool) or not 0 <= scale <= 6:
        raise ProtocolError(f"series {s}: bad scale {_show(scale)}")
    previous[s] += _int(raw, f"row {row} value delta")
    try:
        value = previous[s] / 10 ** scale if scale else float(previous[s])
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise ProtocolError(f"row {row}: value is not a finite number")
    return value


# ---------------------------------------------------------------------------------------------- plausibility

#: The physical range of each quantity the data center believes, in the protocol's units (``hardware/base.py
#: UNITS``). Wider than the gateway's greenhouse plausibility (``edge.gateway.hardware.base.PLAUSIBLE``, which a
#: sensor's ``plausible:`` may override): a value outside it is not a greenhouse reading whatever the config says.
PHYSICAL: dict[str, tuple[float, float]] = {
    "temperature": (-273.15, 1_000.0),     # °C: absolute zero .. beyond any probe a greenhouse has (boiler, flue)
    "humidity": (0.0, 100.0),              # % relative humidity
    "soil_moisture": (0.0, 100.0),         # % volumetric water content
    "light": (0.0, 1_000_000.0),           # lx: full sun is about 120,000
    "co2": (0.0, 1_000_000.0),             # ppm: 1,000,000 is pure CO2
    "pressure": (0.0, 100_000.0),          # hPa: vacuum .. 100 bar (irrigation lines included)
    "flow": (0.0, 1_000_000.0),            # l/min
    "level": (0.0, 1.0),                   # a float switch: 0 or 1
    "par": (0.0, 10_000.0),                # umol/(m2 s): full sun is about 2,000
    # derived at the gateway (edge/gateway/derived.py)
    "vpd": (0.0, 100.0),                   # kPa: es(T) at 100 °C is 101
    "leaf_vpd": (-100.0, 100.0),           # kPa
    "dew_point": (-273.15, 100.0),         # °C
    "dew_margin": (-400.0, 1_000.0),       # K
    "abs_humidity": (0.0, 1_000.0),        # g/m3
    "humidity_deficit": (0.0, 1_000.0),    # g/m3
    "dli": (0.0, 200.0),                   # mol/(m2 d): the sun gives at most about 70
    "temperature_min": (-273.15, 1_000.0),  # °C
    "temperature_mean": (-273.15, 1_000.0),
    "temperature_max": (-273.15, 1_000.0),
    "gdd": (0.0, 1_000.0),                 # °C·d of one day
    "et0": (0.0, 100.0),                   # mm/d
}
#: Any other quantity: a magnitude no sensor unit we use reaches.
PHYSICAL_DEFAULT = (-1e12, 1e12)
#: A reading's time is believed from here to ``now + FUTURE_SLACK``: no gateway of this system ran before 2000.
TRUSTED_FROM = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()
FUTURE_SLACK = 86_400.0
FLAG_PREFIX = "data center: "


def implausibility(reading: Reading, now: float) -> str | None:
    """Why the data center does not believe this reading (its value or its time), or None."""
    if reading.value is not None:
        low, high = PHYSICAL.get(reading.quantity, PHYSICAL_DEFAULT)
        if not low <= reading.value <= high:
            return f"value {reading.value:g} is outside the physical range {low:g}..{high:g} of {reading.quantity}"
    if not TRUSTED_FROM <= reading.ts <= now + FUTURE_SLACK:
        clock = "a synced" if reading.clock else "an unsynced"
        return (f"time {_iso(reading.ts)} from {clock} clock is outside 2000-01-01..now+1d "
                "(the collector's clock)")
    return None


def flag_implausible(batch: ReadingBatch, now: float) -> ReadingBatch:
    """The batch with every unbelievable reading flagged: quality ``implausible`` (an ``error`` stays an error)
    and a reason starting with ``data center:``. Keys, values and times are kept as the gateway sent them."""
    flagged, changed = [], False
    for r in batch.readings:
        why = implausibility(r, now)
        if why is not None:
            reason = FLAG_PREFIX + why + (f"; gateway: {r.reason}" if r.reason else "")
            r = r._replace(quality="error" if r.quality == "error" else "implausible", reason=reason)
            changed = True
        flagged.append(r)
    return ReadingBatch(batch.gateway_id, batch.epoch, tuple(flagged)) if changed else batch


def _iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"{ts:.0f}s"


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
    gateway_id = _name(body.get("g"), "events batch: gateway id")
    epoch = _uint(body.get("e"), "epoch")
    rows = _need(body, "events", list, "events batch")
    if not 0 < len(rows) <= MAX_ROWS:
        raise ProtocolError(f"events batch: {len(rows)} events (1..{MAX_ROWS} allowed)")
    events = []
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 5 and isinstance(row[4], dict)):
            raise ProtocolError(f"events batch: event {i} is malformed")
        events.append(Event(_uint(row[0], "event seq"), _ts_ms(_int(row[1], "event ts"), f"event {i}: ts") / 1000,
                            _name(row[2], f"event {i}: kind"), _name(row[3], f"event {i}: source"), row[4]))
    if any(b.seq <= a.seq for a, b in zip(events, events[1:])):
        raise ProtocolError("events batch: seqs are not increasing")
    return EventBatch(gateway_id, epoch, tuple(events))


# -------------------------------------------------------------------------------------------------------------- acks


@dataclass(frozen=True)
class Ack:
    """The data center committed these ``(first, last)`` seq ranges of one stream and epoch.

    ``conflicts`` are ranges of the same batch whose keys the data center already holds with *different* content: a
    key this gateway used before (a buffer lost to a corrupt SD card, a restored backup, a re-imaged card). They are
    not stored and must be sent again under a new epoch. ``max_epoch`` is the highest epoch the data center holds for
    the gateway: an epoch floor that survives the loss of the gateway's whole disk.
    """

    stream: str  # readings | events
    epoch: int
    ranges: tuple[tuple[int, int], ...]
    conflicts: tuple[tuple[int, int], ...] = ()
    max_epoch: int | None = None


def encode_ack(ack: Ack) -> bytes:
    body: dict[str, Any] = {"s": ack.stream, "e": ack.epoch, "r": [list(r) for r in ack.ranges]}
    if ack.conflicts:
        body["x"] = [list(r) for r in ack.conflicts]
    if ack.max_epoch is not None:
        body["m"] = ack.max_epoch
    return _frame(KIND_ACK, body)


def decode_ack(payload: bytes) -> Ack:
    body = _unframe(payload, KIND_ACK)
    stream = body.get("s")
    if stream not in ("readings", "events"):
        raise ProtocolError(f"ack: unknown stream {stream!r}")
    ranges = _ranges(_need(body, "r", list, "ack"), "ack")
    conflicts = _ranges(body.get("x", []), "ack conflicts")
    max_epoch = body.get("m")
    return Ack(stream, _uint(body.get("e"), "epoch"), ranges, conflicts,
               None if max_epoch is None else _uint(max_epoch, "ack max_epoch"))


def _ranges(value: Any, what: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list) or len(value) > MAX_ROWS:
        raise ProtocolError(f"{what}: expected a list of at most {MAX_ROWS} [first, last] ranges")
    parsed = []
    for r in value:
        if not (isinstance(r, list) and len(r) == 2):
            raise ProtocolError(f"{what}: a range must be [first, last]")
        first, last = _uint(r[0], f"{what} first"), _uint(r[1], f"{what} last")
        if last < first:
            raise ProtocolError(f"{what}: range [{first}, {last}] is backwards")
        parsed.append((first, last))
    return tuple(parsed)


# ------------------------------------------------------------------------------------------------- status, commands


def encode_status(state: str, **fields: Any) -> bytes:
    """Birth (``online``, with version, epoch, backlog) or last will (``offline``)."""
    return _frame(KIND_STATUS, {"state": state, **fields})


def decode_status(payload: bytes) -> dict[str, Any]:
    body = _unframe(payload, KIND_STATUS)
    if body.get("state") not in ("online", "offline"):
        raise ProtocolError(f"status: unknown state {_show(body.get('state'))}")
    if "version" in body and body["version"] is not None:
        _name(body["version"], "status: version")
    for key in ("epoch", "backlog"):
        if body.get(key) is not None:
            _uint(body[key], f"status: {key}")
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


def _names(keys: set[str]) -> str:
    shown = sorted(keys)[:5]
    return ", ".join(_show(k) for k in shown) + (f" and {len(keys) - len(shown)} more" if len(keys) > 5 else "")
