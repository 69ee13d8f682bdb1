"""Actuator outputs on Raspberry Pi GPIO pins, through gpiozero.

gpiozero is imported only when an output is built, so this module imports anywhere (a laptop, CI). Every output is
constructed OFF (``initial_value`` off) and driven off again by ``safe_state()`` and ``close()``. The pin factory is
injected: ``None`` lets gpiozero pick the Pi's backend; tests and the simulated greenhouse pass a ``MockFactory``
(``MockFactory(pin_class=MockPWMPin)``, which PWM outputs need), and the greenhouse model reads the outputs back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from edge.errors import HardwareError
from edge.gateway.hardware.base import ActuatorConfig, HardwareContext

#: A BCM GPIO number (``17``) or any pin name gpiozero understands (``"GPIO17"``, ``"BCM17"``, ``"BOARD11"``).
PinSpec = int | str


class RelayConfig(ActuatorConfig):
    type: Literal["relay"]
    pin: PinSpec = Field(description="BCM number (17) or gpiozero pin name (GPIO17, BOARD11)")
    active_high: bool = Field(default=True, description="false for relay boards that switch on when the pin is LOW")


class PwmOutputConfig(ActuatorConfig):
    type: Literal["pwm"]
    pin: PinSpec = Field(description="BCM number (18) or gpiozero pin name (GPIO18, BOARD12)")
    active_high: bool = Field(default=True, description="false when a LOW pin means full output")
    frequency: int = Field(default=100, gt=0, description="PWM frequency, Hz")


class _GpioOutput:
    """What relays and PWM outputs share: identity, the 0..1 value contract, off on safe_state and close."""

    def __init__(self, id: str, device: Any, *, kind: str, zone: str | None):
        self.id = id
        self.kind = kind
        self.zone = zone
        self._device = device  # keep the reference: gpiozero closes a device when it is garbage-collected

    @property
    def value(self) -> float:
        """Current output, 0.0 (off) .. 1.0 (fully on). A closed output is off."""
        if self._device.closed:
            return 0.0
        return float(self._device.value)

    def apply(self, value: float) -> None:
        """Drive the output to ``value`` (0.0 .. 1.0); anything else is a ValueError naming this actuator."""
        self._write(self._checked(value))

    def safe_state(self) -> None:
        """Drive the output off. Idempotent; does nothing once closed."""
        if not self._device.closed:
            self._write(0.0)

    def close(self) -> None:
        """Drive the output off, then release the pin (gpiozero leaves it an undriven input). Idempotent."""
        self.safe_state()
        self._device.close()

    def _checked(self, value: float) -> float:
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:  # the comparison also refuses NaN
            raise ValueError(f"actuator {self.id!r}: value must be a number from 0 to 1, not {value!r}")
        return float(value)

    def _write(self, value: float) -> None:  # pragma: no cover - every output overrides
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} {self.kind} on {self._device.pin}>"


class Relay(_GpioOutput):
    """An on/off output (relay, contactor, solenoid valve). Values >= 0.5 switch it on."""

    Config = RelayConfig

    def __init__(self, id: str, pin: PinSpec, *, kind: str, zone: str | None = None, active_high: bool = True,
                 pin_factory: Any = None):
        device = _open(id, pin, "OutputDevice", active_high=active_high, initial_value=False, pin_factory=pin_factory)
        super().__init__(id, device, kind=kind, zone=zone)

    @classmethod
    def from_config(cls, cfg: RelayConfig, ctx: HardwareContext) -> "Relay":
        return cls(cfg.id, cfg.pin, kind=cfg.kind, zone=cfg.zone, active_high=cfg.active_high,
                   pin_factory=ctx.pin_factory)

    def _write(self, value: float) -> None:
        if value >= 0.5:
            self._device.on()
        else:
            self._device.off()


class PwmOutput(_GpioOutput):
    """A proportional output (fan speed controller, dimmable grow light): duty cycle 0.0 .. 1.0."""

    Config = PwmOutputConfig

    def __init__(self, id: str, pin: PinSpec, *, kind: str, zone: str | None = None, active_high: bool = True,
                 frequency: int = 100, pin_factory: Any = None):
        device = _open(id, pin, "PWMOutputDevice", active_high=active_high, initial_value=0, frequency=frequency,
                       pin_factory=pin_factory)
        super().__init__(id, device, kind=kind, zone=zone)

    @classmethod
    def from_config(cls, cfg: PwmOutputConfig, ctx: HardwareContext) -> "PwmOutput":
        return cls(cfg.id, cfg.pin, kind=cfg.kind, zone=cfg.zone, active_high=cfg.active_high,
                   frequency=cfg.frequency, pin_factory=ctx.pin_factory)

    def _write(self, value: float) -> None:
        self._device.value = value


def _open(actuator_id: str, pin: PinSpec, device_class: str, **kwargs: Any) -> Any:
    """Build a gpiozero output device, turning gpiozero's errors into a HardwareError that names the actuator."""
    import gpiozero

    try:
        return getattr(gpiozero, device_class)(pin, **kwargs)
    except gpiozero.GPIOZeroError as exc:
        raise HardwareError(f"actuator {actuator_id!r}: cannot open pin {pin!r}: {exc}") from exc
