"""GPIO inputs through gpiozero: float and rain switches (quantity ``level``), and pulse flow meters (``flow``).

A switch's wire is pulled to a known level by the Pi's internal resistor (``pull_up``). That pulled level, which is
also what an open contact, a broken wire or an unplugged module gives, always reads as the switch's ``safe_level``;
the other level reads as the opposite. Wire each switch so that the safe condition is the open circuit (see
docs/operations.md), and a broken wire can only ever report the safe value.

Edges are timestamped with the injected clock: a switch reports a new level only once its input has held still for
``debounce`` seconds (water sloshing in a tank, a rain sensor drying), and a flow meter counts falling edges and
divides by the time since its last read.
"""

from __future__ import annotations

import math
import threading
from typing import Any, ClassVar, Literal

from pydantic import Field

from edge.durations import Duration
from edge.errors import SensorError
from edge.gateway.hardware.base import HardwareContext, Sample
from edge.gateway.hardware.common import Driver, DriverConfig, open_gpiozero
from edge.gateway.hardware.gpio import PinSpec
from edge.gateway.hardware.pins import Claim, GpioPin, gpio_claim


class _SwitchConfig(DriverConfig):
    QUANTITIES: ClassVar[tuple[str, ...]] = ("level",)

    pin: GpioPin = Field(description="BCM number (17) or gpiozero pin name (GPIO17, BCM17, BOARD11)")
    debounce: Duration = Field(default=2.0, description="a new level counts once the input has held it this long")

    def claims(self) -> tuple[Claim, ...]:
        return (gpio_claim(self.pin, f"{self.type.replace('_', ' ')} input"),)


class FloatSwitchConfig(_SwitchConfig):
    type: Literal["float_switch"]
    pull_up: bool = Field(default=True, description="true: contact between the pin and GND, pulled up inside the Pi")
    safe_level: Literal[0, 1] = Field(
        default=0, description="level an open contact or a broken wire reports: 0 (no water) for a low-level guard "
                               "that must stop a pump, 1 (full) for an overflow guard that must stop filling")


class RainSwitchConfig(_SwitchConfig):
    type: Literal["rain_switch"]
    pull_up: bool = Field(default=False, description="false: the rain module's DO is pulled down inside the Pi, so "
                                                     "a broken wire reads like rain")
    safe_level: Literal[0, 1] = Field(default=1, description="level an open circuit reports: 1 (rain: close the "
                                                             "vents) for the usual active-low rain module")


class _Switch(Driver):
    """A debounced on/off input: ``level`` 1 or 0, the pulled (idle) level always reading as ``safe_level``."""

    def __init__(self, id: str, pin: PinSpec, *, clock: Any, pull_up: bool = True, safe_level: int = 0,
                 debounce: float = 2.0, pin_factory: Any = None):
        super().__init__(id)
        self._clock = clock
        self._safe_level = safe_level
        self._debounce = debounce
        self._last_edge = -math.inf
        self._level: int | None = None
        # DigitalInputDevice is active when the pin is driven away from its pull: the contact is closed.
        self._device = open_gpiozero(id, "DigitalInputDevice", pin, pull_up=pull_up, pin_factory=pin_factory)
        self._device.when_activated = self._device.when_deactivated = self._edge

    @classmethod
    def from_config(cls, cfg: FloatSwitchConfig | RainSwitchConfig, ctx: HardwareContext) -> "_Switch":
        return cls(cfg.id, cfg.pin, clock=ctx.clock, pull_up=cfg.pull_up, safe_level=cfg.safe_level,
                   debounce=cfg.debounce, pin_factory=ctx.pin_factory)

    def close(self) -> None:
        self._device.close()

    def _edge(self) -> None:
        self._last_edge = self._clock.monotonic()

    def _measure(self) -> list[Sample]:
        current = 1 - self._safe_level if self._device.is_active else self._safe_level
        if self._level is None or self._clock.monotonic() - self._last_edge >= self._debounce:
            self._level = current
        return [self._sample("level", self._level)]


class FloatSwitch(_Switch):
    """A float switch in a tank or gutter."""

    Config = FloatSwitchConfig


class RainSwitch(_Switch):
    """A rain sensor's digital output (the comparator boards sold with a rain plate) or a rain contact."""

    Config = RainSwitchConfig


class FlowMeterConfig(DriverConfig):
    QUANTITIES: ClassVar[tuple[str, ...]] = ("flow",)

    type: Literal["flow_meter"]
    pin: GpioPin = Field(description="BCM number or gpiozero pin name of the meter's pulse output")
    pulses_per_litre: float = Field(default=450.0, gt=0,
                                    description="from the meter's datasheet: YF-S201 450 (F = 7.5 × Q in l/min)")
    pull_up: bool = Field(default=True, description="true for open-collector outputs (most hall-effect meters)")

    def claims(self) -> tuple[Claim, ...]:
        return (gpio_claim(self.pin, "flow meter input"),)


class FlowMeter(Driver):
    """A hall-effect flow meter: litres per minute from the pulses counted since the previous read."""

    Config = FlowMeterConfig

    def __init__(self, id: str, pin: PinSpec, *, clock: Any, pulses_per_litre: float = 450.0, pull_up: bool = True,
                 pin_factory: Any = None):
        super().__init__(id)
        self._clock = clock
        self._pulses_per_litre = pulses_per_litre
        self._lock = threading.Lock()  # edges arrive on gpiozero's callback thread
        self._pulses = 0
        self._since = clock.monotonic()
        self._device = open_gpiozero(id, "DigitalInputDevice", pin, pull_up=pull_up, pin_factory=pin_factory)
        self._device.when_activated = self._pulse

    @classmethod
    def from_config(cls, cfg: FlowMeterConfig, ctx: HardwareContext) -> "FlowMeter":
        return cls(cfg.id, cfg.pin, clock=ctx.clock, pulses_per_litre=cfg.pulses_per_litre, pull_up=cfg.pull_up,
                   pin_factory=ctx.pin_factory)

    def close(self) -> None:
        self._device.close()

    def _pulse(self) -> None:
        with self._lock:
            self._pulses += 1

    def _measure(self) -> list[Sample]:
        now = self._clock.monotonic()
        elapsed = now - self._since
        if elapsed <= 0:
            raise SensorError("read twice at the same instant: no time to count pulses over")
        with self._lock:
            pulses, self._pulses = self._pulses, 0
        self._since = now
        return [self._sample("flow", pulses / self._pulses_per_litre / elapsed * 60.0)]
