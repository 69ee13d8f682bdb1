"""The hardware boundary: the only package that imports hardware libraries, and only when a config uses them.

The registry maps a config ``type:`` to ``module:Class``. Importing this package imports no driver module.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

SENSOR_TYPES: dict[str, str] = {
    "simulated": "edge.gateway.hardware.sim:SimulatedSensor",
    "sht3x": "edge.gateway.hardware.i2c:Sht3x",
    "sht4x": "edge.gateway.hardware.i2c:Sht4x",
    "bme280": "edge.gateway.hardware.i2c:Bme280",
    "bh1750": "edge.gateway.hardware.i2c:Bh1750",
    "ads1115": "edge.gateway.hardware.i2c:Ads1115",
    "scd4x": "edge.gateway.hardware.i2c:Scd4x",
    "mcp3008": "edge.gateway.hardware.spi:Mcp3008",
    "ds18b20": "edge.gateway.hardware.onewire:Ds18b20",
    "mhz19b": "edge.gateway.hardware.uart:Mhz19b",
    "dht22": "edge.gateway.hardware.dht:Dht22",
    "float_switch": "edge.gateway.hardware.inputs:FloatSwitch",
    "rain_switch": "edge.gateway.hardware.inputs:RainSwitch",
    "flow_meter": "edge.gateway.hardware.inputs:FlowMeter",
}

ACTUATOR_TYPES: dict[str, str] = {
    "relay": "edge.gateway.hardware.gpio:Relay",
    "pwm": "edge.gateway.hardware.gpio:PwmOutput",
    "motor_vent": "edge.gateway.hardware.gpio:MotorVent",
}


def _load(table: dict[str, str], kind: str, type_name: str) -> Any:
    try:
        target = table[type_name]
    except KeyError:
        import difflib  # only for a config with a mistake in it

        known = ", ".join(sorted(table))
        close = difflib.get_close_matches(type_name, table, n=1)
        guess = f": did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown {kind} type {type_name!r}{guess} (known: {known})") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def sensor_driver(type_name: str) -> Any:
    """The driver class for a sensor ``type:``; its ``Config`` attribute is the config model."""
    return _load(SENSOR_TYPES, "sensor", type_name)


def actuator_driver(type_name: str) -> Any:
    """The driver class for an actuator ``type:``; its ``Config`` attribute is the config model."""
    return _load(ACTUATOR_TYPES, "actuator", type_name)


PIN_FACTORIES: dict[str, str] = {
    "lgpio": "gpiozero.pins.lgpio:LGPIOFactory",
    "rpigpio": "gpiozero.pins.rpigpio:RPiGPIOFactory",
    "pigpio": "gpiozero.pins.pigpio:PiGPIOFactory",
    "native": "gpiozero.pins.native:NativeFactory",
    "mock": "gpiozero.pins.mock:MockFactory",
}


@dataclass
class Hardware:
    """Every opened sensor and actuator of one config, and the simulation behind them when there is one."""

    sensors: dict[str, Any] = field(default_factory=dict)
    actuators: dict[str, Any] = field(default_factory=dict)
    simulation: Any = None
    pin_factory: Any = None
    failed: dict[str, str] = field(default_factory=dict)  # actuators that could not be opened, and why

    def safe_state(self) -> list[str]:
        """Drive every actuator to its safe state; return the ids that failed (each is logged)."""
        failed = []
        for actuator in self.actuators.values():
            try:
                actuator.safe_state()
            except Exception:
                log.exception("actuator %s could not be driven to its safe state", actuator.id)
                failed.append(actuator.id)
        return failed

    def close(self) -> None:
        for device in (*self.actuators.values(), *self.sensors.values()):
            try:
                device.close()
            except Exception:
                log.exception("closing %s failed", device.id)


def pin_factory_for(backend: str, name: str | None) -> Any:
    """The gpiozero pin factory a config asks for: mock pins for the simulation, else the named one (or gpiozero's
    choice)."""
    if backend == "simulated":
        import os

        from gpiozero.pins.mock import MockFactory, MockPWMPin

        from edge.gateway.hardware.mockpins import STATE_DIR_ENV, LineStateFactory

        if os.environ.get(STATE_DIR_ENV):
            return LineStateFactory(os.environ[STATE_DIR_ENV])
        return MockFactory(pin_class=MockPWMPin)
    if name is None:
        return None  # gpiozero picks the best factory for this board
    module_name, _, class_name = PIN_FACTORIES[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)()


def open_hardware(config: Any, clock: Any, sensors: bool = True, skip_failed: bool = False) -> Hardware:
    """Open the actuators (off) and, unless told not to, the sensors of a validated ``GatewayConfig``.

    Imports only the drivers the config uses. With ``skip_failed`` (``edge safe-state``), an actuator that cannot be
    opened is logged and listed in ``failed`` and the others are still opened (and so driven off); otherwise the
    first failure closes what was opened, off, and raises."""
    from edge.gateway.hardware.base import HardwareContext

    simulated_only = config.hardware.backend == "simulated" and not config.actuators and all(
        cfg.type == "simulated" for cfg in config.sensors)  # nothing on a pin: gpiozero is not even imported
    hw = Hardware(pin_factory=None if simulated_only else pin_factory_for(config.hardware.backend,
                                                                          config.hardware.pin_factory))
    if config.hardware.backend == "simulated":
        from edge.gateway.hardware.sim import GreenhouseModel

        hw.simulation = GreenhouseModel(config.hardware.simulation, clock, latitude=config.gateway.latitude,
                                        longitude=config.gateway.longitude)
    ctx = HardwareContext(clock=clock, pin_factory=hw.pin_factory, simulation=hw.simulation)
    try:
        for cfg in config.actuators:
            try:
                hw.actuators[cfg.id] = actuator_driver(cfg.type).from_config(cfg, ctx)
            except Exception as exc:
                if not skip_failed:
                    raise
                log.exception("actuator %s could not be opened", cfg.id)
                hw.failed[cfg.id] = str(exc) or type(exc).__name__
                continue
            if hw.simulation is not None:
                hw.simulation.attach(hw.actuators[cfg.id])
        for cfg in config.sensors if sensors else ():
            hw.sensors[cfg.id] = sensor_driver(cfg.type).from_config(cfg, ctx)
    except Exception:
        hw.safe_state()
        hw.close()
        raise
    return hw
