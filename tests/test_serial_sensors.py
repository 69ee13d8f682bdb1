"""MH-Z19B on a fake serial port that answers like the sensor: 9-byte packets with a checksum."""

from __future__ import annotations

import pytest

from edge.errors import SensorError
from edge.gateway.clock import FakeClock
from edge.gateway.hardware.base import HardwareContext
from edge.gateway.hardware.common import Host
from edge.gateway.hardware.fakes import FakeMhz19Port
from edge.gateway.hardware.uart import Mhz19b, Mhz19bConfig, mhz19_co2, mhz19_command


def test_read_command_matches_the_datasheet():
    assert mhz19_command(0x86) == bytes.fromhex("ff 01 86 00 00 00 00 00 79")


def test_datasheet_answer_is_608_ppm():
    assert mhz19_co2(bytes.fromhex("ff 86 02 60 47 00 00 00 d1")) == 608


def test_bad_checksum_is_refused():
    with pytest.raises(SensorError, match="checksum mismatch"):
        mhz19_co2(bytes.fromhex("ff 86 02 60 47 00 00 00 d0"))


def test_a_foreign_answer_is_refused():
    with pytest.raises(SensorError, match="unexpected answer"):
        mhz19_co2(bytes.fromhex("fe 86 02 60 47 00 00 00 d1"))


def test_mhz19b_reads_co2_and_turns_automatic_baseline_correction_off():
    port = FakeMhz19Port(co2=1250)
    assert port.abc  # as shipped
    (sample,) = Mhz19b("co2", serial=port).read()
    assert (sample.quantity, sample.value, sample.unit, sample.quality) == ("co2", 1250, "ppm", "good")
    assert not port.abc


def test_mhz19b_keeps_abc_on_when_configured():
    port = FakeMhz19Port()
    Mhz19b("co2", automatic_self_calibration=True, serial=port).read()
    assert port.abc


def test_unplugged_mhz19b_times_out_into_an_error_sample_and_recovers():
    port = FakeMhz19Port(co2=700)
    sensor = Mhz19b("co2", serial=port)
    port.plugged = False
    (sample,) = sensor.read()
    assert (sample.quality, sample.value) == ("error", None)
    assert sample.reason.startswith("no answer within 1 s (0 of 9 bytes)")
    port.plugged, port.abc = True, True  # powered again: the sensor forgot the ABC setting
    assert sensor.read()[0].value == 700
    assert not port.abc  # set again after the failure


def test_corrupted_answer_is_an_error_sample():
    port = FakeMhz19Port()
    port.corrupt_checksum = True
    assert "checksum mismatch" in Mhz19b("co2", serial=port).read()[0].reason


def test_a_port_that_cannot_be_opened_is_an_error_sample(tmp_path):
    pytest.importorskip("serial")
    (sample,) = Mhz19b("co2", str(tmp_path / "ttyAMA9")).read()
    assert sample.quality == "error"
    assert "ttyAMA9" in sample.reason


def test_the_port_comes_from_the_host_so_probe_can_inject_it():
    port = FakeMhz19Port(co2=555)
    ctx = HardwareContext(clock=FakeClock(), extras={"host": Host(serial=lambda device: port)})
    sensor = Mhz19b.from_config(Mhz19bConfig(id="co2", type="mhz19b"), ctx)
    assert sensor.read()[0].value == 555
    sensor.close()
    assert port.closed
