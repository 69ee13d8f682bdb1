"""DS18B20 probes read from fake 1-Wire sysfs trees (tests/data/w1), in the kernel's w1_slave format."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.errors import SensorError
from edge.gateway.hardware.fakes import FlakyFiles
from edge.gateway.hardware.onewire import Ds18b20, Ds18b20Config, parse_w1_slave

W1 = Path(__file__).parent / "data" / "w1"


def read(device: str, root: Path = W1, **kwargs):
    (sample,) = Ds18b20("probe", device, root=root, **kwargs).read()
    return sample


def test_ds18b20_sysfs_format_t_23125_is_23_125_degrees():
    sample = read("28-0316a2791eff")
    assert (sample.quantity, sample.value, sample.unit, sample.quality) == ("temperature", 23.125, "°C", "good")


def test_ds18b20_reads_below_zero():
    assert read("28-07a1b2c3d4ff").value == -10.125


def test_ds18b20_crc_no_line_is_an_error():
    sample = read("28-0417c1b3a2ff")
    assert (sample.quality, sample.value) == ("error", None)
    assert sample.reason.startswith("CRC mismatch")


def test_ds18b20_power_on_value_is_flagged_implausible():
    sample = read("28-05169471a0ff")
    assert (sample.value, sample.quality) == (85.0, "implausible")
    assert "power-on value" in sample.reason


def test_ds18b20_all_zero_scratchpad_passes_the_crc_but_is_an_error():
    sample = read("28-0623b8c4d1ff")
    assert sample.quality == "error" and "shorted to ground" in sample.reason


def test_vanished_ds18b20_is_reported_as_not_on_the_bus():
    sample = read("28-0000deadbeef")
    assert sample.quality == "error"
    assert sample.reason == "28-0000deadbeef is not on the 1-Wire bus: unplugged, broken wire or missing pull-up"


def test_missing_w1_overlay_is_reported_with_the_fix(tmp_path):
    sample = read("28-0316a2791eff", root=tmp_path / "absent")
    assert "add dtoverlay=w1-gpio" in sample.reason


@pytest.mark.parametrize("text", ["72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", ""])
def test_ds18b20_dropping_off_mid_read_is_an_error(text):
    with pytest.raises(SensorError, match="unreadable answer"):
        parse_w1_slave(text)


def test_an_io_error_from_sysfs_is_an_error_sample():
    files = FlakyFiles()
    files.fail("w1_slave", errno.EIO)
    sample = read("28-0316a2791eff", read_text=files)
    assert sample.quality == "error" and sample.reason.startswith("Input/output error")
    assert read("28-0316a2791eff", read_text=files).value == 23.125  # the next read is fine


def test_config_refuses_an_id_that_is_not_a_ds18b20():
    with pytest.raises(ValidationError, match="is not a DS18B20 id"):
        Ds18b20Config(id="probe", type="ds18b20", device="10-0316a2791eff")
