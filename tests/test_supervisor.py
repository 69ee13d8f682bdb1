"""The supervisor: priorities, safety limits that cannot be talked round, and state that survives restarts.

Every test runs on gpiozero mock pins (the pin levels are asserted), a real SQLite buffer and an injected clock.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from edge.gateway.config import parse_config
from edge.gateway.buffer import Buffer, NewReading
from edge.gateway.clock import FakeClock
from edge.gateway.control.state import ControlState
from edge.gateway.control.supervisor import LatestReadings, Refused, Supervisor
from edge.gateway.control.types import Override
from edge.gateway.hardware import open_hardware

TEHRAN = ZoneInfo("Asia/Tehran")

CONFIG = """\
gateway: {id: gh}
sensors:
  - {id: air, type: simulated, measures: [temperature], interval: 10s}
  - {id: soil, type: simulated, measures: [soil_moisture], zone: bed-1, interval: 1m}
actuators:
  - {id: fan, type: pwm, kind: fan, pin: 18}
  - {id: heater, type: relay, kind: heater, pin: 17, min_off: 3m}
  - {id: pump, type: relay, kind: pump, zone: bed-1, pin: 27, max_on: 15m, active_high: false}
  - {id: lights, type: relay, kind: light, pin: 24}
control:
  interlocks:
    - {actuators: [heater, fan], wait: 30s}
schedules:
  - {id: irrigation-morning, type: cron, actuator: pump, cron: "0 6 * * *", duration: 10m}
rules:
  - {id: cooling, type: threshold, input: {sensor: air, quantity: temperature}, actuator: fan,
     on_above: 30, off_below: 27}
  - {id: frost, type: threshold, input: {sensor: air, quantity: temperature}, actuator: heater,
     on_below: 4, off_above: 7}
"""


def local(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=TEHRAN).timestamp()


class Greenhouse:
    """A supervisor over mock pins and a buffer, restartable as the daemon restarts."""

    def __init__(self, tmp_path, start: str, extra: str = "", config: str = CONFIG):
        self.config = parse_config(config + extra)
        self.clock = FakeClock(start=local(start))
        self.path = tmp_path / "buffer.db"
        self.start()

    def start(self):
        self.buffer, _ = Buffer.open(self.path, now=self.clock.time(), boot_id="b")
        self.hardware = open_hardware(self.config, self.clock, sensors=False)
        self.latest = LatestReadings()
        self.supervisor = Supervisor(self.config, self.hardware.actuators, self.buffer, self.clock, self.latest)

    def stop(self, clean=True):
        if clean:
            self.supervisor.shutdown()
            self.buffer.mark_clean_stop(self.clock.time())
        self.hardware.close()
        self.buffer.close()

    def restart(self, clean=True, downtime=5.0):
        self.stop(clean)
        self.clock.advance(downtime)
        self.start()

    def read(self, sensor: str, quantity: str, value: float | None, quality: str = "good"):
        self.latest([NewReading(self.clock.time(), sensor, quantity, value, "", quality)])

    def tick(self, seconds: float = 0.0, air: float | None = None):
        self.clock.advance(seconds)
        if air is not None:
            self.read("air", "temperature", air)
        self.supervisor.evaluate()

    def pin(self, number: int) -> float:
        return self.hardware.pin_factory.pin(number).state

    def value(self, actuator: str) -> float:
        return self.hardware.actuators[actuator].value

    def changes(self, actuator: str | None = None) -> list[tuple[str, float, str]]:
        out = []
        for event in self.buffer.events():
            if event["kind"] == "actuator.change" and actuator in (None, event["source"]):
                data = json.loads(event["data"])
                out.append((event["source"], data["value"], data["reason"]))
        return out

    def events(self, kind: str) -> list[dict]:
        return [{**e, "data": json.loads(e["data"])} for e in self.buffer.events() if e["kind"] == kind]


@pytest.fixture
def greenhouse(tmp_path):
    gh = Greenhouse(tmp_path, "2025-07-15 05:58:00")
    yield gh
    gh.stop()


def test_every_output_starts_off_at_its_safe_level(greenhouse):
    greenhouse.tick()
    assert (greenhouse.pin(18), greenhouse.pin(17), greenhouse.pin(24)) == (0, 0, 0)
    assert greenhouse.pin(27) == 1  # the active-low pump relay is off when its pin is HIGH


def test_a_schedule_switches_on_and_off_at_its_times_with_its_reason(greenhouse):
    greenhouse.tick(air=25)
    assert greenhouse.value("pump") == 0
    greenhouse.tick(120, air=25)  # 06:00
    assert greenhouse.value("pump") == 1 and greenhouse.pin(27) == 0
    greenhouse.tick(600, air=25)  # 06:10
    assert greenhouse.value("pump") == 0 and greenhouse.pin(27) == 1
    assert greenhouse.changes("pump") == [("pump", 1.0, "schedule:irrigation-morning"),
                                          ("pump", 0.0, "schedule:irrigation-morning")]


def test_a_restart_mid_irrigation_waters_only_for_the_time_left(greenhouse):
    greenhouse.tick(120 + 300, air=25)  # 06:05, five minutes into the 10-minute window
    assert greenhouse.value("pump") == 1
    greenhouse.restart(downtime=60)  # back at 06:06
    greenhouse.tick(air=25)
    assert greenhouse.value("pump") == 1
    assert greenhouse.supervisor.describe("pump")["remaining_s"] == 240
    greenhouse.tick(240, air=25)  # 06:10: the window closes as planned, not at 06:16
    assert greenhouse.value("pump") == 0
    reasons = [reason for _, _, reason in greenhouse.changes("pump")]
    assert reasons == ["schedule:irrigation-morning", "shutdown", "schedule:irrigation-morning",
                       "schedule:irrigation-morning"]


def test_a_restart_after_the_window_does_not_water_late(greenhouse):
    greenhouse.tick(180, air=25)
    greenhouse.restart(downtime=3600)  # down through the whole window
    greenhouse.tick(air=25)
    assert greenhouse.value("pump") == 0


def test_hysteresis_rule_drives_the_fan_without_chatter(greenhouse):
    for temperature in (29.9, 30.4, 29.8, 30.1, 28.0, 27.1, 26.9, 27.5, 29.0):
        greenhouse.tick(10, air=temperature)
    assert greenhouse.changes("fan") == [("fan", 1.0, "rule:cooling"), ("fan", 0.0, "rule:cooling")]


def test_an_interlock_refuses_the_second_output(greenhouse):
    greenhouse.tick(10, air=3.0)  # frost: heater on
    assert greenhouse.value("heater") == 1
    with pytest.raises(Refused, match="^interlock with heater$"):
        greenhouse.supervisor.command("fan", "on", 600, "cli")
    assert greenhouse.value("fan") == 0 and greenhouse.pin(18) == 0


def test_an_interlock_waits_after_the_other_output_went_off(greenhouse):
    greenhouse.tick(10, air=3.0)
    greenhouse.tick(10, air=8.0)  # frost over: heater off
    assert greenhouse.value("heater") == 0
    with pytest.raises(Refused, match="interlock with heater: waiting 30s after it went off"):
        greenhouse.supervisor.command("fan", "on", 600, "cli")
    greenhouse.tick(31, air=8.0)
    assert greenhouse.supervisor.command("fan", "on", 600, "cli")["state"] == "on"


def test_a_rule_refused_by_an_interlock_is_recorded_once(greenhouse):
    greenhouse.supervisor.command("heater", "on", 600, "cli")
    for _ in range(5):
        greenhouse.tick(10, air=35.0)  # hot: cooling wants the fan, the heater holds the interlock
    assert greenhouse.value("fan") == 0
    [refused] = greenhouse.events("actuator.refused")
    assert refused["data"] == {"request": "rule:cooling", "refused": "interlock with heater"}


def test_max_on_cuts_a_stuck_output_and_latches_it_off(tmp_path):
    gh = Greenhouse(tmp_path, "2025-07-15 12:00:00", extra="""\
  - {id: stuck, type: irrigation, input: {sensor: soil, quantity: soil_moisture}, actuator: pump,
     start_below: 20, stop_above: 90, max_run: 2h, lockout: 1h}
""")
    try:
        gh.read("soil", "soil_moisture", 10.0)  # a probe stuck dry: the rule would water for 2 hours
        gh.tick(air=25)
        assert gh.value("pump") == 1
        for _ in range(14):
            gh.read("soil", "soil_moisture", 10.0)
            gh.tick(60, air=25)
        assert gh.value("pump") == 1  # 14 minutes
        gh.read("soil", "soil_moisture", 10.0)
        gh.tick(60, air=25)  # 15 minutes: max_on
        assert gh.value("pump") == 0 and gh.pin(27) == 1
        assert gh.changes("pump")[-1] == ("pump", 0.0, "safety:max_on")
        for _ in range(30):  # the rule still asks; the latch holds
            gh.read("soil", "soil_moisture", 10.0)
            gh.tick(60, air=25)
        assert gh.value("pump") == 0
        with pytest.raises(Refused, match="latched off by max_on 15m"):
            gh.supervisor.command("pump", "on", 300, "cli")
    finally:
        gh.stop()


def test_max_on_counts_the_on_time_before_a_restart(tmp_path):
    gh = Greenhouse(tmp_path, "2025-07-15 12:00:00", extra="""\
  - {id: stuck, type: irrigation, input: {sensor: soil, quantity: soil_moisture}, actuator: pump,
     start_below: 20, stop_above: 90, max_run: 2h, lockout: 1h}
""")
    try:
        gh.read("soil", "soil_moisture", 10.0)
        gh.tick(air=25)
        for _ in range(10):
            gh.read("soil", "soil_moisture", 10.0)
            gh.tick(60, air=25)
        gh.restart(downtime=30)  # 10 minutes on, then a restart
        gh.read("soil", "soil_moisture", 10.0)
        gh.tick(air=25)
        assert gh.value("pump") == 1
        for _ in range(5):
            gh.read("soil", "soil_moisture", 10.0)
            gh.tick(60, air=25)
        assert gh.value("pump") == 0  # 10 + 5 minutes: cut, though only 5 minutes since the restart
        assert gh.changes("pump")[-1] == ("pump", 0.0, "safety:max_on")
    finally:
        gh.stop()


def test_after_a_crash_the_output_is_recorded_off_and_its_on_time_still_counts(tmp_path):
    gh = Greenhouse(tmp_path, "2025-07-15 12:00:00")
    try:
        gh.supervisor.command("pump", "on", 900, "cli")
        gh.clock.advance(600)
        gh.buffer.append_readings([NewReading(gh.clock.time(), "air", "temperature", 25.0, "°C")])  # last sign of life
        gh.restart(clean=False, downtime=20)  # kill -9: no shutdown recorded
        assert gh.changes("pump")[-1] == ("pump", 0.0, "startup")
        gh.tick(air=25)  # the override has 280 s left, but max_on has only 300 s left of 15 minutes
        assert gh.value("pump") == 1
        gh.tick(285, air=25)
        assert gh.value("pump") == 0
    finally:
        gh.stop()


def test_a_manual_duration_longer_than_max_on_is_refused(greenhouse):
    with pytest.raises(Refused, match="1h exceeds pump's max_on 15m"):
        greenhouse.supervisor.command("pump", "on", 3600, "cli")
    assert greenhouse.value("pump") == 0


def test_min_off_keeps_an_output_off(greenhouse):
    greenhouse.tick(10, air=3.0)
    greenhouse.tick(10, air=8.0)  # heater off
    greenhouse.tick(10, air=3.0)  # frost again after 10 s: min_off is 3 minutes
    assert greenhouse.value("heater") == 0
    greenhouse.tick(170, air=3.0)
    assert greenhouse.value("heater") == 1


def test_a_stale_input_releases_its_rules_actuator_and_records_a_fault(greenhouse):
    greenhouse.tick(10, air=35.0)
    assert greenhouse.value("fan") == 1
    greenhouse.tick(31)  # no reading for 31 s: stale after 3 x 10 s
    assert greenhouse.value("fan") == 0 and greenhouse.pin(18) == 0
    assert greenhouse.changes("fan")[-1] == ("fan", 0.0, "safety:stale_input")
    faults = {e["source"]: e["data"] for e in greenhouse.events("rule.fault")}
    assert set(faults) == {"cooling", "frost"}  # both rules read the silent sensor
    assert faults["cooling"]["reason"].startswith("input stale") and faults["cooling"]["actuator"] == "fan"
    greenhouse.tick(10, air=35.0)
    assert greenhouse.value("fan") == 1
    assert {e["source"] for e in greenhouse.events("rule.recovered")} == {"cooling", "frost"}


def test_an_error_reading_releases_the_actuator(greenhouse):
    greenhouse.tick(10, air=35.0)
    greenhouse.read("air", "temperature", None, "error")
    greenhouse.tick(1)
    assert greenhouse.value("fan") == 0


def test_manual_override_beats_rules_until_auto(greenhouse):
    greenhouse.tick(10, air=35.0)
    result = greenhouse.supervisor.command("fan", "off", None, "cli:farmer")
    assert (result["state"], result["reason"]) == ("off", "manual:cli:farmer")
    greenhouse.tick(600, air=35.0)
    assert greenhouse.value("fan") == 0  # an off override without --for lasts control.manual_default (1h)
    assert greenhouse.supervisor.command("fan", "auto", None, "cli:farmer")["reason"] == "rule:cooling"


def test_auto_on_an_output_nothing_asks_for_answers_auto_not_the_ended_override(greenhouse):
    greenhouse.tick(10, air=20.0)
    assert greenhouse.supervisor.command("fan", "on", 600, "cli:root")["reason"] == "manual:cli:root"
    result = greenhouse.supervisor.command("fan", "auto", None, "cli:root")
    assert (result["state"], result["reason"], result["override"]) == ("off", "auto", None)
    assert greenhouse.supervisor.snapshot()["fan"]["reason"] == "auto"  # edge status says the same
    greenhouse.restart()
    assert greenhouse.supervisor.describe("fan")["reason"] != "manual:cli:root"


def test_an_override_without_a_duration_ends_after_manual_default_or_max_manual(greenhouse):
    greenhouse.tick(10, air=35.0)
    until = greenhouse.supervisor.command("fan", "off", None, "cli")["override"]["until"]
    assert until == greenhouse.clock.time() + 3600  # control.manual_default
    greenhouse.tick(3599, air=35.0)
    assert greenhouse.value("fan") == 0
    greenhouse.tick(1, air=35.0)
    assert greenhouse.value("fan") == 1 and greenhouse.changes("fan")[-1] == ("fan", 1.0, "rule:cooling")
    # a pump's max_manual (30 minutes by default) is shorter than manual_default, so it bounds the default too
    until = greenhouse.supervisor.command("pump", "off", None, "cli")["override"]["until"]
    assert until == greenhouse.clock.time() + 1800


def test_a_manual_on_expires(greenhouse):
    greenhouse.tick(air=20)
    assert greenhouse.supervisor.command("lights", "on", 120, "cli")["remaining_s"] == 120
    greenhouse.tick(119, air=20)
    assert greenhouse.value("lights") == 1
    greenhouse.tick(1, air=20)
    assert greenhouse.value("lights") == 0


def test_overrides_survive_a_restart(greenhouse):
    greenhouse.supervisor.command("lights", "on", 600, "cli")
    greenhouse.restart(downtime=60)
    greenhouse.tick(air=20)
    assert greenhouse.value("lights") == 1
    assert greenhouse.supervisor.describe("lights")["remaining_s"] == 540


def test_the_power_budget_limits_outputs_on_at_once(tmp_path):
    gh = Greenhouse(tmp_path, "2025-07-15 12:00:00", config=CONFIG.replace("control:\n", "control:\n  max_outputs_on: 1\n"))
    try:
        gh.supervisor.command("lights", "on", 600, "cli")
        with pytest.raises(Refused, match="power budget: 1 output already on"):
            gh.supervisor.command("pump", "on", 60, "cli")
    finally:
        gh.stop()


def test_unknown_actuators_actions_and_durations_are_refused(greenhouse):
    for args, message in ((("nope", "on", 60), "unknown actuator 'nope'"),
                          (("fan", "toggle", 60), "unknown action 'toggle'"),
                          (("fan", "on", -5), "invalid duration -5"),
                          (("fan", "on", True), "invalid duration True"),
                          (("fan", "on", float("nan")), "invalid duration nan")):
        with pytest.raises(Refused, match=message):
            greenhouse.supervisor.command(*args, "cli")
    assert greenhouse.changes() == []


def test_shutdown_turns_everything_off_with_its_reason(greenhouse):
    greenhouse.supervisor.command("lights", "on", 600, "cli")
    greenhouse.supervisor.shutdown()
    assert greenhouse.pin(24) == 0
    assert greenhouse.changes("lights")[-1] == ("lights", 0.0, "shutdown")


# ------------------------------------------------------------------------------------------- bounded overrides


def test_a_1000_hour_override_is_refused_with_its_reason_on_and_off_alike(greenhouse):
    with pytest.raises(Refused, match=r"^1000h exceeds heater's max_manual 4h$"):
        greenhouse.supervisor.command("heater", "on", 1000 * 3600, "cli")
    with pytest.raises(Refused, match=r"^366d exceeds heater's max_manual 4h$"):
        greenhouse.supervisor.command("heater", "off", 366 * 86400, "remote:c-1")
    with pytest.raises(Refused, match=r"^31m exceeds pump's max_manual 30m$"):  # water: minutes, not hours
        greenhouse.supervisor.command("pump", "off", 31 * 60, "cli")
    assert greenhouse.supervisor.overrides == {} and greenhouse.changes() == []
    assert greenhouse.supervisor.command("heater", "off", 4 * 3600, "cli")["override"]["value"] == 0.0


def test_max_manual_in_the_config_replaces_the_default_of_the_kind(tmp_path):
    config = CONFIG.replace("kind: light, pin: 24}", "kind: light, pin: 24, max_manual: 2d}")
    gh = Greenhouse(tmp_path, "2025-07-15 12:00:00", config=config)
    try:
        assert gh.supervisor.command("lights", "on", 36 * 3600, "cli")["remaining_s"] == 36 * 3600
        with pytest.raises(Refused, match="3d exceeds lights's max_manual 2d"):
            gh.supervisor.command("lights", "on", 3 * 86400, "cli")
    finally:
        gh.stop()


def test_an_unbounded_override_stored_by_an_older_version_is_bounded_at_start(greenhouse):
    store = ControlState(greenhouse.buffer)  # "off until auto", as versions before max_manual stored it:
    store.save_override(Override("heater", 0.0, math.inf, "cli:old", greenhouse.clock.time()))
    greenhouse.restart(downtime=60)
    assert greenhouse.supervisor.describe("heater")["override"]["until"] == greenhouse.clock.time() - 60 + 4 * 3600


SAFETY_RULES = """  - {id: frost-safety, type: threshold, input: {sensor: air, quantity: temperature}, actuator: heater,
     on_below: 4, off_above: 7, priority: safety}
  - {id: heater-overheat, type: threshold, input: {sensor: air, quantity: temperature}, actuator: heater,
     on_above: 35, off_below: 30, action: off, priority: safety}
"""


@pytest.fixture
def guarded(tmp_path):
    gh = Greenhouse(tmp_path, "2025-01-15 02:00:00", extra=SAFETY_RULES)
    yield gh
    gh.stop()


def test_a_manual_off_does_not_stop_safety_frost_protection(guarded):
    guarded.tick(air=12.0)
    guarded.supervisor.command("heater", "off", 4 * 3600, "cli:farmer")
    guarded.tick(10, air=3.0)  # frost: the safety rule heats through the manual off
    assert guarded.value("heater") == 1 and guarded.pin(17) == 1
    assert guarded.changes("heater")[-1] == ("heater", 1.0, "rule:frost-safety")
    guarded.tick(10, air=8.0)  # frost over: the manual off, still in force, has the output again
    assert guarded.value("heater") == 0
    assert guarded.changes("heater")[-1] == ("heater", 0.0, "manual:cli:farmer")


def test_an_over_temperature_cut_off_beats_a_manual_on_and_yields_when_it_clears(guarded):
    guarded.tick(air=20.0)
    guarded.supervisor.command("heater", "on", 3600, "remote:c-7")
    assert guarded.value("heater") == 1
    guarded.tick(10, air=36.0)
    assert guarded.value("heater") == 0 and guarded.changes("heater")[-1] == ("heater", 0.0, "rule:heater-overheat")
    guarded.tick(10, air=33.0)  # inside the hysteresis band: still cut off
    assert guarded.value("heater") == 0
    guarded.tick(200, air=26.0)  # below off_below (and the cooling fan off, so its interlock lets go)
    guarded.tick(31, air=26.0)  # past min_off and the interlock's wait: the override has the heater again
    assert guarded.changes("heater")[-1] == ("heater", 1.0, "manual:remote:c-7")


def test_a_safety_rule_still_obeys_the_safety_limits(guarded):
    guarded.tick(air=20.0)
    guarded.supervisor.command("fan", "on", 3600, "cli")  # the interlock keeps the heater off while the fan runs
    guarded.tick(10, air=3.0)
    assert guarded.value("heater") == 0 and guarded.value("fan") == 1
    assert guarded.events("actuator.refused")[-1]["data"] == {"request": "rule:frost-safety",
                                                              "refused": "interlock with fan"}


def test_a_normal_rule_still_yields_to_a_manual_override(greenhouse):
    greenhouse.tick(air=12.0)
    greenhouse.supervisor.command("heater", "off", 3600, "cli")
    greenhouse.tick(10, air=3.0)  # the plain frost rule of CONFIG is not a safety rule
    assert greenhouse.value("heater") == 0


def test_switch_listeners_hear_each_switch_and_a_failing_one_stops_nothing(greenhouse, caplog):
    heard = []

    def broken(*_):
        raise RuntimeError("listener bug")

    greenhouse.supervisor.on_switch += [broken, lambda actuator, change, ts: heard.append((actuator, change.value,
                                                                                           change.reason, ts))]
    now = greenhouse.clock.time()
    view = greenhouse.supervisor.command("lights", "on", 60, "cli")
    assert view["state"] == "on" and greenhouse.pin(24) == 1
    assert heard == [("lights", 1.0, "manual:cli", now)]
    assert "a listener of lights's switch failed" in caplog.text
    greenhouse.tick(61)
    assert heard[-1] == ("lights", 0.0, "manual:cli", now + 61)
