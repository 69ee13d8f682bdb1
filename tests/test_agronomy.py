"""The agronomy formulas against published worked examples and tables, and their edge cases."""

from __future__ import annotations


import pytest

from edge.gateway import agronomy as a


# FAO-56 Annex 2, table 2.3: saturation vapour pressure es(T), kPa (and table 2.4: the slope delta, kPa/°C)
@pytest.mark.parametrize("t, es", [(1.0, 0.657), (10.0, 1.228), (20.0, 2.338), (25.0, 3.168), (30.0, 4.243),
                                   (40.0, 7.376)])
def test_saturation_vapour_pressure_matches_the_fao56_annex_table(t, es):
    assert a.saturation_vapour_pressure(t) == pytest.approx(es, abs=0.0006)


@pytest.mark.parametrize("t, slope", [(10.0, 0.082), (25.0, 0.189), (35.0, 0.311)])
def test_vapour_pressure_slope_matches_the_fao56_annex_table(t, slope):
    assert a.vapour_pressure_slope(t) == pytest.approx(slope, abs=0.0006)


def test_vpd_is_the_saturation_deficit_and_zero_in_saturated_air():
    assert a.vpd(25.0, 60.0) == pytest.approx(3.168 * 0.4, abs=0.001)
    assert a.actual_vapour_pressure(25.0, 60.0) == pytest.approx(1.901, abs=0.001)
    assert a.vpd(18.0, 100.0) == 0.0
    assert a.vpd(25.0, 0.0) == pytest.approx(3.168, abs=0.001)


def test_vpd_works_at_zero_and_below_freezing():
    assert a.saturation_vapour_pressure(0.0) == pytest.approx(0.6108)
    assert a.vpd(0.0, 50.0) == pytest.approx(0.3054)
    # over supercooled water, as FAO-56 eq. 11 gives it (Tetens): es(-10 °C) = 0.2857 kPa
    assert a.saturation_vapour_pressure(-10.0) == pytest.approx(0.2857, abs=0.0005)
    assert a.vpd(-10.0, 80.0) == pytest.approx(0.0571, abs=0.0005)


def test_leaf_vpd_uses_the_leaf_temperature_for_saturation_and_the_air_for_vapour():
    # a leaf 2 K cooler than 25 °C air at 60 %: es(23) - ea(air)
    assert a.leaf_vpd(23.0, 25.0, 60.0) == pytest.approx(a.saturation_vapour_pressure(23.0) - 1.9007, abs=0.001)
    assert a.leaf_vpd(25.0, 25.0, 60.0) == pytest.approx(a.vpd(25.0, 60.0))
    # a leaf below the air's dew point: negative (water condenses on it)
    assert a.leaf_vpd(15.0, 25.0, 60.0) < 0


# psychrometric tables (e.g. the ASHRAE/Smithsonian dew point tables, rounded to 0.1 K)
@pytest.mark.parametrize("t, rh, td", [(25.0, 60.0, 16.7), (20.0, 50.0, 9.3), (30.0, 80.0, 26.2),
                                       (10.0, 90.0, 8.4), (0.0, 70.0, -4.8)])
def test_dew_point_matches_a_psychrometric_table(t, rh, td):
    assert a.dew_point(t, rh) == pytest.approx(td, abs=0.1)


def test_dew_point_at_saturation_is_the_temperature_itself_even_below_zero():
    for t in (-15.0, 0.0, 12.5, 35.0):
        assert a.dew_point(t, 100.0) == pytest.approx(t, abs=1e-9)


def test_dew_point_inverts_saturation_vapour_pressure():
    td = a.dew_point(27.0, 45.0)
    assert a.saturation_vapour_pressure(td) == pytest.approx(a.actual_vapour_pressure(27.0, 45.0))


def test_dew_margin_of_a_cold_cover():
    # cover at 12 °C under 20 °C air at 70 %: dew point 14.4 °C, so 2.4 K below it: condensation
    assert a.dew_margin(12.0, 20.0, 70.0) == pytest.approx(12.0 - 14.36, abs=0.02)
    assert a.dew_margin(20.0, 20.0, 100.0) == pytest.approx(0.0, abs=1e-9)


def test_absolute_humidity_and_deficit_in_grams_per_cubic_metre():
    assert a.absolute_humidity(20.0, 100.0) == pytest.approx(17.3, abs=0.05)  # saturated air at 20 °C
    assert a.absolute_humidity(30.0, 100.0) == pytest.approx(30.4, abs=0.1)
    assert a.humidity_deficit(20.0, 100.0) == 0.0
    assert a.absolute_humidity(20.0, 60.0) + a.humidity_deficit(20.0, 60.0) == pytest.approx(
        a.absolute_humidity(20.0, 100.0))


def test_dli_sums_hourly_ppfd():
    # a bright hour at 1000 umol/(m2 s) is 3.6 mol/m2
    assert a.light_integral(1000.0, 3600.0) == pytest.approx(3.6)
    hourly = [0, 0, 0, 0, 0, 0, 50, 200, 400, 600, 800, 900, 950, 900, 800, 600, 400, 200, 50, 0, 0, 0, 0, 0]
    assert a.dli([(p, 3600.0) for p in hourly]) == pytest.approx(sum(hourly) * 0.0036)
    assert a.dli([(p, 3600.0) for p in hourly]) == pytest.approx(24.66)


def test_a_dark_day_has_no_light_integral():
    assert a.dli([(0.0, 3600.0)] * 24) == 0.0
    assert a.dli([]) == 0.0


def test_lux_of_sunlight_to_ppfd():
    assert a.ppfd_from_lux(100_000.0) == pytest.approx(1850.0)  # full summer sun
    assert a.ppfd_from_lux(0.0) == 0.0
    with pytest.raises(ValueError, match="negative"):
        a.ppfd_from_lux(-1.0)


def test_day_temperatures_are_time_weighted():
    day = a.day_temperatures([(10.0, 3600.0), (20.0, 3 * 3600.0)])
    assert (day.minimum, day.mean, day.maximum) == (10.0, 17.5, 20.0)


def test_growing_degree_days_with_base_and_cap():
    assert a.growing_degree_days(14.0, 26.0, base=10.0, cap=30.0) == pytest.approx(10.0)
    assert a.growing_degree_days(14.0, 36.0, base=10.0, cap=30.0) == pytest.approx(12.0)  # the max held at the cap
    assert a.growing_degree_days(4.0, 20.0, base=10.0, cap=30.0) == pytest.approx(5.0)  # the min raised to the base
    assert a.growing_degree_days(-8.0, 6.0, base=10.0, cap=30.0) == 0.0  # a cold day: no growth, never negative
    with pytest.raises(ValueError, match="above maximum"):
        a.growing_degree_days(20.0, 10.0)


def test_extraterrestrial_radiation_fao56_example_8():
    # FAO-56 Example 8: 3 September (day 246) at 20°S: Ra = 32.2 MJ/(m2 d)
    assert a.extraterrestrial_radiation(-20.0, 246) == pytest.approx(32.2, abs=0.05)


def test_hargreaves_fao56_example_20():
    # FAO-56 Example 20 (Lyon, 45°43'N, 15 July: day 196): Tmax 26.6, Tmin 14.8 °C, Ra 40.55 MJ/(m2 d)
    # (16.5 mm/d) -> ET0 = 5.0 mm/d
    ra = a.extraterrestrial_radiation(45 + 43 / 60, 196)
    assert ra == pytest.approx(40.55, abs=0.05)
    assert a.et0_hargreaves(14.8, 26.6, ra) == pytest.approx(5.0, abs=0.05)


def test_hargreaves_of_a_day_without_range_is_zero():
    assert a.et0_hargreaves(15.0, 15.0, 30.0) == 0.0


def test_makkink_grows_with_radiation_and_is_never_negative():
    # 20 MJ/(m2 d) at 20 °C: 0.61 * 0.145 / (0.145 + 0.0674) * 20 / 2.45 - 0.12 = 3.28 mm/d
    assert a.et0_makkink(20.0, 20.0) == pytest.approx(3.28, abs=0.02)
    assert a.et0_makkink(20.0, 0.0) == 0.0


@pytest.mark.parametrize("call", [
    lambda: a.vpd(float("nan"), 50.0),
    lambda: a.vpd(None, 50.0),
    lambda: a.vpd(20.0, None),
    lambda: a.vpd(20.0, 101.0),
    lambda: a.dew_point(20.0, 0.0),
    lambda: a.leaf_vpd(float("inf"), 20.0, 50.0),
    lambda: a.extraterrestrial_radiation(95.0, 10),
    lambda: a.light_integral(-5.0, 60.0),
])
def test_a_failed_input_raises_a_value_error_naming_it(call):
    with pytest.raises(ValueError) as raised:
        call()
    assert str(raised.value)
