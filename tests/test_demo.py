"""The demo greenhouse, built exactly as `edge run` builds it: its fan, heater and pumps move its climate."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from edge.gateway.config import load_config
from edge.gateway.clock import FakeClock
from edge.gateway.hardware import open_hardware


def at(text: str) -> float:
    return datetime.fromisoformat(text).astimezone(timezone.utc).timestamp()


def demo_at(start: str):
    clock = FakeClock(start=at(start))
    return clock, open_hardware(load_config(None), clock)


def run_hours(clock, hardware, hours: float, step: float = 60.0):
    for _ in range(int(hours * 3600 / step)):
        clock.advance(step)
        hardware.simulation.state()
    return hardware.simulation.state()


def twin_runs(start: str, hours: float, switch):
    """The demo greenhouse run twice from the same moment: once as is, once with ``switch(hardware)`` applied."""
    results = []
    for apply in (False, True):
        clock, hardware = demo_at(start)
        try:
            if apply:
                switch(hardware)
            results.append(run_hours(clock, hardware, hours))
        finally:
            hardware.close()
    return results


def test_the_demo_starts_with_every_output_off():
    _, hardware = demo_at("2025-07-15T12:00:00+03:30")
    try:
        assert {a.id: a.value for a in hardware.actuators.values()} == dict.fromkeys(hardware.actuators, 0.0)
        assert all(pin.state == 0 for pin in (hardware.pin_factory.pin(n) for n in (5, 6, 17, 18, 22, 24, 27)))
    finally:
        hardware.close()


def test_the_demo_fan_and_vent_cool_a_july_afternoon():
    def ventilate(hw):
        hw.actuators["fan-1"].apply(1.0)
        hw.actuators["roof-vent"].apply(1.0)

    closed, ventilated = twin_runs("2025-07-15T13:00:00+03:30", 2, ventilate)
    assert closed.air_temperature > 40  # a closed greenhouse in July overheats
    assert ventilated.air_temperature < closed.air_temperature - 8


def test_the_demo_heater_warms_a_january_night():
    cold, heated = twin_runs("2025-01-15T01:00:00+03:30", 3, lambda hw: hw.actuators["heater-1"].apply(1.0))
    assert cold.air_temperature < 5
    assert heated.air_temperature > cold.air_temperature + 5


def test_the_demo_pump_wets_its_own_bed_only():
    dry, watered = twin_runs("2025-07-15T06:00:00+03:30", 2, lambda hw: hw.actuators["pump-bed-1"].apply(1.0))
    assert watered.soil_moisture["bed-1"] > dry.soil_moisture["bed-1"] + 3
    assert watered.soil_moisture["bed-2"] == pytest.approx(dry.soil_moisture["bed-2"])


def test_the_demo_sensors_read_what_the_model_says():
    clock, hardware = demo_at("2025-07-15T13:00:00+03:30")
    try:
        state = hardware.simulation.state()
        samples = {s.quantity: s for s in hardware.sensors["air"].read()}
        assert samples["temperature"].value == pytest.approx(state.air_temperature, abs=1.5)
        assert samples["humidity"].value == pytest.approx(state.humidity, abs=5)
        assert {s.quality for s in samples.values()} == {"good"}
    finally:
        hardware.close()
