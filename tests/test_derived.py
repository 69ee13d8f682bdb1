"""Derived quantities (VPD, dew point, DLI, degree days, ET0) are readings of their own, stored with the round that
gave them, and derived from an input that failed they are errors naming it, never a guess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from conftest import wait_until
from edge.contract.protocol import Reading
from edge.errors import ConfigError
from edge.gateway import agronomy
from edge.gateway.buffer import Buffer
from edge.gateway.clock import FakeClock
from edge.gateway.config import parse_config
from edge.gateway.derived import DerivedConfig, Deriver
from edge.gateway.hardware.base import Sample
from edge.gateway.sampler import Sampler, SensorSlot

TEHRAN_MIDNIGHT = datetime(2025, 7, 15, 0, 0, tzinfo=timezone.utc).timestamp() - 3.5 * 3600  # 15 July, local


class Fixed:
    """A sensor that reads what the test sets (or an error)."""

    def __init__(self, sensor_id, **values):
        self.id = sensor_id
        self.values = values

    def quantities(self):
        return tuple(self.values)

    def read(self):
        return [Sample.error(q, v) if isinstance(v, str) else Sample(q, v, {"temperature": "°C", "humidity": "%",
                "light": "lx", "par": "umol/m2/s"}[q]) for q, v in self.values.items()]

    def close(self):
        pass


def climate(**inputs) -> DerivedConfig:
    return DerivedConfig(id="climate", air_temperature={"sensor": "air", "quantity": "temperature"},
                         humidity={"sensor": "air", "quantity": "humidity"}, **inputs)


@pytest.fixture
def clock():
    return FakeClock(start=TEHRAN_MIDNIGHT + 12 * 3600)


def sampler_of(buffer, clock, deriver, *sensors, intervals=None):
    slots = [SensorSlot(s, (intervals or {}).get(s.id, 10.0)) for s in sensors]
    return Sampler(slots, buffer, clock, derive=[deriver])


def stored(buffer, quantity):
    return [r for r in buffer.readings(["climate"], 0) if r["quantity"] == quantity]


def test_derived_readings_are_stored_in_the_round_that_gave_them(buffer, clock):
    air = Fixed("air", temperature=25.0, humidity=60.0)
    deriver = Deriver(climate(cover_temperature={"sensor": "roof", "quantity": "temperature"}), 33.49, "Asia/Tehran")
    sampler = sampler_of(buffer, clock, deriver, air, Fixed("roof", temperature=14.0))
    readings = sampler.run_round(10.0)
    by_quantity = {r.quantity: r for r in readings if r.sensor == "climate"}
    assert by_quantity["vpd"].value == pytest.approx(1.267, abs=0.001) and by_quantity["vpd"].unit == "kPa"
    assert by_quantity["dew_point"].value == pytest.approx(16.7, abs=0.05) and by_quantity["dew_point"].unit == "°C"
    assert by_quantity["dew_margin"].value == pytest.approx(14.0 - 16.7, abs=0.05)
    assert by_quantity["abs_humidity"].unit == "g/m3"
    assert all(r.quality == "good" and r.ts == by_quantity["vpd"].ts for r in by_quantity.values())
    # one transaction: the derived readings' seqs follow the round's sensor readings without a gap
    rows = list(buffer.readings(["air", "roof", "climate"], 0))
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert stored(buffer, "vpd")[0]["value"] == pytest.approx(1.267, abs=0.001)
    assert "leaf_vpd" not in by_quantity and "dli" not in by_quantity  # no leaf or light input configured


def test_an_input_in_error_gives_error_readings_naming_it_never_a_guess(buffer, clock):
    air = Fixed("air", temperature=25.0, humidity=60.0)
    sampler = sampler_of(buffer, clock, Deriver(climate(), 33.49, "Asia/Tehran"), air)
    sampler.run_round(10.0)
    air.values["humidity"] = "CRC mismatch"
    clock.advance(10)
    derived = {r.quantity: r for r in sampler.run_round(10.0) if r.sensor == "climate"}
    for quantity in ("vpd", "dew_point", "abs_humidity", "humidity_deficit"):
        assert derived[quantity].quality == "error" and derived[quantity].value is None
        assert derived[quantity].reason == "input air/humidity error: CRC mismatch"
    # the temperature is still good: the day's temperature quantities go on
    assert derived["temperature_max"].quality == "good" and derived["temperature_max"].value == 25.0


def test_a_stale_or_missing_light_input_makes_dli_an_error(buffer, clock):
    air, light = Fixed("air", temperature=20.0, humidity=70.0), Fixed("light", light=20_000.0)
    deriver = Deriver(climate(light={"sensor": "light", "quantity": "light"}, max_age="1m"), 33.49, "Asia/Tehran")
    sampler = sampler_of(buffer, clock, deriver, air, light, intervals={"light": 30.0})
    first = {r.quantity: r for r in sampler.run_round(10.0) if r.sensor == "climate"}
    assert "dli" not in first and first["vpd"].quality == "good"  # at start: the light's group has not read yet
    clock.advance(70)
    never = {r.quantity: r for r in sampler.run_round(10.0) if r.sensor == "climate"}
    assert never["dli"].quality == "error" and never["dli"].reason == "input light/light: no reading yet"
    sampler.run_round(30.0)
    clock.advance(90)  # the light sensor's group stops; the air's goes on
    late = {r.quantity: r for r in sampler.run_round(10.0) if r.sensor == "climate"}
    assert late["dli"].quality == "error"
    assert late["dli"].reason == "input light/light stale: last reading 90s ago (limit 60s)"
    assert late["vpd"].quality == "good"


def test_dli_integrates_light_over_the_local_day_and_starts_again_at_midnight(buffer):
    clock = FakeClock(start=TEHRAN_MIDNIGHT + 23 * 3600)  # 23:00 local
    air, light = Fixed("air", temperature=20.0, humidity=70.0), Fixed("light", par=500.0)
    deriver = Deriver(climate(light={"sensor": "light", "quantity": "par"}), 33.49, "Asia/Tehran")
    sampler = sampler_of(buffer, clock, deriver, air, light)
    for _ in range(360):  # an hour at 500 umol/(m2 s): 1.8 mol/m2
        sampler.run_round(10.0)
        clock.advance(10)
    dli = stored(buffer, "dli")
    assert dli[-1]["value"] == pytest.approx(500 * 3590 / 1e6, abs=0.001)  # 359 intervals between 360 readings
    assert dli[-1]["unit"] == "mol/m2/d"
    sampler.run_round(10.0)  # 00:00: a new local day
    assert stored(buffer, "dli")[-1]["value"] == 0.0


def test_a_dark_day_has_a_light_integral_of_zero(buffer, clock):
    air, light = Fixed("air", temperature=12.0, humidity=90.0), Fixed("light", light=0.0)
    deriver = Deriver(climate(light={"sensor": "light", "quantity": "light"}), 33.49, "Asia/Tehran")
    sampler = sampler_of(buffer, clock, deriver, air, light)
    for _ in range(30):
        sampler.run_round(10.0)
        clock.advance(10)
    assert stored(buffer, "dli")[-1]["value"] == 0.0 and stored(buffer, "et0")[-1]["value"] == 0.0


def test_the_days_temperatures_give_degree_days_and_hargreaves_et0(buffer, clock):
    air = Fixed("air", temperature=14.0, humidity=60.0)
    sampler = sampler_of(buffer, clock, Deriver(climate(gdd_base=10.0, gdd_cap=30.0), 33.49, "Asia/Tehran"), air)
    for t in (14.0, 20.0, 26.0, 36.0):
        air.values["temperature"] = t
        sampler.run_round(10.0)
        clock.advance(10)
    last = {q: stored(buffer, q)[-1]["value"] for q in ("temperature_min", "temperature_max", "gdd", "et0")}
    assert (last["temperature_min"], last["temperature_max"]) == (14.0, 36.0)
    assert last["gdd"] == pytest.approx((14.0 + 30.0) / 2 - 10.0)  # the maximum held at the cap
    ra = agronomy.extraterrestrial_radiation(33.49, 196)
    mean = stored(buffer, "temperature_mean")[-1]["value"]
    assert last["et0"] == pytest.approx(agronomy.et0_hargreaves(14.0, 36.0, ra, mean), abs=0.002)


def test_a_restart_takes_the_days_light_integral_up_from_the_buffer(buffer, clock):
    deriver = Deriver(climate(light={"sensor": "light", "quantity": "par"}), 33.49, "Asia/Tehran")
    buffer.append_readings([Reading.taken(clock.time() - 60, "climate", "dli", 7.5, "mol/m2/d")])
    deriver.restore(buffer.latest(["climate"])["climate"])
    sampler = sampler_of(buffer, clock, deriver, Fixed("air", temperature=20.0, humidity=70.0), Fixed("light", par=0.0))
    derived = {r.quantity: r for r in sampler.run_round(10.0) if r.sensor == "climate"}
    assert derived["dli"].value == 7.5


GATEWAY = """
gateway: {{id: gh-test}}
sensors:
  - {{id: air, type: simulated, measures: [temperature, humidity]}}
  - {{id: light, type: simulated, measures: [light]}}
derived:
{derived}
"""


def test_edge_check_refuses_derived_inputs_no_sensor_gives():
    derived = ("  - id: climate\n    air_temperature: {sensor: air, quantity: temperature}\n"
               "    humidity: {sensor: hall, quantity: humidity}\n"
               "    light: {sensor: light, quantity: light}\n")
    with pytest.raises(ConfigError, match=r"<memory>:9: derived\[0\]\.humidity\.sensor: unknown sensor 'hall'"):
        parse_config(GATEWAY.format(derived=derived))
    wrong = derived.replace("hall", "air").replace("quantity: light}", "quantity: humidity}")
    with pytest.raises(ConfigError, match="light must be a quantity par or light, not humidity"):
        parse_config(GATEWAY.format(derived=wrong))


def test_a_derived_id_is_a_sensor_id_of_its_own_that_alerts_can_watch():
    derived = ("  - id: air\n    air_temperature: {sensor: air, quantity: temperature}\n"
               "    humidity: {sensor: air, quantity: humidity}\n")
    with pytest.raises(ConfigError, match=r"derived\[0\]\.id: duplicate id 'air'"):
        parse_config(GATEWAY.format(derived=derived))
    ok = derived.replace("id: air\n", "id: climate\n", 1) + """alerts:
  rules:
    - {id: wet-roof, type: below, input: {sensor: climate, quantity: dew_margin}, threshold: 1}
"""
    with pytest.raises(ConfigError, match="sensor 'climate' does not measure dew_margin"):
        parse_config(GATEWAY.format(derived=ok))  # no cover temperature: no dew margin
    config = parse_config(GATEWAY.format(derived=ok.replace("dew_margin", "vpd")))
    assert [s.id for s in config.sources()] == ["air", "light", "climate"]


@pytest.mark.slow
def test_edge_readings_on_the_demo_shows_vpd_in_kpa(tmp_path):
    """The demo, run as `edge run` runs it (in a directory of its own: it buffers under ./var/)."""
    daemon = subprocess.Popen([sys.executable, "-m", "edge", "run"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "EDGE_CONFIG": ""})

    def vpd_rows():
        proc = subprocess.run([sys.executable, "-m", "edge", "readings", "--sensor", "climate", "--format", "json"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "EDGE_CONFIG": ""})
        if proc.returncode != 0:
            return None
        return [r for r in json.loads(proc.stdout or "[]") if r["quantity"] == "vpd"]

    try:
        rows = wait_until(vpd_rows, timeout=60, what="the demo's first vpd reading")
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    assert rows[0]["unit"] == "kPa" and rows[0]["quality"] == "good" and 0 <= rows[0]["value"] < 10, err


@pytest.mark.slow
def test_derived_readings_reach_the_history_api_like_any_reading(tmp_path, postgres_server):
    """Through the real chain: sampler and deriver -> buffer -> sync -> Mosquitto -> collector -> PostgreSQL ->
    `edge dc api` -> `edge history pull --sensor climate --quantity vpd`, error readings included."""
    import csv
    import io

    from dc_kit import datacenter_config
    from edge.datacenter.collector import Collector
    from edge.gateway.clock import Clock
    from edge.gateway.sync import Sync, SyncConfig
    from history_kit import iso
    from services import Broker
    from test_history import Api

    gateway = "gh-north-01"
    clock = FakeClock(start=datetime(2025, 7, 14, 21, 0, tzinfo=timezone.utc).timestamp())
    buffer, _ = Buffer.open(tmp_path / "gateway.db", now=clock.time(), boot_id=clock.boot_id)
    air = Fixed("air", temperature=25.0, humidity=60.0)
    sampler = sampler_of(buffer, clock, Deriver(climate(), 33.49, "Asia/Tehran"), air)
    start = clock.time()
    for i in range(30):
        air.values["humidity"] = "no answer" if i == 10 else 60.0
        sampler.run_round(10.0)
        clock.advance(10)
    broker = Broker(tmp_path / "broker").start()
    database = postgres_server.create_database()
    collector = Collector(datacenter_config(broker, database), client_id="derived-collector").start()
    try:
        assert collector.subscribed.wait(10)
        sync = Sync(SyncConfig(url=broker.url, interval="0.2s", reconnect_min="1s", reconnect_max="2s"), gateway,
                    buffer, Clock("synced"))
        sync.start()
        try:
            wait_until(lambda: buffer.counts("readings")["pending"] == 0, 30, "the readings to be acknowledged")
        finally:
            sync.stop()
    finally:
        collector.stop()
        broker.kill()
        buffer.close()
    api = Api({**os.environ, "EDGE_MQTT_URL": broker.url, "EDGE_DATABASE_URL": database.url}, tmp_path)
    try:
        token = api.token_file(api.token("north", "gh-north-*"))
        out = tmp_path / "vpd.csv"
        result = api.cli("history", "pull", "--server", api.url, "--token-file", token, "--gateway", gateway,
                         "--from", iso(start), "--to", iso(clock.time()), "--sensor", "climate",
                         "--quantity", "vpd", "-o", str(out))
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader(io.StringIO(out.read_text())))
    finally:
        api.stop()
    assert len(rows) == 30 and {r["unit"] for r in rows} == {"kPa"}
    assert [r["quality"] for r in rows].count("error") == 1
    good = [float(r["value"]) for r in rows if r["quality"] == "good"]
    assert good and all(v == pytest.approx(agronomy.vpd(25.0, 60.0), abs=0.001) for v in good)
