"""Stopping drives every output to its safe state even when one of them fails: each is tried, the failure is logged and
recorded, the stop completes, and the exit status says that an output was left unsafe (systemd shows the unit failed).

The failing output is a mock line marked broken (hardware/mockpins.py): driving it raises, as a GPIO line claimed by
another process does on a Pi. Its level, like every line's, outlives the process that drove it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import wait_until
from edge.gateway.config import parse_config
from edge.gateway.buffer import Buffer, NewReading
from edge.gateway.clock import FakeClock
from edge.gateway.control.supervisor import LatestReadings, Supervisor
from edge.gateway.hardware import open_hardware
from edge.gateway.hardware.mockpins import STATE_DIR_ENV, break_line, read_lines

# Three outputs that rules keep on (any temperature is above -50 °C); the pump comes first, so that a failure that
# stopped the others would show.
GATEWAY = """\
gateway: {{id: gh-stop}}
hardware: {{backend: simulated}}
buffer: {{path: {buffer}}}
clock: {{trust: synced}}
control: {{socket: {socket}, interval: 1s}}
sensors:
  - {{id: air, type: simulated, measures: [temperature], interval: 1s}}
actuators:
  - {{id: pump, type: relay, kind: pump, pin: 27}}
  - {{id: fan, type: relay, kind: fan, pin: 18}}
  - {{id: lights, type: relay, kind: light, pin: 24}}
rules:
  - {{id: water, type: threshold, input: {{sensor: air, quantity: temperature}}, actuator: pump,
     on_above: -50, off_below: -60}}
  - {{id: cool, type: threshold, input: {{sensor: air, quantity: temperature}}, actuator: fan,
     on_above: -50, off_below: -60}}
  - {{id: light, type: threshold, input: {{sensor: air, quantity: temperature}}, actuator: lights,
     on_above: -50, off_below: -60}}
"""
ALL_ON = {"GPIO27": "output 1", "GPIO18": "output 1", "GPIO24": "output 1"}


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(GATEWAY.format(buffer=tmp_path / "buffer.db", socket=tmp_path / "control.sock"))
    return path


def events(buffer_path) -> list[tuple[str, str, dict]]:
    buffer = Buffer.reader(buffer_path)
    try:
        return [(e["kind"], e["source"], json.loads(e["data"])) for e in buffer.events()]
    finally:
        buffer.close()


# ------------------------------------------------------------------------------------------------ in the process


def test_shutdown_tries_every_output_when_one_raises_and_records_what_happened(tmp_path, monkeypatch):
    lines = tmp_path / "gpio"
    monkeypatch.setenv(STATE_DIR_ENV, str(lines))
    cfg = parse_config(GATEWAY.format(buffer=tmp_path / "buffer.db", socket=tmp_path / "control.sock"))
    clock = FakeClock()
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=clock.time(), boot_id="b")
    hardware = open_hardware(cfg, clock, sensors=False)
    latest = LatestReadings()
    supervisor = Supervisor(cfg, hardware.actuators, buffer, clock, latest)
    try:
        latest([NewReading(clock.time(), "air", "temperature", 21.0, "°C")])
        supervisor.evaluate()
        assert read_lines(lines) == ALL_ON
        break_line(lines, 27)

        assert supervisor.shutdown() == ["pump"]
        assert read_lines(lines) == {"GPIO27": "output 1", "GPIO18": "output 0", "GPIO24": "output 0"}
        assert hardware.safe_state() == ["pump"]  # the daemon's last word on the outputs tries every one as well
        recorded = [(kind, source, data.get("reason")) for kind, source, data in events(tmp_path / "buffer.db")
                    if kind in ("actuator.change", "actuator.fault") and data.get("reason") == "shutdown"]
        assert recorded == [("actuator.fault", "pump", "shutdown"), ("actuator.change", "fan", "shutdown"),
                            ("actuator.change", "lights", "shutdown")]  # the pump is not recorded off: it is not
    finally:
        (lines / "GPIO27.broken").unlink(missing_ok=True)  # mended, so that the pins can be released
        hardware.close()
        buffer.close()


def test_an_output_that_cannot_be_switched_on_does_not_keep_the_others_from_switching(tmp_path, monkeypatch):
    lines = tmp_path / "gpio"
    monkeypatch.setenv(STATE_DIR_ENV, str(lines))
    cfg = parse_config(GATEWAY.format(buffer=tmp_path / "buffer.db", socket=tmp_path / "control.sock"))
    clock = FakeClock()
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=clock.time(), boot_id="b")
    hardware = open_hardware(cfg, clock, sensors=False)
    latest = LatestReadings()
    supervisor = Supervisor(cfg, hardware.actuators, buffer, clock, latest)
    try:
        break_line(lines, 27)
        latest([NewReading(clock.time(), "air", "temperature", 21.0, "°C")])
        supervisor.evaluate()
        assert read_lines(lines) == {"GPIO27": "output 0", "GPIO18": "output 1", "GPIO24": "output 1"}
        assert [source for kind, source, _ in events(tmp_path / "buffer.db") if kind == "actuator.fault"] == ["pump"]
    finally:
        (lines / "GPIO27.broken").unlink(missing_ok=True)  # mended, so that the pins can be released
        hardware.close()
        buffer.close()


def test_an_output_that_keeps_failing_is_recorded_once_per_fault_episode(tmp_path, monkeypatch):
    lines = tmp_path / "gpio"
    monkeypatch.setenv(STATE_DIR_ENV, str(lines))
    cfg = parse_config(GATEWAY.format(buffer=tmp_path / "buffer.db", socket=tmp_path / "control.sock"))
    clock = FakeClock()
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=clock.time(), boot_id="b")
    hardware = open_hardware(cfg, clock, sensors=False)
    latest = LatestReadings()
    supervisor = Supervisor(cfg, hardware.actuators, buffer, clock, latest)

    def pump_events() -> list[tuple[str, float]]:
        return [(kind, data["value"]) for kind, source, data in events(tmp_path / "buffer.db")
                if source == "pump" and kind in ("actuator.fault", "actuator.change")]

    try:
        break_line(lines, 27)
        for _ in range(5):  # every evaluation tries again
            latest([NewReading(clock.time(), "air", "temperature", 21.0, "°C")])
            supervisor.evaluate()
            clock.advance(1)
        assert pump_events() == [("actuator.fault", 1.0)]  # one episode, one record
        (lines / "GPIO27.broken").unlink()
        supervisor.evaluate()  # mended: it switches, and the episode is over
        assert read_lines(lines)["GPIO27"] == "output 1"
        break_line(lines, 27)
        for _ in range(3):
            latest([NewReading(clock.time(), "air", "temperature", -70.0, "°C")])  # the rule now wants it off
            supervisor.evaluate()
            clock.advance(1)
        assert pump_events() == [("actuator.fault", 1.0), ("actuator.change", 1.0), ("actuator.fault", 0.0)]
    finally:
        (lines / "GPIO27.broken").unlink(missing_ok=True)  # mended, so that the pins can be released
        hardware.close()
        buffer.close()


# ------------------------------------------------------------------------------------------------- for real


def edge(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


@pytest.mark.slow
def test_safe_state_drives_every_other_output_off_when_one_cannot_be_driven(config, tmp_path, start_daemon):
    lines = tmp_path / "gpio"
    env = {STATE_DIR_ENV: str(lines)}
    daemon = start_daemon(config, env=env)
    wait_until(lambda: read_lines(lines) == ALL_ON if lines.exists() else False, what="every output on")
    daemon.stop(signal.SIGKILL)  # the lines stay driven, as a Pi's do after a crash
    break_line(lines, 27)

    done = edge("safe-state", "-c", str(config), env=env)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == ["pump: FAILED", "fan: off", "lights: off"]
    assert read_lines(lines) == {"GPIO27": "output 1", "GPIO18": "output 0", "GPIO24": "output 0"}
    assert "pump could not be opened" in done.stderr and "GPIO busy" in done.stderr


@pytest.mark.slow
def test_a_daemon_whose_output_fails_on_the_way_down_stops_the_others_safely_and_exits_non_zero(
        config, tmp_path, start_daemon):
    lines = tmp_path / "gpio"
    daemon = start_daemon(config, env={STATE_DIR_ENV: str(lines)})
    wait_until(lambda: read_lines(lines) == ALL_ON if lines.exists() else False, what="every output on")
    break_line(lines, 27)

    code, err = daemon.stop()
    assert code == 1, err
    assert "pump could not be driven to its safe state" in err
    assert "stopped, but outputs pump are NOT in their safe state" in err
    assert read_lines(lines)["GPIO27"] == "output 1"
    shutdown = [(kind, source) for kind, source, data in events(tmp_path / "buffer.db")
                if data.get("reason") == "shutdown"]
    assert shutdown == [("actuator.fault", "pump"), ("actuator.change", "fan"), ("actuator.change", "lights")]
    [stop] = [data for kind, _, data in events(tmp_path / "buffer.db") if kind == "daemon.stop"]
    assert stop == {"reason": "SIGTERM", "not_safe": ["pump"]}
