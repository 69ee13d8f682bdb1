"""Hostile payloads for the decoders and the collector (hypothesis strategies).

Most are well framed (magic, version, kind byte, a valid zlib stream) so that they reach the JSON and the fields:
hostile JSON documents, valid batches with one field replaced by something hostile, raw JSON snippets no encoder
makes (5,000-digit integers, ``1e999``, ``NaN``, 100,000-deep nesting, lone surrogates, NUL, invalid UTF-8), and
zlib bombs. Raw garbage and broken frames come too.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from hypothesis import strategies as st

from edge.contract import protocol

#: JSON texts that break a naive decoder: each was seen to kill a collector, or nearly.
RAW_SNIPPETS = [
    b"1" + b"0" * 5000,                      # ValueError: Python's int-digits limit
    b"1" + b"0" * 400,                       # OverflowError: ms -> s as a float
    b"9223372036854775808",                  # 2**63: no bigint holds it
    b"18446744073709551616",                 # 2**64
    b"-1",
    b"1e999", b"-1e999", b"NaN", b"Infinity", b"-Infinity",
    b"1e308", b"-1e308", b"5e-324",
    b"[" * 100_000 + b"]" * 100_000,         # RecursionError
    b"{\"a\":" * 50_000 + b"1" + b"}" * 50_000,
    b"[" * 40 + b"]" * 40,                   # just over the depth limit
    b'"\\ud800"', b'"a\\udfffb"', b'"\\udc00\\ud800"',  # lone surrogates (a psycopg UnicodeEncodeError)
    b'"\\u0000"', b'"nul\\u0000byte"',       # NUL: PostgreSQL text and jsonb refuse it
    b'"\xff\xfe"', b'"\xed\xa0\x80"',        # invalid UTF-8, and a surrogate encoded as UTF-8
    b'"' + "\u202e".encode() * 200 + b'"',
    b'"' + b"x" * 200 + b'"',                # longer than a name may be
    b"true", b"null", b"[]", b"{}", b'""', b"0",
]


def frame(kind: bytes, body: bytes, *, level: int = 6) -> bytes:
    return protocol.MAGIC + bytes([protocol.VERSION]) + kind + zlib.compress(body, level)


def _readings_body(gateway_id: str, epoch: int, first: int, count: int) -> dict[str, Any]:
    rows = [protocol.Reading(seq=first + i, ts=1_760_000_000.0 + i, sensor="air", quantity="temperature",
                             value=20.5 + i / 10, unit="°C") for i in range(count)]
    return _body(protocol.encode_readings(gateway_id, epoch, rows))


def _events_body(gateway_id: str, epoch: int) -> dict[str, Any]:
    events = [protocol.Event(1, 1_760_000_000.0, "actuator.change", "supervisor", {"id": "pump", "on": True}),
              protocol.Event(2, 1_760_000_001.0, "buffer.gap", "buffer",
                             {"stream": "readings", "epoch": 1, "first_seq": 1, "last_seq": 9, "count": 9})]
    return _body(protocol.encode_events(gateway_id, epoch, events))


def _body(payload: bytes) -> dict[str, Any]:
    return json.loads(zlib.decompress(payload[4:]))


_PLACEHOLDER = "\u2063placeholder\u2063"

scalars = st.one_of(
    st.integers(-2**70, 2**70), st.sampled_from([2**63 - 1, 2**63, 2**64, -1, 0, 10**24]),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -1e308, 5e-324]),
    st.text(st.characters(), max_size=6),  # lone surrogates (category Cs) and NUL included
    st.none(), st.booleans(),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(st.characters(), max_size=4), inner, max_size=4), max_leaves=12)
#: What replaces a field: a JSON value (dumped with \\u escapes, so lone surrogates reach the decoder) or raw text.
replacements = st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.sampled_from(RAW_SNIPPETS))


@st.composite
def mutated_bodies(draw, body: dict[str, Any]) -> bytes:
    """The JSON text of ``body`` with one value somewhere inside it (a field, a row, a series entry...) replaced."""
    node: Any = body
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node = child
            continue
        node[key] = _PLACEHOLDER
        break
    text = json.dumps(body, ensure_ascii=False).encode()
    return text.replace(json.dumps(_PLACEHOLDER, ensure_ascii=False).encode(), draw(replacements), 1)


def _valid_body(kind: bytes, gateway_id: str) -> dict[str, Any]:
    if kind == protocol.KIND_READINGS:
        return _readings_body(gateway_id, 1, 1, 3)
    if kind == protocol.KIND_EVENTS:
        return _events_body(gateway_id, 1)
    if kind == protocol.KIND_STATUS:
        return {"state": "online", "version": "1.0", "epoch": 3, "backlog": 0, "ts": 1_760_000_000.0}
    if kind == protocol.KIND_COMMAND:
        return {"id": "c-1", "issued": 1_760_000_000.0, "op": "ping", "args": {}}
    return {"s": "readings", "e": 1, "r": [[1, 3]]}


KINDS = [protocol.KIND_READINGS, protocol.KIND_EVENTS, protocol.KIND_STATUS, protocol.KIND_COMMAND,
         protocol.KIND_ACK]


@st.composite
def hostile_payloads(draw, kind: bytes | None = None, gateway_id: str = "gh-evil") -> bytes:
    """A payload of ``kind`` (any kind when None) a hostile or broken gateway might send."""
    kind = kind or draw(st.sampled_from(KINDS))
    shape = draw(st.sampled_from(["mutated", "mutated", "mutated", "document", "raw", "bomb", "garbage"]))
    if shape == "mutated":
        return frame(kind, draw(mutated_bodies(_valid_body(kind, gateway_id))))
    if shape == "document":
        return frame(kind, draw(replacements))
    if shape == "raw":
        return frame(kind, draw(st.sampled_from(RAW_SNIPPETS)))
    if shape == "bomb":  # rows that cost nothing to send: the most a batch may hold, or one more
        count = draw(st.sampled_from([protocol.MAX_ROWS, protocol.MAX_ROWS + 1]))
        body = {"g": gateway_id, "e": 1, "s0": 1, "t0": 1_760_000_000_000, "sd": count - 1,
                "td": [1000] * (count - 1), "series": [["air", "temperature", "°C"]], "sc": [0], "si": [0] * count,
                "v": [20] + [0] * (count - 1), "q": {}, "c": {}}
        return frame(kind, json.dumps(body).encode(), level=9)
    head = draw(st.sampled_from([b"", b"GH", b"GH\x01", b"GH\x01" + kind, b"GH\x02" + kind, b"XX\x01" + kind]))
    return head + draw(st.binary(max_size=64))
