"""The uplink's logic (lanes, acks, re-sends, presence, commands) through the in-memory link: no broker, no thread,
a FakeClock. The test drives ``Sync.turn()`` itself, as the sync thread would; the same logic over MQTT and a real
Mosquitto is tests/test_sync.py."""

from __future__ import annotations

import json

import pytest

from edge.contract import protocol
from edge.gateway.buffer import NewReading
from edge.gateway.clock import FakeClock
from edge.gateway.sync import Sync, SyncConfig
from edge.gateway.sync.link import MemoryLink

GW = "gh-link"


@pytest.fixture
def link():
    return MemoryLink()


def make_sync(buffer, clock, link, on_command=None, **settings) -> Sync:
    config = SyncConfig(url="mqtt://dc.invalid:1883", interval="1s", ack_timeout="30s", **settings)
    return Sync(config, GW, buffer, clock, on_command=on_command, link=link)


def append(buffer, clock, n: int) -> None:
    now = clock.time()
    buffer.append_readings([NewReading(now + i / 1000, "t1", "temperature", 20.0 + i, "C") for i in range(n)])


def sent(link: MemoryLink) -> list[tuple[str, list[int]]]:
    """What went out since the last look, as (lane topic leaf, seqs); status messages left out."""
    out = []
    for message in link.taken():
        _, leaf = protocol.parse_topic(message.topic)
        if leaf == protocol.UP_READINGS:
            out.append(("readings", [r.seq for r in protocol.decode_readings(message.payload).readings]))
        elif leaf == protocol.UP_EVENTS:
            out.append(("events", [e.seq for e in protocol.decode_events(message.payload).events]))
    return out


def ack(link: MemoryLink, buffer, stream: str, first: int, last: int) -> None:
    link.deliver(protocol.topic(GW, protocol.DOWN_ACK),
                 protocol.encode_ack(protocol.Ack(stream, buffer.epoch, ((first, last),))))


def tick(sync: Sync, clock: FakeClock, seconds: float = 1.0) -> None:
    clock.advance(seconds)
    sync.turn()


def test_connect_subscribes_and_leaves_an_offline_will(buffer, clock, link):
    sync = make_sync(buffer, clock, link)
    sync.turn()
    assert sync.connected and link.connects == 1
    assert set(link.subscriptions) == {protocol.topic(GW, protocol.DOWN_ACK), protocol.topic(GW, protocol.DOWN_CMD),
                                       protocol.PRESENCE_TOPIC}
    assert link.will.retained and protocol.decode_status(link.will.payload)["state"] == "offline"
    assert sync.state.link().link == "up"


def test_events_first_and_live_readings_never_wait_behind_the_backlog(buffer, clock, link):
    append(buffer, clock, 30)  # pending before the link came up: the backlog
    buffer.append_event("test.event", "test", {"n": 1}, ts=clock.time())
    sync = make_sync(buffer, clock, link, batch_size=10, backlog_rate=10)
    sync.turn()  # connects
    sync.turn()  # the backlog has no budget yet (10 readings a second): only the event goes
    assert sent(link) == [("events", [1])]
    append(buffer, clock, 2)  # live
    tick(sync, clock)
    assert sent(link) == [("readings", [31, 32]), ("readings", list(range(1, 11)))]  # live before backlog
    tick(sync, clock)
    assert sent(link) == [("readings", list(range(11, 21)))]  # a second's worth of backlog per second


def test_an_ack_settles_rows_and_a_lost_ack_means_a_resend(buffer, clock, link):
    sync = make_sync(buffer, clock, link)
    sync.turn()
    append(buffer, clock, 5)
    tick(sync, clock)
    assert sent(link) == [("readings", [1, 2, 3, 4, 5])]
    tick(sync, clock, 29)
    assert sent(link) == []  # within ack_timeout
    tick(sync, clock, 2)
    assert sent(link) == [("readings", [1, 2, 3, 4, 5])]  # no ack within 30 s: sent again
    ack(link, buffer, "readings", 1, 5)
    sync.turn()
    assert buffer.counts("readings")["pending"] == 0 and not sync.inflight
    tick(sync, clock, 60)
    assert sent(link) == []  # acknowledged: never again


def test_a_partial_ack_leaves_the_rest_to_be_sent_again(buffer, clock, link):
    sync = make_sync(buffer, clock, link, batch_size=3)
    sync.turn()
    append(buffer, clock, 6)
    tick(sync, clock)
    assert sent(link) == [("readings", [1, 2, 3]), ("readings", [4, 5, 6])]
    ack(link, buffer, "readings", 4, 6)
    tick(sync, clock, 31)
    assert sent(link) == [("readings", [1, 2, 3])]


def test_a_lost_link_reconnects_and_sends_everything_unacknowledged_again(buffer, clock, link):
    links = []
    sync = make_sync(buffer, clock, link)
    sync.on_link = lambda up, _now: links.append(up)
    sync.turn()
    append(buffer, clock, 4)
    tick(sync, clock)
    assert sent(link) == [("readings", [1, 2, 3, 4])]
    link.lose("connection reset")
    sync.turn()
    assert not sync.connected and sync.state.link().error == "connection reset"
    sync.turn()  # reconnects (no backoff sleep: the attempt succeeded)
    assert sync.connected and link.connects == 2 and links == [True, False, True]
    tick(sync, clock)
    assert sent(link) == [("readings", [1, 2, 3, 4])]  # the backlog now, at once: nothing awaits an ack


def test_a_refused_connection_leaves_the_link_down_with_the_reason(buffer, clock, link, monkeypatch):
    sync = make_sync(buffer, clock, link)
    link.refuse = "broker refused the connection: Not authorized"
    monkeypatch.setattr(sync, "_sleep", lambda _seconds: None)  # the backoff, in real time, is not the point here
    sync.turn()
    assert not sync.connected
    assert sync.state.link().link == "down" and "Not authorized" in sync.state.link().error


def test_a_collector_coming_back_gets_the_batches_awaiting_acks_at_once(buffer, clock, link):
    sync = make_sync(buffer, clock, link)
    sync.turn()
    append(buffer, clock, 3)
    tick(sync, clock)
    assert sent(link) == [("readings", [1, 2, 3])]
    link.deliver(protocol.PRESENCE_TOPIC, protocol.encode_presence("old", client="c1"), retained=True)
    sync.turn()
    assert sent(link) == []  # a retained presence only says a collector subscribed before we did
    link.deliver(protocol.PRESENCE_TOPIC, protocol.encode_presence("new", client="c1"))
    sync.turn()
    assert sent(link) == [("readings", [1, 2, 3])]  # not after the 30 s ack timeout: now


def command_results(buffer) -> list[dict]:
    return [row for row in buffer.pending("events", limit=100) if row["kind"] == "command.result"]


def test_commands_are_carried_out_once_and_answered(buffer, clock, link):
    calls = []
    sync = make_sync(buffer, clock, link, on_command=lambda c: calls.append(c.id) or {"state": "on"})
    sync.turn()
    actuate = protocol.Command("c-1", clock.time(), "actuate", {"actuator": "fan", "action": "on"})
    for _ in range(2):  # the broker delivers it twice (QoS 1)
        link.deliver(protocol.topic(GW, protocol.DOWN_CMD), protocol.encode_command(actuate))
    link.deliver(protocol.topic(GW, protocol.DOWN_CMD),
                 protocol.encode_command(protocol.Command("c-old", clock.time() - 3600, "ping", {})))
    sync.turn()
    assert calls == ["c-1"]
    results = [(r["ok"], r.get("error", "")) for r in (json.loads(row["data"]) for row in command_results(buffer))]
    assert results[0] == (True, "")
    assert results[1][0] is False and "already received" in results[1][1]
    assert results[2][0] is False and "expired" in results[2][1]
    tick(sync, clock)
    assert ("events", [1, 2, 3]) in sent(link)  # the answers go up the events lane


def test_a_clean_stop_says_offline_and_closes(buffer, clock, link):
    sync = make_sync(buffer, clock, link)
    sync.turn()
    link.taken()
    sync._goodbye()
    last = link.taken()[-1]
    assert not link.up and last.retained and protocol.decode_status(last.payload)["state"] == "offline"


def recording_acks(buffer, monkeypatch, fail_first: bool = False) -> list[bool]:
    """Whether each Buffer.ack ran inside a transaction someone else opened; the first may be made to fail."""
    inside: list[bool] = []
    failures = [OSError("disk I/O error (injected)")] if fail_first else []
    real = buffer.ack

    def ack_rows(stream, epoch, first, last):
        inside.append(buffer._db.conn.in_transaction)
        if failures:
            raise failures.pop()
        return real(stream, epoch, first, last)

    monkeypatch.setattr(buffer, "ack", ack_rows)
    return inside


def test_acks_that_arrive_together_are_recorded_in_one_transaction(buffer, clock, link, monkeypatch):
    sync = make_sync(buffer, clock, link, batch_size=3)
    sync.turn()
    append(buffer, clock, 9)
    tick(sync, clock)
    assert sent(link) == [("readings", [1, 2, 3]), ("readings", [4, 5, 6]), ("readings", [7, 8, 9])]
    inside = recording_acks(buffer, monkeypatch)
    for first in (1, 4, 7):
        ack(link, buffer, "readings", first, first + 2)
    sync.turn()
    assert inside == [True, True, True]  # one commit for the three
    assert buffer.counts("readings")["pending"] == 0 and not sync.inflight


def test_a_burst_of_acks_that_cannot_be_recorded_together_is_recorded_one_by_one(buffer, clock, link, monkeypatch):
    sync = make_sync(buffer, clock, link, batch_size=3)
    sync.turn()
    append(buffer, clock, 6)
    tick(sync, clock)
    inside = recording_acks(buffer, monkeypatch, fail_first=True)
    ack(link, buffer, "readings", 1, 3)
    link.deliver(protocol.topic(GW, protocol.DOWN_ACK), b"not an ack")
    ack(link, buffer, "readings", 4, 6)
    sync.turn()  # a malformed ack in the burst: each on its own; the failing first one stays pending
    assert inside == [False, False]
    assert [r.seq for r in buffer.pending_readings()] == [1, 2, 3] and list(sync.inflight) == [("readings", 1, 1)]
    for first in (1, 4):
        ack(link, buffer, "readings", first, first + 2)
    inside.clear()
    sync.turn()
    assert inside == [True, True]  # recorded together: acknowledging 4..6 again changes nothing
    assert buffer.counts("readings")["pending"] == 0 and not sync.inflight


def test_a_burst_whose_transaction_fails_is_recorded_ack_by_ack(buffer, clock, link, monkeypatch):
    sync = make_sync(buffer, clock, link, batch_size=3)
    sync.turn()
    append(buffer, clock, 6)
    tick(sync, clock)
    inside = recording_acks(buffer, monkeypatch, fail_first=True)
    for first in (1, 4):
        ack(link, buffer, "readings", first, first + 2)
    sync.turn()
    assert inside == [True, False, False]  # the burst failed as a whole, then each ack went on its own
    assert buffer.counts("readings")["pending"] == 0 and not sync.inflight
