"""The event payloads of the contract: each kind's exact JSON on the wire, read back by a data center that trusts
nothing, and the events a running gateway records all follow it."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.contract import events
from edge.contract.events import (KINDS, ActuatorChange, ActuatorFault, ActuatorRefused, AlertAcked, AlertEscalated,
                                  AlertFired, AlertMessage, AlertReplyIgnored, AlertResolved, BufferCorrupt,
                                  BufferEpoch, BufferEventsLost, BufferGap, BufferRekey, BufferRolledBack,
                                  BufferSetAside, BufferWindowLost, ClockSynced, CommandActuate, CommandResult,
                                  DaemonStart, DaemonStop, RuleFault, RuleRecovered, SmsAttemptFailed, SmsExpired,
                                  SmsFailed, SmsSent)

T = 1_760_000_000.0

#: Each kind as the gateway has always written it (the data in PostgreSQL holds these shapes): the payload object,
#: and the JSON object it must be on the wire.
SHAPES = [
    (DaemonStart("0.4.0", 3, "clean", True, {"air": 10.0, "soil": 60.0}),
     {"version": "0.4.0", "epoch": 3, "previous_stop": "clean", "clock_synced": True,
      "intervals": {"air": 10.0, "soil": 60.0}}),
    (DaemonStart("0.4.0", 3, "clean", True, {"air": 10.0}, "گلخانه حسن", {"air": "هوای داخل", "heater-1": "بخاری"}),
     {"version": "0.4.0", "epoch": 3, "previous_stop": "clean", "clock_synced": True, "intervals": {"air": 10.0},
      "name": "گلخانه حسن", "names": {"air": "هوای داخل", "heater-1": "بخاری"}}),
    (DaemonStart("0.4.0", None, "unknown", False, {}),
     {"version": "0.4.0", "epoch": None, "previous_stop": "unknown", "clock_synced": False, "intervals": {}}),
    (DaemonStop("SIGTERM"), {"reason": "SIGTERM"}),
    (DaemonStop("SIGTERM", ("pump", "fan")), {"reason": "SIGTERM", "not_safe": ["pump", "fan"]}),
    (ClockSynced(42), {"corrected_readings": 42}),
    (BufferCorrupt("/var/lib/edge/buffer.db.corrupt-1", "file is not a database"),
     {"moved_to": "/var/lib/edge/buffer.db.corrupt-1", "reason": "file is not a database"}),
    (BufferRolledBack(4, 6), {"last_epoch_in_file": 4, "epoch_used": 6}),
    (BufferEpoch(3, 58, "the data center holds epoch 57"),
     {"previous": 3, "epoch": 58, "reason": "the data center holds epoch 57"}),
    (BufferEpoch(None, 58, "the data center holds epoch 57"),
     {"previous": None, "epoch": 58, "reason": "the data center holds epoch 57"}),
    (BufferRekey("readings", 2, 1, ((3, 4),), 2, 1, 2),
     {"stream": "readings", "count": 2, "from": {"epoch": 1, "ranges": [[3, 4]]},
      "to": {"epoch": 2, "first_seq": 1, "last_seq": 2}}),
    (BufferGap(3, 100, 199, 100, T, T + 990.0),  # the disk budget dropped them
     {"stream": "readings", "epoch": 3, "first_seq": 100, "last_seq": 199, "count": 100, "first_ts": T,
      "last_ts": T + 990.0}),
    (BufferGap(3, 200, 202, 3, T, T + 20.0, "readings", "air", ("humidity", "temperature"),
               "not stored: no room on the buffer's file system"),
     {"stream": "readings", "epoch": 3, "first_seq": 200, "last_seq": 202, "count": 3, "first_ts": T,
      "last_ts": T + 20.0, "sensor": "air", "quantities": ["humidity", "temperature"],
      "reason": "not stored: no room on the buffer's file system"}),
    (BufferGap(3, 7, 7, 1, None, None, "readings", reason="set aside: cannot be read"),
     {"stream": "readings", "epoch": 3, "first_seq": 7, "last_seq": 7, "count": 1, "first_ts": None,
      "last_ts": None, "reason": "set aside: cannot be read"}),
    (BufferEventsLost(3, T, T + 2, "more than 10000 events waited for room"),
     {"count": 3, "first_ts": T, "last_ts": T + 2, "reason": "more than 10000 events waited for room"}),
    (BufferSetAside("events", 3, 9, "its data is not JSON"),
     {"stream": "events", "epoch": 3, "seq": 9, "reason": "its data is not JSON"}),
    (BufferSetAside("readings", "x'0a'", "x'ff'", "its key is not a pair of integers"),
     {"stream": "readings", "epoch": "x'0a'", "seq": "x'ff'", "reason": "its key is not a pair of integers"}),
    (ActuatorChange(1.0, 0.0, "rule:cooling"), {"value": 1.0, "previous": 0.0, "reason": "rule:cooling"}),
    (ActuatorChange(1.0, 0.0, "manual:cli", T + 600.125),
     {"value": 1.0, "previous": 0.0, "reason": "manual:cli", "until": T + 600.125}),
    (ActuatorRefused("rule:cooling", "interlock with heater"),
     {"request": "rule:cooling", "refused": "interlock with heater"}),
    (ActuatorFault(1.0, "relay board not answering"), {"value": 1.0, "error": "relay board not answering"}),
    (ActuatorFault(0.0, "relay board not answering", "shutdown"),
     {"value": 0.0, "error": "relay board not answering", "reason": "shutdown"}),
    (RuleFault("fan", "input air.temperature stale for 90s"),
     {"actuator": "fan", "reason": "input air.temperature stale for 90s"}),
    (RuleRecovered("fan", None), {"actuator": "fan", "reason": None}),
    (CommandActuate("on", 600.0, "cli:farmer"), {"action": "on", "for": 600.0, "who": "cli:farmer"}),
    (CommandActuate("auto", None, "remote:c-1"), {"action": "auto", "for": None, "who": "remote:c-1"}),
    (CommandResult("c-1", True, op="ping", result={"pong": T}),
     {"id": "c-1", "op": "ping", "ok": True, "result": {"pong": T}}),
    (CommandResult("c-2", False, op="actuate", error="unknown actuator 'x'"),
     {"id": "c-2", "op": "actuate", "ok": False, "error": "unknown actuator 'x'"}),
    (CommandResult(None, False, error="command: id must be ..."),
     {"id": None, "ok": False, "error": "command: id must be ..."}),
    (AlertFired("7", "high-temp", "critical", 41.5),
     {"code": "7", "rule": "high-temp", "severity": "critical", "value": 41.5}),
    (AlertFired("8", "stale", "warning", None), {"code": "8", "rule": "stale", "severity": "warning", "value": None}),
    (AlertResolved("7", 30.0), {"code": "7", "value": 30.0}),
    (AlertEscalated("7"), {"code": "7"}),
    (AlertAcked("7", "Reza"), {"code": "7", "by": "Reza"}),
    (AlertMessage("Reza", ("7", "8"), "digest", "a1b2", 2),
     {"to": "Reza", "codes": ["7", "8"], "header": "digest", "local_id": "a1b2", "segments": 2}),
    (AlertReplyIgnored("+98912***4567"), {"from": "+98912***4567"}),
    (SmsSent("a1b2", "Reza", "kavenegar", "accepted", "", 2, "8792343"),
     {"local_id": "a1b2", "to": "Reza", "transport": "kavenegar", "outcome": "accepted", "detail": "",
      "segments": 2, "provider_id": "8792343"}),
    (SmsSent("a1b2", "Reza", "modem", "accepted", "", 1, None),
     {"local_id": "a1b2", "to": "Reza", "transport": "modem", "outcome": "accepted", "detail": "", "segments": 1,
      "provider_id": None}),
    (SmsAttemptFailed("a1b2", "Reza", "kavenegar", "retryable", "HTTP 502"),
     {"local_id": "a1b2", "to": "Reza", "transport": "kavenegar", "outcome": "retryable", "detail": "HTTP 502"}),
    (SmsAttemptFailed("a1b2", "Reza", "modem", "partial", "+CMS ERROR: 500", 1),
     {"local_id": "a1b2", "to": "Reza", "transport": "modem", "outcome": "partial", "detail": "+CMS ERROR: 500",
      "parts_done": 1}),
    (SmsFailed("a1b2", "Reza", "kavenegar", "refused", "411 invalid receptor"),
     {"local_id": "a1b2", "to": "Reza", "transport": "kavenegar", "outcome": "refused",
      "detail": "411 invalid receptor"}),
    (SmsExpired("a1b2", "Reza", 12), {"local_id": "a1b2", "to": "Reza", "attempts": 12}),
    (BufferWindowLost(3, 1200, 1_760_000_000.5, 120.0),
     {"epoch": 3, "after_seq": 1200, "after_ts": 1_760_000_000.5, "window": 120.0}),
]


def test_every_kind_has_its_shape_pinned():
    assert {payload.KIND for payload, _ in SHAPES} == set(KINDS)


@pytest.mark.parametrize("payload, wire", SHAPES, ids=lambda v: v.KIND if isinstance(v, events.Payload) else "")
def test_each_payload_is_its_exact_json_on_the_wire_and_reads_back(payload, wire):
    assert payload.to_data() == wire
    assert json.loads(json.dumps(payload.to_data())) == wire  # plain JSON: lists, not tuples
    assert events.read(payload.KIND, json.loads(json.dumps(wire))) == payload


def test_what_older_gateways_stored_still_reads():
    before_intervals = {"version": "0.1.0", "epoch": 1, "previous_stop": "none", "clock_synced": False}
    assert DaemonStart.from_data(before_intervals).intervals == {}
    assert BufferGap.from_data({"epoch": 1, "first_seq": 5, "last_seq": 9, "count": 5}) == \
        BufferGap(1, 5, 9, 5, None, None, "readings")


@pytest.mark.parametrize("kind, data", [
    ("buffer.gap", {"stream": "readings", "epoch": 1, "first_seq": 5, "last_seq": 9}),  # no count
    ("buffer.gap", {"epoch": -1, "first_seq": 5, "last_seq": 9, "count": 5}),
    ("buffer.gap", {"epoch": 2**63, "first_seq": 5, "last_seq": 9, "count": 5}),
    ("buffer.gap", {"epoch": True, "first_seq": 5, "last_seq": 9, "count": 5}),
    ("buffer.gap", {"epoch": 1, "first_seq": 5.0, "last_seq": 9, "count": 5}),
    ("buffer.gap", {"stream": "other", "epoch": 1, "first_seq": 5, "last_seq": 9, "count": 5}),
    ("actuator.change", {"value": True, "previous": 0.0, "reason": "x"}),
    ("actuator.change", {"value": "1", "previous": 0.0, "reason": "x"}),
    ("actuator.change", {"id": "pump", "on": True}),
    ("daemon.start", {"intervals": {"air": 10}}),
    ("buffer.rekey", {"stream": "readings", "count": 2, "from": [1], "to": {}}),
    ("command.result", {"id": 7, "ok": True}),
    ("sms.sent", {"local_id": "a", "to": "b", "transport": "c", "outcome": "d", "detail": "e", "segments": -1,
                  "provider_id": None}),
])
def test_a_payload_missing_or_mistyping_a_required_field_is_malformed(kind, data):
    assert events.read(kind, data) is None


def test_an_optional_field_of_the_wrong_type_reads_as_absent():
    gap = BufferGap.from_data({"epoch": 1, "first_seq": 5, "last_seq": 9, "count": 5, "first_ts": "yesterday",
                               "last_ts": 1e300, "sensor": 7, "quantities": "air"})
    assert gap == BufferGap(1, 5, 9, 5, None, None, "readings")
    start = DaemonStart.from_data({"version": "1", "epoch": 2, "previous_stop": "clean", "clock_synced": True,
                                   "intervals": {"air": 10, "soil": True, "leaf": 0, "door": "5", "pipe": 1e12}})
    assert start.intervals == {"air": 10}  # only believable intervals: the others are counted from the data
    assert ActuatorChange.from_data({"value": 0.0, "previous": 1.0, "reason": "r", "until": float("nan")}).until \
        is None


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=4), max_leaves=12)


def _field_names() -> list[str]:
    names = {"from", "to", "for", "epoch", "ranges", "first_seq", "last_seq"}
    for cls in KINDS.values():
        names |= {f.name.rstrip("_") for f in fields(cls)}
    return sorted(names)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), data=JSON | st.dictionaries(st.sampled_from(_field_names()), JSON))
def test_reading_never_raises_whatever_a_gateway_sends(kind, data):
    payload = events.read(kind, data)
    assert payload is None or isinstance(payload, KINDS[kind])
    if payload is not None:
        json.dumps(payload.to_data(), allow_nan=True)  # and what it read can be written again


def test_an_unknown_kind_reads_as_none():
    assert events.read("greenhouse.door_opened", {"door": "north"}) is None



def test_every_event_the_supervisor_and_buffer_record_follows_the_contract(tmp_path):
    """A greenhouse on mock pins and a fake clock: a schedule, a rule, an interlock refusal, a stale input and its
    recovery, manual commands, a new epoch, a re-key, a gap for the disk budget and a shutdown. Every event recorded
    is a kind of the contract, reads back, and is written again as exactly the same JSON."""
    from test_supervisor import Greenhouse

    from edge.gateway.buffer import NewReading

    gh = Greenhouse(tmp_path, "2025-07-15 05:58:00")
    gh.tick(air=25)
    gh.tick(120, air=31)  # 06:00: the morning irrigation, and too warm: the fan
    gh.tick(10, air=3)  # frost: the fan goes off, the heater must wait for the interlock
    gh.tick(60)  # no reading of air for a minute: the rules' input is stale
    gh.tick(10, air=20)
    gh.supervisor.command("lights", "on", 600, "cli:test")
    gh.supervisor.command("lights", "auto", None, "cli:test")
    gh.buffer.append_readings([NewReading(gh.clock.time(), "air", "temperature", 20.0 + i, "°C") for i in range(50)])
    gh.buffer.rekey("readings", gh.buffer.epoch, 1, 2, gh.clock.time())
    gh.buffer.raise_epoch_floor(gh.buffer.epoch + 5, gh.clock.time(), "the data center holds a later epoch")
    gh.buffer.enforce_budget(1, gh.clock.time())
    gh.stop()
    gh.buffer, _ = type(gh.buffer).open(gh.path, now=gh.clock.time(), boot_id="b")
    try:
        recorded = [(e["kind"], json.loads(e["data"])) for e in gh.buffer.events()]
    finally:
        gh.buffer.close()
    kinds = {kind for kind, _ in recorded}
    assert kinds == {"actuator.change", "actuator.refused", "rule.fault", "rule.recovered", "command.actuate",
                     "buffer.rekey", "buffer.epoch", "buffer.gap"}
    for kind, data in recorded:
        payload = events.read(kind, data)
        assert payload is not None and payload.to_data() == data, (kind, data)


# --------------------------------------------------------------------------- the data center reads through it


def test_the_gaps_table_row_comes_from_the_contracts_gap():
    from edge.datacenter.store import _gap_row

    wire = BufferGap(3, 100, 199, 100, T, T + 990.0).to_data()
    assert _gap_row("gh-a", T + 1000, wire) == ("gh-a", "readings", 3, 100, 199, 100, T, T + 990.0, T + 1000)
    assert _gap_row("gh-a", T + 1000, {**wire, "first_ts": "soon"})[6] is None  # an unknown time, the gap stands
    assert _gap_row("gh-a", T + 1000, {**wire, "stream": "videos"}) is None
    assert _gap_row("gh-a", T + 1000, {"note": "no fields"}) is None


def test_a_staged_reading_carries_every_field_of_the_wire_reading_in_order():
    from edge.contract.protocol import Reading, ReadingBatch
    from edge.datacenter.store import READING_FIELDS, _STAGE_COLUMNS, staged_readings

    assert READING_FIELDS == Reading._fields
    reading = Reading(7, T, "air", "temperature", 21.5, "°C", "implausible", "why", 0, "boot", 12.5)
    [row] = staged_readings(ReadingBatch("gh-a", 3, (reading,)), 4)
    assert row == ("gh-a", 3, *(getattr(reading, name) for name in READING_FIELDS), 4)
    assert len(row) == len(_STAGE_COLUMNS) + 1  # and the batch's number


def test_the_chart_reads_actuator_changes_through_the_contract_and_leaves_malformed_ones_out():
    from datetime import datetime, timedelta, timezone

    from edge.history import on_periods

    start = datetime(2025, 7, 15, tzinfo=timezone.utc)
    end = start + timedelta(hours=4)
    rows = [{"ts": "2025-07-15T01:00:00.000Z", "source": "pump", "data": {"value": True, "previous": 0.0}},
            {"ts": "2025-07-15T01:30:00.000Z", "source": "pump", "data": {"id": "pump", "on": True}},
            {"ts": "2025-07-15T02:00:00.000Z", "source": "pump",
             "data": ActuatorChange(1.0, 0.0, "rule:irrigation").to_data()},
            {"ts": "2025-07-15T03:00:00.000Z", "source": "pump",
             "data": ActuatorChange(0.0, 1.0, "rule:irrigation").to_data()}]
    assert on_periods(rows, start, end) == {"pump": [(start + timedelta(hours=2), start + timedelta(hours=3))]}


def test_docs_protocol_lists_every_kind_with_each_field_it_writes():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in text.splitlines() if line.startswith("| `")}
    for payload, wire in SHAPES:
        assert payload.KIND in rows, f"docs/protocol.md has no row for {payload.KIND}"
        for key in wire:
            assert f"`{key}`" in rows[payload.KIND], f"docs/protocol.md: {payload.KIND} does not name {key}"
