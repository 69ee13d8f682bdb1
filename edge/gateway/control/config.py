"""Config models of the control section: schedules, rules, interlocks, manual control. Beside the code they configure."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edge.durations import Duration
from edge.config import Identifier, StrictModel
from edge.gateway.control.cron import parse_cron
from edge.gateway.hardware.base import ActuatorRef, SensorInput

_CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _check_clock_time(value: str) -> str:
    if not _CLOCK_TIME.match(value):
        raise ValueError(f"invalid time of day {value!r}: use HH:MM, 24-hour (for example 08:00)")
    return value


class _Schedule(StrictModel):
    id: Identifier
    actuator: ActuatorRef
    value: float = Field(default=1.0, gt=0, le=1, description="output while on (PWM duty; relays: any value is on)")


class CronSchedule(_Schedule):
    """On for ``duration`` at each time a cron expression names, in the gateway's time zone."""

    type: Literal["cron"]
    cron: str = Field(description='five fields: minute hour day month weekday, e.g. "0 6,18 * * *"')
    duration: Duration

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        parse_cron(value, "UTC")  # raises ValueError with the reason
        return value


class DutySchedule(_Schedule):
    """On for ``on_for`` every ``every``, only between two local times (a window may cross midnight)."""

    type: Literal["duty"]
    on_for: Duration
    every: Duration
    between: tuple[str, str] = Field(default=("00:00", "00:00"), description="local window; 00:00-00:00 is all day")

    @field_validator("between")
    @classmethod
    def _valid_window(cls, value: tuple[str, str]) -> tuple[str, str]:
        return (_check_clock_time(value[0]), _check_clock_time(value[1]))

    @model_validator(mode="after")
    def _on_shorter_than_period(self) -> "DutySchedule":
        if self.on_for >= self.every:
            raise ValueError("on_for must be shorter than every")
        return self


class SunSchedule(_Schedule):
    """On from sunrise or sunset (plus an offset, which may be negative) for ``duration``."""

    type: Literal["sun"]
    event: Literal["sunrise", "sunset"]
    offset: str = Field(default="0s", description="e.g. -30m or 15m")
    duration: Duration

    @field_validator("offset")
    @classmethod
    def _valid_offset(cls, value: str) -> str:
        from edge.durations import parse_duration

        text = value.strip()
        if text in ("0", "0s"):
            return "0s"
        parse_duration(text.lstrip("+-"))
        return text

    def offset_seconds(self) -> float:
        from edge.durations import parse_duration

        if self.offset == "0s":
            return 0.0
        sign = -1.0 if self.offset.startswith("-") else 1.0
        return sign * parse_duration(self.offset.lstrip("+-"))


Schedule = Annotated[CronSchedule | DutySchedule | SunSchedule, Field(discriminator="type")]


class _Rule(StrictModel):
    id: Identifier
    input: SensorInput
    actuator: ActuatorRef
    value: float = Field(default=1.0, gt=0, le=1, description="output while the rule holds it on")
    stale_after: Duration | None = Field(
        default=None, description="input older than this is stale (default: three of its sensor's intervals)")


class ThresholdRule(_Rule):
    """Hysteresis: holds above ``on_above`` until below ``off_below`` (cooling), or below ``on_below`` until above
    ``off_above`` (heating, frost protection). While it holds, it requests its actuator on at ``value``, or, with
    ``action: off``, holds it off (a cut-off, such as a heater's over-temperature limit). A ``priority: safety``
    rule beats manual and remote overrides (frost protection heats through an ``edge actuate heater-1 off``); the
    safety limits (max_on, min_off, interlocks, power budget) still have the last word."""

    type: Literal["threshold"]
    on_above: float | None = None
    off_below: float | None = None
    on_below: float | None = None
    off_above: float | None = None
    action: Literal["on", "off"] = Field(default="on", description="while the rule holds: on at value, or off")
    priority: Literal["normal", "safety"] = Field(
        default="normal", description="normal: below manual overrides; safety: above them (frost, over-temperature)")

    @field_validator("action", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: object) -> object:
        """YAML reads a bare ``on`` / ``off`` as true / false: take them as meant."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_direction(self) -> "ThresholdRule":
        cooling = (self.on_above, self.off_below)
        heating = (self.on_below, self.off_above)
        if all(v is not None for v in cooling) and all(v is None for v in heating):
            if self.off_below >= self.on_above:
                raise ValueError("off_below must be lower than on_above (the hysteresis band)")
        elif all(v is not None for v in heating) and all(v is None for v in cooling):
            if self.off_above <= self.on_below:
                raise ValueError("off_above must be higher than on_below (the hysteresis band)")
        else:
            raise ValueError("give either on_above and off_below (cooling) or on_below and off_above (heating)")
        return self


class IrrigationRule(_Rule):
    """Water when the soil is dry: start below ``start_below``, stop above ``stop_above`` or after ``max_run``,
    then wait ``lockout`` before watering again (the water needs time to reach the probe)."""

    type: Literal["irrigation"]
    start_below: float = Field(ge=0, le=100)
    stop_above: float = Field(ge=0, le=100)
    max_run: Duration
    lockout: Duration

    @model_validator(mode="after")
    def _band(self) -> "IrrigationRule":
        if self.stop_above <= self.start_below:
            raise ValueError("stop_above must be higher than start_below")
        return self


def _offset_seconds(text: str) -> float:
    from edge.durations import parse_duration

    if text in ("0", "0s"):
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    return sign * parse_duration(text.lstrip("+-"))


def _check_offset(value: str) -> str:
    text = value.strip()
    _offset_seconds(text)  # raises ValueError with the reason
    return text


class Profile(StrictModel):
    """A setpoint that follows the sun: ``night`` until sunrise (plus ``day_starts``), then a straight ramp over
    ``ramp`` to ``day``; ``day`` until sunset (plus ``night_starts``), then a ramp over ``ramp`` back to ``night``.
    Setpoint and humidity rules name it instead of a number."""

    id: Identifier
    day: float
    night: float
    ramp: Duration = Field(default=3600.0, description="how long the change between night and day values takes")
    day_starts: str = Field(default="0s", description="offset of the day ramp's start from sunrise (e.g. 30m, -1h)")
    night_starts: str = Field(default="0s", description="offset of the night ramp's start from sunset")

    @field_validator("day_starts", "night_starts")
    @classmethod
    def _valid_offset(cls, value: str) -> str:
        return _check_offset(value)

    def offsets(self) -> tuple[float, float]:
        return _offset_seconds(self.day_starts), _offset_seconds(self.night_starts)


#: A number, or the id of a ``control.profiles`` entry (checked by ``edge check``).
Setpoint = float | Identifier


class SetpointRule(_Rule):
    """Temperature (or any quantity) held at a setpoint, a number or a day/night profile: ``heat`` requests its
    actuator below the setpoint until ``band`` above it; ``cool`` above the setpoint until ``band`` below it."""

    type: Literal["setpoint"]
    direction: Literal["heat", "cool"]
    setpoint: Setpoint
    band: float = Field(default=1.0, gt=0, description="hysteresis, in the input's unit")
    priority: Literal["normal", "safety"] = "normal"


class HumidityRule(_Rule):
    """Humidity by deficit: ``dry`` requests its actuator (a vent, a fan) while the VPD, humidity deficit or the
    cover's margin to the dew point is below the band, ``humidify`` (a mister) while it is above. Temperature first: with ``temperature`` and
    ``not_below``, it requests nothing while the air is below that setpoint (drying or misting would fight the
    heating), and a setpoint rule on the same output that asks more wins (docs/control.md)."""

    type: Literal["humidity"]
    action: Literal["dry", "humidify"]
    band: tuple[float, float] = Field(description="the wanted range, low then high (kPa, or g/m3)")
    night_band: tuple[float, float] | None = Field(default=None, description="the range between sunset and sunrise")
    hysteresis: float = Field(default=0.1, gt=0)
    temperature: SensorInput | None = Field(default=None, description="the air temperature, for not_below")
    not_below: Setpoint | None = Field(default=None, description="no request while the air is colder (a number "
                                       "or a profile: the heating setpoint)")

    @model_validator(mode="after")
    def _sound(self) -> "HumidityRule":
        if self.input.quantity not in ("vpd", "humidity_deficit", "leaf_vpd", "dew_margin"):
            raise ValueError(f"input must be a vpd, leaf_vpd, humidity_deficit or dew_margin, not "
                             f"{self.input.quantity}")
        for band in (self.band, self.night_band):
            if band is not None and band[0] >= band[1]:
                raise ValueError("a band is low then high")
        if (self.temperature is None) != (self.not_below is None):
            raise ValueError("give temperature and not_below together")
        return self


class LightIrrigationRule(_Rule):
    """Water by the light the crop received (its transpiration follows radiation): start a run of ``run`` once the
    light sum since the last start reaches ``start_at`` mol/m2, never sooner than ``min_interval`` after the last
    start, and in daylight at the latest ``max_interval`` after it. ``soil`` is the guard: no start while the soil
    is at or above ``soil_wet_at``."""

    type: Literal["light_sum"]
    start_at: float = Field(gt=0, description="mol/m2 of light since the last start")
    run: Duration
    min_interval: Duration
    max_interval: Duration | None = None
    ppfd_per_lux: float = Field(default=0.0185, gt=0, le=0.1, description="for a light input in lux (sunlight)")
    soil: SensorInput | None = None
    soil_wet_at: float | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _sound(self) -> "LightIrrigationRule":
        if self.input.quantity not in ("light", "par"):
            raise ValueError(f"input must be light (lx) or par, not {self.input.quantity}")
        if self.run >= self.min_interval:
            raise ValueError("run must be shorter than min_interval")
        if self.max_interval is not None and self.max_interval <= self.min_interval:
            raise ValueError("max_interval must be longer than min_interval")
        if (self.soil is None) != (self.soil_wet_at is None):
            raise ValueError("give soil and soil_wet_at together")
        return self


class Co2Rule(_Rule):
    """CO2 enrichment: on below ``on_below`` ppm until ``off_above``, only between sunrise and sunset and only
    while every vent in ``vents`` is at most ``closed_at`` open. The vent condition is enforced by the supervisor as
    a safety limit (like an interlock): its output is switched off before a vent opens, whatever asks for it."""

    type: Literal["co2"]
    on_below: float = Field(gt=0)
    off_above: float = Field(gt=0)
    vents: list[ActuatorRef] = Field(min_length=1, description="the vents (and fans) that must be closed")
    closed_at: float = Field(default=0.1, ge=0, lt=1, description="a vent at most this open counts as closed")

    @model_validator(mode="after")
    def _sound(self) -> "Co2Rule":
        if self.input.quantity != "co2":
            raise ValueError(f"input must be co2, not {self.input.quantity}")
        if self.off_above <= self.on_below:
            raise ValueError("off_above must be higher than on_below")
        return self


Rule = Annotated[ThresholdRule | IrrigationRule | SetpointRule | HumidityRule | LightIrrigationRule | Co2Rule,
                 Field(discriminator="type")]


class Interlock(StrictModel):
    """Outputs that must never be on together (a heater and a cooling fan), with a wait between them."""

    actuators: list[ActuatorRef] = Field(min_length=2)
    wait: Duration = Field(default=0.0, description="after one goes off, how long before another may go on")


class ControlConfig(StrictModel):
    interval: Duration = Field(default=5.0, description="how often schedules, rules and limits are evaluated")
    socket: str = Field(default="/run/edge/control.sock", description="Unix socket for edge actuate / status")
    socket_group: str | None = Field(
        default=None, description="group allowed to use the control socket besides root and the daemon's user")
    manual_default: Duration = Field(default=3600.0, description="how long `edge actuate ID on|off` lasts without "
                                     "--for (never longer than the actuator's max_manual)")
    max_outputs_on: int | None = Field(default=None, ge=1, description="power budget: outputs on at once")
    interlocks: list[Interlock] = Field(default_factory=list)
    profiles: list[Profile] = Field(default_factory=list, description="day/night setpoints with ramps at "
                                    "sunrise and sunset, named by setpoint and humidity rules")

    def check_whole(self, config) -> list[tuple[tuple[str | int, ...], str]]:
        """Every profile a rule names exists; a profile id is given once."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        ids = [p.id for p in self.profiles]
        for index, pid in enumerate(ids):
            if pid in ids[:index]:
                problems.append((("profiles", index, "id"), f"duplicate profile id {pid!r}"))
        for rule in getattr(config, "rules", ()):
            for name in ("setpoint", "not_below"):
                value = getattr(rule, name, None)
                if isinstance(value, str) and value not in ids:
                    listed = ", ".join(ids) or "none configured"
                    problems.append((("profiles",), f"rule {rule.id!r}: {name}: unknown profile {value!r} "
                                     f"(profiles: {listed})"))
        return problems
