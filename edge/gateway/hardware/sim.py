"""A simulated greenhouse: a small physics model behind simulated sensors, driven by real actuator objects.

The model integrates a lumped greenhouse (one air volume, a crop, soil zones) lazily, up to the clock's time whenever
it is asked. Outside weather follows the seasonal and daily cycle of Khorramabad (Lorestan) by default; the sun follows
the standard declination / hour-angle formulas. Actuators (gpiozero ``Relay``/``PwmOutput`` on a ``MockFactory``, or
anything with ``kind``, ``zone`` and ``value``) are attached to the model, which reads their output at each integration
step: the demo, the tests and a Pi run the same actuator code. Simulated sensors read the model with realistic,
seeded noise, and can be given faults (dropout, stuck, spike, hang) to exercise the sampler, the alerts and the
watchdog: injected by code (``GreenhouseModel.inject_fault``) or, as a test aid, by the config
(``hardware.simulation.faults``).
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections import defaultdict
from dataclasses import dataclass
from types import MappingProxyType
from collections.abc import Mapping
from typing import Any, Literal, Protocol, get_args

from pydantic import Field, ValidationInfo, field_validator

from edge.durations import Duration
from edge.errors import HardwareError
from edge.config import Identifier, StrictModel
from edge.gateway.hardware.base import PLAUSIBLE, UNITS, HardwareContext, Sample, SensorConfig

log = logging.getLogger(__name__)

KHORRAMABAD_LATITUDE = 33.49
KHORRAMABAD_LONGITUDE = 48.36

SimQuantity = Literal["temperature", "humidity", "soil_moisture", "light", "co2", "par"]
#: Where a simulated temperature sensor sits: in the air, on a leaf (an infrared canopy sensor), on the cover.
SimSurface = Literal["air", "leaf", "cover"]
#: dropout: error readings; stuck: the same values over and over; spike: one wild value; hang: ``read()`` blocks
#: until the fault ends (a sensor wedging its bus: what the systemd watchdog must catch).
FaultKind = Literal["dropout", "stuck", "spike", "hang"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
DROPOUT_REASON = "simulated dropout: no answer from sensor"
HANG_POLL = 0.05  # s: how often a hung read looks at the clock for the end of its fault

# --- Integration -----------------------------------------------------------------------------------------------------
KEPT_HUMIDITY = 85.0  # %: the most humid a kept greenhouse is before the simulation starts (``kept_between``)
SPIN_UP = 24 * 3600.0  # s of physics run before the first reading, so the air and the floor start in a plausible state
MAX_STEP = 60.0  # s, longest integration sub-step
MIN_STEP = 1.0  # s: a query closer than this to the last one reuses the last state
MAX_CATCH_UP = 2 * 86400.0  # s: a longer forward clock jump integrates only its last two days

# --- Sun and weather -------------------------------------------------------------------------------------------------
UNIX_2000 = 946_684_800.0  # 2000-01-01T00:00Z
TROPICAL_YEAR = 365.2422  # days
HOTTEST_DAY = 195.0  # day of year (0 = 1 January) of the seasonal peak, mid-July; the coldest falls mid-January
WARMEST_HOUR = 15.0  # solar time of the daily maximum; the minimum falls at sunrise
SOLAR_CONSTANT = 1361.0  # W/m² at the top of the atmosphere
OUTSIDE_CO2 = 420.0  # ppm

# --- Greenhouse and crop (rarely worth configuring) ------------------------------------------------------------------
AIR_HEAT_CAPACITY = 1200.0  # J/(m³·K): density × specific heat of air
MASS_HEAT_CAPACITY = 12_000.0  # J/(m²·K) of floor: canopy and structure that warm and cool with the air in minutes
FLOOR_HEAT_CAPACITY = 150_000.0  # J/(m²·K): the top ~6 cm of moist soil (2.5 MJ/(m³·K)), the day's heat store
FLOOR_EXCHANGE = 8.0  # W/(m²·K) between the floor and the air and crop (convection and radiation)
FLOOR_SUN = 0.4  # share of the absorbed sunlight that warms the floor first (the rest warms crop and air)
COVER_TO_FLOOR = 1.6  # m² of cover (roof and walls) per m² of floor
LEAKAGE = 1.0  # air changes per hour through gaps with vents and fans closed
SOLAR_ABSORBED = 0.9  # share of the sunlight reaching the crop that ends as heat inside (the rest is reflected out)
LATENT_HEAT = 2.45e6  # J/kg to evaporate water
TRANSPIRATION_RADIATION = 0.4  # share of crop radiation a well-watered canopy spends on transpiration
TRANSPIRATION_VPD = 25.0  # W/m² of transpiration per kPa of vapour-pressure deficit
LUX_PER_WM2 = 110.0  # luminous efficacy of daylight, lx per W/m²
GROW_LIGHT_LUX = 12_000.0  # lx at the crop from grow lights at full output
GROW_LIGHT_POWER = 100.0  # W/m² of floor drawn by grow lights at full output, all of it ending as heat
GROW_LIGHT_RADIATION = 40.0  # W/m² of that power reaching the crop as light
GROW_LIGHT_PPFD = 180.0  # umol/(m²·s) of PAR at the crop from grow lights at full output
PPFD_PER_WM2 = 2.02  # umol/(m²·s) of PAR per W/m² of sunlight (about 45 % of its energy is PAR, at 4.57 umol/J)
# --- Cover and leaves ------------------------------------------------------------------------------------------------
COVER_INSIDE_EXCHANGE = 7.0  # W/(m²·K) between the inside air (and crop) and the cover's inner surface
SKY_COOLING = 8.0  # K by which a clear night sky is colder than the outside air, as the cover sees it
LEAF_EXCHANGE = 30.0  # W/(m²·K) of floor between canopy and air (leaf area index ~3, both sides)
LEAF_ABSORBED = 0.6  # share of the crop radiation the leaves absorb
LEAF_TO_COVER = 3.0  # W/(m²·K) of floor: the canopy's net long-wave exchange with the cover
#: kg/(m²·s) of fog at full output (a high-pressure line: a 5 l/h nozzle every 3 m²), evaporating as far as the air
#: is dry
MIST_RATE = 1.5 / 3600
CO2_DOSING = 5000.0 / 3600  # mg/(m²·s) of CO2 from an enrichment burner or bottle at full output (5 g/m²/h)
MG_PER_M3_PER_PPM = 1.8  # mg/m³ of CO2 per ppm
PHOTOSYNTHESIS_MAX = 0.8  # mg CO2/(m²·s) taken up by a canopy in full light and ample CO2
LIGHT_HALF_SATURATION = 250.0  # W/m² of crop radiation at which uptake is half its light-saturated value
CO2_HALF_SATURATION = 500.0  # ppm above the compensation point at which uptake is half its CO2-saturated value
CO2_COMPENSATION = 50.0  # ppm at which photosynthesis and photorespiration balance
DARK_RESPIRATION = 0.05  # mg CO2/(m²·s) released by crop and soil, day and night

# --- Soil ------------------------------------------------------------------------------------------------------------
ROOT_ZONE_DEPTH = 200.0  # mm of soil the roots and the probe see: 2 mm of water = 1 % volumetric moisture
FIELD_CAPACITY = 38.0  # % above which water drains away
DRAINAGE_TIME = 3600.0  # s, time constant of drainage above field capacity
SATURATION = 48.0  # %, all pores full
WILTING_POINT = 12.0  # % at which roots can take no more water
STRESS_ONSET = 22.0  # % below which a drying crop closes its stomata and transpires less


class SimulatedFault(StrictModel):
    """A fault the simulation injects by itself, counted from the daemon's start. A test aid: the watchdog test hangs
    a sensor with it, and an installer can try alert rules on the demo."""

    sensor: Identifier = Field(description="id of a simulated sensor")
    kind: FaultKind
    after: Duration = Field(default=0.0, description="when the fault starts, after the daemon started")
    for_: Duration | None = Field(default=None, alias="for", description="how long it lasts; null: until the stop")


class SimulationConfig(StrictModel):
    """The simulated greenhouse: outside climate (defaults: Khorramabad, ~1150 m), structure and equipment."""

    seed: int = Field(default=1, description="seed of the sensor noise: the same seed gives the same readings")
    july_max_temperature: float = Field(default=37.0, description="outside daily maximum in mid-July, °C")
    july_min_temperature: float = Field(default=17.0, description="outside daily minimum in mid-July, °C")
    january_max_temperature: float = Field(default=10.0, description="outside daily maximum in mid-January, °C")
    january_min_temperature: float = Field(default=-2.0, description="outside daily minimum in mid-January, °C")
    july_humidity: float = Field(default=25.0, ge=0, le=100,
                                 description="outside relative humidity in mid-July at the day's mean temperature, %")
    january_humidity: float = Field(default=70.0, ge=0, le=100,
                                    description="outside relative humidity in mid-January at the day's mean "
                                                "temperature, %")
    floor_area: float = Field(default=500.0, gt=0, description="greenhouse floor area, m²")
    height: float = Field(default=4.0, gt=0, description="mean inside height, m (volume = floor_area × height)")
    cover_transmittance: float = Field(default=0.7, ge=0, le=1,
                                       description="share of sunlight the cover lets through (dusty film ~0.6)")
    cover_u_value: float = Field(default=6.0, gt=0,
                                 description="heat loss through the cover, W/(m²·K): single film ~6, double ~4")
    heater_power: float = Field(default=60.0, ge=0, description="heat output of each heater at full power, kW; to "
                                "hold the inside at T with T_out outside it takes about (T - T_out) × floor_area × "
                                "(1.6 × cover_u_value + height / 3) W")
    fan_flow: float = Field(default=10.0, ge=0, description="air flow of each fan at full speed, m³/s")
    vent_flow: float = Field(default=5.0, ge=0, description="air exchange through each fully open vent, m³/s")
    irrigation_rate: float = Field(default=8.0, ge=0, description="water a running pump gives its zone, mm/h")
    initial_soil_moisture: float = Field(default=30.0, ge=0, le=SATURATION,
                                         description="soil moisture of every zone at start, volumetric %")
    kept_between: tuple[float, float] | None = Field(
        default=None, description="inside °C range the greenhouse was kept in before the simulation starts (heated "
        "and ventilated by whoever ran it before the gateway, humidity at most 85 %), so the first readings are those "
        "of a greenhouse in use; null: it starts as if left alone (near freezing on a winter night, over 40 °C on a "
        "summer afternoon)")

    @field_validator("kept_between")
    @classmethod
    def _low_then_high(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError(f"give the low end first: [{value[1]:g}, {value[0]:g}]")
        return value
    faults: list[SimulatedFault] = Field(default_factory=list,
                                         description="test aid: faults the simulation injects by itself")


class SimulatedActuator(Protocol):
    """What the model needs from an output: the Actuator protocol's identity and current value."""

    kind: str
    zone: str | None

    @property
    def value(self) -> float: ...


@dataclass(frozen=True, slots=True)
class GreenhouseState:
    """The greenhouse at one instant, as a perfect sensor would see it."""

    time: float  # UTC unix seconds
    air_temperature: float  # °C
    humidity: float  # % relative humidity
    co2: float  # ppm
    light: float  # lx at the crop
    soil_moisture: Mapping[str, float]  # volumetric %, by zone
    outside_temperature: float  # °C
    outside_humidity: float  # %
    leaf_temperature: float = math.nan  # °C, of the canopy
    cover_temperature: float = math.nan  # °C, of the cover's inner surface
    par: float = 0.0  # umol/(m²·s) at the crop


@dataclass(frozen=True, slots=True)
class Weather:
    """Outside conditions at one instant."""

    temperature: float  # °C
    vapour: float  # g/m³ of water vapour
    irradiance: float  # W/m² of sunlight on a horizontal surface


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault injected into one sensor; ``state`` is the greenhouse when it started (what a stuck sensor repeats)."""

    kind: str
    until: float | None
    state: GreenhouseState


@dataclass(frozen=True, slots=True)
class _Outputs:
    """Summed actuator outputs (0..1 each) by kind, and pump output by zone (``None``: a pump for every zone)."""

    by_kind: Mapping[str, float]
    pumps: Mapping[str | None, float]

    def watering(self, zone: str) -> float:
        return self.pumps.get(zone, 0.0) + self.pumps.get(None, 0.0)


_NO_OUTPUTS = _Outputs(by_kind={}, pumps={})


# --- Sun, weather and moist air: pure functions ----------------------------------------------------------------------

def day_of_year(t: float) -> float:
    """Fractional day of the year (0 = 1 January 00:00 UTC), counted in tropical years since 2000."""
    return ((t - UNIX_2000) / 86400.0) % TROPICAL_YEAR


def solar_declination(doy: float) -> float:
    """Angle of the sun north of the equator, radians (Cooper's formula)."""
    return math.radians(23.45) * math.sin(2 * math.pi * (285.0 + doy) / 365.0)


def equation_of_time(doy: float) -> float:
    """Minutes by which the sundial runs ahead of mean solar time (orbit eccentricity and axial tilt)."""
    b = 2 * math.pi * (doy - 80.0) / 364.0
    return 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)


def solar_hour(t: float, longitude: float) -> float:
    """Apparent solar time in hours (12 = the sun due south): UTC shifted by longitude and the equation of time."""
    utc_hours = (t % 86400.0) / 3600.0
    return (utc_hours + longitude / 15.0 + equation_of_time(day_of_year(t)) / 60.0) % 24.0


def solar_elevation(t: float, latitude: float, longitude: float) -> float:
    """Angle of the sun above the horizon, degrees: sin(h) = sin φ sin δ + cos φ cos δ cos(hour angle)."""
    phi = math.radians(latitude)
    delta = solar_declination(day_of_year(t))
    hour_angle = math.radians(15.0 * (solar_hour(t, longitude) - 12.0))
    sin_h = math.sin(phi) * math.sin(delta) + math.cos(phi) * math.cos(delta) * math.cos(hour_angle)
    return math.degrees(math.asin(max(-1.0, min(1.0, sin_h))))


def sunrise_hour(doy: float, latitude: float) -> float:
    """Solar time of sunrise, hours: cos(hour angle) = -tan φ tan δ (clamped for polar day and night)."""
    cos_omega = -math.tan(math.radians(latitude)) * math.tan(solar_declination(doy))
    return 12.0 - math.degrees(math.acos(max(-1.0, min(1.0, cos_omega)))) / 15.0


def clear_sky_irradiance(elevation: float) -> float:
    """Sunlight on a horizontal surface under a clear sky, W/m² (Meinel's air-mass attenuation, +10 % diffuse)."""
    if elevation <= 0.0:
        return 0.0
    sin_h = math.sin(math.radians(elevation))
    direct = SOLAR_CONSTANT * 0.7 ** ((1.0 / sin_h) ** 0.678)
    return 1.1 * direct * sin_h


def diurnal_shape(hour: float, sunrise: float) -> float:
    """Where the day's temperature sits between its minimum (0, at sunrise) and maximum (1, mid-afternoon)."""
    if sunrise <= hour <= WARMEST_HOUR:
        return (1.0 - math.cos(math.pi * (hour - sunrise) / (WARMEST_HOUR - sunrise))) / 2.0
    cooling = (hour - WARMEST_HOUR) % 24.0
    return (1.0 + math.cos(math.pi * cooling / (24.0 - WARMEST_HOUR + sunrise))) / 2.0


def seasonal(doy: float, january: float, july: float) -> float:
    """A yearly cosine through the mid-January and mid-July values."""
    season = math.cos(2 * math.pi * (doy - HOTTEST_DAY) / TROPICAL_YEAR)  # 1 in mid-July, -1 in mid-January
    return (july + january) / 2.0 + (july - january) / 2.0 * season


def daily_mean_temperature(t: float, cfg: SimulationConfig) -> float:
    """The outside day's mean temperature at this time of year, °C (what the soil settles near)."""
    doy = day_of_year(t)
    return (seasonal(doy, cfg.january_max_temperature, cfg.july_max_temperature)
            + seasonal(doy, cfg.january_min_temperature, cfg.july_min_temperature)) / 2.0


def saturation_vapour_pressure(temperature: float) -> float:
    """Water vapour pressure over water at saturation, kPa (Tetens)."""
    return 0.6108 * math.exp(17.27 * temperature / (temperature + 237.3))


def vapour_density(pressure: float, temperature: float) -> float:
    """g/m³ of water vapour at a vapour pressure in kPa (ideal gas: 1e6 / R_v = 2166.8 g·K/(m³·kPa))."""
    return 2166.8 * pressure / (temperature + 273.15)


def vapour_pressure(density: float, temperature: float) -> float:
    """kPa exerted by ``density`` g/m³ of water vapour: the inverse of :func:`vapour_density`."""
    return density * (temperature + 273.15) / 2166.8


def saturation_density(temperature: float) -> float:
    """The most water vapour air at this temperature can hold, g/m³."""
    return vapour_density(saturation_vapour_pressure(temperature), temperature)


def relative_humidity(vapour: float, temperature: float) -> float:
    """Relative humidity, %, of air holding ``vapour`` g/m³, clamped to 0..100."""
    return max(0.0, min(100.0, 100.0 * vapour / saturation_density(temperature)))


def outside_weather(t: float, cfg: SimulationConfig, latitude: float, longitude: float) -> Weather:
    """Outside air and sun: seasonal daily extremes joined by the daily cycle; vapour steady over the day."""
    doy = day_of_year(t)
    t_max = seasonal(doy, cfg.january_max_temperature, cfg.july_max_temperature)
    t_min = seasonal(doy, cfg.january_min_temperature, cfg.july_min_temperature)
    shape = diurnal_shape(solar_hour(t, longitude), sunrise_hour(doy, latitude))
    temperature = t_min + (t_max - t_min) * shape
    day_humidity = seasonal(doy, cfg.january_humidity, cfg.july_humidity)
    vapour = day_humidity / 100.0 * saturation_density((t_max + t_min) / 2.0)
    irradiance = clear_sky_irradiance(solar_elevation(t, latitude, longitude))
    return Weather(temperature, min(vapour, saturation_density(temperature)), irradiance)


def relax(value: float, target: float, rate: float, dt: float) -> float:
    """Exact step of dx/dt = rate·(target - x): exponential approach, stable for any step length."""
    return target + (value - target) * math.exp(-rate * dt)


def water_stress(moisture: float) -> float:
    """Share of full transpiration a crop manages at this soil moisture: 1 when moist, 0 at the wilting point."""
    return max(0.0, min(1.0, (moisture - WILTING_POINT) / (STRESS_ONSET - WILTING_POINT)))


def photosynthesis(radiation: float, co2: float) -> float:
    """Canopy CO2 uptake, mg/(m²·s): saturating in light and in CO2 above the compensation point."""
    light_factor = radiation / (radiation + LIGHT_HALF_SATURATION)
    excess = co2 - CO2_COMPENSATION
    return PHOTOSYNTHESIS_MAX * light_factor * excess / (excess + CO2_HALF_SATURATION)


def soil_step(moisture: float, transpiration: float, watering: float, dt: float) -> float:
    """Root-zone water balance, volumetric %: irrigation in, transpiration out (both mm/s), drainage above capacity."""
    drainage = max(0.0, moisture - FIELD_CAPACITY) / DRAINAGE_TIME
    change = (watering - transpiration) * 100.0 / ROOT_ZONE_DEPTH - drainage
    return max(0.0, min(SATURATION, moisture + change * dt))


# --- The model -------------------------------------------------------------------------------------------------------

class GreenhouseModel:
    """One greenhouse air volume with its crop and soil zones, integrated lazily up to ``clock.time()``.

    Thread-safe: sensors may be read from scheduler threads while actuators are switched from others.
    """

    def __init__(self, cfg: SimulationConfig, clock: Any, *, latitude: float = KHORRAMABAD_LATITUDE,
                 longitude: float = KHORRAMABAD_LONGITUDE):
        self.config = cfg
        self.clock = clock
        self.latitude = latitude
        self.longitude = longitude
        self._volume = cfg.floor_area * cfg.height
        self._heat_capacity = AIR_HEAT_CAPACITY * self._volume + MASS_HEAT_CAPACITY * cfg.floor_area
        self._floor_capacity = FLOOR_HEAT_CAPACITY * cfg.floor_area
        self._floor_exchange = FLOOR_EXCHANGE * cfg.floor_area
        self._cover_conductance = cfg.cover_u_value * COVER_TO_FLOOR * cfg.floor_area
        self._leakage_flow = LEAKAGE * self._volume / 3600.0
        self._lock = threading.RLock()  # re-entrant: attach() and inject_fault() go through add_zone() / state()
        self._actuators: list[SimulatedActuator] = []
        self._outputs = _NO_OUTPUTS
        self._soil: dict[str, float] = {}
        self._faults: dict[str, Fault] = {}
        self._fault_changed = threading.Condition(self._lock)
        self._snapshot: GreenhouseState | None = None
        start = clock.time()
        self._scheduled = sorted(((start + f.after, f) for f in cfg.faults), key=lambda item: item[0])
        self._t = start - SPIN_UP
        weather = self._weather(self._t)
        self._keep = cfg.kept_between  # only while spinning up: as whoever ran the greenhouse before kept it
        self._temperature = self._kept(weather.temperature)
        self._floor = self._kept(daily_mean_temperature(self._t, cfg))
        self._vapour = min(weather.vapour, saturation_density(self._temperature))
        self._co2 = OUTSIDE_CO2
        self._advance(start)
        self._keep = None

    # public API

    def attach(self, actuator: SimulatedActuator) -> None:
        """Let an output act on the greenhouse through its ``kind``, ``zone`` and ``value``. Idempotent."""
        with self._lock:
            if any(known is actuator for known in self._actuators):
                return
            self._actuators.append(actuator)
            if actuator.kind == "pump" and actuator.zone is not None:
                self.add_zone(actuator.zone)

    def add_zone(self, name: str) -> None:
        """Add an irrigation zone, its soil at the configured initial moisture. Idempotent."""
        with self._lock:
            if name not in self._soil:
                self._soil[name] = self.config.initial_soil_moisture
                self._snapshot = None

    @property
    def zones(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._soil)

    def state(self) -> GreenhouseState:
        """The greenhouse now, integrating up to the clock's time first."""
        with self._lock:
            self._advance(self.clock.time())
            if self._snapshot is None:
                self._snapshot = self._make_snapshot()
            return self._snapshot

    def inject_fault(self, sensor_id: str, kind: str, until: float | None = None) -> None:
        """Make a sensor misbehave until ``until`` (UTC unix seconds) or ``clear_fault``; a spike lasts one read."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
        with self._lock:
            self._faults[sensor_id] = Fault(kind, until, self.state())
            self._fault_changed.notify_all()

    def clear_fault(self, sensor_id: str) -> None:
        with self._lock:
            self._faults.pop(sensor_id, None)
            self._fault_changed.notify_all()

    def fault(self, sensor_id: str) -> Fault | None:
        """The fault a sensor suffers now, if any; one whose ``until`` has passed is cleared."""
        with self._lock:
            now = self.clock.time()
            while self._scheduled and self._scheduled[0][0] <= now:  # config faults whose time has come
                begin, planned = self._scheduled.pop(0)
                until = None if planned.for_ is None else begin + planned.for_
                self._faults[planned.sensor] = Fault(planned.kind, until, self.state())
            fault = self._faults.get(sensor_id)
            if fault is not None and fault.until is not None and self.clock.time() >= fault.until:
                del self._faults[sensor_id]
                return None
            return fault

    def wait_while_hung(self, sensor_id: str) -> None:
        """Block while a sensor suffers a ``hang`` fault: until it is cleared, replaced, or its ``until`` passed."""
        with self._fault_changed:  # waiting releases the model's lock: the rest of the greenhouse goes on
            while (fault := self.fault(sensor_id)) is not None and fault.kind == "hang":
                self._fault_changed.wait(HANG_POLL)

    # integration

    def _advance(self, now: float) -> None:
        """Integrate from the last state to ``now`` in equal sub-steps of at most MAX_STEP seconds."""
        elapsed = now - self._t
        if elapsed < 0:  # the clock stepped back (NTP, a test): carry the state on from the new time
            self._t = now
            self._snapshot = None
            return
        if elapsed < MIN_STEP:
            return
        if elapsed > MAX_CATCH_UP:
            self._t = now - MAX_CATCH_UP
        self._outputs = self._read_outputs()
        steps = math.ceil((now - self._t) / MAX_STEP)
        dt = (now - self._t) / steps
        for i in range(steps):
            self._step(self._t + i * dt, dt)
        self._t = now
        self._snapshot = None

    def _read_outputs(self) -> _Outputs:
        by_kind: dict[str, float] = defaultdict(float)
        pumps: dict[str | None, float] = defaultdict(float)
        for actuator in self._actuators:
            if actuator.kind == "pump":
                pumps[actuator.zone] += actuator.value
            else:
                by_kind[actuator.kind] += actuator.value
        return _Outputs(by_kind=dict(by_kind), pumps=dict(pumps))

    def _kept(self, temperature: float) -> float:
        return temperature if self._keep is None else max(self._keep[0], min(self._keep[1], temperature))

    def _weather(self, t: float) -> Weather:
        return outside_weather(t, self.config, self.latitude, self.longitude)

    def _step(self, t: float, dt: float) -> None:
        """One sub-step: energy, water vapour and CO2 balances of the air, then the water balance of each zone."""
        cfg, out = self.config, self._outputs.by_kind
        weather = self._weather(t)
        sun = weather.irradiance * cfg.cover_transmittance
        crop_radiation = sun + out.get("light", 0.0) * GROW_LIGHT_RADIATION
        flow = self._leakage_flow + out.get("fan", 0.0) * cfg.fan_flow + out.get("vent", 0.0) * cfg.vent_flow

        demand = self._transpiration_demand(crop_radiation)
        by_zone = {zone: demand * water_stress(moisture) for zone, moisture in self._soil.items()}
        canopy = sum(by_zone.values()) / len(by_zone) if by_zone else demand
        dryness = 1.0 - relative_humidity(self._vapour, self._temperature) / 100.0
        mist = out.get("mister", 0.0) * MIST_RATE * dryness
        water = (canopy + mist) * cfg.floor_area  # kg/s evaporated into the air

        self._temperature = self._kept(self._next_temperature(weather, sun, flow, water, dt))
        self._floor = relax(self._floor, self._temperature + FLOOR_SUN * SOLAR_ABSORBED * sun / FLOOR_EXCHANGE,
                            self._floor_exchange / self._floor_capacity, dt)
        vapour = relax(self._vapour, weather.vapour + 1000.0 * water / flow, flow / self._volume, dt)
        self._vapour = min(vapour, saturation_density(self._temperature))  # the excess condenses on the cover
        if self._keep is not None:  # kept: ventilated as well as heated, never left dripping
            self._vapour = min(self._vapour, KEPT_HUMIDITY / 100.0 * saturation_density(self._temperature))
        self._co2 = self._next_co2(crop_radiation, flow, dt)
        for zone, transpiration in by_zone.items():
            watering = self._outputs.watering(zone) * cfg.irrigation_rate / 3600.0
            self._soil[zone] = soil_step(self._soil[zone], transpiration, watering, dt)

    def _transpiration_demand(self, crop_radiation: float) -> float:
        """kg/(m²·s) a well-watered canopy transpires: driven by radiation and by the air's vapour-pressure deficit."""
        deficit = max(0.0, saturation_vapour_pressure(self._temperature)
                      - vapour_pressure(self._vapour, self._temperature))
        return (TRANSPIRATION_RADIATION * crop_radiation + TRANSPIRATION_VPD * deficit) / LATENT_HEAT

    def _next_temperature(self, weather: Weather, sun: float, flow: float, water: float, dt: float) -> float:
        """Heat balance of the air with its crop: sun, lamps, heaters and the floor in; evaporation, the cover and the
        exchanged air out. The floor (a slow heat store) is held at its temperature over the step."""
        cfg, out = self.config, self._outputs.by_kind
        gains = (cfg.floor_area * ((1.0 - FLOOR_SUN) * SOLAR_ABSORBED * sun + out.get("light", 0.0) * GROW_LIGHT_POWER)
                 + out.get("heater", 0.0) * cfg.heater_power * 1000.0
                 - LATENT_HEAT * water)
        outside = self._cover_conductance + AIR_HEAT_CAPACITY * flow  # W/K to the outside
        conductance = outside + self._floor_exchange
        target = (gains + outside * weather.temperature + self._floor_exchange * self._floor) / conductance
        return relax(self._temperature, target, conductance / self._heat_capacity, dt)

    def _next_co2(self, crop_radiation: float, flow: float, dt: float) -> float:
        """CO2 balance: dosing and respiration in, photosynthesis out, exchange with outside air."""
        net = (self._outputs.by_kind.get("co2", 0.0) * CO2_DOSING + DARK_RESPIRATION
               - photosynthesis(crop_radiation, self._co2))  # mg/(m²·s)
        source = net * self.config.floor_area / MG_PER_M3_PER_PPM  # ppm·m³/s
        return max(0.0, relax(self._co2, OUTSIDE_CO2 + source / flow, flow / self._volume, dt))

    def _cover_temperature(self, weather: Weather) -> float:
        """The cover's inner surface, °C: between the inside air and the outside, nearer the outside the worse the
        cover insulates; at night the sky cools it below the outside air (a clear sky, as near Khorramabad)."""
        night = 1.0 if weather.irradiance <= 0.0 else 0.0
        outside = weather.temperature - SKY_COOLING * night
        return self._temperature - self.config.cover_u_value / COVER_INSIDE_EXCHANGE * (self._temperature - outside)

    def _leaf_temperature(self, crop_radiation: float, transpiration: float, cover: float) -> float:
        """The canopy, °C: warmed by the light it absorbs, cooled by transpiring and by radiating to the cover."""
        balance = (LEAF_ABSORBED * crop_radiation - LATENT_HEAT * transpiration
                   - LEAF_TO_COVER * (self._temperature - cover))
        return self._temperature + balance / LEAF_EXCHANGE

    def _make_snapshot(self) -> GreenhouseState:
        weather = self._weather(self._t)
        sun = weather.irradiance * self.config.cover_transmittance
        sunlight = sun * LUX_PER_WM2
        lamps = self._outputs.by_kind.get("light", 0.0)
        crop_radiation = sun + lamps * GROW_LIGHT_RADIATION
        demand = self._transpiration_demand(crop_radiation)
        stress = [water_stress(m) for m in self._soil.values()]
        transpiration = demand * (sum(stress) / len(stress) if stress else 1.0)
        cover = self._cover_temperature(weather)
        return GreenhouseState(
            time=self._t,
            air_temperature=self._temperature,
            humidity=relative_humidity(self._vapour, self._temperature),
            co2=self._co2,
            light=sunlight + self._outputs.by_kind.get("light", 0.0) * GROW_LIGHT_LUX,
            soil_moisture=MappingProxyType(dict(self._soil)),
            outside_temperature=weather.temperature,
            outside_humidity=relative_humidity(weather.vapour, weather.temperature),
            leaf_temperature=self._leaf_temperature(crop_radiation, transpiration, cover),
            cover_temperature=cover,
            par=sun * PPFD_PER_WM2 + lamps * GROW_LIGHT_PPFD,
        )


# --- Simulated sensors -----------------------------------------------------------------------------------------------

#: Noise of a typical greenhouse sensor, one standard deviation: (absolute, share of the value).
NOISE: dict[str, tuple[float, float]] = {
    "temperature": (0.1, 0.0),
    "humidity": (0.8, 0.0),
    "soil_moisture": (0.4, 0.0),
    "light": (2.0, 0.02),
    "co2": (8.0, 0.01),
    "par": (1.0, 0.02),
}
#: Decimal places a typical sensor reports.
RESOLUTION: dict[str, int] = {"temperature": 1, "humidity": 1, "soil_moisture": 1, "light": 0, "co2": 0, "par": 0}
#: What a sensor can report at all (its measuring range); noise never takes a reading outside it.
SENSOR_RANGE: dict[str, tuple[float, float]] = {
    "temperature": (-40.0, 125.0),
    "humidity": (0.0, 100.0),
    "soil_moisture": (0.0, 100.0),
    "light": (0.0, 188_000.0),
    "co2": (0.0, 40_000.0),
    "par": (0.0, 4_000.0),
}


def _zone_problem(measures: list[str] | tuple[str, ...], zone: str | None) -> str | None:
    if "soil_moisture" in measures and zone is None:
        return "zone is required when measuring soil_moisture: name the irrigation zone the probe sits in"
    if "soil_moisture" not in measures and zone is not None:
        return "zone applies only to soil_moisture, which this sensor does not measure"
    return None


class SimulatedSensorConfig(SensorConfig):
    type: Literal["simulated"]
    measures: list[SimQuantity] = Field(min_length=1, description="quantities this sensor reports")
    zone: str | None = Field(default=None, validate_default=True,
                             description="irrigation zone whose soil the probe sits in (soil_moisture only)")
    noise: float = Field(default=1.0, ge=0, description="multiplier on realistic sensor noise; 0 for exact values")
    at: SimSurface = Field(default="air", description="where its temperature is taken: air, leaf (an infrared "
                           "canopy sensor) or cover (the roof's inner surface)")

    @field_validator("measures")
    @classmethod
    def _no_duplicates(cls, measures: list[str]) -> list[str]:
        repeated = sorted({quantity for quantity in measures if measures.count(quantity) > 1})
        if repeated:
            raise ValueError(f"measures lists {', '.join(repeated)} more than once")
        return measures

    @field_validator("zone")
    @classmethod
    def _zone_matches_measures(cls, zone: str | None, info: ValidationInfo) -> str | None:
        measures = info.data.get("measures")
        problem = _zone_problem(measures, zone) if measures is not None else None
        if problem:
            raise ValueError(problem)
        return zone

    def quantities(self) -> tuple[str, ...]:
        return tuple(self.measures)


class SimulatedSensor:
    """A sensor reading the simulated greenhouse, with seeded noise and injectable faults."""

    Config = SimulatedSensorConfig

    def __init__(self, id: str, model: GreenhouseModel, measures: list[str] | tuple[str, ...], *,
                 zone: str | None = None, noise: float = 1.0, at: str = "air"):
        problem = _zone_problem(measures, zone)
        if problem:
            raise ValueError(f"sensor {id!r}: {problem}")
        self.id = id
        self._model = model
        self._quantities = tuple(measures)
        self._zone = zone
        self._noise = noise
        self._at = at
        self._rng = random.Random(f"{model.config.seed}:{id}")
        self._stuck: tuple[Fault, list[Sample]] | None = None
        if zone is not None:
            model.add_zone(zone)

    @classmethod
    def from_config(cls, cfg: SimulatedSensorConfig, ctx: HardwareContext) -> "SimulatedSensor":
        if ctx.simulation is None:
            raise HardwareError(f"sensor {cfg.id!r} is simulated, but the hardware backend is not 'simulated'")
        return cls(cfg.id, ctx.simulation, cfg.measures, zone=cfg.zone, noise=cfg.noise, at=cfg.at)

    def quantities(self) -> tuple[str, ...]:
        return self._quantities

    def read(self) -> list[Sample]:
        """Read every quantity once; never raises (a failure is an error sample for each quantity)."""
        try:
            return self._read()
        except Exception as exc:  # the Sensor contract: report any failure as data, never as an exception
            log.warning("simulated sensor %s failed: %s", self.id, exc, exc_info=True)
            return [Sample.error(quantity, f"simulation failed: {exc}") for quantity in self._quantities]

    def close(self) -> None:
        """Nothing to release: the model belongs to whoever built it."""

    def _read(self) -> list[Sample]:
        fault = self._model.fault(self.id)
        if fault is None:
            return self._measure(self._model.state())
        if fault.kind == "dropout":
            return [Sample.error(quantity, DROPOUT_REASON) for quantity in self._quantities]
        if fault.kind == "stuck":
            if self._stuck is None or self._stuck[0] is not fault:
                self._stuck = (fault, self._measure(fault.state))
            return list(self._stuck[1])
        if fault.kind == "hang":
            began = self._model.clock.time()
            self._model.wait_while_hung(self.id)
            waited = self._model.clock.time() - began
            return [Sample.error(quantity, f"simulated hang: no answer for {waited:.1f}s")
                    for quantity in self._quantities]
        self._model.clear_fault(self.id)  # a spike is a single wild read
        return [Sample(quantity, PLAUSIBLE[quantity][1] * 1.5, UNITS[quantity]) for quantity in self._quantities]

    def _measure(self, state: GreenhouseState) -> list[Sample]:
        return [Sample(quantity, self._sensed(quantity, self._true_value(quantity, state)), UNITS[quantity])
                for quantity in self._quantities]

    def _true_value(self, quantity: str, state: GreenhouseState) -> float:
        if quantity == "soil_moisture":
            return state.soil_moisture[self._zone]
        if quantity == "temperature":
            return {"air": state.air_temperature, "leaf": state.leaf_temperature,
                    "cover": state.cover_temperature}[self._at]
        return getattr(state, quantity)

    def _sensed(self, quantity: str, value: float) -> float:
        """The true value as the sensor reports it: with noise, within its range, at its resolution."""
        absolute, relative = NOISE[quantity]
        noisy = value + self._rng.gauss(0.0, (absolute + relative * abs(value)) * self._noise)
        low, high = SENSOR_RANGE[quantity]
        return round(max(low, min(high, noisy)), RESOLUTION[quantity])
