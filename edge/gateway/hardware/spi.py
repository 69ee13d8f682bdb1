"""Capacitive soil probes on an MCP3008 (8-channel, 10-bit SPI ADC) through gpiozero's ``MCP3008`` device.

gpiozero picks hardware SPI (``/dev/spidev0.N``, or lgpio's SPI on a Pi 5) when the factory offers it, and software
SPI on the same pins otherwise; tests use a ``MockFactory`` with a mock SPI slave on pins 8..11.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import Field

from edge.errors import SensorError
from edge.gateway.hardware.base import HardwareContext, Sample
from edge.gateway.hardware.common import Driver, SoilProbeConfig, open_gpiozero, soil_percent
from edge.gateway.hardware.pins import Claim, spi0_claims

FULL_CODE = 1023


def mcp3008_volts(raw: int, reference_voltage: float) -> float:
    """MCP3008 datasheet: code = 1024 · VIN / VREF, so VIN = code · VREF / 1024."""
    return raw * reference_voltage / 1024.0


class Mcp3008Config(SoilProbeConfig):
    type: Literal["mcp3008"]
    channel: int = Field(ge=0, le=7, description="input the probe's AOUT is wired to: 0..7 (CH0..CH7)")
    chip_select: Literal[0, 1] = Field(default=0, description="0: CS on CE0 (GPIO 8); 1: CE1 (GPIO 7)")
    reference_voltage: float = Field(default=3.3, gt=0, description="volts on the MCP3008's VREF pin")

    def claims(self) -> tuple[Claim, ...]:
        # probes on the eight inputs of one MCP3008 share its chip select
        return spi0_claims(self.chip_select, f"MCP3008 input CH{self.channel}", share="mcp3008", part=self.channel)


@contextmanager
def _default_pin_factory(pin_factory: Any) -> Iterator[None]:
    """Make an injected pin factory gpiozero's default while a device is built.

    gpiozero 2.0.1's software SPI bus builds itself without the injected factory (``SPISoftwareBus`` calls
    ``Device.__init__()`` bare), which fails where no default factory loads (a PC, the simulation).
    """
    from gpiozero import Device

    previous = Device.pin_factory
    if previous is None:
        Device.pin_factory = pin_factory
    try:
        yield
    finally:
        Device.pin_factory = previous


class Mcp3008(Driver):
    """One capacitive soil probe on an MCP3008 channel, calibrated to percent.

    SPI has no acknowledge, so a missing chip or probe shows as a code stuck at a rail: 0 (MISO or the input pulled
    low) or 1023 (input at or above VREF); the sensor's probes never output either, so both are errors.
    """

    Config = Mcp3008Config

    def __init__(self, id: str, channel: int, *, dry: float, wet: float, chip_select: int = 0,
                 reference_voltage: float = 3.3, pin_factory: Any = None):
        super().__init__(id)
        self._dry, self._wet = dry, wet
        self._reference = reference_voltage
        with _default_pin_factory(pin_factory):
            self._device = open_gpiozero(id, "MCP3008", channel=channel, device=chip_select,
                                         max_voltage=reference_voltage, pin_factory=pin_factory)

    @classmethod
    def from_config(cls, cfg: Mcp3008Config, ctx: HardwareContext) -> "Mcp3008":
        return cls(cfg.id, cfg.channel, dry=cfg.dry, wet=cfg.wet, chip_select=cfg.chip_select,
                   reference_voltage=cfg.reference_voltage, pin_factory=ctx.pin_factory)

    def close(self) -> None:
        self._device.close()

    def _measure(self) -> list[Sample]:
        raw = self._device.raw_value
        if raw in (0, FULL_CODE):
            raise SensorError(f"reads {'0 V' if raw == 0 else 'full scale'} (code {raw}): probe or MCP3008 not "
                              "connected? check its wiring, power and chip_select")
        volts = mcp3008_volts(raw, self._reference)
        self.details = {"voltage": f"{volts:.3f} V"}
        return [self._sample("soil_moisture", soil_percent(volts, self._dry, self._wet))]
