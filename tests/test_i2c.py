"""I2C drivers against the register-level fake bus, and their conversions against the datasheets' worked examples."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge.gateway.hardware.base import PLAUSIBLE
from edge.gateway.hardware.common import crc8, soil_percent
from edge.gateway.hardware.fakes import (BOSCH_EXAMPLE, FakeAds1115, FakeBh1750, FakeBme280, FakeI2CBus, FakeScd4x,
                                         FakeSht3x, FakeSht4x)
from edge.gateway.hardware.i2c import (Ads1115, Ads1115Config, Bh1750, Bme280, Scd4x, Scd4xConfig, Sht3x, Sht3xConfig,
                                       Sht4x, ads1115_config, ads1115_volts, bh1750_lux, bme280_humidity,
                                       bme280_pressure, bme280_temperature, decode_words, scd4x_humidity,
                                       scd4x_temperature, sht3x_humidity, sht4x_humidity, sht_temperature)
from edge.gateway.sampler import judge


@pytest.fixture
def bus(clock):
    return FakeI2CBus(clock)


def values(samples):
    return {s.quantity: s.value for s in samples}


# --- Sensirion CRC and words -----------------------------------------------------------------------------------------

def test_sensirion_crc_of_0xbeef_is_0x92_as_in_the_datasheets():
    assert crc8(b"\xbe\xef") == 0x92


def test_scd4x_datasheet_reply_decodes_to_500_ppm_25_degrees_and_37_percent():
    words = decode_words(bytes.fromhex("01f433 6667a2 5eb93c"))
    assert words[0] == 500
    assert scd4x_temperature(words[1]) == pytest.approx(25.0, abs=0.01)
    assert scd4x_humidity(words[2]) == pytest.approx(37.0, abs=0.01)


def test_sht_conversions_span_the_datasheet_ranges():
    assert (sht_temperature(0), sht_temperature(0xFFFF)) == (-45.0, 130.0)
    assert (sht3x_humidity(0), sht3x_humidity(0xFFFF)) == (0.0, 100.0)


def test_sht4x_humidity_is_cropped_to_0_100_as_the_datasheet_recommends():
    assert sht4x_humidity(0) == 0.0  # the formula gives -6 %
    assert sht4x_humidity(0xFFFF) == 100.0  # the formula gives 119 %
    assert sht4x_humidity(0x8000) == pytest.approx(56.5, abs=0.01)


# --- SHT3x / SHT4x ---------------------------------------------------------------------------------------------------

def test_sht3x_reads_temperature_and_humidity(bus, clock):
    bus.attach(0x44, FakeSht3x(temperature=23.5, humidity=61.2))
    samples = Sht3x("air", bus=bus, sleep=clock.advance).read()
    assert [(s.quantity, s.unit, s.quality) for s in samples] == [
        ("temperature", "°C", "good"), ("humidity", "%", "good")]
    assert values(samples) == pytest.approx({"temperature": 23.5, "humidity": 61.2}, abs=0.01)


def test_sht3x_read_before_the_measurement_ends_is_nacked_and_reported(bus, clock):
    bus.attach(0x44, FakeSht3x())
    samples = Sht3x("air", bus=bus, sleep=lambda seconds: None).read()
    assert {s.quality for s in samples} == {"error"}
    assert samples[0].reason.startswith("I2C bus 1, address 0x44: no answer (NACK)")


def test_sht3x_bad_crc_is_an_error_sample(bus, clock):
    bus.attach(0x44, FakeSht3x()).corrupt_crc = True
    samples = Sht3x("air", bus=bus, sleep=clock.advance).read()
    assert [(s.quality, s.value) for s in samples] == [("error", None), ("error", None)]
    assert "CRC mismatch in word 1" in samples[0].reason


def test_unplugged_sht3x_is_reported_and_read_again_once_plugged_back(bus, clock):
    chip = bus.attach(0x45, FakeSht3x(temperature=18.0))
    sensor = Sht3x("air", address=0x45, bus=bus, sleep=clock.advance)
    chip.plugged = False
    unplugged = sensor.read()
    assert unplugged[0].quality == "error"
    assert "0x45" in unplugged[0].reason and "check power, the SDA/SCL wiring and the address" in unplugged[0].reason
    chip.plugged = True
    assert values(sensor.read())["temperature"] == pytest.approx(18.0, abs=0.01)


def test_a_missing_i2c_bus_is_an_error_sample_naming_the_overlay():
    pytest.importorskip("smbus2")
    (sample, _) = Sht3x("air", bus_number=99).read()
    assert sample.reason == ("I2C bus 99, address 0x44: /dev/i2c-99 does not exist: enable I2C "
                             "(dtparam=i2c_arm=on in config.txt)")


def test_sht4x_reads_temperature_and_humidity(bus, clock):
    bus.attach(0x44, FakeSht4x(temperature=-3.25, humidity=88.0))
    assert values(Sht4x("air", bus=bus, sleep=clock.advance).read()) == pytest.approx(
        {"temperature": -3.25, "humidity": 88.0}, abs=0.01)


def test_an_address_the_chip_cannot_have_is_refused_in_hex():
    with pytest.raises(ValidationError, match="SHT3x answers at 0x44 or 0x45, not 0x40"):
        Sht3xConfig(id="air", type="sht3x", address=0x40)


# --- BME280 ----------------------------------------------------------------------------------------------------------

def test_bme280_compensation_matches_the_bosch_worked_example():
    temperature, t_fine = bme280_temperature(519888, BOSCH_EXAMPLE)
    assert (round(temperature, 2), t_fine) == (25.08, 128422)
    assert bme280_pressure(415148, t_fine, BOSCH_EXAMPLE) == pytest.approx(100653.27, abs=0.02)


def bme280_humidity_int32(adc_h: int, t_fine: int, dig_h) -> float:
    """The datasheet's 32-bit integer formula (section 4.2.3), an independent route to the same value."""
    h1, h2, h3, h4, h5, h6 = dig_h
    v = t_fine - 76800
    v = (((adc_h << 14) - (h4 << 20) - h5 * v + 16384) >> 15) * (
        ((((v * h6 >> 10) * ((v * h3 >> 11) + 32768) >> 10) + 2097152) * h2 + 8192) >> 14)
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4)
    return (min(max(v, 0), 419430400) >> 12) / 1024


@pytest.mark.parametrize("adc_h", [23000, 30000, 37000])
def test_bme280_humidity_agrees_with_the_datasheet_integer_formula(adc_h):
    _, t_fine = bme280_temperature(519888, BOSCH_EXAMPLE)
    expected = bme280_humidity_int32(adc_h, t_fine, BOSCH_EXAMPLE.h)
    assert bme280_humidity(adc_h, t_fine, BOSCH_EXAMPLE.h) == pytest.approx(expected, abs=0.02)


def test_bme280_reads_its_calibration_and_measures_in_forced_mode(bus, clock):
    bus.attach(0x76, FakeBme280(adc_h=27000))
    samples = Bme280("climate", bus=bus, sleep=clock.advance).read()
    assert [s.quantity for s in samples] == ["temperature", "humidity", "pressure"]
    assert {s.quality for s in samples} == {"good"}
    _, t_fine = bme280_temperature(519888, BOSCH_EXAMPLE)
    assert values(samples) == pytest.approx({"temperature": 25.08, "pressure": 1006.53,
                                             "humidity": bme280_humidity(27000, t_fine, BOSCH_EXAMPLE.h)}, abs=0.01)


def test_a_bmp280_sold_as_bme280_gives_temperature_and_pressure_and_names_itself_for_humidity(bus, clock):
    bus.attach(0x77, FakeBme280(chip_id=0x58))
    samples = {s.quantity: s for s in Bme280("climate", address=0x77, bus=bus, sleep=clock.advance).read()}
    assert samples["temperature"].value == pytest.approx(25.08, abs=0.01)
    assert samples["pressure"].value == pytest.approx(1006.53, abs=0.01)
    assert samples["humidity"].quality == "error" and samples["humidity"].value is None
    assert "0x58 is a BMP280, which has no humidity sensor" in samples["humidity"].reason


def test_a_chip_that_is_not_a_bme280_is_an_error(bus, clock):
    bus.attach(0x76, FakeBme280(chip_id=0x61))
    samples = Bme280("climate", bus=bus, sleep=clock.advance).read()
    assert {s.quality for s in samples} == {"error"}
    assert "chip id 0x61 at 0x76 is not a BME280" in samples[0].reason


def test_bme280_still_measuring_is_an_error_not_stale_registers(bus, clock):
    bus.attach(0x76, FakeBme280())
    samples = Bme280("climate", bus=bus, sleep=lambda seconds: None).read()
    assert {s.quality for s in samples} == {"error"}
    assert "still measuring" in samples[0].reason


def test_bme280_reset_value_is_an_error_not_a_temperature(bus, clock):
    bus.attach(0x76, FakeBme280(adc_t=0x80000))
    samples = Bme280("climate", bus=bus, sleep=clock.advance).read()
    assert "reset value" in samples[0].reason


# --- BH1750 ----------------------------------------------------------------------------------------------------------

def test_bh1750_datasheet_example_0x8390_is_28067_lux():
    assert round(bh1750_lux(0x8390)) == 28067  # high byte 1000_0011, low byte 1001_0000, MTreg 69


def test_bh1750_lux_scales_with_the_measurement_time():
    assert bh1750_lux(1200, measurement_time=138) == pytest.approx(500.0)  # datasheet: 1/1.2 × 69/MTreg lx per count


def test_bh1750_sets_its_measurement_time_and_reads_lux(bus, clock):
    chip = bus.attach(0x23, FakeBh1750(lux=45_000.0))
    samples = Bh1750("light", bus=bus, sleep=clock.advance).read()
    assert chip.mtreg == 31
    assert samples[0].quality == "good"
    assert samples[0].value == pytest.approx(45_000.0, abs=2.3)  # one count is 2.2 lx at MTreg 31


def test_bh1750_saturated_in_full_sun_is_flagged_not_stored_as_good(bus, clock):
    bus.attach(0x5C, FakeBh1750(lux=80_000.0))
    samples = Bh1750("light", address=0x5C, measurement_time=69, bus=bus, sleep=clock.advance).read()
    assert samples[0].quality == "implausible"
    assert samples[0].reason.startswith("saturated: brighter than 54612 lx")


# --- ADS1115 soil probes ---------------------------------------------------------------------------------------------

def test_ads1115_config_word_for_channel_0_is_0xc383():
    assert ads1115_config(0) == 0xC383
    assert ads1115_config(3) == 0xF383


def test_ads1115_codes_follow_the_datasheet_table():
    assert ads1115_volts(0x7FFF) == pytest.approx(4.096 * 32767 / 32768)
    assert ads1115_volts(1) == pytest.approx(125e-6)  # 1 LSB at ±4.096 V
    assert ads1115_volts(-32768) == -4.096


def test_soil_calibration_maps_dry_to_0_and_wet_to_100_percent():
    assert soil_percent(2.6, dry=2.6, wet=1.2) == 0.0
    assert soil_percent(1.2, dry=2.6, wet=1.2) == 100.0
    assert soil_percent(1.9, dry=2.6, wet=1.2) == pytest.approx(50.0)


def test_ads1115_reads_a_calibrated_probe_and_shows_its_voltage(bus, clock):
    bus.attach(0x48, FakeAds1115(voltages=[0.0, 0.0, 1.9, 0.0]))
    sensor = Ads1115("soil", channel=2, dry=2.6, wet=1.2, bus=bus, sleep=clock.advance)
    assert values(sensor.read()) == pytest.approx({"soil_moisture": 50.0}, abs=0.01)
    assert sensor.details == {"voltage": "1.900 V"}


def test_ads1115_conversion_not_finished_is_an_error(bus, clock):
    bus.attach(0x48, FakeAds1115())
    samples = Ads1115("soil", channel=0, dry=2.6, wet=1.2, bus=bus, sleep=lambda seconds: None).read()
    assert samples[0].quality == "error" and "conversion not finished" in samples[0].reason


def test_a_probe_drier_than_its_calibration_is_flagged_implausible(bus, clock):
    bus.attach(0x48, FakeAds1115(voltages=[3.2, 0.0, 0.0, 0.0]))  # probe pulled out of the soil, or a bad calibration
    (sample,) = Ads1115("soil", channel=0, dry=2.6, wet=1.2, bus=bus, sleep=clock.advance).read()
    assert sample.value < 0
    assert judge(sample, PLAUSIBLE["soil_moisture"]).quality == "implausible"


def test_soil_probe_config_needs_a_zone_and_distinct_dry_and_wet():
    with pytest.raises(ValidationError, match="zone"):
        Ads1115Config(id="soil", type="ads1115", channel=0, dry=2.6, wet=1.2)
    with pytest.raises(ValidationError, match="calibrate the probe in air and in water"):
        Ads1115Config(id="soil", type="ads1115", channel=0, dry=2.0, wet=2.0, zone="bed-1")


# --- SCD4x -----------------------------------------------------------------------------------------------------------

def scd4x(bus, clock, **options):
    return Scd4x("co2", clock=clock, bus=bus, sleep=clock.advance, **options)


def test_scd4x_turns_self_calibration_off_sets_altitude_and_waits_for_its_first_measurement(bus, clock):
    chip = bus.attach(0x62, FakeScd4x(co2=1450, temperature=26.0, humidity=70.0))
    assert chip.asc_enabled  # as shipped
    start = clock.monotonic()
    samples = scd4x(bus, clock, altitude=1150).read()
    assert (chip.asc_enabled, chip.altitude, chip.periodic) == (False, 1150, True)
    assert values(samples) == pytest.approx({"co2": 1450, "temperature": 26.0, "humidity": 70.0}, abs=0.01)
    assert 5.0 <= clock.monotonic() - start <= 6.0  # 500 ms after stop, then the first 5 s period


def test_scd4x_self_calibration_can_be_turned_on(bus, clock):
    chip = bus.attach(0x62, FakeScd4x())
    scd4x(bus, clock, automatic_self_calibration=True).read()
    assert chip.asc_enabled


def test_scd4x_reads_a_new_measurement_every_period(bus, clock):
    chip = bus.attach(0x62, FakeScd4x(co2=900))
    sensor = scd4x(bus, clock)
    sensor.read()
    chip.co2 = 950
    clock.advance(5.0)
    assert values(sensor.read())["co2"] == 950


def test_scd4x_is_configured_again_after_a_power_cycle(bus, clock):
    bus.attach(0x62, FakeScd4x())
    sensor = scd4x(bus, clock)
    sensor.read()
    fresh = bus.attach(0x62, FakeScd4x(co2=700))  # power cut: idle again, ASC back on
    clock.advance(5.0)
    assert sensor.read()[0].quality == "error"
    samples = sensor.read()
    assert values(samples)["co2"] == 700
    assert not fresh.asc_enabled


def test_scd4x_interval_shorter_than_its_5_s_period_is_refused():
    with pytest.raises(ValidationError, match="an SCD4x measures every 5 s: use interval: 5s or more"):
        Scd4xConfig(id="co2", type="scd4x", interval="2s")
