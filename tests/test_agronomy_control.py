"""Control in growers' terms: day/night setpoint profiles, humidity by deficit that never fights the temperature,
irrigation by the light sum, CO2 only with the vents shut and in daylight. The rules as pure functions first, then
through the supervisor on mock pins."""

from __future__ import annotations

import pytest

from edge.errors import ConfigError
from edge.gateway.config import parse_config
from edge.gateway.control import rules
from edge.gateway.control.config import Co2Rule, HumidityRule, LightIrrigationRule, Profile, SetpointRule
from edge.gateway.control.rules import Context, Input

from test_supervisor import Greenhouse  # the supervisor on mock pins and a real buffer

T0 = 1_752_571_800.0
SUNRISE, SUNSET = 1_000_000.0, 1_000_000.0 + 14 * 3600


def good(value, ts=T0):
    return Input(value, "good", ts)


# ---------------------------------------------------------------------------------------------- profiles


def test_a_profile_is_night_then_ramps_to_day_after_sunrise_and_back_after_sunset():
    p = Profile(id="air", day=22, night=16, ramp="1h", day_starts="30m", night_starts="-1h")
    at = lambda offset: rules.profile_value(p, SUNRISE + offset, SUNRISE, SUNSET)  # noqa: E731
    assert at(-3600) == 16
    assert at(1800) == 16  # the ramp starts 30 minutes after sunrise
    assert at(1800 + 1800) == pytest.approx(19)  # half way
    assert at(1800 + 3600) == 22
    assert at(13 * 3600 - 1) == 22
    assert at(13 * 3600 + 900) == pytest.approx(20.5)  # a quarter of the way back, an hour before sunset
    assert at(15 * 3600) == 16


def test_an_offset_that_is_not_a_duration_is_refused():
    with pytest.raises(ValueError):
        Profile(id="air", day=22, night=16, day_starts="soon")


# ---------------------------------------------------------------------------------------------- setpoint rules


def heating(**kw) -> SetpointRule:
    return SetpointRule(id="heat", type="setpoint", direction="heat", input={"sensor": "air", "quantity":
                        "temperature"}, actuator="heater", setpoint=kw.pop("setpoint", 18.0), band=1.0, **kw)


def test_a_heating_setpoint_heats_below_it_until_band_above():
    rule, ctx = heating(), Context(setpoint=18.0)
    d = rules.setpoint(rule, {}, good(17.9), T0, 60, ctx)
    assert d.request == 1.0
    assert rules.setpoint(rule, d.state, good(18.5), T0, 60, ctx).request == 1.0  # inside the band: holds
    assert rules.setpoint(rule, d.state, good(19.1), T0, 60, ctx).request is None
    assert rules.setpoint(rule, {}, good(18.5), T0, 60, ctx).request is None  # from off, inside the band: stays off


def test_a_setpoint_rule_with_a_failed_input_releases_and_says_why():
    d = rules.setpoint(heating(), {"on": True}, Input(None, "error", T0, "no answer"), T0, 60, Context(setpoint=18))
    assert d.request is None and d.fault == "input error: no answer"


# ---------------------------------------------------------------------------------------------- humidity


def humidity_rule(action="dry", **kw) -> HumidityRule:
    return HumidityRule(id=f"{action}", type="humidity", action=action, input={"sensor": "climate", "quantity": "vpd"},
                        actuator="vent" if action == "dry" else "mister", band=(0.8, 1.2), value=0.3, **kw)


def test_humidity_dries_below_the_band_and_humidifies_above_it_with_hysteresis():
    dry, wet = humidity_rule("dry"), humidity_rule("humidify")
    d = rules.humidity(dry, {}, good(0.6), T0, 60, Context())
    assert d.request == 0.3
    assert rules.humidity(dry, d.state, good(0.85), T0, 60, Context()).request == 0.3  # until low + hysteresis
    assert rules.humidity(dry, d.state, good(0.95), T0, 60, Context()).request is None
    assert rules.humidity(wet, {}, good(1.5), T0, 60, Context()).request == 0.3
    assert rules.humidity(wet, {}, good(1.0), T0, 60, Context()).request is None


def test_the_night_band_applies_between_sunset_and_sunrise():
    rule = humidity_rule("dry", night_band=(0.4, 0.9))
    assert rules.humidity(rule, {}, good(0.6), T0, 60, Context(daylight=True)).request == 0.3
    assert rules.humidity(rule, {}, good(0.6), T0, 60, Context(daylight=False)).request is None


def test_humidity_never_dries_or_mists_air_colder_than_the_heating_setpoint():
    rule = humidity_rule("dry", temperature={"sensor": "air", "quantity": "temperature"}, not_below=16.0)
    cold = Context(floor=16.0, guard=good(15.0))
    assert rules.humidity(rule, {}, good(0.3), T0, 60, cold).request is None
    warm = Context(floor=16.0, guard=good(17.0))
    assert rules.humidity(rule, {}, good(0.3), T0, 60, warm).request == 0.3
    failed = rules.humidity(rule, {}, good(0.3), T0, 60, Context(floor=16.0, guard=None))
    assert failed.request is None and failed.fault == "temperature no reading yet"


def test_a_humidity_rule_needs_a_deficit_input():
    with pytest.raises(ValueError, match="input must be a vpd, leaf_vpd, humidity_deficit or dew_margin"):
        HumidityRule(id="x", type="humidity", action="dry", input={"sensor": "air", "quantity": "humidity"},
                     actuator="vent", band=(0.8, 1.2))


# ---------------------------------------------------------------------------------------------- light irrigation


def light_rule(**kw) -> LightIrrigationRule:
    args = dict(id="drip", type="light_sum", input={"sensor": "light", "quantity": "par"}, actuator="pump",
                start_at=1.0, run="5m", min_interval="30m", max_interval="3h")
    return LightIrrigationRule(**{**args, **kw})


def run_light(rule, state, ppfd, start, seconds, step=60, context=Context()):
    """Evaluate every ``step`` seconds at a constant PPFD; return the state and the times a run started."""
    starts = []
    for t in range(0, seconds + 1, step):
        now = start + t
        d = rules.light_irrigation(rule, state, good(ppfd, now), now, 120, context)
        if d.request and not state.get("running_since"):
            starts.append(now)
        state = d.state
    return state, starts


def test_light_irrigation_starts_when_the_light_sum_is_reached_and_resets_it():
    # 500 umol/(m2 s) gives 1 mol/m2 in 2000 s
    state, starts = run_light(light_rule(), {}, 500.0, T0, 3 * 3600)
    assert starts[0] == pytest.approx(T0 + 2040, abs=60)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(g >= 30 * 60 for g in gaps)  # the min_interval holds (the sum is reached sooner after a start)
    assert state["sum"] < 1.0


def test_light_irrigation_waits_for_min_interval_and_forces_max_interval_in_light_only():
    state, starts = run_light(light_rule(start_at=100.0), {"last_start": T0}, 50.0, T0, 4 * 3600)
    assert starts and starts[0] == pytest.approx(T0 + 3 * 3600, abs=60)  # dim: the max_interval waters
    _, dark = run_light(light_rule(start_at=100.0), {"last_start": T0}, 0.0, T0, 4 * 3600)
    assert dark == []  # at night the max_interval does not water


def test_wet_soil_holds_light_irrigation_back():
    rule = light_rule(soil={"sensor": "soil", "quantity": "soil_moisture"}, soil_wet_at=35.0)
    _, wet = run_light(rule, {}, 500.0, T0, 3600, context=Context(guard=good(40.0, T0 + 3600)))
    assert wet == []
    _, dry = run_light(rule, {}, 500.0, T0, 3600, context=Context(guard=good(25.0, T0 + 3600)))
    assert len(dry) == 1


def test_a_run_ends_after_its_time_even_if_the_light_input_fails():
    d = rules.light_irrigation(light_rule(), {"running_since": T0}, None, T0 + 60, 120, Context())
    assert d.request == 1.0 and d.until == T0 + 300
    assert rules.light_irrigation(light_rule(), {"running_since": T0}, None, T0 + 300, 120, Context()).request is None


# ---------------------------------------------------------------------------------------------- CO2


def co2_rule() -> Co2Rule:
    return Co2Rule(id="co2", type="co2", input={"sensor": "co2", "quantity": "co2"}, actuator="burner",
                   on_below=700, off_above=900, vents=["vent"])


def test_co2_doses_in_daylight_with_the_vents_shut_only():
    rule = co2_rule()
    assert rules.co2(rule, {}, good(500), T0, 60, Context(daylight=True, vents_open=0.05)).request == 1.0
    assert rules.co2(rule, {}, good(500), T0, 60, Context(daylight=True, vents_open=0.3)).request is None
    assert rules.co2(rule, {}, good(500), T0, 60, Context(daylight=False)).request is None
    d = rules.co2(rule, {"on": True}, good(850), T0, 60, Context())
    assert d.request == 1.0  # until off_above
    assert rules.co2(rule, d.state, good(950), T0, 60, Context()).request is None


# ---------------------------------------------------------------------------------------------- the supervisor

AGRO = """\
gateway: {id: gh}
sensors:
  - {id: air, type: simulated, measures: [temperature, humidity], interval: 10s}
  - {id: co2, type: simulated, measures: [co2], interval: 10s}
derived:
  - {id: climate, air_temperature: {sensor: air, quantity: temperature}, humidity: {sensor: air, quantity: humidity}}
actuators:
  - {id: vent, type: pwm, kind: vent, pin: 18}
  - {id: heater, type: relay, kind: heater, pin: 17}
  - {id: burner, type: relay, kind: co2, pin: 24, min_on: 10m}
  - {id: mister, type: relay, kind: mister, pin: 23}
control:
  profiles:
    - {id: heat, day: 20, night: 16, ramp: 1h}
    - {id: vent, day: 26, night: 22, ramp: 1h}
rules:
  - {id: heating, type: setpoint, direction: heat, setpoint: heat, input: {sensor: air, quantity: temperature},
     actuator: heater}
  - {id: venting, type: setpoint, direction: cool, setpoint: vent, band: 2, input: {sensor: air, quantity: temperature},
     actuator: vent}
  - {id: drying, type: humidity, action: dry, band: [0.5, 1.2], value: 0.3, input: {sensor: climate, quantity: vpd},
     actuator: vent, temperature: {sensor: air, quantity: temperature}, not_below: heat}
  - {id: fogging, type: humidity, action: humidify, band: [0.5, 1.2], input: {sensor: climate, quantity: vpd},
     actuator: mister, temperature: {sensor: air, quantity: temperature}, not_below: heat}
  - {id: enrich, type: co2, on_below: 800, off_above: 1000, input: {sensor: co2, quantity: co2}, actuator: burner,
     vents: [vent]}
"""


class Agro(Greenhouse):
    def climate(self, air: float, vpd: float, co2: float = 500.0):
        self.read("air", "temperature", air)
        self.read("climate", "vpd", vpd)
        self.read("co2", "co2", co2)
        self.supervisor.evaluate()


@pytest.fixture
def noon(tmp_path):
    gh = Agro(tmp_path, "2025-07-15 12:00:00", config=AGRO)
    yield gh
    gh.stop()


def test_the_heating_follows_the_day_profile(tmp_path):
    gh = Agro(tmp_path, "2025-01-15 03:00:00", config=AGRO)
    try:
        gh.climate(air=17.0, vpd=0.8)  # night: 16 °C wanted
        assert gh.value("heater") == 0
        gh.clock.advance(10 * 3600)  # 13:00: the day's 20 °C
        gh.climate(air=17.0, vpd=0.8)
        assert gh.value("heater") == 1 and gh.changes("heater")[-1][2] == "rule:heating"
    finally:
        gh.stop()


def test_humidity_and_temperature_share_the_vent_the_larger_opening_wins(noon):
    noon.climate(air=24.0, vpd=0.3)  # humid, not hot: the vent opens a little to dry
    assert noon.value("vent") == pytest.approx(0.3) and noon.changes("vent")[-1][2] == "rule:drying"
    noon.clock.advance(10)
    noon.climate(air=28.0, vpd=0.3)  # hot too: cooling opens it fully
    assert noon.value("vent") == 1.0 and noon.changes("vent")[-1][2] == "rule:venting"
    noon.clock.advance(10)
    noon.climate(air=19.0, vpd=0.3)  # below the heating setpoint: the vent shuts, the heater heats
    assert noon.value("vent") == 0 and noon.value("heater") == 1


def test_co2_is_never_dosed_with_an_open_vent(noon):
    noon.climate(air=22.0, vpd=0.9, co2=500)
    assert noon.value("burner") == 1 and noon.value("vent") == 0
    for air, vpd in ((27.0, 0.9), (22.0, 0.3), (23.0, 0.9), (30.0, 0.2), (22.0, 0.9)):
        noon.clock.advance(10)
        noon.climate(air=air, vpd=vpd, co2=500)
        assert not (noon.value("burner") > 0 and noon.value("vent") > 0.1), (air, vpd)
    # the burner went off for the open vent despite its min_on, and was recorded so
    assert ("burner", 0.0, "safety:vent_open") in noon.changes("burner")
    # the burner was switched off before the vent opened: its change comes first
    changes = noon.changes()
    first_open = next(i for i, c in enumerate(changes) if c[0] == "vent" and c[1] > 0)
    assert changes[first_open - 1] == ("burner", 0.0, "safety:vent_open")


def test_co2_by_hand_is_refused_with_a_vent_open(noon):
    noon.climate(air=30.0, vpd=0.9, co2=1200)
    assert noon.value("vent") == 1
    from edge.gateway.control.commands import Refused

    with pytest.raises(Refused, match="vent vent open"):
        noon.supervisor.command("burner", "on", 600, "cli:test")


def test_co2_waits_for_daylight(tmp_path):
    gh = Agro(tmp_path, "2025-07-15 02:00:00", config=AGRO)
    try:
        gh.climate(air=20.0, vpd=0.9, co2=500)
        assert gh.value("burner") == 0
    finally:
        gh.stop()


def test_edge_check_names_an_unknown_profile():
    with pytest.raises(ConfigError, match="rule 'heating': setpoint: unknown profile 'warm'"):
        parse_config(AGRO.replace("setpoint: heat,", "setpoint: warm,"))


# ---------------------------------------------------------------------------------------------- on the simulation


def test_on_the_simulation_the_new_demo_beats_the_thermostat_and_never_doses_co2_into_an_open_vent():
    """`edge simulate` on both configs, a winter morning and a summer night: the agronomy rules keep the VPD in band
    longer with fewer condensation hours; at no step of the demo is CO2 dosed while the vent or fan is open."""
    from datetime import datetime
    from pathlib import Path
    from zoneinfo import ZoneInfo

    from edge.gateway.config import load_config
    from edge.gateway.simulate import simulate, summarize

    root = Path(__file__).resolve().parent.parent
    demo, thermostat = load_config(root / "config" / "demo.yaml"), load_config(root / "config" / "thermostat.yaml")
    tehran = ZoneInfo("Asia/Tehran")
    dosing_steps, violations = [], []

    def watch(now, state, actuators):
        if actuators["co2-valve"].value > 0:
            dosing_steps.append(now)
            if actuators["roof-vent"].value > 0.1 or actuators["fan-1"].value > 0.1:
                violations.append(now)

    better = {"in_band": 0.0, "condensation": 0.0}
    # a winter morning, a summer night, a summer morning: 3 hours each (docs/agronomy.md has whole days)
    for start in ("2025-01-15T07:00", "2025-07-15T00:00", "2025-07-15T09:00"):
        begin = datetime.fromisoformat(start).replace(tzinfo=tehran).timestamp()
        new = summarize(list(simulate(demo, begin, 3, observe=watch)), demo)
        old = summarize(list(simulate(thermostat, begin, 3)), thermostat)
        assert new.in_band >= old.in_band and new.condensation <= old.condensation, (start, new, old)
        better["in_band"] += new.in_band - old.in_band
        better["condensation"] += old.condensation - new.condensation
    assert better["in_band"] > 1 and better["condensation"] > 1, better
    assert dosing_steps and not violations  # it did dose (a winter morning with the vent shut), never into a vent


def test_the_simulated_greenhouse_has_a_leaf_a_cover_and_par():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from edge.gateway.clock import FakeClock
    from edge.gateway.hardware.base import HardwareContext
    from edge.gateway.hardware.sim import (GreenhouseModel, SimulatedSensor, SimulatedSensorConfig,
                                           SimulationConfig)

    def at(text):
        return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Asia/Tehran")).timestamp()

    noon = GreenhouseModel(SimulationConfig(kept_between=(14, 28)), FakeClock(start=at("2025-07-15T12:30")))
    day = noon.state()
    assert day.par == pytest.approx(day.light * 2.02 / 110, rel=0.01)  # 2.02 umol/J, 110 lx per W/m2 of sunlight
    assert day.par > 1000
    assert abs(day.leaf_temperature - day.air_temperature) < 6  # warmed by the sun, cooled by transpiring
    assert min(day.outside_temperature, day.air_temperature) <= day.cover_temperature <= max(
        day.outside_temperature, day.air_temperature)

    clock = FakeClock(start=at("2025-01-15T03:00"))
    model = GreenhouseModel(SimulationConfig(kept_between=(14, 28)), clock)
    night = model.state()
    assert night.par == 0.0
    assert night.cover_temperature < night.air_temperature - 5  # the cover sees the cold sky
    assert night.leaf_temperature < night.air_temperature  # leaves radiate to the cold cover
    ctx = HardwareContext(clock=clock, simulation=model)
    roof = SimulatedSensor.from_config(SimulatedSensorConfig(id="roof", type="simulated", measures=["temperature"],
                                                             at="cover", noise=0), ctx)
    assert roof.read()[0].value == pytest.approx(night.cover_temperature, abs=0.05)
