"""Rules are pure: hysteresis that does not chatter, irrigation that remembers its run, stale inputs that release."""

from __future__ import annotations

from edge.gateway.control.config import IrrigationRule, ThresholdRule
from edge.gateway.control.rules import Input, irrigation, threshold

AIR = {"sensor": "air", "quantity": "temperature"}
COOLING = ThresholdRule(id="cooling", type="threshold", input=AIR, actuator="fan", on_above=30, off_below=27)
FROST = ThresholdRule(id="frost", type="threshold", input=AIR, actuator="heater", on_below=4, off_above=7)
DRY = IrrigationRule(id="dry", type="irrigation", input={"sensor": "soil", "quantity": "soil_moisture"},
                     actuator="pump", start_below=22, stop_above=30, max_run="15m", lockout="1h")


def run(rule, values, step=10.0):
    state, now, outputs = {}, 0.0, []
    for value in values:
        decision = (threshold if isinstance(rule, ThresholdRule) else irrigation)(
            rule, state, Input(value, "good", now), now, stale_after=60)
        state = decision.state
        outputs.append(decision.request is not None)
        now += step
    return outputs


def test_hysteresis_does_not_chatter_around_the_threshold():
    hovering = [29.8, 30.2, 29.9, 30.1, 29.7, 30.3, 28.0, 27.5, 27.2, 26.9, 27.5, 29.9]
    outputs = run(COOLING, hovering)
    assert outputs == [False, True, True, True, True, True, True, True, True, False, False, False]
    assert sum(a != b for a, b in zip(outputs, outputs[1:])) == 2  # one on, one off


def test_frost_protection_heats_below_and_stops_above_its_band():
    assert run(FROST, [5.0, 3.9, 5.0, 6.9, 7.1, 5.0]) == [False, True, True, True, False, False]


def test_a_stale_input_releases_and_reports_a_fault():
    on = threshold(COOLING, {}, Input(31.0, "good", 0.0), 0.0, stale_after=30)
    assert on.request == 1.0
    stale = threshold(COOLING, on.state, Input(31.0, "good", 0.0), 31.0, stale_after=30)
    assert stale.request is None and stale.fault.startswith("input stale: last reading 31s ago")
    assert stale.state == {"on": False}


def test_an_error_reading_releases_and_names_the_sensor_error():
    decision = threshold(COOLING, {"on": True}, Input(None, "error", 0.0, "CRC mismatch"), 1.0, 30)
    assert decision.request is None and decision.fault == "input error: CRC mismatch"


def test_irrigation_runs_at_most_max_run_then_locks_out():
    dry = [20.0] * 200  # a probe that never sees the water (stuck, or a broken pipe)
    outputs = run(DRY, dry, step=60)
    assert outputs[:15] == [True] * 15  # 15 minutes
    assert outputs[15:75] == [False] * 60  # one hour of lockout
    assert outputs[75] is True


def test_irrigation_stops_when_the_soil_is_wet_enough():
    assert run(DRY, [21.0, 25.0, 29.0, 30.5, 25.0], step=60) == [True, True, True, False, False]


def test_irrigation_remembers_its_run_across_a_restart():
    started = irrigation(DRY, {}, Input(20.0, "good", 0.0), 0.0, 120)
    assert started.until == 900
    # the daemon restarts 10 minutes in: the same state comes back from the buffer
    resumed = irrigation(DRY, started.state, Input(20.0, "good", 600.0), 600.0, 120)
    assert resumed.request == 1.0 and resumed.until == 900  # 5 minutes left, not 15
    ended = irrigation(DRY, resumed.state, Input(20.0, "good", 900.0), 900.0, 120)
    assert ended.request is None and ended.state["lockout_until"] == 900 + 3600
