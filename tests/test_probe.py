"""`edge probe` against the fakes: which configured sensors answer, and what is on the buses but not configured."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge.cli import main
from edge.gateway.config import load_config, parse_config
from edge.gateway.clock import FakeClock
from edge.gateway.hardware.common import Host
from edge.gateway.hardware.fakes import FakeBh1750, FakeI2CBus, FakeSht3x
from edge.gateway.probe import format_report, probe, scan_i2c

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent

GATEWAY = """\
gateway: {id: gh-probe}
hardware: {backend: gpio, pin_factory: mock}
sensors:
  - {id: air, type: sht3x, address: 0x44}
  - {id: climate, type: bme280, address: 0x76}
  - {id: pipe, type: ds18b20, device: 28-0316a2791eff}
"""


@pytest.fixture
def bus(clock):
    bus = FakeI2CBus(clock)
    bus.attach(0x44, FakeSht3x(temperature=21.5, humidity=55.0))
    bus.attach(0x23, FakeBh1750())  # wired but not configured
    return bus


def probe_fakes(bus, clock, text=GATEWAY):
    return probe(parse_config(text), clock=clock, host=Host(i2c=lambda number: bus, w1_root=DATA / "w1",
                                                                sleep=clock.advance))


def test_probe_reads_each_configured_sensor_and_names_the_silent_one(bus, clock):
    report = probe_fakes(bus, clock)
    answers = {sensor.id: sensor for sensor in report.sensors}
    assert answers["air"].answered and answers["pipe"].answered
    assert [s.value for s in answers["pipe"].samples] == [23.125]
    assert not answers["climate"].answered
    assert "I2C bus 1, address 0x76: no answer (NACK)" in answers["climate"].samples[0].reason
    assert not report.ok


def test_probe_lists_devices_present_but_not_configured(bus, clock):
    i2c, onewire = probe_fakes(bus, clock).buses
    assert (i2c.name, i2c.found, i2c.unconfigured) == ("I2C bus 1", ("0x23", "0x44"), ("0x23",))
    assert onewire.name == "1-Wire"
    assert onewire.unconfigured == ("28-0417c1b3a2ff", "28-05169471a0ff", "28-0623b8c4d1ff", "28-07a1b2c3d4ff")


def test_probe_report_reads_as_an_installer_checklist(bus, clock):
    lines = format_report(probe_fakes(bus, clock))
    assert lines[:3] == ["air (sht3x): answers", "    temperature 21.5 °C", "    humidity 55 %"]
    assert lines[3] == "climate (bme280): NO ANSWER"
    assert "I2C bus 1: 0x23, 0x44" in lines
    assert "    present but not configured: 0x23" in lines


def test_scan_finds_a_sensirion_chip_which_nacks_plain_reads(bus):
    assert 0x44 in scan_i2c(bus)  # a read would be NACKed (no measurement pending): i2cdetect's quick write is not


def test_a_stuck_bus_is_reported_instead_of_a_list(clock):
    class StuckBus(FakeI2CBus):
        def write(self, address, data):
            raise OSError(errno.ETIMEDOUT, "Connection timed out")

    i2c, _ = probe_fakes(StuckBus(clock), clock).buses
    assert i2c.problem == "bus timeout: SDA or SCL held low? check the pull-ups and the cable length"


def test_a_missing_onewire_bus_names_the_overlay(bus, clock, tmp_path):
    report = probe(parse_config(GATEWAY), clock=clock,
                   host=Host(i2c=lambda number: bus, w1_root=tmp_path / "none", sleep=clock.advance))
    assert "add dtoverlay=w1-gpio" in report.buses[-1].problem


def test_a_bus_that_is_not_there_is_not_mentioned_when_no_sensor_is_configured_on_it(clock, tmp_path):
    class NoBus(FakeI2CBus):
        def write(self, address, data):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    text = "gateway: {id: gh-probe}\nhardware: {backend: gpio, pin_factory: mock}\nsensors:\n" \
           "  - {id: tank, type: float_switch, pin: 20}\n"
    report = probe(parse_config(text), clock=clock,
                   host=Host(i2c=lambda number: NoBus(clock), w1_root=tmp_path / "none", sleep=clock.advance))
    assert report.ok and report.buses == ()
    assert format_report(report) == ["tank (float_switch): answers", "    level 0 bool"]


def test_a_bus_that_is_there_is_listed_even_without_configured_sensors(bus, clock):
    text = "gateway: {id: gh-probe}\nhardware: {backend: gpio, pin_factory: mock}\n"
    i2c, onewire = probe(parse_config(text), clock=clock, host=Host(i2c=lambda number: bus, w1_root=DATA / "w1",
                                                                    sleep=clock.advance)).buses
    assert i2c.unconfigured == ("0x23", "0x44")
    assert len(onewire.unconfigured) == 5  # probes wired but not configured


def test_doctor_gives_the_onewire_hint_only_for_a_configured_probe(tmp_path):
    from edge.gateway.doctor import check_sensors

    text = "gateway: {id: gh-probe}\nhardware: {backend: gpio, pin_factory: mock}\nsensors:\n" \
           "  - {id: tank, type: float_switch, pin: 20}\n"
    check = check_sensors(parse_config(text), daemon_running=False)
    assert (check.status, check.lines) == ("OK", ())
    if not Path("/sys/bus/w1/devices").exists():  # this machine has no 1-Wire bus: a configured probe needs one
        check = check_sensors(parse_config(text + "  - {id: pipe, type: ds18b20, device: 28-0316a2791eff}\n"),
                              daemon_running=False)
        assert "1-Wire: no 1-Wire bus (/sys/bus/w1/devices does not exist): add dtoverlay=w1-gpio" in check.lines


def test_probe_of_the_simulated_greenhouse_reads_its_sensors_and_scans_nothing():
    report = probe(load_config(None), clock=FakeClock())
    assert report.ok and report.buses == ()
    assert {s.quantity for sensor in report.sensors for s in sensor.samples} >= {"temperature", "soil_moisture"}


def test_edge_probe_exits_0_when_every_sensor_answers():
    result = CliRunner().invoke(main, ["probe", "-c", str(ROOT / "config" / "demo.yaml")])
    assert result.exit_code == 0, result.output
    assert "air (simulated): answers" in result.output


def test_edge_probe_exits_1_when_a_sensor_does_not_answer(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text("gateway: {id: gh}\nsensors:\n  - {id: pipe, type: ds18b20, device: 28-000000000000}\n")
    result = CliRunner().invoke(main, ["probe", "-c", str(config)])
    assert result.exit_code == 1
    assert "pipe (ds18b20): NO ANSWER" in result.output


def test_checking_a_config_with_every_driver_imports_no_hardware_library():
    code = ("import sys; from edge.gateway.config import load_config; load_config(sys.argv[1], env={}); "
            "print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('gpiozero', 'smbus2', 'serial', 'lgpio', 'RPi', 'spidev')))")
    example = ROOT / "config" / "gateway.example.yaml"
    proc = subprocess.run([sys.executable, "-c", code, str(example)], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
