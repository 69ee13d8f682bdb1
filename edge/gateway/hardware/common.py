"""What the real sensor drivers share: one failure path, the host interfaces they are given, CRC-8, soil calibration.

Every driver subclasses :class:`Driver` and implements ``_measure()`` (and ``_setup()`` when the chip needs
configuring after power-up). :meth:`Driver.read` is the single place where failures become data: a ``SensorError`` or
``OSError`` (NACK, timeout, missing device, bad CRC) turns into one error sample per quantity with the reason, and
the next read runs ``_setup()`` again, so a sensor that was unplugged or lost power is configured afresh when it
comes back. Nothing here imports a hardware library.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from pydantic import Field, model_validator

from edge.errors import HardwareError, SensorError
from edge.gateway.hardware.base import UNITS, HardwareContext, Quality, Sample, SensorConfig

log = logging.getLogger(__name__)

W1_ROOT = Path("/sys/bus/w1/devices")
IIO_ROOT = Path("/sys/bus/iio/devices")


@dataclass(frozen=True)
class Host:
    """The Pi's interfaces as drivers reach them. The defaults are the real ones; tests and ``edge probe`` inject fakes.

    ``i2c`` maps a bus number to a bus and ``serial`` a device path to an open port; ``None`` means the real
    ``/dev/i2c-N`` (smbus2) and the real serial port (pyserial), opened by the driver at its first read.
    """

    i2c: Callable[[int], Any] | None = None
    serial: Callable[[str], Any] | None = None
    w1_root: Path = W1_ROOT
    iio_root: Path = IIO_ROOT
    read_text: Callable[[Path], str] = Path.read_text
    sleep: Callable[[float], None] = time.sleep


def host_of(ctx: HardwareContext) -> Host:
    """The host interfaces in a hardware context (``ctx.extras["host"]``), the real ones unless injected."""
    return ctx.extras.get("host") or Host()


def hardware_library(name: str) -> ModuleType:
    """Import a hardware library when a driver first needs it; a missing one is a sensor error, not a crash."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise SensorError(f"the Python package {name!r} is not installed ({exc})") from None


def open_gpiozero(sensor_id: str, device_class: str, *args: Any, **kwargs: Any) -> Any:
    """Build a gpiozero input device, turning gpiozero's errors into a HardwareError that names the sensor."""
    import gpiozero

    try:
        return getattr(gpiozero, device_class)(*args, **kwargs)
    except gpiozero.GPIOZeroError as exc:
        raise HardwareError(f"sensor {sensor_id!r}: cannot open {device_class}: {exc}") from exc


def crc8(data: bytes) -> int:
    """Sensirion's CRC-8 (SHT3x, SHT4x, SCD4x datasheets): polynomial 0x31, init 0xFF, no reflection, no final XOR.

    The datasheets' example: ``crc8(b"\\xbe\\xef") == 0x92``.
    """
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def at_least(interval: float, minimum: float, why: str) -> float:
    """Refuse a read interval below a sensor's minimum (for a config ``interval`` validator)."""
    if interval < minimum:
        raise ValueError(f"{why}: use interval: {minimum:g}s or more")
    return interval


def describe_os_error(exc: OSError) -> str:
    """``No such file or directory: /sys/...`` rather than ``[Errno 2] ...``."""
    text = exc.strerror or str(exc)
    return f"{text}: {exc.filename}" if exc.filename else text


class DriverConfig(SensorConfig):
    """A real driver's config: its quantities are fixed by the chip."""

    QUANTITIES: ClassVar[tuple[str, ...]] = ()

    def quantities(self) -> tuple[str, ...]:
        return self.QUANTITIES


class Driver:
    """Identity, quantities and the one failure path every real sensor driver shares.

    Subclasses set ``Config`` (a :class:`DriverConfig`), implement ``_measure()`` and, if the chip needs configuring
    after power-up, ``_setup()``; both raise ``SensorError`` (or let ``OSError`` through) on failure.
    """

    Config: ClassVar[type[DriverConfig]]

    def __init__(self, id: str):
        self.id = id
        self._ready = False
        #: What the sensor sent before conversion (e.g. a soil probe's voltage), for ``edge probe``.
        self.details: dict[str, str] = {}

    def quantities(self) -> tuple[str, ...]:
        return self.Config.QUANTITIES

    def read(self) -> list[Sample]:
        """Read every quantity once. Never raises: any failure is an error sample per quantity, with its reason."""
        try:
            if not self._ready:
                self._setup()
                self._ready = True
            return self._measure()
        except SensorError as exc:
            reason = str(exc)
        except OSError as exc:
            reason = describe_os_error(exc)
        except Exception as exc:  # the Sensor contract: even a driver bug becomes data, not a failed round
            log.exception("sensor %s: unexpected failure", self.id)
            reason = f"driver failure: {type(exc).__name__}: {exc}"
        self._ready = False
        return self.failed(reason)

    def failed(self, reason: str) -> list[Sample]:
        return [Sample.error(quantity, reason) for quantity in self.quantities()]

    def close(self) -> None:
        """Release what the driver opened. Idempotent."""

    def _setup(self) -> None:
        """Configure the chip after power-up; runs before the first read and again after any failure."""

    def _measure(self) -> list[Sample]:  # pragma: no cover - every driver overrides
        raise NotImplementedError

    @staticmethod
    def _sample(quantity: str, value: float, quality: Quality = "good", reason: str | None = None) -> Sample:
        return Sample(quantity, float(value), UNITS[quantity], quality, reason)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r}>"


# --- Capacitive soil moisture probes (through an ADS1115 or an MCP3008) -------------------------------------------

class SoilProbeConfig(DriverConfig):
    """A capacitive soil probe on an ADC channel, calibrated per probe: its voltage in dry air and in water."""

    QUANTITIES: ClassVar[tuple[str, ...]] = ("soil_moisture",)

    zone: str = Field(description="irrigation zone whose soil the probe sits in")
    dry: float = Field(gt=0, description="volts this probe gives in dry air (measure with edge probe)")
    wet: float = Field(gt=0, description="volts this probe gives standing in water up to its line")

    @model_validator(mode="after")
    def _dry_differs_from_wet(self) -> "SoilProbeConfig":
        if self.dry == self.wet:
            raise ValueError(f"dry and wet are both {self.dry:g} V: calibrate the probe in air and in water")
        return self


def soil_percent(volts: float, dry: float, wet: float) -> float:
    """Volumetric-style moisture in percent, linear between the probe's dry (0 %) and wet (100 %) voltages.

    Capacitive probes give a lower voltage the wetter the soil. Not clamped: a value outside 0..100 means drift or a
    fault, and the sampler flags it ``implausible``.
    """
    return (dry - volts) / (dry - wet) * 100.0
