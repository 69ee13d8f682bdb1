"""The promise, end to end: every reading committed on a gateway reaches PostgreSQL exactly once.

Real processes throughout: `edge run` on a simulated greenhouse -> a private Mosquitto -> `edge dc collector` ->
a private PostgreSQL. After each fault the gateway is stopped cleanly, its buffer drained, and a checker compares
every (epoch, seq) the gateway committed with the database: lost, duplicated and unexpected must all be 0.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = "gh-e2e"

GATEWAY_CONFIG = """\
gateway: {{id: {gateway}}}
hardware: {{backend: simulated}}
clock: {{trust: synced}}
buffer: {{path: {buffer}, max_size: {max_size}}}
control: {{socket: {socket}}}
sync: {{url: {url}, interval: 0.5s, ack_timeout: 5s, reconnect_min: 0.5s, reconnect_max: 2s, batch_size: 200}}
actuators:
  - {{id: fan, type: pwm, kind: fan, pin: 18}}
{sensors}"""

RULE = """\
rules:
  - {id: cooling, type: threshold, input: {sensor: s00, quantity: temperature}, actuator: fan,
     on_above: 0, off_below: -10}
"""


def sensors(count: int) -> str:
    """``count`` simulated sensors at 1 s and a rule switching the fan (so there are events too); none: sync only."""
    if count == 0:
        return ""
    return "sensors:\n" + "\n".join(
        f"  - {{id: s{i:02d}, type: simulated, measures: [temperature, humidity], interval: 1s}}"
        for i in range(count)) + "\n" + RULE


@dataclass
class Check:
    committed: int
    lost: int
    duplicated: int
    unexpected: int


class System:
    """One gateway, one broker, collectors and a database, as separate processes."""

    def __init__(self, tmp_path: Path, broker, postgres):
        self.tmp = tmp_path
        self.broker = broker
        self.postgres = postgres
        self.buffer = tmp_path / "gateway.db"
        self.gateway_proc: subprocess.Popen | None = None
        self.collectors: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "EDGE_MQTT_URL": broker.url, "EDGE_DATABASE_URL": postgres.url}

    def write_gateway_config(self, sensor_count: int = 10, max_size: str = "2GB") -> Path:
        path = self.tmp / "gateway.yaml"
        path.write_text(GATEWAY_CONFIG.format(gateway=GATEWAY, buffer=self.buffer, socket=self.tmp / "control.sock",
                                              url=self.broker.url, sensors=sensors(sensor_count), max_size=max_size))
        return path

    def start_gateway(self, **config) -> None:
        path = self.write_gateway_config(**config)
        epoch = self.epoch()
        self.gateway_proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "-c", str(path)], env=self.env,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: self.epoch() > epoch or self.gateway_proc.poll() is not None, what="the gateway to start")

    def epoch(self) -> int:
        try:
            with sqlite3.connect(f"file:{self.buffer}?mode=ro", uri=True, timeout=30) as conn:
                return conn.execute("SELECT COALESCE(MAX(epoch), 0) FROM epochs").fetchone()[0]
        except sqlite3.DatabaseError:  # not there yet, or a file the test just corrupted
            return 0

    def stop_gateway(self, sig=signal.SIGTERM) -> None:
        self.gateway_proc.send_signal(sig)
        _, err = self.gateway_proc.communicate(timeout=60)
        if sig == signal.SIGTERM:
            assert self.gateway_proc.returncode == 0, err[-3000:]

    def start_collector(self, name: str = "c1") -> None:
        self.collectors[name] = subprocess.Popen(
            [sys.executable, "-m", "edge", "dc", "collector", "-c", str(ROOT / "config/datacenter.example.yaml"),
             "--client-id", name], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def kill_collector(self, name: str = "c1") -> None:
        proc = self.collectors.pop(name)
        proc.kill()
        proc.communicate()

    def stop_all(self) -> None:
        for proc in [self.gateway_proc, *self.collectors.values()]:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()

    # what the gateway committed, and what reached the database

    def gateway_counts(self) -> tuple[int, int]:
        try:
            with sqlite3.connect(f"file:{self.buffer}?mode=ro", uri=True, timeout=30) as conn:
                return conn.execute("SELECT COUNT(*), COALESCE(SUM(acked = 0), 0) FROM readings").fetchone()
        except sqlite3.OperationalError:
            return (0, 0)

    def committed(self) -> set[tuple[int, int]]:
        with sqlite3.connect(f"file:{self.buffer}?mode=ro", uri=True, timeout=30) as conn:
            return set(conn.execute("SELECT epoch, seq FROM readings"))

    def database_keys(self) -> list[tuple[int, int]]:
        with self.postgres.connect() as conn:
            return [tuple(row) for row in conn.execute(
                "SELECT epoch, seq FROM readings WHERE gateway_id = %s", (GATEWAY,))]

    def wait_for_readings(self, at_least: int, timeout: float = 60) -> None:
        wait_until(lambda: self.gateway_counts()[0] >= at_least, timeout=timeout, what=f"{at_least} readings")

    def drain(self, timeout: float = 180) -> None:
        """Stop the gateway cleanly, then run it without sensors (so nothing new comes) until everything it
        committed is acknowledged."""
        self.stop_gateway()
        self.start_gateway(sensor_count=0)
        wait_until(lambda: self.gateway_counts()[1] == 0, timeout=timeout, what="the gateway's backlog to drain")
        self.stop_gateway()

    def gap_events(self) -> bool:
        try:
            with sqlite3.connect(f"file:{self.buffer}?mode=ro", uri=True, timeout=30) as conn:
                return bool(conn.execute("SELECT 1 FROM events WHERE kind = 'buffer.gap'").fetchone())
        except sqlite3.OperationalError:
            return False

    def dropped_ranges(self) -> list[tuple[int, int, int]]:
        with self.postgres.connect() as conn:
            return [tuple(row) for row in conn.execute(
                "SELECT epoch, first_seq, last_seq FROM gaps WHERE gateway_id = %s ORDER BY epoch, first_seq",
                (GATEWAY,))]

    def readings_in_buffer(self) -> dict[tuple[int, int], tuple]:
        """Every reading of the gateway's buffer: key -> (ts in ms, sensor, quantity, value)."""
        with sqlite3.connect(f"file:{self.buffer}?mode=ro", uri=True, timeout=30) as conn:
            return {(e, s): (round(ts * 1000), sensor, quantity, value) for e, s, ts, sensor, quantity, value in
                    conn.execute("SELECT epoch, seq, ts, sensor, quantity, value FROM readings")}

    def readings_in_database(self) -> dict[tuple[int, int], tuple]:
        with self.postgres.connect() as conn:
            return {(e, s): (round(ts * 1000), sensor, quantity, value) for e, s, ts, sensor, quantity, value in
                    conn.execute("SELECT epoch, seq, extract(epoch FROM ts)::float8, sensor, quantity, value "
                                 "FROM readings WHERE gateway_id = %s", (GATEWAY,))}

    def event_kinds_in_database(self) -> set[str]:
        with self.postgres.connect() as conn:
            return {row[0] for row in conn.execute("SELECT kind FROM events WHERE gateway_id = %s", (GATEWAY,))}

    def check(self, dropped: set[tuple[int, int]] = frozenset()) -> Check:
        committed = self.committed() | set(dropped)
        stored = self.database_keys()
        unique = set(stored)
        return Check(committed=len(committed), lost=len(committed - unique - set(dropped)),
                     duplicated=len(stored) - len(unique), unexpected=len(unique - committed))


@pytest.fixture
def system(tmp_path, broker, postgres):
    system = System(tmp_path, broker, postgres)
    yield system
    system.stop_all()


def assert_exactly_once(check: Check, at_least: int) -> None:
    assert check.committed >= at_least
    assert (check.lost, check.duplicated, check.unexpected) == (0, 0, 0), check


def test_a_quiet_run_delivers_everything_once(system):
    system.start_collector()
    system.start_gateway()
    system.wait_for_readings(200)
    system.drain()
    assert_exactly_once(system.check(), 200)


def test_broker_kill_9_and_restart_mid_stream(system):
    system.start_collector()
    system.start_gateway()
    system.wait_for_readings(200)
    system.broker.kill()
    time.sleep(2)
    system.broker.start()
    system.wait_for_readings(system.gateway_counts()[0] + 200)
    system.drain()
    assert_exactly_once(system.check(), 400)


def test_collector_kill_9_mid_stream_then_restart(system):
    system.start_collector()
    system.start_gateway()
    for round_ in range(3):  # kill it three times while batches flow: some kill falls between commit and ack
        system.wait_for_readings(150 * (round_ + 1))
        system.kill_collector()
        system.start_collector()
    system.wait_for_readings(600)
    system.drain()
    assert_exactly_once(system.check(), 600)


def test_gateway_kill_9_mid_batch_then_restart(system):
    system.start_collector()
    system.start_gateway()
    system.wait_for_readings(300)
    system.stop_gateway(signal.SIGKILL)
    system.start_gateway()
    system.wait_for_readings(system.gateway_counts()[0] + 100)
    system.drain()
    check = system.check()
    assert_exactly_once(check, 400)
    assert {epoch for epoch, _ in system.database_keys()} == {1, 2}  # the killed run and the restart


def test_broker_down_for_a_minute_with_a_growing_backlog(system):
    system.start_collector()
    system.start_gateway()
    system.wait_for_readings(100)
    system.broker.stop()
    before = system.gateway_counts()[0]
    time.sleep(60)
    assert system.gateway_counts()[0] >= before + 500  # the backlog grew while the broker was away
    system.broker.start()
    system.drain()
    assert_exactly_once(system.check(), before + 500)


def test_two_collectors_share_the_stream_and_one_is_killed(system):
    system.start_collector("c1")
    system.start_collector("c2")
    system.start_gateway()
    system.wait_for_readings(300)
    system.kill_collector("c2")
    system.wait_for_readings(600)
    system.drain()
    assert_exactly_once(system.check(), 600)


def test_malformed_payloads_on_the_readings_topic_do_not_wedge_the_stream(system):
    system.start_collector()
    system.start_gateway()
    system.wait_for_readings(100)
    intruder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder", protocol=mqtt.MQTTv5)
    intruder.connect(system.broker.host, system.broker.port)
    intruder.loop_start()
    topic = f"greenhouse/v1/{GATEWAY}/up/readings"
    for payload in (b"not a batch", b"GH\x02R" + b"x" * 10, b"GH\x01R\x78\x9c\x03", b"GH\x01R" + os.urandom(300)):
        intruder.publish(topic, payload, qos=1).wait_for_publish(10)
    intruder.loop_stop()
    intruder.disconnect()
    system.wait_for_readings(system.gateway_counts()[0] + 100)
    system.drain()
    assert_exactly_once(system.check(), 200)
    with system.postgres.connect() as conn:
        reasons = [row[0] for row in conn.execute("SELECT reason FROM rejected_messages ORDER BY received_at")]
    assert len(reasons) == 4
    assert any("unsupported protocol version 2" in r for r in reasons)


def test_disk_budget_exceeded_sends_a_gap_record_and_keeps_events(system):
    system.start_collector()
    system.broker.stop()  # an outage from the start: nothing can be acknowledged
    system.start_gateway(sensor_count=20, max_size="300KB")
    wait_until(lambda: system.gap_events(), timeout=180, what="the budget to drop the oldest readings")
    system.broker.start()
    system.drain()
    dropped = system.dropped_ranges()
    assert dropped, "a gap record reached the data center"
    check = system.check(dropped={(e, s) for e, first, last in dropped for s in range(first, last + 1)})
    assert (check.lost, check.duplicated, check.unexpected) == (0, 0, 0), check
    with system.postgres.connect() as conn:
        kinds = {row[0] for row in conn.execute("SELECT kind FROM events WHERE gateway_id = %s", (GATEWAY,))}
    assert {"daemon.start", "actuator.change", "buffer.gap"} <= kinds  # events are never dropped for space



# -------------------------------------------------------------------------- the buffer file lost or rolled back


def lose_the_buffer(system: System, how: str) -> None:
    """What a dying SD card, a clumsy operator or a re-imaged card does to the gateway's buffer."""
    if how == "corrupt":  # scribbled pages: the file fails its integrity check and is moved aside
        with sqlite3.connect(system.buffer) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file, none in the log
        size = system.buffer.stat().st_size
        with open(system.buffer, "r+b") as f:
            f.seek(size // 3)
            f.write(os.urandom(size // 3))
    elif how == "re-imaged":  # the whole state directory gone, the epoch sidecar with it
        for path in system.buffer.parent.glob(system.buffer.name + "*"):
            path.unlink()


def assert_every_reading_arrived_as_it_is(system: System, old: dict, new_at_least: int) -> None:
    """Every reading the gateway holds now is in the database under its key with its own content, and what the
    earlier life delivered is still there untouched: nothing dropped behind an old key, nothing overwritten."""
    mine = system.readings_in_buffer()
    stored = system.readings_in_database()
    assert len(mine) >= new_at_least
    wrong = {key: (value, stored.get(key)) for key, value in mine.items() if stored.get(key) != value}
    assert not wrong, f"{len(wrong)} of {len(mine)} readings are missing or differ: {list(wrong.items())[:3]}"
    changed = {key for key, value in old.items() if stored.get(key) != value}
    assert not changed, f"{len(changed)} readings of the earlier life were changed or lost"


@pytest.mark.parametrize("how", ["corrupt", "re-imaged"])
def test_readings_after_a_lost_buffer_all_reach_the_database(system, how):
    system.start_collector()
    system.start_gateway()
    system.wait_for_readings(200)
    system.drain()
    old = system.readings_in_database()
    assert len(old) == len(system.readings_in_buffer()) >= 200

    lose_the_buffer(system, how)
    system.start_gateway()
    system.wait_for_readings(300)
    system.drain()
    assert_every_reading_arrived_as_it_is(system, old, 300)
    kinds = system.event_kinds_in_database()
    if how == "corrupt":
        assert "buffer.corrupt" in kinds  # the event that says what happened reaches the data center too
    else:
        assert "buffer.rekey" in kinds or "buffer.epoch" in kinds  # the data center told it to move on
        with system.postgres.connect() as conn:
            assert conn.execute("SELECT count(*) FROM conflicts WHERE gateway_id = %s", (GATEWAY,)).fetchone()[0]


def test_a_deleted_write_ahead_log_and_kill_9_never_reuse_an_epoch(system):
    system.start_collector()
    system.start_gateway()
    system.wait_for_readings(100)
    system.stop_gateway()  # a clean stop: the log is checkpointed into the file
    system.start_gateway()  # the next epoch lives in the write-ahead log only...
    before = system.gateway_counts()[0]
    system.wait_for_readings(before + 100)
    wait_until(lambda: system.gateway_counts()[1] < 50, what="most readings acknowledged")
    Path(f"{system.buffer}-wal").unlink()  # ...which someone deletes
    system.stop_gateway(signal.SIGKILL)
    old = system.readings_in_database()

    system.start_gateway()
    system.wait_for_readings(system.gateway_counts()[0] + 200)
    system.drain()
    assert_every_reading_arrived_as_it_is(system, old, 200)
    # SQLite finds the file either rolled back or (with the stale shared-memory index) unreadable; either is reported
    assert {"buffer.rolled_back", "buffer.corrupt"} & system.event_kinds_in_database()
    assert "buffer.epoch" not in system.event_kinds_in_database()  # the epoch floor held without the data center
