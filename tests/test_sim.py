"""The simulated greenhouse behaves like a greenhouse, driven through real gpiozero outputs on mock pins.

Each actuator test runs a twin model on the same clock with the actuator left off, and compares the two.
"""

import math
from datetime import datetime, timedelta, timezone

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin
from pydantic import ValidationError

from edge.errors import HardwareError
from edge.gateway.clock import FakeClock
from edge.gateway.hardware import actuator_driver, sensor_driver
from edge.gateway.hardware.base import PLAUSIBLE, UNITS, HardwareContext, Sample
from edge.gateway.hardware.gpio import PwmOutput, Relay
from edge.gateway.hardware.sim import (
    DROPOUT_REASON,
    FAULT_KINDS,
    GreenhouseModel,
    SimulatedSensor,
    SimulatedSensorConfig,
    SimulationConfig,
)

TEHRAN = timezone(timedelta(hours=3, minutes=30))
HOUR = 3600.0
AIR = ("temperature", "humidity", "light", "co2")


def local(text: str) -> float:
    """UTC unix seconds of a local (Asia/Tehran) time such as ``2025-07-15T14:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=TEHRAN).timestamp()


@pytest.fixture
def pins():
    return MockFactory(pin_class=MockPWMPin)


def greenhouse(clock: FakeClock, **settings) -> GreenhouseModel:
    return GreenhouseModel(SimulationConfig(**settings), clock)


def twins(start: str) -> tuple[FakeClock, GreenhouseModel, GreenhouseModel]:
    """Two identical greenhouses on one clock: one to act on, one left alone."""
    clock = FakeClock(local(start))
    return clock, greenhouse(clock), greenhouse(clock)


def switch_on(model, pins, pin, kind, zone=None, value=1.0, output=Relay):
    """Attach an output of ``kind`` to the model and drive it; returns it (keep it: gpiozero frees collected pins)."""
    actuator = output(f"{kind}-{pin}", pin, kind=kind, zone=zone, pin_factory=pins)
    model.attach(actuator)
    actuator.apply(value)
    return actuator


def run(clock: FakeClock, hours: float, *models: GreenhouseModel):
    clock.advance(hours * HOUR)
    return [model.state() for model in models]


def day_of_states(model: GreenhouseModel, clock: FakeClock, step_minutes: int = 10):
    """The model every ``step_minutes`` over the next 24 hours."""
    states = []
    for _ in range(24 * 60 // step_minutes):
        clock.advance(step_minutes * 60)
        states.append(model.state())
    return states


def local_hour(state) -> float:
    moment = datetime.fromtimestamp(state.time, TEHRAN)
    return moment.hour + moment.minute / 60


# --- Actuators act on the greenhouse ---------------------------------------------------------------------------------

def test_fan_and_vent_cool_a_hot_summer_afternoon(pins):
    clock, cooled, closed = twins("2025-07-15T12:00")
    outputs = [switch_on(cooled, pins, 17, "fan"), switch_on(cooled, pins, 27, "vent")]
    cooled_now, closed_now = run(clock, 3, cooled, closed)
    assert cooled_now.air_temperature < closed_now.air_temperature - 10
    assert cooled_now.air_temperature < cooled_now.outside_temperature + 8  # a ventilated house stays near outside
    assert all(output.value == 1.0 for output in outputs)


def test_a_fan_at_half_speed_cools_less_than_at_full_speed(pins):
    clock = FakeClock(local("2025-07-15T12:00"))
    half, full, still = greenhouse(clock), greenhouse(clock), greenhouse(clock)
    fans = [switch_on(half, pins, 18, "fan", value=0.5, output=PwmOutput),
            switch_on(full, pins, 19, "fan", value=1.0, output=PwmOutput)]
    half_now, full_now, still_now = run(clock, 2, half, full, still)
    assert full_now.air_temperature < half_now.air_temperature < still_now.air_temperature
    assert [fan.value for fan in fans] == [0.5, 1.0]


def test_heater_warms_a_winter_night(pins):
    clock, heated, cold = twins("2026-01-15T00:00")
    heater = switch_on(heated, pins, 17, "heater")
    heated_now, cold_now = run(clock, 5, heated, cold)
    assert heated_now.air_temperature > cold_now.air_temperature + 5
    assert cold_now.air_temperature < 5  # without heat, a January night is near freezing
    assert heater.value == 1.0


def test_irrigation_wets_its_own_zone_and_no_other(pins):
    clock, watered, dry = twins("2025-07-15T06:00")
    for model in (watered, dry):
        model.add_zone("north")
        model.add_zone("south")
    pump = switch_on(watered, pins, 17, "pump", zone="north")
    watered_now, dry_now = run(clock, 1, watered, dry)
    assert watered_now.soil_moisture["north"] > dry_now.soil_moisture["north"] + 3
    assert watered_now.soil_moisture["south"] == pytest.approx(dry_now.soil_moisture["south"], abs=0.01)
    pump.safe_state()


def test_soil_dries_over_a_sunny_day_without_irrigation():
    clock = FakeClock(local("2025-07-15T06:00"))
    model = greenhouse(clock)
    model.add_zone("north")
    morning = model.state().soil_moisture["north"]
    evening = run(clock, 14, model)[0].soil_moisture["north"]
    next_morning = run(clock, 10, model)[0].soil_moisture["north"]
    assert morning - evening > 1.0
    assert evening - next_morning < (morning - evening) / 3  # the crop drinks by day, hardly at night


def test_co2_enrichment_raises_co2(pins):
    clock, enriched, plain = twins("2026-01-15T10:00")
    burner = switch_on(enriched, pins, 17, "co2")
    enriched_now, plain_now = run(clock, 1, enriched, plain)
    assert enriched_now.co2 > plain_now.co2 + 300
    assert burner.value == 1.0


def test_grow_lights_light_up_the_night(pins):
    clock, lit, dark = twins("2026-01-15T20:00")
    lamps = switch_on(lit, pins, 17, "light")
    lit_now, dark_now = run(clock, 1, lit, dark)
    assert lit_now.light >= 10_000
    assert lit_now.air_temperature > dark_now.air_temperature  # lamps heat too
    assert lamps.value == 1.0


def test_outputs_built_from_config_drive_the_simulation(pins):
    clock, heated, cold = twins("2026-01-15T00:00")
    ctx = HardwareContext(clock=clock, pin_factory=pins, simulation=heated)
    driver = actuator_driver("relay")
    heater = driver.from_config(driver.Config(id="heater-1", type="relay", kind="heater", pin=17), ctx)
    heated.attach(heater)
    heated.attach(heater)  # attaching twice is harmless
    heater.apply(1.0)
    heated_now, cold_now = run(clock, 3, heated, cold)
    assert heated_now.air_temperature > cold_now.air_temperature + 5


# --- Weather, sun and air --------------------------------------------------------------------------------------------

def test_july_has_cold_nights_and_hot_days():
    clock = FakeClock(local("2025-07-15T00:00"))
    day = day_of_states(greenhouse(clock), clock)
    coldest = min(day, key=lambda state: state.outside_temperature)
    hottest = max(day, key=lambda state: state.outside_temperature)
    assert coldest.outside_temperature == pytest.approx(17, abs=1.5)
    assert hottest.outside_temperature == pytest.approx(37, abs=1.5)
    assert 4 <= local_hour(coldest) <= 7  # around sunrise
    assert 14 <= local_hour(hottest) <= 17  # mid-afternoon
    inside = [state.air_temperature for state in day]
    assert max(inside) - min(inside) > 15


def test_january_is_cold():
    clock = FakeClock(local("2026-01-15T00:00"))
    outside = [state.outside_temperature for state in day_of_states(greenhouse(clock), clock)]
    assert min(outside) == pytest.approx(-2, abs=1.5)
    assert max(outside) == pytest.approx(10, abs=1.5)


def test_light_is_dark_at_night_and_bright_at_noon():
    clock = FakeClock(local("2025-07-15T01:00"))
    model = greenhouse(clock)
    night = model.state()
    (noon,) = run(clock, 11.3, model)  # 12:18, solar noon in Khorramabad
    clock.set_wall(local("2026-01-15T12:18"))
    winter_noon = model.state()
    assert night.light < 1
    assert noon.light > 60_000
    assert 20_000 < winter_noon.light < noon.light


def test_humidity_stays_between_0_and_100_whatever_runs(pins):
    seen = []
    for start in ("2025-07-15T00:00", "2026-01-15T00:00"):
        clock = FakeClock(local(start))
        model = greenhouse(clock)
        outputs = [switch_on(model, pins, pin, kind, value=0.0)
                   for pin, kind in ((17, "fan"), (27, "mister"), (22, "heater"))]
        for hour in range(48):
            for index, output in enumerate(outputs):
                output.apply(1.0 if (hour // (index + 2)) % 2 else 0.0)  # each output on and off at its own pace
            clock.advance(HOUR)
            state = model.state()
            seen += [state.humidity, state.outside_humidity]
        for output in outputs:
            output.close()
    assert all(0.0 <= humidity <= 100.0 for humidity in seen)
    assert max(seen) - min(seen) > 40  # it does move


def test_co2_drops_in_daylight_with_closed_vents():
    clock = FakeClock(local("2025-07-15T05:00"))
    model = greenhouse(clock)
    dawn = model.state()
    (afternoon,) = run(clock, 8, model)
    assert dawn.co2 > 420  # the crop breathes out at night
    assert afternoon.co2 < dawn.co2 - 50
    assert afternoon.co2 < 400


# --- Sensors ---------------------------------------------------------------------------------------------------------

def test_readings_carry_canonical_units_at_a_realistic_resolution():
    clock = FakeClock(local("2025-07-15T12:00"))
    sensor = SimulatedSensor("climate", greenhouse(clock), [*AIR, "soil_moisture"], zone="north")
    samples = sensor.read()
    assert [sample.quantity for sample in samples] == [*AIR, "soil_moisture"]
    assert all(sample.unit == UNITS[sample.quantity] and sample.quality == "good" for sample in samples)
    by_quantity = {sample.quantity: sample.value for sample in samples}
    assert by_quantity["temperature"] == round(by_quantity["temperature"], 1)
    assert by_quantity["co2"] == round(by_quantity["co2"])


def test_the_same_seed_gives_identical_readings():
    def readings(seed):
        clock = FakeClock(local("2025-07-15T09:00"))
        sensor = SimulatedSensor("climate", greenhouse(clock, seed=seed), AIR)
        result = []
        for _ in range(20):
            clock.advance(10)
            result.append(sensor.read())
        return result

    assert readings(seed=7) == readings(seed=7)
    assert readings(seed=7) != readings(seed=8)


def test_zero_noise_reads_the_model_exactly():
    clock = FakeClock(local("2025-07-15T09:00"))
    model = greenhouse(clock)
    sensor = SimulatedSensor("thermo", model, ["temperature"], noise=0.0)
    assert sensor.read()[0].value == round(model.state().air_temperature, 1)


# --- Faults ----------------------------------------------------------------------------------------------------------

def test_dropout_fails_every_quantity_until_it_ends():
    clock = FakeClock(local("2025-07-15T09:00"))
    model = greenhouse(clock)
    sensor = SimulatedSensor("climate", model, AIR)
    model.inject_fault("climate", "dropout", until=clock.time() + 60)
    assert sensor.read() == [Sample.error(quantity, DROPOUT_REASON) for quantity in AIR]
    clock.advance(60)
    assert all(sample.quality == "good" for sample in sensor.read())


def test_stuck_sensor_repeats_the_value_it_had_when_the_fault_started():
    clock = FakeClock(local("2025-07-15T09:00"))
    model = greenhouse(clock)
    stuck = SimulatedSensor("stuck", model, ["temperature", "light"], noise=0.0)
    healthy = SimulatedSensor("healthy", model, ["temperature", "light"], noise=0.0)
    before = stuck.read()
    model.inject_fault("stuck", "stuck")
    clock.advance(5 * HOUR)
    assert stuck.read() == before
    assert stuck.read() == before
    assert healthy.read() != before
    model.clear_fault("stuck")
    assert stuck.read() == healthy.read()


def test_spike_is_one_wild_value_then_normal_readings():
    clock = FakeClock(local("2025-07-15T09:00"))
    model = greenhouse(clock)
    sensor = SimulatedSensor("climate", model, AIR)
    model.inject_fault("climate", "spike")

    def plausible(sample):
        low, high = PLAUSIBLE[sample.quantity]
        return low <= sample.value <= high

    assert not any(plausible(sample) for sample in sensor.read())
    assert all(plausible(sample) for sample in sensor.read())


@pytest.mark.parametrize("kind", [kind for kind in FAULT_KINDS if kind != "hang"])  # hang: tests/test_watchdog.py
def test_read_never_raises_under_any_fault(kind):
    clock = FakeClock(local("2025-07-15T09:00"))
    model = greenhouse(clock)
    sensor = SimulatedSensor("soil", model, ["soil_moisture"], zone="north")
    model.inject_fault("soil", kind, until=clock.time() + 30)
    for _ in range(5):
        samples = sensor.read()
        assert [sample.quantity for sample in samples] == ["soil_moisture"]
        clock.advance(10)


class BrokenOutput:
    """An output whose driver has failed: reading its value raises."""

    kind, zone = "fan", None

    @property
    def value(self) -> float:
        raise OSError("I2C bus error")


def test_a_failing_model_reads_as_error_samples_not_an_exception():
    clock = FakeClock(local("2025-07-15T09:00"))
    model = greenhouse(clock)
    model.attach(BrokenOutput())
    sensor = SimulatedSensor("climate", model, AIR)
    clock.advance(60)
    samples = sensor.read()
    assert [sample.quality for sample in samples] == ["error"] * len(AIR)
    assert "I2C bus error" in samples[0].reason


def test_unknown_fault_kind_is_refused():
    model = greenhouse(FakeClock())
    with pytest.raises(ValueError, match="dropout, stuck, spike"):
        model.inject_fault("climate", "melted")


# --- Clock -----------------------------------------------------------------------------------------------------------

def test_a_clock_jumping_backwards_does_not_crash():
    clock = FakeClock(local("2025-07-15T12:00"))
    model = greenhouse(clock)
    sensor = SimulatedSensor("climate", model, AIR)
    clock.advance(2 * HOUR)
    model.state()
    clock.set_wall(local("2025-07-15T09:00"))
    assert model.state().time == clock.time()
    assert all(sample.quality == "good" for sample in sensor.read())
    (later,) = run(clock, 1, model)
    assert later.time == clock.time()


def test_a_clock_jumping_forward_by_weeks_lands_in_the_new_season():
    clock = FakeClock(local("2025-07-15T14:00"))
    model = greenhouse(clock)
    clock.set_wall(local("2026-01-15T02:00"))  # a Pi that booted on a stale clock, then synced
    state = model.state()
    assert state.time == clock.time()
    assert state.air_temperature < 10
    assert all(math.isfinite(value) for value in (state.humidity, state.co2, state.light))


# --- Configuration ---------------------------------------------------------------------------------------------------

def test_every_simulation_setting_has_a_default_and_a_description():
    assert SimulationConfig().seed == 1
    assert all(field.description for field in SimulationConfig.model_fields.values())


def test_a_soil_moisture_sensor_needs_a_zone():
    with pytest.raises(ValidationError, match="zone is required"):
        SimulatedSensorConfig(id="probe", type="simulated", measures=["soil_moisture"])


def test_a_zone_is_refused_without_soil_moisture():
    with pytest.raises(ValidationError, match="zone applies only to soil_moisture"):
        SimulatedSensorConfig(id="climate", type="simulated", measures=["temperature"], zone="north")


@pytest.mark.parametrize("measures, message", [([], "at least 1"), (["co2", "light", "co2"], "co2 more than once"),
                                               (["pressure"], "temperature")])
def test_measures_must_be_known_distinct_and_not_empty(measures, message):
    with pytest.raises(ValidationError, match=message):
        SimulatedSensorConfig(id="climate", type="simulated", measures=measures)


def test_sensor_from_config_registers_its_zone():
    clock = FakeClock(local("2025-07-15T09:00"))
    model = greenhouse(clock)
    driver = sensor_driver("simulated")
    cfg = driver.Config(id="probe-s", type="simulated", measures=["soil_moisture"], zone="south", noise=0)
    sensor = driver.from_config(cfg, HardwareContext(clock=clock, simulation=model))
    assert cfg.quantities() == sensor.quantities() == ("soil_moisture",)
    assert model.zones == ("south",)
    assert sensor.read()[0].value == SimulationConfig().initial_soil_moisture


def test_a_simulated_sensor_needs_the_simulated_backend():
    cfg = SimulatedSensorConfig(id="climate", type="simulated", measures=["temperature"])
    with pytest.raises(HardwareError, match="climate"):
        SimulatedSensor.from_config(cfg, HardwareContext(clock=FakeClock()))


# --- A greenhouse in use: its floor, its keeper, its heater ----------------------------------------------------------

def test_the_floor_gives_back_the_days_heat_on_a_winter_night():
    """The soil stores the day's sun and gives it back at night: an unheated house stays a few degrees above the
    outside air (a one-node model without the floor had it at or below the outside temperature)."""
    clock = FakeClock(local("2026-01-15T04:00"))
    state = greenhouse(clock).state()
    assert 2 < state.air_temperature - state.outside_temperature < 8


def test_a_greenhouse_kept_before_the_start_begins_inside_its_band():
    for start in ("2025-12-22T02:00", "2025-07-15T15:00"):
        kept = greenhouse(FakeClock(local(start)), kept_between=(14, 28)).state()
        left_alone = greenhouse(FakeClock(local(start))).state()
        assert 14 <= kept.air_temperature <= 28 and kept.humidity <= 85
        assert not 14 <= left_alone.air_temperature <= 28  # the default: as if nobody had run it


def test_a_heater_sized_as_the_docs_say_holds_its_setpoint():
    """``heater_power`` ≈ (T - T_out) × floor_area × (1.6 × cover_u_value + height / 3) W holds T."""
    clock = FakeClock(local("2026-01-14T18:00"))
    cfg = SimulationConfig()
    power = (16 - cfg.january_min_temperature) * cfg.floor_area * (1.6 * cfg.cover_u_value + cfg.height / 3) / 1000
    model = greenhouse(clock, heater_power=power)
    heater = switch_on(model, MockFactory(), 17, "heater")
    night = [run(clock, 1, model)[0] for _ in range(14)]  # on all night, to 08:00
    coldest = min(night, key=lambda state: state.outside_temperature)
    assert coldest.outside_temperature < cfg.january_min_temperature + 0.5
    assert all(state.air_temperature > 15.5 for state in night)
    assert heater.value == 1.0


def test_kept_between_gives_the_low_end_first():
    with pytest.raises(ValidationError, match=r"low end first: \[14, 28\]"):
        SimulationConfig(kept_between=(28, 14))
