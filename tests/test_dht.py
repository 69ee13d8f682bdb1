"""DHT22 through fake IIO sysfs trees (tests/data/iio), with the kernel's errors injected by FlakyFiles."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from edge.gateway.config import parse_config
from edge.errors import ConfigError
from edge.gateway.hardware.base import PLAUSIBLE
from edge.gateway.hardware.dht import Dht22
from edge.gateway.hardware.fakes import FlakyFiles
from edge.gateway.sampler import judge

IIO = Path(__file__).parent / "data" / "iio"


@pytest.fixture
def files():
    return FlakyFiles()


def dht(files, device="iio:device0", retries=2, root=IIO):
    waits: list[float] = []
    return Dht22("air", device, retries=retries, root=root, read_text=files, sleep=waits.append), waits


def test_dht22_reads_milli_units_from_the_iio_files(files):
    sensor, waits = dht(files)
    samples = sensor.read()
    assert [(s.quantity, s.value, s.unit, s.quality) for s in samples] == [
        ("temperature", 23.4, "°C", "good"), ("humidity", 45.6, "%", "good")]
    assert waits == []


def test_dht22_checksum_errors_are_retried_2_s_apart(files):
    files.fail("in_temp_input", errno.EIO, errno.EIO)
    sensor, waits = dht(files, retries=2)
    assert sensor.read()[0].value == 23.4
    assert waits == [2.0, 2.0]


def test_dht22_gives_up_after_its_retries_with_an_error_sample(files):
    files.fail("in_temp_input", errno.EIO, errno.EIO, errno.EIO)
    sensor, waits = dht(files, retries=1)
    samples = sensor.read()
    assert [(s.quality, s.value) for s in samples] == [("error", None), ("error", None)]
    assert samples[0].reason.startswith("checksum error or no answer in 2 attempts (Input/output error")
    assert waits == [2.0]


def test_dht22_that_never_answers_says_so(files):
    files.fail("in_humidityrelative_input", errno.ETIMEDOUT)
    sensor, _ = dht(files, retries=0)
    assert sensor.read()[1].reason.startswith("no answer in 1 attempt (Connection timed out")


def test_missing_iio_device_names_the_overlay_without_retrying(files, tmp_path):
    sensor, waits = dht(files, root=tmp_path)
    samples = sensor.read()
    assert "add dtoverlay=dht11,gpiopin=<GPIO>" in samples[0].reason
    assert waits == []


def test_dht22_garbage_that_passes_the_checksum_is_flagged_by_the_sampler(files):
    sensor, _ = dht(files, device="iio:device1")
    temperature, humidity = sensor.read()
    assert temperature.value == -5.3
    assert humidity.value == 130.0
    assert judge(humidity, PLAUSIBLE["humidity"]).quality == "implausible"


def test_an_interval_under_2_s_is_refused_with_the_reason():
    text = "gateway: {id: gh}\nsensors:\n  - {id: air, type: dht22, interval: 1s}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "f.yaml")
    assert err.value.problems == [
        "f.yaml:3: sensors[0].interval: a DHT22 needs at least 2 s between measurements: use interval: 2s or more"]
