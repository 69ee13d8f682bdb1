"""The alert engine on a fake clock: no storms, no false OKs, nothing forgotten across a restart."""

from __future__ import annotations

import pytest

from alerts_kit import BOSS, MORNING, OWNER, OWNER_E164, STRANGER, Greenhouse
from edge.gateway.alerts.transports.kavenegar import KavenegarTransport
from edge.gateway.alerts.transports.modem import ModemTransport
from edge.gateway.alerts.transports.modem_sim import SimulatedModem
from sms_fakes import KEY, unreachable

HOT = "- {id: hot, type: above, input: {sensor: air, quantity: temperature}, threshold: 40, clear: 38, for: 5m}\n"
HOT_CRITICAL = ("- {id: hot, type: above, input: {sensor: air, quantity: temperature}, threshold: 40, clear: 38, "
                "for: 1m, severity: critical}\n")
DRY = ("- {id: dry, type: below, input: {sensor: soil, quantity: soil_moisture}, threshold: 20, clear: 25, "
       "for: 1m}\n")


@pytest.fixture
def greenhouses():
    made = []

    def make(*args, **kwargs) -> Greenhouse:
        gh = Greenhouse(*args, **kwargs)
        made.append(gh)
        return gh

    yield make
    for gh in made:
        gh.close()


def wobble(low: float, high: float):
    """A value that flips between ``low`` and ``high`` at every reading."""
    return lambda t: high if round(t / 10) % 2 else low


# ----------------------------------------------------------------------------------------------------- no storms


def test_a_value_oscillating_around_its_threshold_yields_one_sms(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, HOT)
    gh.run(minutes=60, air_temperature=wobble(39.5, 40.5))  # never above for 5 minutes: nothing
    assert gh.texts() == []
    gh.run(minutes=6, air_temperature=41)
    gh.run(minutes=120, air_temperature=wobble(39.5, 40.5))  # inside the 38..40 band: neither clear nor new
    assert gh.texts() == ["Warning Demo: air temperature 41C (above 40), since 15 Jul 11:34. Check vents and fans. "
                          "Reply 10 to acknowledge."]


def test_resolved_goes_out_only_after_a_firing_message(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, HOT)
    gh.run(minutes=3, air_temperature=41)  # pending, never firing
    gh.run(minutes=10, air_temperature=30)
    assert gh.texts() == []
    gh.run(minutes=8, air_temperature=41)
    gh.run(minutes=2, air_temperature=37.5)
    assert [t.split(":")[0] for t in gh.texts()] == ["Warning Demo", "Resolved Demo"]
    assert gh.texts()[1].startswith("Resolved Demo: air temperature 37.5C")


def test_a_stale_sensor_yields_one_alert_and_never_a_false_ok(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, HOT)
    gh.run(minutes=6, air_temperature=41, air_humidity=40)
    gh.run(minutes=30, air_temperature=None, air_humidity=None)  # the sensor fails: error readings only
    texts = gh.texts()
    assert len(texts) == 2
    assert texts[1].startswith("Warning Demo: no data from air, since")
    assert not any(t.startswith("Resolved") for t in texts)  # missing data never counts as OK
    gh.run(minutes=2, air_temperature=30, air_humidity=40)  # back, and truly cool now
    assert sorted(gh.texts()[2].splitlines()[1:3]) == ["10 Resolved: air temperature 30C 11:06",
                                                       "11 Resolved: air reports again 11:06"]


def test_a_threshold_never_fires_on_the_last_value_of_a_sensor_gone_silent(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, HOT)
    gh.run(minutes=1, air_temperature=41, air_humidity=40)
    gh.run(minutes=20, air_temperature="silent", air_humidity="silent")
    assert len(gh.texts()) == 1 and gh.texts()[0].startswith("Warning Demo: no data from air, since")


def test_link_down_with_twenty_stale_sensors_yields_one_sms_over_the_modem(tmp_path, greenhouses):
    sensors = "sensors:\n" + "".join(
        f"  - {{id: s{i:02d}, type: simulated, measures: [temperature], interval: 10s}}\n" for i in range(20))
    rules = "- {id: silent, type: stale}\n- {id: link, type: link_down, after: 5m, severity: critical}\n"
    with SimulatedModem() as modem:
        kavenegar = KavenegarTransport(KEY, "2000660110", http=unreachable())
        gh = greenhouses(tmp_path, rules, sensors=sensors,
                         transports=[kavenegar, ModemTransport(modem.port, timeout=2)])
        everyone = {f"s{i:02d}_temperature": 21.0 for i in range(20)}
        gh.service.observe_link(True)
        gh.run(minutes=5, **everyone)
        gh.service.observe_link(False)  # the fiber and the sensor network's switch lose power together
        gh.run(minutes=14, **dict.fromkeys(everyone, "silent"))  # (a first reminder would follow at 5+15 min)
        assert [(m.number, m.text.split(",")[0]) for m in modem.messages] == [
            (OWNER_E164, "CRITICAL Demo: greenhouse internet link is down")]
        assert [s.text for s in gh.console.sent] == []
        assert {e["data"]["transport"] for e in gh.events("sms.")} == {"modem"}


# --------------------------------------------------------------------------------------- repeats and replies


def test_repeats_follow_the_schedule_and_a_reply_stops_them_but_not_from_a_stranger(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, HOT_CRITICAL)
    gh.after_earlier_alerts(7)  # so this one is code 17
    gh.run(minutes=1, air_temperature=41)
    gh.run(minutes=20)
    assert gh.reply(STRANGER, "۱۷") == "ignored"
    gh.run(minutes=100)
    assert gh.reply(OWNER, "۱۷") == "acked"
    gh.run(minutes=6 * 60)
    alerts = [(m, text) for m, _, text in gh.sent() if "acknowledged" not in text]
    assert [round(m) for m, _ in alerts] == [1, 1 + 15, 1 + 15 + 30, 1 + 15 + 30 + 60]
    assert all("Reply 17 to acknowledge" in text for _, text in alerts)
    assert alerts[1][1].startswith("Reminder CRITICAL Demo")
    assert gh.texts()[-1] == "Demo: alert 17 acknowledged; no more reminders."  # the farmer knows it worked
    assert [e["data"] for e in gh.events("alert.acked")] == [{"code": "17", "by": "Ali"}]


def test_unacknowledged_criticals_repeat_every_two_hours_at_last(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, HOT_CRITICAL)
    gh.run(minutes=1 + 15 + 30 + 60 + 120 * 3 + 5, air_temperature=41)
    minutes = [round(m) for m, _, _ in gh.sent()]
    assert [b - a for a, b in zip(minutes, minutes[1:])] == [15, 30, 60, 120, 120, 120]


def test_an_unacknowledged_critical_escalates_to_the_next_contact(tmp_path, greenhouses):
    recipients = f'  recipients:\n    - {{name: Ali, number: "{OWNER}"}}\n' \
                 f'    - {{name: Reza, number: "{BOSS}", role: escalation}}\n'
    gh = greenhouses(tmp_path, HOT_CRITICAL, recipients=recipients)
    gh.run(minutes=40, air_temperature=41)
    to_boss = [text for _, number, text in gh.sent() if number == "+989127654321"]
    assert len(to_boss) == 1 and to_boss[0].startswith("Escalated CRITICAL Demo: air temperature 41C")
    assert gh.reply(BOSS, "10") == "acked"  # the escalation contact may acknowledge too
    gh.run(minutes=120)
    assert [(round(m), n[-4:]) for m, n, _ in gh.sent()] == [(1, "4567"), (16, "4567"), (31, "4321"),
                                                           (40, "4321")]  # the last: the confirmation to Reza


def test_a_status_reply_gets_the_greenhouse_now(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, HOT)
    gh.run(minutes=1, air_temperature=24.5, air_humidity=55)
    assert gh.reply(OWNER, "وضعیت") == "status"
    gh.jobs()
    assert gh.texts()[-1].splitlines() == ["Status Demo 10:31:", "now: air temperature 24.5C, air humidity 55%, "
                                          "soil soil moisture 35%", "off: pump", "No open alerts."]


# ------------------------------------------------------------------------------------ quiet hours and caps


def test_quiet_hours_defer_a_warning_to_a_digest_but_not_a_critical(tmp_path, greenhouses):
    night = MORNING + 12.5 * 3600  # 23:00
    gh = greenhouses(tmp_path, DRY + HOT_CRITICAL, alerts="quiet_hours: {start: '22:00', end: '06:00'}\n",
                     start=night)
    gh.run(minutes=10, soil_soil_moisture=12, air_temperature=25)
    assert gh.texts() == []
    gh.run(minutes=10, air_temperature=45)
    assert [t.split(":")[0] for t in gh.texts()] == ["CRITICAL Demo"]
    gh.run(minutes=7 * 60, air_temperature=25, soil_soil_moisture=12)
    digest = gh.texts()[1]
    assert digest.splitlines()[0] == "Quiet-hours digest Demo, 2 alerts:"
    assert [m for m, _, t in gh.sent() if t == digest] == [pytest.approx(7 * 60, abs=0.5)]
    assert digest.splitlines()[1:3] == ["10 WARN: soil soil moisture 12% (below 20) 15 Jul 23:01",
                                        "11 Resolved: air temperature 25C 15 Jul 23:20"]  # this one waited too


def test_the_seventh_sms_in_an_hour_becomes_one_summary(tmp_path, greenhouses):
    rules = "".join(f"- {{id: t{i}, type: above, input: {{sensor: air, quantity: temperature}}, "
                    f"threshold: {30 + i}, clear: 20}}\n" for i in range(10))
    gh = greenhouses(tmp_path, rules, alerts="caps: {per_hour: 6, per_day: 30}\n")
    for i in range(10):  # a new threshold crossed every 5 minutes: ten alerts in 50 minutes
        gh.run(minutes=5, air_temperature=30.5 + i)
    assert len(gh.texts()) == 6
    gh.run(minutes=15)
    texts = gh.texts()
    assert len(texts) == 7
    assert texts[6].splitlines()[0] == "Summary Demo, 4 held back by the SMS cap:"
    assert [line.split()[0] for line in texts[6].splitlines()[1:5]] == ["16", "17", "18", "19"]
    assert gh.sent()[6][0] - gh.sent()[0][0] == pytest.approx(60, abs=0.2)  # once the first is an hour old


# ------------------------------------------------------------------------------------------ memory across restarts


def test_a_restart_mid_incident_re_sends_nothing_and_keeps_the_repeat_schedule(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, HOT_CRITICAL)
    gh.run(minutes=5, air_temperature=41)
    assert len(gh.texts()) == 1
    gh.restart()
    gh.run(minutes=10, air_temperature=41)
    assert len(gh.texts()) == 1
    gh.run(minutes=2, air_temperature=41)
    assert [round(m) for m, _, _ in gh.sent()] == [1, 16]  # the first repeat, on schedule
    assert gh.texts()[1].startswith("Reminder CRITICAL")


def test_an_alert_owed_at_a_crash_is_sent_once_after_the_restart(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, DRY)
    gh.run(minutes=1.5, soil_soil_moisture=12)  # fired; the warning waits out its grouping window
    assert gh.texts() == []
    gh.restart()
    gh.run(minutes=5, soil_soil_moisture=12)
    assert len(gh.texts()) == 1 and gh.texts()[0].startswith("Warning Demo: soil soil moisture 12%")


def test_a_restart_after_an_unclean_stop_is_told_once(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, "- {id: crash, type: unclean_restart}\n")
    gh.run(minutes=2)
    gh.restart()  # without a clean-stop mark, as after a power cut
    gh.run(minutes=2)
    gh.restart()
    gh.run(minutes=2)
    texts = gh.texts()
    assert len(texts) == 2  # one per unclean restart, never repeated
    assert texts[0].startswith("Warning Demo: gateway restarted after an unclean stop, 15 Jul 10:32 (code 10)")


# ------------------------------------------------------------------------------------------- other conditions


def test_a_fast_rise_raises_a_rate_alert(tmp_path, greenhouses):
    rule = "- {id: heating-up, type: rate, input: {sensor: air, quantity: temperature}, rise: 5, window: 10m}\n"
    gh = greenhouses(tmp_path, rule)
    gh.run(minutes=20, air_temperature=25)
    gh.run(minutes=10, air_temperature=lambda t: 25 + (t - MORNING - 1200) / 60)  # +1 °C a minute
    assert gh.texts()[0].startswith("Warning Demo: air temperature +5C in 10 min")


def test_a_pump_that_runs_without_wetting_the_soil_raises_a_fault(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, "- {id: pump-dry, type: actuator_fault, actuator: pump, after: 5m, by: 1}\n")
    gh.run(minutes=1, soil_soil_moisture=30)
    gh.service.observe_event("actuator.change", "pump", {"value": 1.0, "previous": 0.0})
    gh.run(minutes=10, soil_soil_moisture=30.2)
    assert gh.texts()[0].startswith("Warning Demo: pump is on but does not respond")
    gh.service.observe_event("actuator.change", "pump", {"value": 0.0, "previous": 1.0})
    gh.run(minutes=2)
    assert gh.texts()[1].startswith("Resolved Demo: pump responds again")


def test_a_pump_that_wets_the_soil_raises_nothing(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, "- {id: pump-dry, type: actuator_fault, actuator: pump, after: 5m, by: 1}\n")
    gh.run(minutes=1, soil_soil_moisture=30)
    gh.service.observe_event("actuator.change", "pump", {"value": 1.0})
    gh.run(minutes=10, soil_soil_moisture=lambda t: 30 + (t - MORNING) / 120)
    assert gh.texts() == []


def test_link_alerts_never_fire_until_someone_reports_the_link(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, "- {id: link, type: link_down, after: 1m}\n")
    gh.run(minutes=30)
    assert gh.texts() == []


def test_a_rule_removed_from_the_config_stops_repeating(tmp_path, greenhouses):
    gh = greenhouses(tmp_path, HOT_CRITICAL + DRY)
    gh.run(minutes=2, air_temperature=41)
    gh.config = gh.config.model_copy(update={"alerts": gh.config.alerts.model_copy(
        update={"rules": gh.config.alerts.rules[1:]})})
    gh.restart()
    gh.run(minutes=120, air_temperature=41)
    assert len(gh.texts()) == 1
    assert gh.service.engine.store.open_incidents() == []
