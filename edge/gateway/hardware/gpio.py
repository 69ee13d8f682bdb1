"""Actuator outputs on Raspberry Pi GPIO pins, through gpiozero.

gpiozero is imported only when an output is built, so this module imports anywhere (a laptop, CI). Every output is
constructed OFF (``initial_value`` off) and driven off again by ``safe_state()`` and ``close()``. The pin factory is
injected: ``None`` lets gpiozero pick the Pi's backend; tests and the simulated greenhouse pass a ``MockFactory``
(``MockFactory(pin_class=MockPWMPin)``, which PWM outputs need), and the greenhouse model reads the outputs back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from edge.durations import Duration
from edge.errors import HardwareError
from edge.gateway.hardware.base import ActuatorConfig, HardwareContext
from edge.gateway.hardware.pins import Claim, GpioPin, gpio_claim

#: A BCM GPIO number (``17``) or any pin name gpiozero understands (``"GPIO17"``, ``"BCM17"``, ``"BOARD11"``). Configs
#: hold a :data:`~edge.gateway.hardware.pins.GpioPin` instead: the BCM number, checked against the Pi's header.
PinSpec = int | str


class RelayConfig(ActuatorConfig):
    type: Literal["relay"]
    pin: GpioPin = Field(description="BCM number (17) or gpiozero pin name (GPIO17, BCM17, BOARD11)")
    active_high: bool = Field(default=True, description="false for relay boards that switch on when the pin is LOW")

    def claims(self) -> tuple[Claim, ...]:
        return (gpio_claim(self.pin, "relay output"),)


class PwmOutputConfig(ActuatorConfig):
    type: Literal["pwm"]
    pin: GpioPin = Field(description="BCM number (18) or gpiozero pin name (GPIO18, BCM18, BOARD12)")
    active_high: bool = Field(default=True, description="false when a LOW pin means full output")
    frequency: int = Field(default=100, gt=0, description="PWM frequency, Hz")

    def claims(self) -> tuple[Claim, ...]:
        return (gpio_claim(self.pin, "PWM output"),)


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


class MotorVentConfig(ActuatorConfig):
    type: Literal["motor_vent"]
    open_pin: GpioPin = Field(description="output that drives the motor towards open")
    close_pin: GpioPin = Field(description="output that drives the motor towards closed")
    active_high: bool = Field(default=True, description="false for relay boards that switch on when the pin is LOW")
    travel_time: Duration = Field(description="time from fully closed to fully open")
    open_limit_pin: GpioPin | None = Field(default=None, description="switch closed when fully open (optional)")
    closed_limit_pin: GpioPin | None = Field(default=None, description="switch closed when fully closed (optional)")
    reverse_delay: Duration = Field(default=0.5, description="dead time between one direction and the other")

    @model_validator(mode="after")
    def _distinct_pins(self) -> "MotorVentConfig":
        pins = [p for p in (self.open_pin, self.close_pin, self.open_limit_pin, self.closed_limit_pin) if p is not None]
        if len(set(pins)) != len(pins):
            raise ValueError("open_pin, close_pin and the limit pins must all be different")
        return self

    def claims(self) -> tuple[Claim, ...]:
        pins = (("open_pin", "vent motor open output"), ("close_pin", "vent motor close output"),
                ("open_limit_pin", "open limit switch input"), ("closed_limit_pin", "closed limit switch input"))
        return tuple(gpio_claim(getattr(self, key), role, key) for key, role in pins if getattr(self, key) is not None)


class MotorVent:
    """A motorized vent or roll-up curtain: two outputs (open, close), never driven together, moved for the share of
    ``travel_time`` that reaches the requested position (0 closed .. 1 open), stopped early by limit switches.

    ``value`` is the estimated position. Fully open or closed targets run the whole travel time (plus a margin), so the
    estimate re-homes at the ends. ``safe_state()`` stops the motor where it is.
    """

    Config = MotorVentConfig
    END_MARGIN = 1.1

    def __init__(self, id: str, open_pin: PinSpec, close_pin: PinSpec, *, travel_time: float, kind: str = "vent",
                 zone: str | None = None, active_high: bool = True, open_limit_pin: PinSpec | None = None,
                 closed_limit_pin: PinSpec | None = None, reverse_delay: float = 0.5, pin_factory: Any = None,
                 clock: Any = None, timer: Any = None):
        import threading
        import time

        self.id, self.kind, self.zone = id, kind, zone
        self.travel_time = travel_time
        self.reverse_delay = reverse_delay
        self._now = clock.monotonic if clock is not None else time.monotonic
        self._timer = timer or getattr(clock, "timer", None) or threading.Timer  # a simulated clock brings its own
        # re-entrant: apply/safe_state/close call _stop and _start under it, and those take it themselves because a
        # timer thread calls them too
        self._lock = threading.RLock()
        self._open = _open(id, open_pin, "OutputDevice", active_high=active_high, initial_value=False,
                           pin_factory=pin_factory)
        self._close = _open(id, close_pin, "OutputDevice", active_high=active_high, initial_value=False,
                            pin_factory=pin_factory)
        self._limits = {}
        for direction, pin in ((1, open_limit_pin), (-1, closed_limit_pin)):
            if pin is not None:
                switch = _open(id, pin, "Button", pull_up=True, pin_factory=pin_factory)
                switch.when_pressed = lambda _device=None, d=direction: self._at_end(d)
                self._limits[direction] = switch
        self._position = 0.0  # estimated; unknown at start, re-homed by the first full move
        self._moving = 0  # +1 opening, -1 closing, 0 stopped
        self._since = self._now()
        self._pending = None
        self.closed = False

    @classmethod
    def from_config(cls, cfg: MotorVentConfig, ctx: HardwareContext) -> "MotorVent":
        return cls(cfg.id, cfg.open_pin, cfg.close_pin, travel_time=cfg.travel_time, kind=cfg.kind, zone=cfg.zone,
                   active_high=cfg.active_high, open_limit_pin=cfg.open_limit_pin,
                   closed_limit_pin=cfg.closed_limit_pin, reverse_delay=cfg.reverse_delay,
                   pin_factory=ctx.pin_factory, clock=ctx.clock)

    @property
    def value(self) -> float:
        with self._lock:
            return self._estimate()

    @property
    def moving(self) -> int:
        return self._moving

    def apply(self, value: float) -> None:
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"actuator {self.id!r}: value must be a number from 0 to 1, not {value!r}")
        with self._lock:
            if self.closed:
                raise ValueError(f"actuator {self.id!r} is closed")
            position = self._estimate()
            direction = 1 if value > position else -1
            run = self.travel_time * abs(value - position)
            if run > 0 and value in (0.0, 1.0):  # run on past the estimate into the end, to re-home it
                run = self.travel_time * self.END_MARGIN
            if run <= 0 or self._limit_pressed(direction):
                return self._stop()
            reversing = self._moving == -direction
            self._stop()
            if reversing and self.reverse_delay > 0:
                self._schedule(self.reverse_delay, lambda: self._start(direction, run))
            else:
                self._start(direction, run)

    def safe_state(self) -> None:
        with self._lock:
            if not self.closed:
                self._stop()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self._stop()
            for device in (self._open, self._close, *self._limits.values()):
                device.close()
            self.closed = True

    # motion

    def _estimate(self) -> float:
        if not self._moving:
            return self._position
        travelled = (self._now() - self._since) / self.travel_time
        return min(1.0, max(0.0, self._position + self._moving * travelled))

    def _start(self, direction: int, run: float) -> None:
        with self._lock:
            if self.closed or self._limit_pressed(direction):
                return
            (self._close if direction > 0 else self._open).off()  # never both: the other is off first
            (self._open if direction > 0 else self._close).on()
            self._moving, self._since = direction, self._now()
            self._schedule(run, self._stop)

    def _stop(self) -> None:
        with self._lock:
            if self._pending is not None:
                self._pending.cancel()
                self._pending = None
            self._position = self._estimate()
            self._moving = 0
            self._open.off()
            self._close.off()

    def _at_end(self, direction: int) -> None:
        with self._lock:
            if self._moving == direction:
                self._stop()
            self._position = 1.0 if direction > 0 else 0.0

    def _limit_pressed(self, direction: int) -> bool:
        switch = self._limits.get(direction)
        return switch is not None and switch.is_pressed

    def _schedule(self, delay: float, action: Any) -> None:
        timer = self._timer(delay, action)
        timer.daemon = True
        self._pending = timer
        timer.start()

    def __repr__(self) -> str:
        return f"<MotorVent {self.id!r} at {self.value:.0%}>"
