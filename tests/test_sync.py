"""The gateway's uplink against a real Mosquitto, with a stand-in data center that acks what it "commits".

(The real collector and PostgreSQL are in tests/test_end_to_end.py; here the data center is a paho client in the
test, so that acks can be withheld, delayed or counted.)
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import sqlite3
import subprocess
import threading
import time
import zlib

import paho.mqtt.client as mqtt
import pytest

from conftest import wait_until
from edge.contract import protocol
from edge.gateway.buffer import Buffer, NewReading
from edge.gateway.clock import Clock
from edge.gateway.sync import Sync, SyncConfig
from edge.gateway.sync.state import SyncState

GW = "gh-sync"

pytestmark = pytest.mark.slow


class StandInDataCenter:
    """Subscribes to a gateway's uplink, records what it receives, and acks it (unless told not to)."""

    def __init__(self, broker, ack: bool = True):
        self.ack = ack
        self.readings: dict[tuple[int, int], protocol.Reading] = {}
        self.received: list[tuple[int, int]] = []
        self.events: list[protocol.Event] = []
        self.status: list[dict] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stand-in-dc", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.connected.set()
        self.client.reconnect_delay_set(0.2, 1)
        self.connected = threading.Event()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.connected.wait(10)

    def _on_connect(self, client, _userdata, _flags, _reason, _properties) -> None:
        client.subscribe([(f"greenhouse/v1/{GW}/up/#", 1), (f"greenhouse/v1/{GW}/status", 1)])

    def _on_message(self, client, _userdata, message) -> None:
        _, leaf = protocol.parse_topic(message.topic)
        with self.lock:
            if leaf == protocol.STATUS:
                self.status.append(protocol.decode_status(message.payload))
                return
            if leaf == protocol.UP_READINGS:
                batch = protocol.decode_readings(message.payload)
                for r in batch.readings:
                    self.received.append((batch.epoch, r.seq))
                    self.readings[(batch.epoch, r.seq)] = r
                ack = protocol.Ack("readings", batch.epoch, tuple(batch.ranges()))
            else:
                batch = protocol.decode_events(message.payload)
                self.events.extend(batch.events)
                ack = protocol.Ack("events", batch.epoch, tuple(batch.ranges()))
        if self.ack:
            client.publish(protocol.topic(GW, protocol.DOWN_ACK), protocol.encode_ack(ack), qos=1)

    def command(self, command: protocol.Command) -> None:
        self.client.publish(protocol.topic(GW, protocol.DOWN_CMD), protocol.encode_command(command), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def buffer(tmp_path):
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=time.time(), boot_id="b")
    yield buffer
    buffer.close()


@pytest.fixture
def data_center(broker):
    dc = StandInDataCenter(broker)
    yield dc
    dc.close()


@pytest.fixture
def make_sync(buffer):
    started = []

    def make(broker, **settings) -> Sync:
        config = SyncConfig(url=broker.url, interval="1s", reconnect_min="1s", reconnect_max="2s", **settings)
        sync = Sync(config, GW, buffer, Clock("synced"), on_command=settings_command)
        started.append(sync)
        sync.start()
        return sync

    yield make
    for sync in started:
        sync.stop()


def settings_command(command):
    if command.args.get("actuator") == "fan":
        raise ValueError("refused: interlock with heater-1")
    return {"actuator": command.args.get("actuator"), "state": "on"}


def append(buffer, n: int, start: int = 0) -> None:
    now = time.time()
    buffer.append_readings([NewReading(now + i / 1000, f"s{(start + i) % 7}", "temperature", 20 + (start + i) % 50 / 10,
                                       "°C") for i in range(n)])


def pending(buffer) -> int:
    return buffer.counts()["pending"]


@pytest.mark.parametrize("version", ["mqttv5", "mqttv311"])
def test_readings_leave_pending_only_when_the_data_center_acks(buffer, broker, data_center, make_sync, version):
    append(buffer, 2500)
    make_sync(broker, batch_size=1000, mqtt_version=version)
    wait_until(lambda: pending(buffer) == 0, what="every reading acknowledged")
    assert sorted(data_center.readings) == [(1, seq) for seq in range(1, 2501)]
    assert data_center.readings[(1, 1)].value == 20.0


def test_no_ack_means_nothing_leaves_and_the_batch_is_sent_again(buffer, broker, make_sync):
    silent = StandInDataCenter(broker, ack=False)
    try:
        append(buffer, 10)
        make_sync(broker, ack_timeout="2s")
        wait_until(lambda: silent.received.count((1, 1)) >= 2, what="a re-send after the ack timeout")
        assert pending(buffer) == 10  # a broker PUBACK is not an ack
        silent.ack = True
        wait_until(lambda: pending(buffer) == 0, what="the ack of a re-sent batch")
    finally:
        silent.close()


def test_a_broker_killed_mid_stream_loses_nothing(buffer, broker, data_center, make_sync):
    append(buffer, 3000)
    make_sync(broker, batch_size=200, backlog_rate=2000)
    wait_until(lambda: 0 < pending(buffer) < 3000, what="the drain to be under way")
    broker.kill()
    append(buffer, 500, start=3000)  # readings keep coming while the broker is down
    time.sleep(1.5)
    broker.start()
    wait_until(lambda: pending(buffer) == 0, timeout=60, what="the backlog to drain after the broker restart")
    assert set(data_center.readings) == {(1, seq) for seq in range(1, 3501)}


def test_live_readings_are_not_starved_by_a_long_backlog(buffer, broker, data_center, make_sync):
    append(buffer, 20_000)  # a long outage's worth
    make_sync(broker, batch_size=500, backlog_rate=1000)  # the backlog drains at 1000 readings/s at most
    wait_until(lambda: len(data_center.readings) > 0, what="the backlog to start")
    append(buffer, 1, start=20_000)  # a fresh reading
    began = time.monotonic()
    wait_until(lambda: (1, 20_001) in data_center.readings, timeout=10, what="the fresh reading")
    assert time.monotonic() - began < 5
    assert len(data_center.readings) < 20_000  # it did not wait for the backlog


def test_events_are_delivered_and_acked_too(buffer, broker, data_center, make_sync):
    buffer.append_event("actuator.change", "fan", {"value": 1.0, "reason": "rule:cooling"}, ts=time.time())
    make_sync(broker)
    wait_until(lambda: buffer.counts("events")["pending"] == 0, what="the event acknowledged")
    [event] = [e for e in data_center.events if e.kind == "actuator.change"]
    assert event.data == {"value": 1.0, "reason": "rule:cooling"} and event.source == "fan"


def test_the_gateway_announces_itself_and_its_backlog(buffer, broker, data_center, make_sync):
    make_sync(broker)
    wait_until(lambda: data_center.status, what="the birth message")
    birth = data_center.status[0]
    assert birth["state"] == "online" and birth["epoch"] == 1 and "backlog" in birth


def results(buffer) -> list[dict]:
    return [json.loads(e["data"]) for e in buffer.events() if e["kind"] == "command.result"]


def test_commands_are_answered_once_and_replays_are_refused(buffer, broker, data_center, make_sync):
    make_sync(broker)
    wait_until(lambda: data_center.status, what="the gateway to connect")
    now = time.time()
    data_center.command(protocol.Command("c-1", now, "ping", {}))
    data_center.command(protocol.Command("c-2", now, "actuate", {"actuator": "pump-1", "action": "on", "for": 60}))
    data_center.command(protocol.Command("c-2", now, "actuate", {"actuator": "pump-1", "action": "on", "for": 60}))
    data_center.command(protocol.Command("c-3", now - 3600, "ping", {}))
    data_center.command(protocol.Command("c-4", now, "actuate", {"actuator": "fan", "action": "on"}))
    wait_until(lambda: len(results(buffer)) == 5, what="five command results")
    by_id = [(r["id"], r["ok"], r.get("error")) for r in results(buffer)]
    assert by_id[0][:2] == ("c-1", True)
    assert by_id[1] == ("c-2", True, None)
    assert by_id[2] == ("c-2", False, "command c-2 was already received")
    assert by_id[3][:2] == ("c-3", False)
    expired = re.fullmatch(r"command expired: issued (\d+)s ago.*", by_id[3][2])  # a second more on a loaded machine
    assert expired and 3600 <= int(expired.group(1)) <= 3660, by_id[3][2]
    assert by_id[4] == ("c-4", False, "refused: interlock with heater-1")
    wait_until(lambda: {e.data.get("id") for e in data_center.events if e.kind == "command.result"}
               >= {"c-1", "c-2", "c-3", "c-4"}, what="the results to reach the data center")


def test_a_malformed_command_is_refused_and_the_link_carries_on(buffer, broker, data_center, make_sync):
    make_sync(broker)
    wait_until(lambda: data_center.status, what="the gateway to connect")
    data_center.client.publish(protocol.topic(GW, protocol.DOWN_CMD), b"GH\x01Cgarbage", qos=1)
    data_center.client.publish(protocol.topic(GW, protocol.DOWN_ACK), b"\x00\x01", qos=1)
    wait_until(lambda: results(buffer), what="the refusal")
    assert results(buffer)[0]["ok"] is False and "corrupt payload" in results(buffer)[0]["error"]
    append(buffer, 5)
    wait_until(lambda: pending(buffer) == 0, what="sync to carry on")


def test_without_a_broker_url_the_gateway_only_buffers(buffer):
    sync = Sync(SyncConfig(url=""), GW, buffer, Clock("synced"))
    sync.start()
    append(buffer, 3)
    sync.stop()
    assert pending(buffer) == 3


@pytest.mark.parametrize("url, message", [
    ("http://broker:1883", "invalid broker url"),
    ("mqtt://", "invalid broker url"),
    ("mqtt://host:99999", "bad port"),
])
def test_bad_broker_urls_are_refused_by_the_config(url, message):
    with pytest.raises(ValueError, match=message):
        SyncConfig(url=url)


class TlsBroker:
    """A private Mosquitto with a TLS listener (own CA, server certificate for 127.0.0.1) that requires a
    username and password, and a plain anonymous listener for the stand-in data center."""

    def __init__(self, workdir, password: str):
        from services import MOSQUITTO, Broker, free_port

        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca = workdir / "ca.crt"
        self._certificates()
        passwords = workdir / "passwd"
        passwords.write_text("")
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), GW, password], check=True, capture_output=True)
        self.tls_port = free_port()
        self.plain = Broker(workdir / "plain")  # reuse its start/stop/kill; only the config differs
        self.plain.config.write_text("\n".join([
            "per_listener_settings true",
            f"listener {self.plain.port} 127.0.0.1", "allow_anonymous true",
            f"listener {self.tls_port} 127.0.0.1", "allow_anonymous false", f"password_file {passwords}",
            f"cafile {self.ca}", f"certfile {workdir / 'server.crt'}", f"keyfile {workdir / 'server.key'}",
            "log_dest stderr", "log_type all", f"user {pwd.getpwuid(os.geteuid()).pw_name}",
        ]) + "\n")
        assert MOSQUITTO.exists()
        self.plain.start()
        self.url = f"mqtts://127.0.0.1:{self.tls_port}"

    def _certificates(self) -> None:
        w = self.workdir

        def ssl(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=w)

        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=edge test CA",
            "-keyout", "ca.key", "-out", "ca.crt")
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr")
        (w / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days",
            "2", "-extfile", "san.ext", "-out", "server.crt")

    def kill(self) -> None:
        self.plain.kill()


@pytest.fixture
def tls_broker(tmp_path):
    import shutil

    if not shutil.which("openssl") or not shutil.which("mosquitto_passwd"):
        pytest.skip("openssl and mosquitto_passwd are needed for the TLS test")
    broker = TlsBroker(tmp_path / "tls", password="s3cret-test-only")
    yield broker
    broker.kill()


def test_sync_over_tls_with_a_password_from_a_file(buffer, tls_broker, tmp_path, caplog):
    dc = StandInDataCenter(tls_broker.plain)
    password_file = tmp_path / "mqtt-password"
    password_file.write_text("s3cret-test-only\n")
    append(buffer, 50)
    config = SyncConfig(url=tls_broker.url, ca_file=tls_broker.ca, password_file=password_file, interval="1s")
    sync = Sync(config, GW, buffer, Clock("synced"))
    try:
        with caplog.at_level("DEBUG"):
            sync.start()
            wait_until(lambda: pending(buffer) == 0, what="the readings to go over TLS")
        assert "s3cret-test-only" not in caplog.text
    finally:
        sync.stop()
        dc.close()


def test_a_wrong_password_is_refused_and_nothing_leaves(buffer, tls_broker, tmp_path):
    password_file = tmp_path / "mqtt-password"
    password_file.write_text("wrong\n")
    append(buffer, 5)
    config = SyncConfig(url=tls_broker.url, ca_file=tls_broker.ca, password_file=password_file, interval="1s",
                        reconnect_min="1s", reconnect_max="1s")
    sync = Sync(config, GW, buffer, Clock("synced"))
    sync.start()
    try:
        wait_until(lambda: (SyncState(buffer).link().error or "").startswith("broker refused the connection"),
                   what="the refusal to be recorded")
        assert SyncState(buffer).link().error == "broker refused the connection: Not authorized"
        assert pending(buffer) == 5
    finally:
        sync.stop()


# ------------------------------------------------------------------------------- an uplink that cannot die silently


def raw_command(body: bytes) -> bytes:
    """A command payload as a hostile data center (or a broken one) could send it: any JSON text at all."""
    return b"GH\x01C" + zlib.compress(body)


def test_hostile_commands_are_each_answered_and_the_uplink_keeps_acking(buffer, broker, data_center, make_sync):
    calls = []
    sync = make_sync(broker)
    sync.on_command = lambda command: calls.append(command) or {"state": "on"}
    wait_until(lambda: data_center.status, what="the gateway to connect")
    now = str(time.time()).encode()
    hostile = {
        "lone surrogate in the id": raw_command(b'{"id": "c-\\udc80", "issued": ' + now
                                                + b', "op": "ping", "args": {}}'),
        "JSON 100,000 deep": raw_command(b'{"id": "deep", "issued": ' + now + b', "op": "ping", "args": '
                                         + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        "a 5,000-digit integer": raw_command(b'{"id": "big", "issued": 1' + b"0" * 5000 + b', "op": "ping"}'),
        "issued 10^400": raw_command(b'{"id": "c-400", "issued": 1' + b"0" * 400 + b', "op": "ping", "args": {}}'),
        '"for": true': protocol.encode_command(protocol.Command("c-true", float(now), "actuate",
                                                                {"actuator": "pump-1", "action": "on", "for": True})),
        '"for": NaN': raw_command(b'{"id": "c-nan", "issued": ' + now + b', "op": "actuate", "args": '
                                  b'{"actuator": "pump-1", "action": "on", "for": NaN}}'),
        "an unknown argument": protocol.encode_command(protocol.Command(
            "c-speed", float(now), "actuate", {"actuator": "pump-1", "action": "on", "speed": 3})),
        "a surrogate in the actuator": raw_command(b'{"id": "c-act", "issued": ' + now + b', "op": "actuate", '
                                                   b'"args": {"actuator": "\\udc80", "action": "on"}}'),
        "a surrogate in a key": raw_command(b'{"id": "c-key", "issued": ' + now + b', "op": "ping", '
                                            b'"args": {}, "\\ud800": 1}'),
        "an array body": raw_command(b"[1, 2, 3]"),
        "a 10,000-character id": raw_command(b'{"id": "' + b"x" * 10_000 + b'", "issued": 1, "op": "ping"}'),
        "not even zlib": b"GH\x01C\x00\x01\x02",
    }
    for payload in hostile.values():
        data_center.client.publish(protocol.topic(GW, protocol.DOWN_CMD), payload, qos=1)
    data_center.command(protocol.Command("c-ok", time.time(), "ping", {}))
    wait_until(lambda: len(results(buffer)) == len(hostile) + 1, what="an answer to every command")
    answers = results(buffer)
    assert [r["ok"] for r in answers] == [False] * len(hostile) + [True]
    assert all(r["error"] for r in answers[:-1])
    by_id = {r["id"]: r for r in answers if r["id"]}
    assert by_id["c-true"]["error"].startswith('command actuate: "for" must be a number of seconds')
    assert by_id["c-true"]["error"].endswith("(got true)")
    unnamed = [r["error"] for r in answers if r["id"] is None]  # refused before the id could be trusted
    assert "corrupt payload: NaN is not a JSON number" in unnamed
    assert "corrupt payload: an integer of 401 digits (at most 24)" in unnamed
    assert by_id["c-speed"]["error"] == 'command actuate: unknown argument(s) "speed"'
    assert any("a lone surrogate U+D800" in error for error in unnamed)  # in a key: no field can be trusted
    assert calls == []  # nothing reached the supervisor
    assert sync.problem() is None and sync._thread.is_alive()
    append(buffer, 5)
    wait_until(lambda: pending(buffer) == 0, what="readings acked after the hostile commands")
    wait_until(lambda: len([e for e in data_center.events if e.kind == "command.result"]) == len(hostile) + 1,
               what="every answer at the data center")


def test_a_huge_ack_is_ignored_and_the_uplink_carries_on(buffer, broker, data_center, make_sync):
    sync = make_sync(broker)
    wait_until(lambda: data_center.status, what="the gateway to connect")
    huge = protocol._frame(protocol.KIND_ACK, {"s": "readings", "e": 2**70, "r": [[1, 2**80]]})
    data_center.client.publish(protocol.topic(GW, protocol.DOWN_ACK), huge, qos=1)
    append(buffer, 5)
    wait_until(lambda: pending(buffer) == 0, what="readings acked after the huge ack")
    assert sync.problem() is None


def corrupt(buffer, sql: str, *params) -> None:
    """Change the buffer file behind the buffer's back, as a failing SD card does (the result passes quick_check)."""
    conn = sqlite3.connect(buffer.path, isolation_level=None)
    try:
        conn.execute(sql, params)
    finally:
        conn.close()


def test_a_garbled_buffer_row_is_set_aside_reported_and_the_rest_flows(buffer, broker, data_center, make_sync):
    from edge.gateway.buffer import _integrity_problem

    append(buffer, 20)
    first = buffer.append_event("actuator.change", "fan", {"value": 1.0}, ts=time.time())
    buffer.append_event("actuator.change", "fan", {"value": 0.0}, ts=time.time())
    corrupt(buffer, "UPDATE readings SET unit = CAST(X'C328' AS TEXT) WHERE seq = 5")  # invalid UTF-8
    corrupt(buffer, "UPDATE readings SET value = 9e999 WHERE seq = 9")  # infinity: cannot be encoded
    corrupt(buffer, "UPDATE events SET data = '{\"value\": ' WHERE seq = ?", first)  # not JSON any more
    corrupt(buffer, "UPDATE readings SET seq = CAST(X'FF07' AS TEXT) WHERE seq = 12")  # even the key garbled
    assert _integrity_problem(buffer.path) is None

    sync = make_sync(broker)
    wait_until(lambda: pending(buffer) == 0 and buffer.counts("events")["pending"] == 0, what="the rest to flow")
    assert set(data_center.readings) == {(1, seq) for seq in range(1, 21)} - {(1, 5), (1, 9), (1, 12)}
    wait_until(lambda: len([e for e in data_center.events if e.kind.startswith("buffer.")]) == 4,
               what="the data center to be told")
    gaps = sorted((e.data["first_seq"], e.data["last_seq"], e.data["count"], e.data["reason"])
                  for e in data_center.events if e.kind == "buffer.gap")
    assert [g[:3] for g in gaps] == [(5, 5, 1), (9, 9, 1)]
    assert gaps[0][3].startswith("set aside: cannot be read: Could not decode to UTF-8 column 'unit'")
    assert gaps[1][3] == "set aside: cannot be encoded: value 'inf' is not a finite number"
    aside = sorted(((e.data["stream"], e.data["seq"]), e.data["reason"]) for e in data_center.events
                   if e.kind == "buffer.set_aside")
    assert aside[0][0] == ("events", first) and aside[0][1].startswith("cannot be encoded: data is not JSON")
    assert aside[1] == (("readings", "x'FF07'"), "its key is not a pair of integers")
    kept = {(r["stream"], r["seq"]): r["cells"] for r in SyncState(buffer).quarantined()}
    assert set(kept) == {("readings", 5), ("readings", 9), ("readings", "x'FF07'"), ("events", first)}
    assert kept[("readings", 5)]["unit"] == ["text", "C328"]  # the garbled bytes, exactly
    assert kept[("readings", 9)]["value"] == ["real", "Inf"]
    assert kept[("readings", "x'FF07'")]["seq"] == ["text", "FF07"]
    assert sync.problem() is None

    sync.stop()  # the next start does not read them again
    make_sync(broker)
    append(buffer, 3, start=20)
    wait_until(lambda: pending(buffer) == 0, what="new readings after a restart")
    assert len(SyncState(buffer).quarantined()) == 4
    assert len([e for e in buffer.events() if e["kind"] in ("buffer.gap", "buffer.set_aside")]) == 4


def test_a_backlog_of_good_readings_goes_as_columns_and_a_garbled_row_in_it_is_still_set_aside(
        buffer, broker, data_center, make_sync, monkeypatch):
    """Once the backlog lane knows its epoch, each batch of good readings is read and encoded as columns, not a
    Reading per row (Buffer.good_readings): the drain's main cost on the gateway. A batch with a garbled row goes
    the row-by-row way, which sets the row aside, and the batches after it go as columns again."""
    append(buffer, 2000)
    corrupt(buffer, "UPDATE readings SET unit = CAST(X'C328' AS TEXT) WHERE seq = 1234")  # invalid UTF-8
    row_by_row = []
    read = Buffer.pending_readings

    def counted(self, *args, **kwargs):
        rows = read(self, *args, **kwargs)
        row_by_row.append(len(rows))
        return rows

    monkeypatch.setattr(Buffer, "pending_readings", counted)
    make_sync(broker, batch_size=250)
    wait_until(lambda: pending(buffer) == 0, what="the backlog acknowledged")
    assert set(data_center.readings) == {(1, seq) for seq in range(1, 2001)} - {(1, 1234)}
    assert data_center.readings[(1, 1999)].value == 20 + 1998 % 50 / 10  # what the columns carried is the reading
    assert data_center.readings[(1, 1999)].sensor == f"s{1998 % 7}"
    wait_until(lambda: any(e.kind == "buffer.gap" for e in data_center.events), what="the data center to be told")
    assert [e.data["first_seq"] for e in data_center.events if e.kind == "buffer.gap"] == [1234]
    # row by row: the first batch (before the lane knows its epoch), and the garbled row's batch (read again once
    # the row is set aside); the other six batches went as columns
    assert sum(row_by_row) <= 3 * 250, row_by_row


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the SystemExit below
def test_a_dead_uplink_thread_is_a_problem_and_recorded_for_edge_status(buffer, broker, data_center, make_sync):
    sync = make_sync(broker)
    wait_until(lambda: data_center.status, what="the gateway to connect")
    assert sync.problem() is None

    def killed():
        raise SystemExit("killed by the test")

    sync.step = killed
    wait_until(lambda: not sync._thread.is_alive(), what="the thread to end")
    assert sync.problem() == "the uplink thread has ended (SystemExit: killed by the test)"
    state = SyncState(buffer).link()
    assert state.link == "down" and state.error == "the uplink thread has ended: SystemExit: killed by the test"


def test_a_wedged_uplink_is_stalled_for_the_watchdog_and_edge_status(buffer, broker, data_center, tmp_path):
    from edge.cli import status_report
    from edge.gateway.config import parse_config
    from edge.gateway.clock import FakeClock

    clock = FakeClock(start=time.time())
    entered, release = threading.Event(), threading.Event()

    def hangs(command):  # say, the supervisor's lock held by an output that does not answer
        entered.set()
        release.wait(60)
        return {}

    config = parse_config(f"gateway: {{id: {GW}}}\nbuffer: {{path: {buffer.path}}}\n"
                          f"sync: {{url: '{broker.url}', stall_after: 2m}}\n")
    sync = Sync(config.sync, GW, buffer, clock, on_command=hangs)
    sync.start()
    try:
        wait_until(lambda: data_center.status, what="the gateway to connect")
        assert status_report(config, now=clock.time())["sync"]["link"] == "up"
        data_center.command(protocol.Command("c-hang", clock.time(), "actuate", {"actuator": "fan", "action": "on"}))
        assert entered.wait(10)
        clock.advance(119)
        assert sync.problem() is None
        clock.advance(2)
        assert sync.problem() == "the uplink is stalled: no progress for 121s"
        report = status_report(config, now=clock.time())["sync"]
        assert report["link"] == "stalled"
        assert report["error"].startswith("the uplink thread has made no progress since ")
        release.set()
        wait_until(lambda: sync.problem() is None, what="the uplink to recover")
        wait_until(lambda: status_report(config, now=clock.time())["sync"]["link"] == "up", what="status: up")
    finally:
        release.set()
        sync.stop()


def test_a_clean_stop_logs_no_error(buffer, broker, data_center, make_sync, caplog):
    sync = make_sync(broker)
    wait_until(lambda: data_center.status, what="the gateway to connect")
    with caplog.at_level(logging.INFO):
        sync.stop()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    wait_until(lambda: data_center.status[-1]["state"] == "offline", what="the goodbye")


# --------------------------------------------------------------------------------------- after a broker restart


def test_a_batch_sent_before_the_collector_is_back_is_acked_well_before_the_ack_timeout(buffer, broker, postgres,
                                                                                        make_sync):
    from dc_kit import datacenter_config
    from edge.datacenter.collector import Collector
    from edge.datacenter.store import migrate

    with postgres.connect() as conn:
        migrate(conn)
    collectors = []

    def start_collector() -> Collector:
        collectors.append(Collector(datacenter_config(broker, postgres), client_id="collector-1").start())
        assert collectors[-1].subscribed.wait(10)
        return collectors[-1]

    try:
        start_collector()
        sync = make_sync(broker, ack_timeout="30s")
        append(buffer, 10)
        wait_until(lambda: pending(buffer) == 0, what="the first readings acked")
        collectors[-1].stop()
        broker.kill()  # no snapshot since it started: it forgets every session, the collector's subscription too
        broker.start()
        log_from = len(broker.log_text())
        append(buffer, 50, start=10)
        # The gateway reconnects and sends the new readings while no collector is subscribed: the broker drops them.
        # the sync thread records a batch in flight just after its publish: the broker may log it first
        wait_until(lambda: f"Received PUBLISH from edge-{GW}" in broker.log_text()[log_from:]
                   and "up/readings" in broker.log_text()[log_from:] and sync.inflight, what="the gateway to publish")
        assert pending(buffer) == 50
        began = time.monotonic()
        start_collector()
        wait_until(lambda: pending(buffer) == 0, timeout=25, what="the backlog acked")
        assert time.monotonic() - began < 10  # not the 30 s ack timeout
        with postgres.connect() as conn:
            assert conn.execute("SELECT COUNT(*) FROM readings WHERE gateway_id = %s", (GW,)).fetchone()[0] == 60
    finally:
        for collector in collectors:
            collector.stop()


def test_an_unreadable_password_file_is_an_outage_not_a_dead_or_stalled_uplink(buffer, broker, tmp_path):
    from edge.gateway.clock import FakeClock

    clock = FakeClock(start=time.time())
    config = SyncConfig(url=broker.url, password_file=tmp_path / "missing-password", reconnect_min="0.2s",
                        reconnect_max="0.5s")
    sync = Sync(config, GW, buffer, clock)
    sync.start()
    try:
        wait_until(lambda: (SyncState(buffer).link().error or "").startswith("[Errno 2] No such file"),
                   what="the failed attempt recorded")
        assert SyncState(buffer).link().link == "down"
        clock.advance(600)  # ten minutes of failed attempts: still trying, so not stalled
        wait_until(lambda: sync.problem() is None, timeout=10, what="the next attempt")
        assert sync._thread.is_alive()
    finally:
        sync.stop()
