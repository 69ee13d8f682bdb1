"""Agronomy formulas: the quantities growers reason in, computed from temperature, humidity and light. Pure: no I/O.

Sources (docs/agronomy.md gives each quantity's definition, unit and typical greenhouse bands):

- Allen, Pereira, Raes, Smith (1998), *Crop evapotranspiration*, FAO Irrigation and Drainage Paper 56 ("FAO-56"):
  saturation vapour pressure (eq. 11), actual vapour pressure from relative humidity (eq. 19 with one humidity),
  slope of the vapour pressure curve (eq. 13), psychrometric constant (eq. 8), extraterrestrial radiation (eq. 21,
  with eqs. 23-25), Hargreaves reference evapotranspiration (eq. 52, Hargreaves and Samani 1985), latent heat
  2.45 MJ/kg.
- Dew point: the inverse of the same Tetens form (FAO-56 eq. 11 solved for T), so dew point and VPD agree exactly:
  VPD is zero when the air is at its dew point.
- Lux to PPFD for sunlight: 0.0185 umol/(m2 s) per lux (Thimijan and Heins 1983, HortScience 18:818-822, table 3:
  sunlight 54 lux per umol/(m2 s)).
- Global radiation from PPFD: 2.02 umol of PAR per joule of global solar radiation (about 45 % of sunlight's energy
  is PAR, at 4.57 umol/J: McCree 1972; Meek et al. 1984 measured 2.04).
- Makkink (1957) radiation-based reference evapotranspiration, in the form of de Bruin (1987) and Hansen (1984):
  ET0 = 0.61 delta / (delta + gamma) Rs / lambda - 0.12 mm/day.
- Growing degree days: McMaster and Wilhelm (1997), method 2 (averaging, with the day's maximum and minimum each held
  between the base and the cap before they are averaged).

Functions take plain floats and return floats; an input that is not a finite number (a failed reading) raises
:class:`ValueError` naming it, never a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: FAO-56 eq. 11 (Tetens): es(T) = 0.6108 exp(17.27 T / (T + 237.3)) kPa.
TETENS_A = 0.6108  # kPa
TETENS_B = 17.27
TETENS_C = 237.3  # °C
GAS_CONSTANT_VAPOUR = 461.5  # J/(kg K)
SOLAR_CONSTANT = 0.0820  # MJ/(m2 min), FAO-56 eq. 21
LATENT_HEAT = 2.45  # MJ/kg, FAO-56 (at 20 °C)
LUX_TO_PPFD_SUNLIGHT = 0.0185  # umol/(m2 s) per lux (Thimijan and Heins 1983)
PPFD_PER_WATT_GLOBAL = 2.02  # umol/J: PPFD per W/m2 of global (shortwave) radiation
STANDARD_PRESSURE = 101.3  # kPa at sea level (FAO-56 eq. 7 at z = 0)


def _number(name: str, value: float | None) -> float:
    if value is None or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} is not a number ({value!r})")
    return float(value)


def _humidity(rh: float | None) -> float:
    rh = _number("relative humidity", rh)
    if not 0.0 <= rh <= 100.0:
        raise ValueError(f"relative humidity {rh:g} % is outside 0..100")
    return rh


def _temperature(name: str, t: float | None) -> float:
    t = _number(name, t)
    if t <= -TETENS_C:
        raise ValueError(f"{name} {t:g} °C is below the formula's range")
    return t


# ----------------------------------------------------------------------------------------------- moist air


def saturation_vapour_pressure(t: float) -> float:
    """es(T), kPa: the vapour pressure of air saturated at ``t`` °C (FAO-56 eq. 11). Over water, also below 0 °C."""
    t = _temperature("temperature", t)
    return TETENS_A * math.exp(TETENS_B * t / (t + TETENS_C))


def actual_vapour_pressure(t: float, rh: float) -> float:
    """ea, kPa: the vapour pressure of air at ``t`` °C and ``rh`` % relative humidity (FAO-56 eq. 19 with one RH)."""
    return saturation_vapour_pressure(t) * _humidity(rh) / 100.0


def vpd(t: float, rh: float) -> float:
    """Air vapour pressure deficit, kPa: es(T) - ea = es(T) (1 - RH/100)."""
    return saturation_vapour_pressure(t) * (1.0 - _humidity(rh) / 100.0)


def leaf_vpd(t_leaf: float, t_air: float, rh: float) -> float:
    """Leaf-to-air vapour pressure deficit, kPa: es at the leaf's temperature minus the air's ea. Negative when the
    leaf is colder than the air's dew point (water condenses on it)."""
    return saturation_vapour_pressure(_temperature("leaf temperature", t_leaf)) - actual_vapour_pressure(t_air, rh)


def dew_point(t: float, rh: float) -> float:
    """Dew point, °C: the temperature at which the air's ea saturates, from FAO-56 eq. 11 solved for T:
    Td = 237.3 x / (17.27 - x) with x = ln(ea / 0.6108). Equals ``t`` at 100 % RH; undefined in perfectly dry air."""
    ea = actual_vapour_pressure(t, rh)
    if ea <= 0.0:
        raise ValueError("relative humidity 0 %: dry air has no dew point")
    x = math.log(ea / TETENS_A)
    return TETENS_C * x / (TETENS_B - x)


def dew_margin(surface_t: float, t: float, rh: float) -> float:
    """How far, K, a surface (the cover, a leaf) is above the air's dew point: at or below 0 water condenses on it."""
    return _number("surface temperature", surface_t) - dew_point(t, rh)


def vapour_density(ea: float, t: float) -> float:
    """g/m3 of water vapour exerting ``ea`` kPa at ``t`` °C (ideal gas: rho = e / (Rv T))."""
    return _number("vapour pressure", ea) * 1e6 / (GAS_CONSTANT_VAPOUR * (_temperature("temperature", t) + 273.15))


def absolute_humidity(t: float, rh: float) -> float:
    """Absolute humidity, g/m3: the water vapour a cubic metre of the air holds."""
    return vapour_density(actual_vapour_pressure(t, rh), t)


def humidity_deficit(t: float, rh: float) -> float:
    """Humidity deficit, g/m3: how much more vapour the air could hold at its temperature (saturation - actual)."""
    return vapour_density(vpd(t, rh), t)


# ----------------------------------------------------------------------------------------------- light


def ppfd_from_lux(lux: float) -> float:
    """PPFD, umol/(m2 s), of sunlight measuring ``lux`` (0.0185 per lux, Thimijan and Heins 1983). Valid for sunlight
    only: lamps differ (HPS about 0.0122, white LEDs 0.013-0.02)."""
    lux = _number("illuminance", lux)
    if lux < 0:
        raise ValueError(f"illuminance {lux:g} lx is negative")
    return lux * LUX_TO_PPFD_SUNLIGHT


def light_integral(ppfd: float, seconds: float) -> float:
    """mol/m2 of photons received in ``seconds`` at ``ppfd`` umol/(m2 s): PPFD x dt / 10^6. Summed over a local day
    this is the daily light integral (DLI, mol/(m2 d))."""
    ppfd, seconds = _number("PPFD", ppfd), _number("duration", seconds)
    if ppfd < 0 or seconds < 0:
        raise ValueError("PPFD and duration must not be negative")
    return ppfd * seconds / 1e6


def dli(ppfd_samples: list[tuple[float, float]]) -> float:
    """DLI, mol/(m2 d), of a day given as ``(PPFD umol/(m2 s), seconds it lasted)`` pairs (hourly means, say)."""
    return sum(light_integral(ppfd, seconds) for ppfd, seconds in ppfd_samples)


def global_radiation_from_ppfd(ppfd: float) -> float:
    """Global (shortwave) radiation, W/m2, that carries ``ppfd`` umol/(m2 s) of sunlight's PAR (2.02 umol/J)."""
    return _number("PPFD", ppfd) / PPFD_PER_WATT_GLOBAL


# ----------------------------------------------------------------------------------------------- the day


@dataclass(frozen=True)
class DayTemperatures:
    """A day's temperature extremes and time-weighted mean, °C."""

    minimum: float
    mean: float
    maximum: float


def day_temperatures(samples: list[tuple[float, float]]) -> DayTemperatures:
    """Minimum, time-weighted mean and maximum of ``(temperature, seconds it lasted)`` pairs."""
    if not samples:
        raise ValueError("no temperatures for the day")
    total = sum(_number("duration", s) for _, s in samples)
    values = [_number("temperature", t) for t, _ in samples]
    mean = (sum(t * s for t, (_, s) in zip(values, samples)) / total) if total > 0 else sum(values) / len(values)
    return DayTemperatures(min(values), mean, max(values))


def growing_degree_days(t_min: float, t_max: float, base: float = 10.0, cap: float = 30.0) -> float:
    """Growing degree days, °C d, of one day: McMaster and Wilhelm (1997) method 2: the day's maximum and minimum are
    each held between ``base`` and ``cap`` (no growth below the base, none gained above the cap), then averaged, and
    the base subtracted. Never negative."""
    t_min, t_max = _number("minimum temperature", t_min), _number("maximum temperature", t_max)
    if t_min > t_max:
        raise ValueError(f"minimum {t_min:g} °C above maximum {t_max:g} °C")
    if cap <= base:
        raise ValueError("the cap must be above the base")
    low, high = (min(max(t, base), cap) for t in (t_min, t_max))
    return (low + high) / 2.0 - base


# ----------------------------------------------------------------------------------------------- evapotranspiration


def extraterrestrial_radiation(latitude: float, day_of_year: int) -> float:
    """Ra, MJ/(m2 d): the sun's radiation on a horizontal surface at the top of the atmosphere over a whole day
    (FAO-56 eq. 21, with the inverse relative distance eq. 23, the declination eq. 24 and the sunset hour angle
    eq. 25). ``day_of_year``: 1 = 1 January."""
    latitude = _number("latitude", latitude)
    if not -90.0 <= latitude <= 90.0:
        raise ValueError(f"latitude {latitude:g} is outside -90..90")
    if not 1 <= day_of_year <= 366:
        raise ValueError(f"day of year {day_of_year} is outside 1..366")
    phi = math.radians(latitude)
    dr = 1.0 + 0.033 * math.cos(2.0 * math.pi * day_of_year / 365.0)
    delta = 0.409 * math.sin(2.0 * math.pi * day_of_year / 365.0 - 1.39)
    omega_s = math.acos(max(-1.0, min(1.0, -math.tan(phi) * math.tan(delta))))
    return (24.0 * 60.0 / math.pi * SOLAR_CONSTANT * dr
            * (omega_s * math.sin(phi) * math.sin(delta) + math.cos(phi) * math.cos(delta) * math.sin(omega_s)))


def et0_hargreaves(t_min: float, t_max: float, ra: float, t_mean: float | None = None) -> float:
    """Reference evapotranspiration, mm/d, from temperature alone (Hargreaves and Samani 1985; FAO-56 eq. 52):
    0.0023 (Tmean + 17.8) (Tmax - Tmin)^0.5 Ra, with Ra in mm/d of evaporation (MJ/(m2 d) / 2.45). FAO-56 takes
    Tmean as (Tmax + Tmin) / 2 unless given."""
    t_min, t_max, ra = _number("minimum temperature", t_min), _number("maximum temperature", t_max), _number("Ra", ra)
    if t_min > t_max:
        raise ValueError(f"minimum {t_min:g} °C above maximum {t_max:g} °C")
    mean = (t_max + t_min) / 2.0 if t_mean is None else _number("mean temperature", t_mean)
    return max(0.0, 0.0023 * (mean + 17.8) * math.sqrt(t_max - t_min) * ra / LATENT_HEAT)


def vapour_pressure_slope(t: float) -> float:
    """delta, kPa/°C: slope of the saturation vapour pressure curve at ``t`` (FAO-56 eq. 13)."""
    t = _temperature("temperature", t)
    return 4098.0 * saturation_vapour_pressure(t) / (t + TETENS_C) ** 2


def psychrometric_constant(pressure: float = STANDARD_PRESSURE) -> float:
    """gamma, kPa/°C, at atmospheric ``pressure`` kPa (FAO-56 eq. 8)."""
    return 0.665e-3 * _number("pressure", pressure)


def et0_makkink(t_mean: float, rs: float, pressure: float = STANDARD_PRESSURE) -> float:
    """Reference evapotranspiration, mm/d, from the day's global radiation ``rs`` MJ/(m2 d) and mean temperature
    (Makkink 1957, as de Bruin 1987 gives it): 0.61 delta / (delta + gamma) Rs / 2.45 - 0.12. Needs no wind, which
    suits a greenhouse; never negative."""
    rs = _number("global radiation", rs)
    if rs < 0:
        raise ValueError(f"global radiation {rs:g} MJ/(m2 d) is negative")
    delta, gamma = vapour_pressure_slope(t_mean), psychrometric_constant(pressure)
    return max(0.0, 0.61 * delta / (delta + gamma) * rs / LATENT_HEAT - 0.12)
