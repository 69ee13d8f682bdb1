"""DS18B20 temperature probes on the 1-Wire bus, read from the kernel's sysfs files (``dtoverlay=w1-gpio``).

The kernel's w1_therm driver converts and reads the scratchpad on each read of
``/sys/bus/w1/devices/28-<id>/w1_slave`` (about 750 ms at 12-bit resolution) and writes two lines::

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125

The first line ends in YES when the scratchpad's CRC matched; the second gives the temperature in m°C. The root
(``/sys/bus/w1/devices``) is injectable, so tests read fake trees under ``tests/data/w1``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from edge.errors import SensorError
from edge.gateway.hardware.base import HardwareContext, Sample
from edge.gateway.hardware.common import W1_ROOT, Driver, DriverConfig, host_of
from edge.gateway.hardware.pins import OVERLAY_DEFAULT_GPIO, Claim, GpioPin, gpio_claim

DS18B20_ID = re.compile(r"^28-[0-9a-f]{12}$")
POWER_ON_VALUE = 85000  # m°C: the temperature register's reset value, read when no conversion has completed


class Ds18b20Config(DriverConfig):
    QUANTITIES: ClassVar[tuple[str, ...]] = ("temperature",)

    type: Literal["ds18b20"]
    device: str = Field(description="the probe's 1-Wire id, as listed by edge probe or ls /sys/bus/w1/devices")
    pin: GpioPin = Field(default=OVERLAY_DEFAULT_GPIO,
                         description="GPIO of the 1-Wire bus: dtoverlay=w1-gpio,gpiopin=N (default 4)")

    def claims(self) -> tuple[Claim, ...]:
        return (gpio_claim(self.pin, "1-Wire bus (dtoverlay=w1-gpio)", share="w1"),)

    @field_validator("device")
    @classmethod
    def _looks_like_a_ds18b20(cls, device: str) -> str:
        if not DS18B20_ID.match(device):
            raise ValueError(f"{device!r} is not a DS18B20 id: those read 28- and 12 hex digits, e.g. 28-0316a2791eff")
        return device


def parse_w1_slave(text: str) -> int:
    """The temperature (m°C) in a ``w1_slave`` file, or a ``SensorError`` saying why there is none.

    Besides the kernel's CRC verdict this checks the configuration register (scratchpad byte 4): its low five bits
    always read 1 on a DS18B20, so a scratchpad of zeros, which passes the CRC, is caught as a shorted data line.
    """
    lines = text.splitlines()
    try:
        scratchpad = bytes.fromhex(lines[0].split(":")[0])
        millidegrees = int(lines[1].split("t=")[1])
    except (IndexError, ValueError):
        raise SensorError(f"unreadable answer {text.strip()!r}: the probe dropped off during the read?") from None
    if not lines[0].rstrip().endswith("YES"):
        raise SensorError("CRC mismatch (noise on the wire: check the 4.7 kΩ pull-up and the cable length)")
    if len(scratchpad) != 9 or scratchpad[4] & 0x1F != 0x1F:
        raise SensorError(f"scratchpad {scratchpad.hex(' ')} is not a DS18B20's: data line shorted to ground?")
    return millidegrees


class Ds18b20(Driver):
    """A Maxim DS18B20 read through w1_therm. 85 °C, its power-on value, is flagged implausible, not stored as good."""

    Config = Ds18b20Config

    def __init__(self, id: str, device: str, *, root: Path = W1_ROOT,
                 read_text: Callable[[Path], str] = Path.read_text):
        super().__init__(id)
        self.device = device
        self._root = root
        self._read_text = read_text

    @classmethod
    def from_config(cls, cfg: Ds18b20Config, ctx: HardwareContext) -> "Ds18b20":
        host = host_of(ctx)
        return cls(cfg.id, cfg.device, root=host.w1_root, read_text=host.read_text)

    def _measure(self) -> list[Sample]:
        try:
            text = self._read_text(self._root / self.device / "w1_slave")
        except FileNotFoundError:
            raise SensorError(self._missing()) from None
        millidegrees = parse_w1_slave(text)
        if millidegrees == POWER_ON_VALUE:
            return [self._sample("temperature", millidegrees / 1000, "implausible",
                                 "85 °C is the DS18B20's power-on value: the probe lost power or did not finish "
                                 "converting (parasite power? add a 5 V or 3.3 V supply wire)")]
        return [self._sample("temperature", millidegrees / 1000)]

    def _missing(self) -> str:
        if not self._root.is_dir():
            return f"no 1-Wire bus ({self._root} does not exist): add dtoverlay=w1-gpio to config.txt"
        return f"{self.device} is not on the 1-Wire bus: unplugged, broken wire or missing pull-up"
