"""The sampler: one transaction per round, readings judged, failures recorded as errors and never as stale values."""

from __future__ import annotations

import pytest

from edge.gateway.buffer import CLOCK_CORRECTED, CLOCK_SYNCED, CLOCK_UNSYNCED, Buffer
from edge.gateway.clock import FakeClock
from edge.gateway.hardware.base import HardwareContext, Sample
from edge.gateway.hardware.sim import GreenhouseModel, SimulatedSensor, SimulatedSensorConfig, SimulationConfig
from edge.gateway.sampler import Sampler, SensorSlot, judge

JULY_NOON_TEHRAN = 1_752_571_800.0  # 2025-07-15 09:00 UTC = 12:30 in Khorramabad


@pytest.fixture
def clock():
    return FakeClock(start=JULY_NOON_TEHRAN)


@pytest.fixture
def greenhouse(clock):
    return GreenhouseModel(SimulationConfig(), clock)


@pytest.fixture
def fresh_buffer(tmp_path, clock):
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=clock.time(), boot_id=clock.boot_id)
    yield buffer
    buffer.close()


def sim_sensor(greenhouse, clock, sensor_id, measures, zone=None, interval="10s"):
    cfg = SimulatedSensorConfig(id=sensor_id, type="simulated", measures=measures, zone=zone, interval=interval)
    sensor = SimulatedSensor.from_config(cfg, HardwareContext(clock=clock, simulation=greenhouse))
    return SensorSlot(sensor, cfg.interval)


@pytest.fixture
def sampler(greenhouse, clock, fresh_buffer):
    slots = [
        sim_sensor(greenhouse, clock, "air", ["temperature", "humidity"]),
        sim_sensor(greenhouse, clock, "light", ["light"]),
        sim_sensor(greenhouse, clock, "soil", ["soil_moisture"], zone="bed-1", interval="1m"),
    ]
    return Sampler(slots, fresh_buffer, clock)


def run_for(sampler, clock, seconds: int, step: int = 10) -> None:
    for _ in range(seconds // step):
        for interval in sampler.groups:
            if (clock.time() - JULY_NOON_TEHRAN) % interval == 0:
                sampler.run_round(interval)
        clock.advance(step)


def test_every_sensor_produces_readings_with_strictly_increasing_seq(sampler, clock, fresh_buffer):
    run_for(sampler, clock, 600)
    rows = fresh_buffer.pending(limit=10_000)
    per_quantity = {}
    for row in rows:
        per_quantity.setdefault((row["sensor"], row["quantity"]), []).append(row["seq"])
    assert set(per_quantity) == {("air", "temperature"), ("air", "humidity"), ("light", "light"),
                                 ("soil", "soil_moisture")}
    assert len(per_quantity[("air", "temperature")]) == 60 and len(per_quantity[("soil", "soil_moisture")]) == 10
    for seqs in per_quantity.values():
        assert all(a < b for a, b in zip(seqs, seqs[1:]))
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(r["quality"] == "good" and r["clock"] == CLOCK_SYNCED for r in rows)


def test_a_round_is_one_transaction(sampler, fresh_buffer):
    statements = []
    fresh_buffer._db.conn.set_trace_callback(statements.append)
    readings = sampler.run_round(10.0)
    fresh_buffer._db.conn.set_trace_callback(None)
    assert len(readings) == 3  # air temperature + humidity, light
    assert [s for s in statements if s in ("BEGIN", "COMMIT")] == ["BEGIN", "COMMIT"]


def test_a_sensor_dropout_yields_error_readings_not_repeated_values(sampler, clock, greenhouse, fresh_buffer):
    run_for(sampler, clock, 60)
    greenhouse.inject_fault("air", "dropout")
    run_for(sampler, clock, 60)
    greenhouse.clear_fault("air")
    run_for(sampler, clock, 60)
    temps = [r for r in fresh_buffer.pending(limit=10_000) if r["quantity"] == "temperature"]
    qualities = [r["quality"] for r in temps]
    assert qualities == ["good"] * 6 + ["error"] * 6 + ["good"] * 6
    for row in temps[6:12]:
        assert row["value"] is None and "dropout" in row["reason"]
    # other sensors of the same round were not affected
    light = [r["quality"] for r in fresh_buffer.pending(limit=10_000) if r["sensor"] == "light"]
    assert set(light) == {"good"}


def test_a_spike_is_stored_flagged_implausible(sampler, clock, greenhouse, fresh_buffer):
    greenhouse.inject_fault("air", "spike")
    readings = sampler.run_round(10.0)
    flagged = [r for r in readings if r.sensor == "air" and r.quality == "implausible"]
    assert flagged and all("outside the possible range" in r.reason for r in flagged)
    clock.advance(10)
    assert {r.quality for r in sampler.run_round(10.0)} == {"good"}


class Exploding:
    """A broken driver that raises (drivers must not; the sampler copes anyway)."""

    id = "broken"

    def quantities(self):
        return ("temperature",)

    def read(self):
        raise OSError("I2C bus NACK")

    def close(self):
        pass


def test_a_driver_that_raises_yields_an_error_reading_and_the_round_goes_on(greenhouse, clock, fresh_buffer):
    slots = [SensorSlot(Exploding(), 10.0), sim_sensor(greenhouse, clock, "air", ["temperature"])]
    readings = Sampler(slots, fresh_buffer, clock).run_round(10.0)
    assert [(r.sensor, r.quality) for r in readings] == [("broken", "error"), ("air", "good")]
    assert readings[0].reason == "driver raised OSError: I2C bus NACK"
    assert fresh_buffer.counts()["total"] == 2


@pytest.mark.parametrize("sample, expected", [
    (Sample("humidity", 104.2, "%"), "implausible"),
    (Sample("temperature", 85.0, "°C"), "implausible"),
    (Sample("temperature", float("nan"), "°C"), "error"),
    (Sample("temperature", None, "°C"), "error"),
    (Sample("temperature", 21.5, "°C"), "good"),
    (Sample("temperature", 21.5, "°C", "error", "CRC mismatch"), "error"),
])
def test_judge_flags_impossible_values(sample, expected):
    from edge.gateway.hardware.base import PLAUSIBLE

    judged = judge(sample, PLAUSIBLE[sample.quantity])
    assert judged.quality == expected
    if expected == "error":
        assert judged.value is None and judged.reason


def test_a_configured_range_overrides_the_default(greenhouse, clock, fresh_buffer):
    slot = sim_sensor(greenhouse, clock, "air", ["temperature"])
    slot.limits = {"temperature": (-5.0, 0.0)}  # nothing a July noon can satisfy
    [reading] = Sampler([slot], fresh_buffer, clock).run_round(10.0)
    assert reading.quality == "implausible"


def test_readings_before_clock_sync_are_flagged_then_corrected(fresh_buffer):
    clock = FakeClock(start=JULY_NOON_TEHRAN - 30 * 86400, synced=False)  # fake-hwclock's month-old time
    greenhouse = GreenhouseModel(SimulationConfig(), clock)
    sampler = Sampler([sim_sensor(greenhouse, clock, "air", ["temperature"])], fresh_buffer, clock)
    sampler.run_round(10.0)
    mono_at_read = clock.monotonic()
    clock.advance(10)
    sampler.run_round(10.0)
    [first, second] = fresh_buffer.pending()
    assert first["clock"] == CLOCK_UNSYNCED and first["boot_id"] == clock.boot_id and first["mono"] == mono_at_read

    clock.set_wall(JULY_NOON_TEHRAN)  # NTP steps the clock
    clock.synced = True
    clock.advance(10)
    sampler.run_round(10.0)
    rows = fresh_buffer.pending()
    assert [r["clock"] for r in rows] == [CLOCK_CORRECTED, CLOCK_CORRECTED, CLOCK_SYNCED]
    assert rows[2]["ts"] - rows[0]["ts"] == pytest.approx(20.0)
    assert [e["kind"] for e in fresh_buffer.events()] == ["clock.synced"]


def test_health_needs_every_group_to_keep_its_pace(sampler, clock):
    assert not sampler.healthy()  # nothing ran yet
    for interval in sampler.groups:
        sampler.run_round(interval)
    assert sampler.healthy()
    clock.advance(25)
    assert not sampler.healthy()  # the 10 s group is late; the 1 m group is not


def test_each_round_is_logged_in_one_line_at_debug_level(sampler, greenhouse, caplog):
    greenhouse.inject_fault("air", "dropout")
    with caplog.at_level("DEBUG", logger="edge.gateway.sampler"):
        sampler.run_round(10.0)
    [line] = caplog.messages
    assert line.startswith("round 10s stored seq (1, 3): air temperature error (simulated dropout")
    assert "; light light " in line and line.endswith(" lx")
