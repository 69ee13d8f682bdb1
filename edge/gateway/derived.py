"""Derived quantities: VPD, dew point, light integral, degree days and ET0 as readings of their own.

A ``derived:`` entry of the config names its inputs (sensor quantities, checked by ``edge check`` like any
reference) and gets a sensor id of its own (``climate``). At every sampling round that brings its air temperature or
humidity, :class:`Deriver` computes its quantities from the round's readings and the latest ones of its other inputs
(no older than ``max_age``); the sampler stores them in the same transaction as the round, so they are kept, synced
and charted like any reading. The formulas are :mod:`edge.gateway.agronomy`'s.

Quality carries over: a quantity whose input is in error, implausible, stale or missing is a reading of quality
``error`` whose reason names the input, never a guess. The day's quantities (``dli``, ``gdd``, ``et0`` and the
temperature's ``temperature_min`` / ``_mean`` / ``_max``) run over the local day (``gateway.timezone``) and start
again at midnight; at the last reading before midnight they are the day's values. A restart takes the day's values
up from the last derived readings in the buffer (the time the daemon was down is not counted).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from edge.config import DisplayName, Identifier, StrictModel
from edge.contract.protocol import Reading
from edge.durations import Duration
from edge.gateway import agronomy
from edge.gateway.hardware.base import PLAUSIBLE, UNITS, SensorInput

log = logging.getLogger(__name__)

#: What each derived quantity needs besides the air's temperature and humidity (None: nothing more).
NEEDS: dict[str, str | None] = {
    "vpd": None,
    "dew_point": None,
    "abs_humidity": None,
    "humidity_deficit": None,
    "leaf_vpd": "leaf_temperature",
    "dew_margin": "cover_temperature",
    "dli": "light",
    "temperature_min": None,
    "temperature_mean": None,
    "temperature_max": None,
    "gdd": None,
    "et0": None,
}
DAY_QUANTITIES = ("dli", "temperature_min", "temperature_mean", "temperature_max", "gdd", "et0")


class DerivedConfig(StrictModel):
    """One set of derived quantities (a greenhouse's climate), computed from configured sensor quantities."""

    id: Identifier = Field(description="the sensor id its readings carry, e.g. climate (unique among sensors)")
    name: DisplayName | None = Field(default=None, description="what the farmer calls it, in every SMS")
    air_temperature: SensorInput = Field(description="the air's temperature (°C)")
    humidity: SensorInput = Field(description="the air's relative humidity (%)")
    leaf_temperature: SensorInput | None = Field(
        default=None, description="a leaf or canopy temperature (an infrared sensor): gives leaf_vpd")
    cover_temperature: SensorInput | None = Field(
        default=None, description="the roof's or cover's inner surface temperature: gives dew_margin")
    light: SensorInput | None = Field(
        default=None, description="PAR (quantity par, umol/(m2 s)) or illuminance (quantity light, lx, converted "
        "with ppfd_per_lux): gives dli, and et0 by Makkink")
    ppfd_per_lux: float = Field(default=agronomy.LUX_TO_PPFD_SUNLIGHT, gt=0, le=0.1,
                                description="PPFD per lux: 0.0185 for sunlight (Thimijan and Heins 1983)")
    max_age: Duration = Field(default=120.0, description="an input older than this is stale: its quantities are "
                              "errors; a gap longer than this is not counted in the day's sums")
    gdd_base: float = Field(default=10.0, ge=-10, le=40, description="growing degree days: base temperature, °C")
    gdd_cap: float = Field(default=30.0, ge=0, le=50, description="growing degree days: upper cut-off, °C")
    elevation: float = Field(default=0.0, ge=-500, le=6000,
                             description="metres above sea level, for the air pressure in et0 (Makkink)")

    @model_validator(mode="after")
    def _inputs_measure_what_they_say(self) -> "DerivedConfig":
        expected = {"air_temperature": ("temperature",), "humidity": ("humidity",),
                    "leaf_temperature": ("temperature",), "cover_temperature": ("temperature",),
                    "light": ("par", "light")}
        for name, quantities in expected.items():
            ref = getattr(self, name)
            if ref is not None and ref.quantity not in quantities:
                raise ValueError(f"{name} must be a quantity {' or '.join(quantities)}, not {ref.quantity}")
        if self.gdd_cap <= self.gdd_base:
            raise ValueError("gdd_cap must be above gdd_base")
        return self

    def inputs(self) -> dict[str, SensorInput]:
        """The configured inputs by role."""
        return {name: ref for name in ("air_temperature", "humidity", "leaf_temperature", "cover_temperature",
                                       "light") if (ref := getattr(self, name)) is not None}

    def quantities(self) -> tuple[str, ...]:
        """The quantities its readings carry (those whose inputs are configured)."""
        roles = self.inputs()
        return tuple(q for q, need in NEEDS.items() if need is None or need in roles)

    def pressure(self) -> float:
        """Air pressure at the configured elevation, kPa (FAO-56 eq. 7)."""
        return agronomy.STANDARD_PRESSURE * ((293.0 - 0.0065 * self.elevation) / 293.0) ** 5.26


@dataclass
class _Day:
    """The local day's running sums."""

    day: date
    t_min: float | None = None
    t_max: float | None = None
    t_seconds: float = 0.0  # time the mean covers
    t_sum: float = 0.0  # °C·s
    light: float = 0.0  # mol/m2 so far
    light_missing: float = 0.0  # s of the day without a usable light reading (gaps over max_age)


@dataclass
class _Latest:
    value: float
    ts: float


@dataclass
class Deriver:
    """Computes one derived set's readings from sampling rounds. Thread-safe (rounds of different intervals run on
    different threads); keeps the day's sums in memory."""

    config: DerivedConfig
    latitude: float
    timezone: str
    _latest: dict[tuple[str, str], Reading] = field(default_factory=dict)
    _last_good: dict[str, _Latest] = field(default_factory=dict)  # role -> last good value, for the day's sums
    _day: _Day | None = None
    _first: float | None = None  # time of the first round: inputs of slower groups may not have answered yet
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self._tz = ZoneInfo(self.timezone)
        self._roles = self.config.inputs()
        self._triggers = {(self._roles[r].sensor, self._roles[r].quantity) for r in ("air_temperature", "humidity")}

    @property
    def id(self) -> str:
        return self.config.id

    # ----------------------------------------------------------------------------------------- the day's sums

    def restore(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Take the local day's sums up from this set's last stored readings (``Buffer.latest``), if they are of
        today's local day (as the first round will find it) and good."""
        rows = [r for r in rows if r.get("sensor") == self.id and r.get("quality") == "good"
                and r.get("value") is not None]
        if not rows:
            return
        ts = max(float(r["ts"]) for r in rows)
        values = {r["quantity"]: float(r["value"]) for r in rows}
        with self._lock:
            day = _Day(self._local_day(ts))
            if "temperature_min" in values and "temperature_max" in values and "temperature_mean" in values:
                day.t_min, day.t_max = values["temperature_min"], values["temperature_max"]
                midnight = datetime.combine(day.day, datetime.min.time(), self._tz).timestamp()
                day.t_seconds = max(0.0, ts - midnight)
                day.t_sum = values["temperature_mean"] * day.t_seconds
            day.light = values.get("dli", 0.0)
            self._day = day
        log.info("%s: the day's sums taken up from the readings of %s", self.id,
                 datetime.fromtimestamp(ts, self._tz).isoformat(timespec="seconds"))

    def _local_day(self, ts: float) -> date:
        return datetime.fromtimestamp(ts, self._tz).date()

    def _today(self, ts: float) -> _Day:
        today = self._local_day(ts)
        if self._day is None or self._day.day != today:
            if self._day is not None and self._day.day > today:
                log.warning("%s: the clock went back to the previous day: the day's sums start again", self.id)
            self._day = _Day(today)
            self._last_good.clear()  # a sum never reaches across midnight
        return self._day

    def _accumulate(self, role: str, reading: Reading) -> None:
        """Add a new good reading of a summed input (air temperature, light) to the day's sums (trapezoids; a gap
        over ``max_age`` is not counted)."""
        day = self._today(reading.ts)
        value = reading.value
        if role == "light":
            value = self._ppfd(reading)
        previous = self._last_good.get(role)
        self._last_good[role] = _Latest(value, reading.ts)
        if role == "air_temperature":
            day.t_min = value if day.t_min is None else min(day.t_min, value)
            day.t_max = value if day.t_max is None else max(day.t_max, value)
        if previous is None or reading.ts <= previous.ts:
            return
        dt = reading.ts - previous.ts
        if dt > self.config.max_age:
            if role == "light":
                day.light_missing += dt
            return
        if role == "air_temperature":
            day.t_sum += (previous.value + value) / 2.0 * dt
            day.t_seconds += dt
        elif role == "light":
            day.light += agronomy.light_integral((previous.value + value) / 2.0, dt)

    def _ppfd(self, reading: Reading) -> float:
        if reading.quantity == "par":
            return reading.value
        return reading.value * self.config.ppfd_per_lux

    # ----------------------------------------------------------------------------------------- a round

    def __call__(self, readings: Sequence[Reading]) -> list[Reading]:
        """The derived readings of a round: none unless it brings the air's temperature or humidity."""
        with self._lock:
            for r in readings:
                self._latest[(r.sensor, r.quantity)] = r
                for role, ref in self._roles.items():
                    if (ref.sensor, ref.quantity) == (r.sensor, r.quantity) and _good(r) and role in (
                            "air_temperature", "light"):
                        self._accumulate(role, r)
            trigger = next((r for r in readings if (r.sensor, r.quantity) in self._triggers), None)
            if trigger is None:
                return []
            return self._derive(trigger)

    def _input(self, role: str, now: float) -> tuple[float | None, str | None]:
        """The value of an input, or None and why it cannot be used."""
        ref = self._roles[role]
        label = f"input {ref.sensor}/{ref.quantity}"
        r = self._latest.get((ref.sensor, ref.quantity))
        if r is None:
            return None, f"{label}: no reading yet"
        if r.quality != "good" or r.value is None:
            return None, f"{label} {r.quality}" + (f": {r.reason}" if r.reason else "")
        age = now - r.ts
        if age > self.config.max_age:
            return None, f"{label} stale: last reading {age:.0f}s ago (limit {self.config.max_age:.0f}s)"
        return r.value, None

    def _derive(self, trigger: Reading) -> list[Reading]:
        now = trigger.ts
        values: dict[str, float | None] = {}
        problems: dict[str, str | None] = {}
        for role in self._roles:
            values[role], problems[role] = self._input(role, now)
        out: dict[str, tuple[float | None, str | None]] = {}
        if self._first is None:
            self._first = now
        starting = now - self._first <= self.config.max_age

        def compute(quantity: str, roles: tuple[str, ...], formula) -> None:
            problem = next((problems[r] for r in roles if problems.get(r)), None)
            if problem:
                out[quantity] = (None, problem)
                return
            try:
                out[quantity] = (formula(*(values[r] for r in roles)), None)
            except (ValueError, ArithmeticError) as exc:
                out[quantity] = (None, f"cannot compute {quantity}: {exc}")

        air = ("air_temperature", "humidity")
        compute("vpd", air, agronomy.vpd)
        compute("dew_point", air, agronomy.dew_point)
        compute("abs_humidity", air, agronomy.absolute_humidity)
        compute("humidity_deficit", air, agronomy.humidity_deficit)
        if "leaf_temperature" in self._roles:
            compute("leaf_vpd", ("leaf_temperature",) + air, agronomy.leaf_vpd)
        if "cover_temperature" in self._roles:
            compute("dew_margin", ("cover_temperature",) + air, agronomy.dew_margin)
        self._day_quantities(now, problems, out)
        return [self._reading(trigger, q, *out[q]) for q in self.config.quantities() if q in out
                and not (starting and (out[q][1] or "").endswith(": no reading yet"))]  # not yet: no reading

    def _day_quantities(self, now: float, problems: dict[str, str | None],
                        out: dict[str, tuple[float | None, str | None]]) -> None:
        day = self._today(now)
        t_problem = problems["air_temperature"]
        if t_problem or day.t_min is None:
            reason = t_problem or "no temperature yet today"
            for q in ("temperature_min", "temperature_mean", "temperature_max", "gdd"):
                out[q] = (None, reason)
        else:
            mean = day.t_sum / day.t_seconds if day.t_seconds > 0 else (day.t_min + day.t_max) / 2.0
            out["temperature_min"], out["temperature_max"] = (day.t_min, None), (day.t_max, None)
            out["temperature_mean"] = (mean, None)
            out["gdd"] = (agronomy.growing_degree_days(day.t_min, day.t_max, self.config.gdd_base,
                                                       self.config.gdd_cap), None)
        if "light" in self._roles:
            light_problem = problems["light"]
            out["dli"] = (None, light_problem) if light_problem else (day.light, None)
            if light_problem or t_problem or day.t_min is None:
                out["et0"] = (None, light_problem or t_problem or "no temperature yet today")
            else:
                rs = day.light / agronomy.PPFD_PER_WATT_GLOBAL  # MJ/m2: mol/m2 over umol/J
                out["et0"] = (agronomy.et0_makkink(out["temperature_mean"][0], rs, self.config.pressure()), None)
        elif "temperature_min" in out and out["temperature_min"][0] is not None:
            ra = agronomy.extraterrestrial_radiation(self.latitude, day.day.timetuple().tm_yday)
            out["et0"] = (agronomy.et0_hargreaves(day.t_min, day.t_max, ra, out["temperature_mean"][0]), None)
        else:
            out["et0"] = out["temperature_min"]

    def _reading(self, trigger: Reading, quantity: str, value: float | None, problem: str | None) -> Reading:
        unit = UNITS[quantity]
        if problem is not None or value is None or not math.isfinite(value):
            quality, reason, value = "error", problem or f"{quantity} is not a number", None
        else:
            value = round(value, 3)
            low, high = PLAUSIBLE[quantity]
            quality, reason = ("good", None) if low <= value <= high else (
                "implausible", f"{value:g} {unit} outside the possible range {low:g}..{high:g}")
        return Reading.taken(ts=trigger.ts, sensor=self.id, quantity=quantity, value=value, unit=unit,
                             quality=quality, reason=reason, clock=trigger.clock, boot_id=trigger.boot_id,
                             mono=trigger.mono)


def _good(r: Reading) -> bool:
    return r.quality == "good" and r.value is not None and math.isfinite(r.value)


def derivers(config: Any) -> list[Deriver]:
    """One :class:`Deriver` per ``derived:`` entry of a gateway config."""
    return [Deriver(d, config.gateway.latitude, config.gateway.timezone) for d in config.derived]
