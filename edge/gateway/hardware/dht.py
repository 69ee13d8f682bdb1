"""DHT22 (AM2302) through the kernel's IIO driver (``dtoverlay=dht11,gpiopin=N``), not user-space bit banging.

The kernel times the sensor's pulses and exposes ``in_temp_input`` and ``in_humidityrelative_input`` (m°C and
m%RH) under ``/sys/bus/iio/devices/iio:deviceN``. Reading one triggers a measurement unless the last good one is
under 2 s old, in which case the kernel answers from it, so both files come from one measurement. A checksum error
or a sensor that does not answer is ``EIO`` / ``ETIMEDOUT`` on the read: the driver retries a bounded number of
times, waiting the datasheet's 2 s minimum between measurements.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from edge.errors import SensorError
from edge.gateway.hardware.base import HardwareContext, Sample
from edge.gateway.hardware.common import IIO_ROOT, Driver, DriverConfig, at_least, describe_os_error, host_of
from edge.gateway.hardware.pins import OVERLAY_DEFAULT_GPIO, Claim, GpioPin, gpio_claim

MIN_INTERVAL = 2.0  # s between measurements (DHT22 datasheet)


class Dht22Config(DriverConfig):
    QUANTITIES: ClassVar[tuple[str, ...]] = ("temperature", "humidity")

    type: Literal["dht22"]
    device: str = Field(default="iio:device0", pattern=r"^iio:device[0-9]+$",
                        description="IIO device of the dht11 overlay (its name file reads dht11@<gpio>)")
    pin: GpioPin = Field(default=OVERLAY_DEFAULT_GPIO,
                         description="GPIO of the sensor's DATA line: dtoverlay=dht11,gpiopin=N (default 4)")
    retries: int = Field(default=2, ge=0, le=5,
                         description="extra attempts after a checksum error or no answer, 2 s apart")

    def claims(self) -> tuple[Claim, ...]:
        return (gpio_claim(self.pin, "DHT22 data (dtoverlay=dht11)"),)

    @field_validator("interval")
    @classmethod
    def _not_faster_than_the_sensor(cls, interval: float) -> float:
        return at_least(interval, MIN_INTERVAL, "a DHT22 needs at least 2 s between measurements")


class Dht22(Driver):
    """Temperature and humidity of a DHT22 from the IIO sysfs files, with bounded retries."""

    Config = Dht22Config

    def __init__(self, id: str, device: str = "iio:device0", *, retries: int = 2, root: Path = IIO_ROOT,
                 read_text: Callable[[Path], str] = Path.read_text, sleep: Callable[[float], None] = time.sleep):
        super().__init__(id)
        self.device = device
        self._retries = retries
        self._root = root
        self._read_text = read_text
        self._sleep = sleep

    @classmethod
    def from_config(cls, cfg: Dht22Config, ctx: HardwareContext) -> "Dht22":
        host = host_of(ctx)
        return cls(cfg.id, cfg.device, retries=cfg.retries, root=host.iio_root, read_text=host.read_text,
                   sleep=host.sleep)

    def _measure(self) -> list[Sample]:
        for attempt in range(self._retries + 1):
            if attempt:
                self._sleep(MIN_INTERVAL)
            try:
                return [self._sample("temperature", self._milli("in_temp_input")),
                        self._sample("humidity", self._milli("in_humidityrelative_input"))]
            except FileNotFoundError:
                raise SensorError(f"no {self._root / self.device}: add dtoverlay=dht11,gpiopin=<GPIO> to config.txt "
                                  "(or set device: to the iio:device whose name is dht11@<GPIO>)") from None
            except OSError as exc:
                failure = exc
        attempts = self._retries + 1
        what = "no answer" if failure.errno == errno.ETIMEDOUT else "checksum error or no answer"
        raise SensorError(f"{what} in {attempts} attempt{'s' * (attempts > 1)} ({describe_os_error(failure)}): "
                          "check the wiring, the 10 kΩ pull-up on DATA and the 3.3 V supply")

    def _milli(self, name: str) -> float:
        text = self._read_text(self._root / self.device / name)
        try:
            return int(text) / 1000.0
        except ValueError:
            raise SensorError(f"{name} holds {text.strip()!r}, not a number") from None
