"""The protocol codec round-trips exactly, and refuses anything malformed with a clear error."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import protocol
from edge.protocol import (Ack, Command, Event, ProtocolError, Reading, decode_ack, decode_command, decode_events,
                           decode_readings, encode_ack, encode_command, encode_events, encode_readings)

names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
values = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**6).map(lambda i: i / 10),
                   st.integers(0, 1000).map(float))


@st.composite
def readings(draw):
    count = draw(st.integers(1, 60))
    seqs = sorted(draw(st.sets(st.integers(1, 10**9), min_size=count, max_size=count)))
    rows = []
    ts = draw(st.integers(0, 2 * 10**12))
    for seq in seqs:
        ts += draw(st.integers(-5000, 60_000))
        quality = draw(st.sampled_from(protocol.QUALITIES))
        value = None if quality == "error" else draw(values)
        clock = draw(st.sampled_from([0, 1, 2]))
        rows.append(Reading(
            seq=seq, ts=ts / 1000, sensor=draw(st.sampled_from(["air", "soil-1", "ذرت"])),
            quantity=draw(st.sampled_from(["temperature", "humidity"])), value=value, unit=draw(st.sampled_from(
                ["°C", "%"])), quality=quality, reason=draw(st.none() | names) if quality != "good" else None,
            clock=clock, boot_id=draw(names) if clock != 1 else None,
            mono=draw(st.integers(0, 10**9)) / 1000 if clock != 1 else None))
    return rows


@settings(max_examples=300, deadline=None)
@given(gateway=names, epoch=st.integers(0, 2**40), rows=readings())
def test_reading_batches_round_trip_exactly(gateway, epoch, rows):
    batch = decode_readings(encode_readings(gateway, epoch, rows))
    assert (batch.gateway_id, batch.epoch, batch.readings) == (gateway, epoch, tuple(rows))


@settings(max_examples=100, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 10**6), names, names,
                                 st.dictionaries(names, st.integers() | names | st.none(), max_size=4)),
                       min_size=1, max_size=20))
def test_event_batches_round_trip(events):
    rows = [Event(seq=i + 1, ts=ts / 1000, kind=kind, source=source, data=data)
            for i, (ts, kind, source, data) in enumerate(events)]
    assert decode_events(encode_events("gh", 3, rows)).events == tuple(rows)


@given(ranges=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 1000)).map(lambda t: (t[0], t[0] + t[1])),
                       max_size=10))
def test_acks_round_trip(ranges):
    ack = Ack("readings", 7, tuple(ranges))
    assert decode_ack(encode_ack(ack)) == ack


def test_commands_round_trip():
    command = Command("c-1", 1_752_562_800.5, "actuate", {"actuator": "pump", "action": "on", "for": 600})
    assert decode_command(encode_command(command)) == command


def test_typical_greenhouse_data_costs_under_three_bytes_a_reading():
    rows, value = [], [20.0] * 40
    for round_ in range(25):
        for i in range(40):
            value[i] = round(value[i] + ((round_ * 7 + i * 3) % 5 - 2) / 10, 1)
            rows.append(Reading(len(rows) + 1, 1_752_562_800 + round_ * 10 + i * 0.002, f"s{i:02d}", "temperature",
                                value[i], "°C"))
    assert len(encode_readings("gh-0001", 1, rows)) / len(rows) < 3


def frame(kind: bytes, body: bytes, version: int = 1) -> bytes:
    return b"GH" + bytes([version]) + kind + zlib.compress(body)


@pytest.mark.parametrize("payload, message", [
    (b"", "bad magic"),
    (b"{\"json\": true}", "bad magic"),
    (frame(b"R", b"{}", version=2), "unsupported protocol version 2"),
    (frame(b"E", b"{}"), "expected a readings payload"),
    (encode_readings("gh", 1, [Reading(1, 0.0, "a", "t", 1.0, "C")])[:-3], "truncated payload"),
    (b"GH\x01R" + b"not zlib at all", "corrupt payload"),
    (frame(b"R", b"[1, 2]"), "body is not an object"),
    (frame(b"R", b"{\"g\": \"gh\"}"), "epoch must be a non-negative integer"),
    (frame(b"R", b'{"g":"gh","e":1,"s0":1,"t0":0,"sd":0,"td":[],"series":[["a","t","C"]],"sc":[1],"si":[5],'
                 b'"v":[1],"q":{},"c":{}}'), "row 0 names series 5"),
    (frame(b"R", b'{"g":"gh","e":1,"s0":1,"t0":0,"sd":3,"td":[],"series":[["a","t","C"]],"sc":[1],"si":[0],'
                 b'"v":[1],"q":{},"c":{}}'), "column lengths do not match"),
    (frame(b"R", b'{"g":"gh","e":1,"s0":1,"t0":0,"sd":0,"td":[],"series":[["a","t","C"]],"sc":[1],"si":[0],'
                 b'"v":[null],"q":{},"c":{}}'), "an error reading has no value"),
    (b"GH\x01R" + zlib.compress(b"{" * 10 + b"}" * 10)[:5] + b"\x00" * (protocol.MAX_PAYLOAD), "exceeds the limit"),
])
def test_malformed_reading_payloads_are_refused_with_a_reason(payload, message):
    with pytest.raises(ProtocolError, match=message):
        decode_readings(payload)


def test_a_zip_bomb_is_refused():
    bomb = frame(b"R", b" " * (protocol.MAX_DECOMPRESSED + 10))
    assert len(bomb) < 100_000
    with pytest.raises(ProtocolError, match="decompresses to more than"):
        decode_readings(bomb)


@pytest.mark.parametrize("body, message", [
    (b'{"id": "", "issued": 1, "op": "ping", "args": {}}', "id must be 1-64 letters"),
    (b'{"id": "x\\udc80", "issued": 1, "op": "ping", "args": {}}', r'id must be .* \(got "x\\udc80"\)'),
    (b'{"id": 7, "issued": 1, "op": "ping", "args": {}}', "id must be 1-64 letters"),
    (b'{"id": "x", "issued": "yesterday", "op": "ping", "args": {}}', "issued must be a time"),
    (b'{"id": "x", "issued": 1' + b"0" * 400 + b', "op": "ping", "args": {}}', r"issued .* \(got a huge integer\)"),
    (b'{"id": "x", "issued": true, "op": "ping", "args": {}}', r"issued must be a time .*\(got true\)"),
    (b'{"id": "x", "issued": 1, "op": "reboot", "args": {}}', 'unknown op "reboot"'),
    (b'{"id": "x", "issued": 1, "op": "ping", "args": []}', "args must be an object"),
    (b'{"id": "x", "issued": 1, "op": "ping", "args": {}, "sudo": 1}', 'unknown field\\(s\\) "sudo"'),
    (b'{"id": "x", "issued": 1, "op": "ping", "args": {"n": 1}}', 'ping: unknown argument\\(s\\) "n"'),
    (b'{"id": "x", "issued": 1, "op": "actuate", "args": {"actuator": "pump", "action": "on", "for": true}}',
     r'"for" must be a number of seconds.*\(got true\)'),
    (b'{"id": "x", "issued": 1, "op": "actuate", "args": {"actuator": "pump", "action": "on", "for": -5}}',
     '"for" must be a number of seconds, more than 0'),
    (b'{"id": "x", "issued": 1, "op": "actuate", "args": {"actuator": "pump", "action": "on", "for": 1e9}}',
     "at most 31622400"),
    (b'{"id": "x", "issued": 1, "op": "actuate", "args": {"actuator": "pump", "action": "on", "for": "1h"}}',
     '"for" must be a number'),
    (b'{"id": "x", "issued": 1, "op": "actuate", "args": {"actuator": "pump", "action": "melt"}}',
     'action must be one of on, off, auto \\(got "melt"\\)'),
    (b'{"id": "x", "issued": 1, "op": "actuate", "args": {"actuator": ["pump"], "action": "on"}}',
     "actuator must be an actuator id \\(got an array\\)"),
    (b'{"id": "x", "issued": 1, "op": "actuate", "args": {"actuator": "pump", "action": "on", "speed": 2}}',
     'actuate: unknown argument\\(s\\) "speed"'),
])
def test_malformed_commands_are_refused(body, message):
    with pytest.raises(ProtocolError, match=message):
        decode_command(frame(b"C", body))


def test_a_refused_command_still_names_its_id_when_the_id_was_valid():
    with pytest.raises(protocol.BadCommand) as refused:
        decode_command(frame(b"C", b'{"id": "c-9", "issued": 1, "op": "actuate", "args": {"for": true}}'))
    assert refused.value.command_id == "c-9"


def test_presence_round_trips_and_a_bad_one_is_refused():
    assert protocol.decode_presence(protocol.encode_presence("abc", client="c1"))["start"] == "abc"
    with pytest.raises(ProtocolError, match="presence: field 'start'"):
        protocol.decode_presence(frame(b"P", b'{"start": 5}'))


@pytest.mark.parametrize("topic, expected", [
    ("greenhouse/v1/gh-1/up/readings", ("gh-1", "up/readings")),
    ("greenhouse/v1/gh-1/status", ("gh-1", "status")),
])
def test_topics_parse(topic, expected):
    assert protocol.parse_topic(topic) == expected


@pytest.mark.parametrize("topic", ["greenhouse/v2/gh/up/readings", "greenhouse/v1//status", "greenhouse/v1/gh/up/x"])
def test_foreign_topics_are_refused(topic):
    with pytest.raises(ProtocolError):
        protocol.parse_topic(topic)
