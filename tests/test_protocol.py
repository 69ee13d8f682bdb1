"""The protocol codec round-trips exactly, and refuses anything malformed with a clear error."""

from __future__ import annotations

import re
import zlib

import hostile
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.contract import protocol
from edge.contract.protocol import (Ack, Command, Event, ProtocolError, Reading, decode_ack, decode_command,
                                    decode_events, decode_readings, encode_ack, encode_command, encode_events,
                                    encode_readings)

#: Names (gateway, sensor, kind, boot id): no control characters. Free texts (reasons, event data): anything but a
#: NUL or a lone surrogate, which the protocol refuses in every text.
names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
                max_size=12)
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
                ["°C", "%"])), quality=quality, reason=draw(st.none() | texts) if quality != "good" else None,
            clock=clock, boot_id=draw(names) if clock != 1 else None,
            mono=draw(st.integers(0, 10**9)) / 1000 if clock != 1 else None))
    return rows


@settings(max_examples=300, deadline=None)
@given(gateway=names, epoch=st.integers(0, 2**40), rows=readings())
def test_reading_batches_round_trip_exactly(gateway, epoch, rows):
    batch = decode_readings(encode_readings(gateway, epoch, rows))
    assert (batch.gateway_id, batch.epoch, batch.readings) == (gateway, epoch, tuple(rows))


@settings(max_examples=300, deadline=None)
@given(gateway=names, epoch=st.integers(0, 2**40), rows=readings())
def test_good_readings_given_as_columns_make_the_same_payload_as_the_readings(gateway, epoch, rows):
    """A backlog's usual batch goes as columns read from the buffer (no Reading per row); its payload is the one
    the readings themselves make, byte for byte, so a re-send the other way stores the same content."""
    good = [r._replace(quality="good", reason=None, clock=1, boot_id=None, mono=None,
                       value=float(r.seq % 97) / 10 if r.value is None else r.value) for r in rows]
    columns = [[getattr(r, field) for r in good] for field in ("seq", "ts", "sensor", "quantity", "unit", "value")]
    payload = protocol.encode_good_readings(gateway, epoch, *columns)
    assert payload == encode_readings(gateway, epoch, good)
    assert decode_readings(payload).readings == tuple(good)


@settings(max_examples=300, deadline=None)
@given(rows=readings(), data=st.data())
def test_a_good_batch_decodes_column_by_column_to_what_the_row_by_row_decoder_makes_or_refuses(rows, data):
    """The collector decodes a batch of good readings column by column (protocol._decode_good); any payload it
    takes, tampered with or not, decodes to what the row-by-row decoder makes of it, and what that one refuses, it
    refuses with the same reason."""
    import json

    good = [r._replace(quality="good", reason=None, clock=1, boot_id=None, mono=None,
                       value=float(r.seq % 97) / 10 if r.value is None else r.value) for r in rows]
    body = json.loads(zlib.decompress(encode_readings("gh", 1, good)[4:]))
    column = data.draw(st.sampled_from(["td", "si", "v", "sd", "sc"]))
    if isinstance(body[column], list) and body[column]:
        body[column][data.draw(st.integers(0, len(body[column]) - 1))] = data.draw(
            st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False))
    payload = protocol._frame(protocol.KIND_READINGS, body)

    def decoded():
        try:
            return decode_readings(payload)
        except ProtocolError as exc:
            return str(exc)

    columnwise = decoded()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(protocol, "_decode_good", lambda *args: None)
        assert decoded() == columnwise


@pytest.mark.parametrize("columns, message", [
    (([1, 2], [0.0, 1.0], ["a", "a"], ["t", "t"], ["C", "C"], [1.0, None]), "a good reading has a value"),
    (([1, 2], [0.0], ["a", "a"], ["t", "t"], ["C", "C"], [1.0, 2.0]), "the same length"),
    (([2, 1], [0.0, 1.0], ["a", "a"], ["t", "t"], ["C", "C"], [1.0, 2.0]), "increasing seq order"),
    (([1, 2], [0.0, 1.0], ["a", "a"], ["t", "t"], ["C", "C"], [1.0, float("inf")]), "reading 2: value inf"),
])
def test_good_readings_given_as_columns_are_checked_like_readings(columns, message):
    with pytest.raises(ValueError, match=message):
        protocol.encode_good_readings("gh", 1, *columns)


@settings(max_examples=100, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 10**6), names, names,
                                 st.dictionaries(texts, st.integers(-2**63, 2**64) | texts | st.none(),
                                                 max_size=4)),
                       min_size=1, max_size=20))
def test_event_batches_round_trip(events):
    rows = [Event(seq=i + 1, ts=ts / 1000, kind=kind, source=source, data=data)
            for i, (ts, kind, source, data) in enumerate(events)]
    assert decode_events(encode_events("gh", 3, rows)).events == tuple(rows)


seq_ranges_ = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 1000)).map(lambda t: (t[0], t[0] + t[1])),
                       max_size=10)


@given(ranges=seq_ranges_, conflicts=seq_ranges_, max_epoch=st.none() | st.integers(0, protocol.MAX_KEY))
def test_acks_round_trip(ranges, conflicts, max_epoch):
    ack = Ack("readings", 7, tuple(ranges), tuple(conflicts), max_epoch)
    assert decode_ack(encode_ack(ack)) == ack


def test_an_ack_without_the_epoch_fields_of_newer_data_centers_still_decodes():
    body = zlib.compress(b'{"s":"events","e":3,"r":[[1,5]]}')
    assert decode_ack(b"GH\x01A" + body) == Ack("events", 3, ((1, 5),), (), None)


@pytest.mark.parametrize("body, message", [
    ('{"s":"readings","e":1,"r":[],"m":9223372036854775808}', "max_epoch must be an integer from 0 to 2"),
    ('{"s":"readings","e":1,"r":[],"x":[[5,2]]}', "backwards"),
    ('{"s":"readings","e":1,"r":[],"x":"all"}', "list of at most"),
    ('{"s":"readings","e":18446744073709551616,"r":[]}', "epoch must be an integer from 0 to 2"),
])
def test_malformed_acks_are_refused(body, message):
    with pytest.raises(ProtocolError, match=message):
        decode_ack(b"GH\x01A" + zlib.compress(body.encode()))


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
    (frame(b"R", b"{\"g\": \"gh\"}"), "epoch must be an integer from 0 to 2\\*\\*63-1"),
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
    (b'{"id": "x\\udc80", "issued": 1, "op": "ping", "args": {}}', "a text holds a lone surrogate U\\+DC80"),
    (b'{"id": 7, "issued": 1, "op": "ping", "args": {}}', "id must be 1-64 letters"),
    (b'{"id": "x", "issued": "yesterday", "op": "ping", "args": {}}', "issued must be a time"),
    (b'{"id": "x", "issued": 1' + b"0" * 400 + b', "op": "ping", "args": {}}', r"an integer of 401 digits"),
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


# --------------------------------------------------------------------------------------------- hostile input

def event_frame(body: bytes) -> bytes:
    return frame(b"E", body)


READING_ROW = b'"s0":1,"t0":1760000000000,"sd":0,"td":[],"series":[["air","temperature","C"]],"sc":[1],"si":[0],' \
              b'"v":[205],"q":{},"c":{}'


@pytest.mark.parametrize("payload, message", [
    (frame(b"R", b'{"g":"gh","e":9223372036854775808,' + READING_ROW + b'}'), "epoch must be an integer from 0"),
    (frame(b"R", b'{"g":"gh","e":1,"s0":9223372036854775807,"t0":0,"sd":[1],"td":[0],"series":[["a","t","C"]],'
                 b'"sc":[1],"si":[0,0],"v":[1,1],"q":{},"c":{}}'), "row 1: seq must be an integer from 0"),
    (frame(b"R", b"[" * 100_000 + b"]" * 100_000), "nested deeper than 32 levels"),
    (frame(b"R", b'{"g":"gh","e":' + b"9" * 5000 + b"}"), "an integer of 5000 digits"),
    (frame(b"R", b'{"g":"gh","e":1,"s0":1,"t0":1' + b"0" * 400 + b',"sd":0}'), "an integer of 401 digits"),
    (frame(b"R", b'{"g":"gh","e":1,"s0":1,"t0":100000000000000000000,"sd":0,"td":[],"series":[],"sc":[],'
                 b'"si":[],"v":[],"q":{},"c":{}}'), "t0 100000000000000000000 ms is outside the years 1..9999"),
    (frame(b"R", b'{"g":"gh","e":1,' + READING_ROW.replace(b"1760000000000", b"-63145526400000") + b'}'),
     "t0 -63145526400000 ms is outside the years 1..9999"),  # 32 BC
    (frame(b"R", b'{"g":"gh","e":1,' + READING_ROW.replace(b'"air"', b'"\\ud800"') + b'}'),
     "a lone surrogate U\\+D800"),
    (frame(b"R", b'{"g":"gh","e":1,' + READING_ROW.replace(b'"air"', b'"a\\u0000"') + b'}'), "a NUL character"),
    (frame(b"R", b'{"g":"gh","e":1,' + READING_ROW.replace(b'"air"', b'"' + b"a" * 129 + b'"') + b'}'),
     "sensor must be 1-128 characters"),
    (frame(b"R", b'{"g":"gh","e":1,' + READING_ROW.replace(b'"air"', b'"a\\tb"') + b'}'),
     "without control characters"),
    (frame(b"R", b'{"g":"gh","e":1,' + READING_ROW.replace(b'"sc":[1]', b'"sc":[null]').replace(
        b'[205]', b'[1e999]') + b'}'), "number '1e999' is out of range"),
    (frame(b"R", b'{"g":"gh","e":NaN}'), "NaN is not a JSON number"),
    (frame(b"R", b'{"g":"gh\xff"}'), "not UTF-8"),
    (frame(b"R", b'{"g":"\xed\xa0\x80"}'), "not UTF-8"),  # a surrogate encoded as UTF-8
    (frame(b"R", b'{"g":"gh","e":1,' + READING_ROW.replace(b'"c":{}', b'"c":{"0":[0,"b",' + b"9" * 24 + b']}')
           + b'}'), "monotonic time .* is out of range"),
])
def test_payloads_that_killed_the_collector_are_refused_with_a_reason(payload, message):
    assert len(payload) < 5000  # all tiny (the 100,000-deep one compresses to a few hundred bytes)
    with pytest.raises(ProtocolError, match=message):
        decode_readings(payload)


@pytest.mark.parametrize("payload, decoder, message", [
    (event_frame(b'{"g":"gh","e":1,"events":[[1,0,"\\udfff","x",{}]]}'), decode_events, "lone surrogate"),
    (event_frame(b'{"g":"gh","e":1,"events":[[1,0,"k","x",{"d":"\\u0000"}]]}'), decode_events, "NUL"),
    (event_frame(b'{"g":"gh","e":1,"events":[[1,' + b"1" * 30 + b',"k","x",{}]]}'), decode_events, "digits"),
    (event_frame(b'{"g":"gh","e":1,"events":[[1,1000000000000000000,"k","x",{}]]}'), decode_events,
     "event 0: ts .* outside the years"),
    (event_frame(b'{"g":"gh","e":1,"events":[[1,0,"k","x",{"d":' + b"[" * 40 + b"]" * 40 + b'}]]}'),
     decode_events, "nested deeper"),
    (frame(b"S", b'{"state":"online","version":"\\ud800"}'), protocol.decode_status, "lone surrogate"),
    (frame(b"S", b'{"state":"online","epoch":18446744073709551616}'), protocol.decode_status, "status: epoch"),
    (frame(b"C", b'{"id":"\\ud800","issued":1,"op":"ping","args":{}}'), decode_command, "lone surrogate"),
    (frame(b"C", b'{"id":"c","issued":1e999,"op":"ping","args":{}}'), decode_command, "out of range"),
    (frame(b"A", b'{"s":"readings","e":1,"r":[[1,' + b"9" * 5000 + b']]}'), decode_ack, "5000 digits"),
])
def test_events_status_commands_and_acks_get_the_same_bounds(payload, decoder, message):
    with pytest.raises(ProtocolError, match=message):
        decoder(payload)


def test_a_batch_holds_at_most_max_rows_and_the_gateway_cannot_be_configured_for_more():
    from pydantic import ValidationError

    from edge.gateway.sync import SyncConfig

    rows = [Reading(seq, 1_760_000_000.0 + seq, "air", "temperature", 20.0, "°C")
            for seq in range(1, protocol.MAX_ROWS + 2)]
    assert len(decode_readings(encode_readings("gh", 1, rows[:-1])).readings) == protocol.MAX_ROWS
    with pytest.raises(ProtocolError, match=f"1..{protocol.MAX_ROWS} allowed"):
        decode_readings(encode_readings("gh", 1, rows))
    SyncConfig(url="mqtt://dc:1883", batch_size=protocol.MAX_ROWS)
    with pytest.raises(ValidationError, match="batch_size"):
        SyncConfig(url="mqtt://dc:1883", batch_size=protocol.MAX_ROWS + 1)


DECODERS = {protocol.KIND_READINGS: decode_readings, protocol.KIND_EVENTS: decode_events,
            protocol.KIND_STATUS: protocol.decode_status, protocol.KIND_COMMAND: decode_command,
            protocol.KIND_ACK: decode_ack}


@settings(max_examples=1500, deadline=None)
@given(data=st.data())
def test_decoders_raise_nothing_but_protocol_errors_on_hostile_payloads(data):
    kind = data.draw(st.sampled_from(list(DECODERS)))
    payload = data.draw(hostile.hostile_payloads(kind))
    for decoder in {DECODERS[kind], decode_readings}:
        try:
            decoder(payload)
        except ProtocolError as exc:
            assert str(exc) and len(str(exc)) < 400 and not _BAD.search(str(exc)), exc


_BAD = re.compile("[\x00\ud800-\udfff]")


# ------------------------------------------------------------------------------------------------ plausibility


def reading(**fields) -> Reading:
    return Reading(**{"seq": 1, "ts": 1_760_000_000.0, "sensor": "air", "quantity": "temperature", "value": 20.0,
                      "unit": "°C", **fields})


NOW = 1_760_000_000.0


@pytest.mark.parametrize("fields, why", [
    ({"value": 1e308}, "value 1e\\+308 is outside the physical range -273.15..1000 of temperature"),
    ({"value": -300.0}, "outside the physical range"),
    ({"quantity": "humidity", "value": 140.0}, "0..100 of humidity"),
    ({"quantity": "vpd", "value": 1e15}, "of vpd"),
    ({"ts": -2_000_000_000.0 * 31}, "time .* from a synced clock is outside 2000-01-01..now\\+1d"),
    ({"ts": 0.0}, "time 1970-01-01T00:00:00Z from a synced clock"),
    ({"ts": 4_102_444_800.0}, "time 2100-01-01T00:00:00Z from a synced clock"),
    ({"ts": NOW + 2 * 86400, "clock": 2}, "from a synced clock"),
    ({"ts": 1000.0, "clock": 0}, "from an unsynced clock"),
])
def test_unbelievable_readings_are_flagged_not_dropped(fields, why):
    batch = protocol.ReadingBatch("gh", 1, (reading(**fields), reading(seq=2)))
    flagged = protocol.flag_implausible(batch, NOW)
    first, second = flagged.readings
    assert first.quality == "implausible" and re.search(why, first.reason), first.reason
    assert first.reason.startswith("data center: ")
    assert (first.seq, first.ts, first.value) == (batch.readings[0].seq, batch.readings[0].ts, batch.readings[0].value)
    assert second == batch.readings[1]


def test_believable_readings_pass_unchanged_and_an_error_stays_an_error():
    fine = protocol.ReadingBatch("gh", 1, (reading(), reading(seq=2, ts=NOW + 3600, clock=0),
                                           reading(seq=3, quantity="level", value=1.0, unit="bool"),
                                           reading(seq=4, quantity="vpd", value=1.2, unit="kPa")))
    assert protocol.flag_implausible(fine, NOW) is fine
    error = reading(value=None, quality="error", reason="crc", ts=0.0)
    flagged = protocol.flag_implausible(protocol.ReadingBatch("gh", 1, (error,)), NOW).readings[0]
    assert flagged.quality == "error" and flagged.reason.endswith("; gateway: crc")


def test_the_gateways_plausible_ranges_lie_within_the_physical_ones():
    from edge.gateway.hardware.base import PLAUSIBLE

    for quantity, (low, high) in PLAUSIBLE.items():
        physical = protocol.PHYSICAL[quantity]
        assert physical[0] <= low < high <= physical[1], quantity
