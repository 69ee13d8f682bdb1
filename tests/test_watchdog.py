"""The systemd watchdog is fed only while the daemon is healthy: a hung sensor read, stalled control or a buffer that
refuses writes withholds WATCHDOG=1, so systemd restarts the daemon (and the unit's ExecStopPost makes outputs safe).

The hang is the simulation's own fault injection (``hardware.simulation.faults``, a test aid): ``read()`` of the
sensor blocks until the fault ends, as a sensor wedging its I2C bus would.
"""

from __future__ import annotations

import re
import socket
import sqlite3
import threading
import time

import pytest

from conftest import wait_until
from edge.gateway.config import load_config, parse_config
from edge.errors import ConfigError
from edge.gateway.clock import FakeClock
from edge.gateway.daemon import Daemon
from edge.gateway.hardware.sim import GreenhouseModel, SimulatedSensor, SimulationConfig

WATCHED = """\
gateway: {id: gh-watchdog}
hardware:
  backend: simulated
  simulation:
    faults: [FAULTS]
buffer: {path: BUFFER}
clock: {trust: synced}
control: {socket: SOCKET, interval: CONTROL}
sensors:
  - {id: air, type: simulated, measures: [temperature], interval: INTERVAL}
"""


def config_text(directory, faults: str = "", interval: str = "1s", control: str = "5s") -> str:
    return (WATCHED.replace("FAULTS", faults).replace("BUFFER", str(directory / "buffer.db"))
            .replace("SOCKET", str(directory / "control.sock")).replace("INTERVAL", interval)
            .replace("CONTROL", control))


def write_config(tmp_path, **kwargs):
    path = tmp_path / "gateway.yaml"
    path.write_text(config_text(tmp_path, **kwargs))
    return path


# ----------------------------------------------------------------------------------------- the simulated hang


def test_a_hung_sensor_blocks_in_read_until_its_fault_is_cleared():
    clock = FakeClock()
    model = GreenhouseModel(SimulationConfig(), clock)
    sensor = SimulatedSensor("air", model, ["temperature"])
    model.inject_fault("air", "hang")
    result = []
    reader = threading.Thread(target=lambda: result.extend(sensor.read()), daemon=True)
    reader.start()
    reader.join(0.3)
    assert reader.is_alive() and not result  # still inside read()
    assert model.state().air_temperature  # the rest of the greenhouse is not blocked meanwhile
    model.clear_fault("air")
    reader.join(5)
    assert not reader.is_alive()
    [sample] = result
    assert sample.quality == "error" and sample.reason.startswith("simulated hang: no answer for")
    assert sensor.read()[0].quality == "good"


def test_a_configured_fault_starts_after_its_delay_and_ends_after_its_duration(tmp_path):
    config = parse_config(config_text(tmp_path, faults="{sensor: air, kind: dropout, after: 10s, for: 5s}"))
    clock = FakeClock()
    model = GreenhouseModel(config.hardware.simulation, clock)
    sensor = SimulatedSensor("air", model, ["temperature"])
    assert sensor.read()[0].quality == "good"
    clock.advance(10)
    assert sensor.read()[0].quality == "error"
    clock.advance(5)
    assert sensor.read()[0].quality == "good"


def test_a_configured_fault_of_an_unknown_kind_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        parse_config(config_text(tmp_path, faults="{sensor: air, kind: melt}"), "gateway.yaml")
    assert error.value.problems == ["gateway.yaml:5: hardware.simulation.faults[0].kind: Input should be "
                                    "'dropout', 'stuck', 'spike' or 'hang'"]


# ------------------------------------------------------------------------------------------- what health means


def test_health_names_a_late_sampling_group_stalled_control_and_a_locked_buffer(tmp_path, monkeypatch):
    monkeypatch.setattr("edge.gateway.daemon.BUFFER_WRITE_TIMEOUT", 0.2)
    # Long intervals: no job runs again during the test, so only the fake clock moves the ages.
    config = load_config(write_config(tmp_path, interval="1m", control="1m"), env={})
    clock = FakeClock()
    daemon = Daemon(config, clock=clock)
    daemon.start()
    try:
        last: list[list[str]] = []

        def healthy() -> bool:
            last[:] = [daemon.health()]
            return not last[0]

        try:
            wait_until(healthy, timeout=30, what="the first sampling round")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the daemon's health said {last}") from None
        # the round woke the control thread: its evaluation, still running under load, would record the time after
        # the advance below. Stopped here (the evaluation in hand finished), control runs only when called.
        daemon.control_worker.stop()
        clock.advance(200)
        assert daemon.health() == ["sampling every 60s: last round completed 200s ago",
                                   "control (schedules, rules, safety limits): last evaluated 200s ago"]
        daemon.sampler.run_round(60.0)
        daemon.control()
        assert daemon.health() == []

        holder = sqlite3.connect(tmp_path / "buffer.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process keeps the buffer's write lock
        try:
            assert daemon.health() == ["the buffer does not accept writes (database is locked)"]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert daemon.health() == []
    finally:
        daemon.stop("test")


def test_a_deleted_buffer_file_does_not_accept_writes(tmp_path):
    from edge.gateway.buffer import Buffer

    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=1.0, boot_id="b")
    try:
        assert buffer.write_problem() is None
        (tmp_path / "buffer.db").rename(tmp_path / "elsewhere.db")
        assert buffer.write_problem() == "unable to open database file"
        assert not (tmp_path / "buffer.db").exists()  # the check never creates a file
    finally:
        buffer.close()


def test_systemd_hears_ready_first_and_stopping_last_even_with_a_watchdog_run_in_hand(tmp_path, monkeypatch):
    """The watchdog's first run may come before the start has sent READY=1, and a run already in hand when the
    daemon stops once sent WATCHDOG=1 after STOPPING=1. Both are held here at the worst moment."""
    from edge.gateway.control_socket import ControlServer

    sent: list[str] = []
    monkeypatch.setattr("edge.gateway.daemon.sd_notify", sent.append)
    monkeypatch.setattr("edge.gateway.daemon.watchdog_interval", lambda: 0.05)
    serve = ControlServer.start

    def start_late(server):  # the last step before READY=1: the watchdog runs meanwhile
        deadline = time.monotonic() + 2
        while not sent and time.monotonic() < deadline:
            time.sleep(0.01)
        serve(server)

    monkeypatch.setattr(ControlServer, "start", start_late)
    daemon = Daemon(load_config(write_config(tmp_path), env={}))
    holding, in_health, release = threading.Event(), threading.Event(), threading.Event()
    health = daemon.health

    def held_health():
        problems = health()
        if holding.is_set():
            in_health.set()
            release.wait(10)
        return problems

    daemon.health = held_health
    daemon.start()
    try:
        wait_until(lambda: "WATCHDOG=1" in sent, 20, "a watchdog ping")
        holding.set()
        assert in_health.wait(10)
        stopping = threading.Thread(target=daemon.stop, args=("test",))
        stopping.start()
        wait_until(lambda: "STOPPING=1" in sent, 10, "STOPPING=1")
    finally:
        release.set()
    stopping.join(30)
    assert sent[0].startswith("READY=1\nSTATUS=epoch 1"), sent
    assert sent[-1] == "STOPPING=1", sent


# --------------------------------------------------------------------------------- the real process and socket


@pytest.mark.slow
def test_watchdog_pings_stop_while_a_sampler_job_hangs_and_resume_when_it_answers(tmp_path, start_daemon):
    # The air sensor hangs 2 s after the start, for 5 s. Pings come every 0.5 s (WATCHDOG_USEC is 1 s); the 1 s
    # group is late once its last round is over 3 s old (twice the interval plus 1 s of grace).
    config = write_config(tmp_path, faults="{sensor: air, kind: hang, after: 2s, for: 5s}")
    address = str(tmp_path / "notify.sock")
    received: list[tuple[float, str]] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(20)

        def receive_until(predicate, what: str) -> None:
            deadline = time.monotonic() + 20
            while not predicate():
                assert time.monotonic() < deadline, f"timed out waiting for {what}: {received}"
                received.append((time.monotonic(), sock.recv(4096).decode()))

        daemon = start_daemon(config, env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
        receive_until(lambda: any(m.startswith("STATUS=unhealthy") for _, m in received), "the hang to be noticed")
        unhealthy_at = len(received) - 1
        receive_until(lambda: any(m == "WATCHDOG=1" for _, m in received[unhealthy_at:]), "pings to resume")
        assert daemon.stop()[0] == 0
        sock.settimeout(1)
        try:
            while True:
                received.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            pass

    messages = [m for _, m in received]
    assert messages[0].startswith("READY=1\nSTATUS=epoch 1")
    assert messages[1:unhealthy_at].count("WATCHDOG=1") >= 2  # healthy at first: pinged
    assert re.fullmatch(r"STATUS=unhealthy: sampling every 1s: last round completed \ds ago", messages[unhealthy_at])
    resumed_at = messages.index("WATCHDOG=1", unhealthy_at)
    # Silence while the read hung: from the moment it was noticed until the sensor answered again (at 7 s).
    assert received[resumed_at][0] - received[unhealthy_at][0] >= 1.5
    assert messages[unhealthy_at + 1:resumed_at] == ["STATUS=epoch 1, sampling 1 sensor"]  # healthy again
    assert messages[-1] == "STOPPING=1"


# ------------------------------------------------------------------------------------------------------ the uplink


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the SystemExit below
def test_a_wedged_or_dead_uplink_makes_the_daemon_unhealthy(tmp_path, broker):
    import paho.mqtt.client as mqtt

    from edge.contract import protocol

    path = tmp_path / "gateway.yaml"
    path.write_text(config_text(tmp_path, interval="1m", control="1m")
                    + "actuators:\n  - {id: fan, type: pwm, kind: fan, pin: 18}\n"
                    + f"sync: {{url: '{broker.url}', stall_after: 1m}}\n")
    clock = FakeClock(start=time.time())
    daemon = Daemon(load_config(path, env={}), clock=clock)
    daemon.start()
    data_center = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-dc", protocol=mqtt.MQTTv5)
    births = []
    data_center.on_message = lambda *args: births.append(args[-1].payload)
    data_center.connect(broker.host, broker.port)
    data_center.subscribe(protocol.topic("gh-watchdog", protocol.STATUS), qos=1)
    data_center.loop_start()
    try:
        # The birth message comes after the gateway's SUBSCRIBE on the same connection: commands reach it from then.
        wait_until(lambda: births and not daemon.health(), timeout=10, what="a healthy daemon, online")
        # Wedged: a remote command waits for the supervisor, held by an output that does not answer (here: us).
        entered = threading.Event()
        remote = daemon.sync.on_command
        daemon.sync.on_command = lambda command: entered.set() or remote(command)
        with daemon.supervisor._lock:
            data_center.publish(protocol.topic("gh-watchdog", protocol.DOWN_CMD), protocol.encode_command(
                protocol.Command("c-1", clock.time(), "actuate", {"actuator": "fan", "action": "on"})), qos=1)
            assert entered.wait(10)
            clock.advance(61)
            assert daemon.health() == ["the uplink is stalled: no progress for 61s"]
        wait_until(lambda: daemon.health() == [], timeout=10, what="the uplink to recover")

        def killed():
            raise SystemExit("killed by the test")

        daemon.sync.step = killed  # dead: the thread ends
        wait_until(lambda: daemon.health(), timeout=10, what="the dead thread to be noticed")
        assert daemon.health() == ["the uplink thread has ended (SystemExit: killed by the test)"]
    finally:
        data_center.loop_stop()
        data_center.disconnect()
        daemon.stop("test")
