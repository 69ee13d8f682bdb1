"""The alert service wired up: the daemon feeds it, replies come back by modem or by Kavenegar, credit runs out."""

from __future__ import annotations

import json
import sqlite3

import pytest

from alerts_kit import OWNER, Greenhouse
from conftest import wait_until
from edge.gateway.config import load_config
from edge.gateway.alerts.transports.kavenegar import KavenegarTransport
from edge.gateway.alerts.transports.modem import ModemTransport
from edge.gateway.alerts.transports.modem_sim import SimulatedModem
from edge.gateway.control.supervisor import Supervisor
from edge.gateway.daemon import Daemon
from edge.gateway.hardware import open_hardware
from sms_fakes import KEY, FakeKavenegar

HOT_CRITICAL = ("- {id: hot, type: above, input: {sensor: air, quantity: temperature}, threshold: 40, clear: 38, "
                "for: 1m, severity: critical}\n")
PUMP = "- {id: pump-dry, type: actuator_fault, actuator: pump, after: 5m, by: 1}\n"


@pytest.fixture
def modem():
    with SimulatedModem() as sim:
        yield sim


def test_the_daemon_feeds_its_readings_to_the_alerts_and_sends_over_the_console(gateway_config, tmp_path):
    gateway_config.write_text(gateway_config.read_text() + (
        "alerts:\n  recipients:\n    - {name: Ali, number: '09121234567'}\n  rules:\n"
        "    - {id: damp, type: above, input: {sensor: air, quantity: humidity}, threshold: -1, severity: critical}\n"
        "sms:\n  transports:\n    - {type: console}\n"))
    daemon = Daemon(load_config(gateway_config))
    daemon.start()
    try:
        def sent():
            with sqlite3.connect(tmp_path / "buffer.db") as conn:
                return conn.execute("SELECT text FROM sms_outbox WHERE state = 'sent'").fetchall()

        [(text,)] = wait_until(sent, timeout=20, what="the alert SMS")
        assert text.startswith("گلخانه: هشدار فوری ۱۰، رطوبت هوا")  # no name: «گلخانه», never the Latin id
        assert {job.id for job in daemon.scheduler.jobs()} >= {"alerts-tick", "sms-outbox", "sms-replies"}
    finally:
        daemon.stop("test over")


def test_a_reply_by_modem_acknowledges_the_alert_and_stops_its_repeats(tmp_path, modem):
    gh = Greenhouse(tmp_path, HOT_CRITICAL, transports=[ModemTransport(modem.port, timeout=2)])
    gh.run(minutes=2, air_temperature=41)
    assert len(modem.messages) == 1
    modem.deliver(OWNER, "۱۰")

    def acknowledged():
        gh.service.receive()
        return gh.events("alert.acked")

    wait_until(acknowledged, timeout=5, what="the reply to be read")
    gh.run(minutes=60)
    assert [m.text for m in modem.messages][1:] == ["Demo: alert 10 acknowledged; no more reminders."]  # no repeat
    assert [e["data"] for e in gh.events("alert.acked")] == [{"code": "10", "by": "Ali"}]
    gh.close()


def test_a_reply_read_from_the_kavenegar_inbox_acknowledges_the_alert(tmp_path):
    fake = FakeKavenegar()
    gh = Greenhouse(tmp_path, HOT_CRITICAL, transports=[KavenegarTransport(KEY, "2000660110", http=fake.transport)])
    gh.run(minutes=2, air_temperature=41)
    fake.inbox = [{"messageid": 7, "message": "10", "sender": "09121234567", "receptor": "2000660110",
                   "date": 1356619709}]
    gh.service.receive()
    gh.run(minutes=60)
    assert len(fake.sent) == 2  # the alert, its confirmation, and no repeat
    gh.close()


def test_no_credit_fails_over_to_the_modem_and_raises_a_credit_alert(tmp_path, modem):
    fake = FakeKavenegar()
    fake.script = [418] * 50
    gh = Greenhouse(tmp_path, HOT_CRITICAL, transports=[KavenegarTransport(KEY, "2000660110", http=fake.transport),
                                                       ModemTransport(modem.port, timeout=2)])
    gh.run(minutes=4, air_temperature=41)
    texts = [m.text for m in modem.messages]
    assert texts[0].startswith("CRITICAL Demo: air temperature 41C")
    assert texts[1].startswith("Warning Demo: SMS credit of kavenegar is used up")
    assert fake.sent == []
    gh.close()


def test_actuator_changes_told_by_the_supervisor_reach_the_alerts(tmp_path):
    gh = Greenhouse(tmp_path, PUMP)
    gh.run(minutes=1, soil_soil_moisture=30)
    gh.switched("pump", 1.0, "rule:irrigation")  # as the supervisor tells its listeners
    gh.run(minutes=8, soil_soil_moisture=30)
    assert gh.texts()[0].startswith("Warning Demo: pump is on but does not respond")
    gh.close()


def test_a_wrong_kavenegar_key_sends_by_modem_raises_an_account_alert_and_logs_once(tmp_path, modem, caplog):
    fake = FakeKavenegar(key="the-key-in-the-panel")  # the gateway has another one
    gh = Greenhouse(tmp_path, HOT_CRITICAL, transports=[KavenegarTransport(KEY, "2000660110", http=fake.transport),
                                                       ModemTransport(modem.port, timeout=2)])
    with caplog.at_level("INFO", logger="edge"):
        gh.run(minutes=40, air_temperature=41)  # the critical alert, then its repeats: every SMS meets the bad key
    texts = [m.text for m in modem.messages]
    assert texts[0].startswith("CRITICAL Demo: air temperature 41C")
    assert texts[1].startswith("Warning Demo: SMS account at kavenegar refused, since")
    assert len(texts) >= 3 and fake.sent == []
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "kavenegar cannot send anything: 403 invalid API key" in errors[0]
    assert KEY not in caplog.text
    assert sorted(i["rule_id"] for i in gh.service.engine.store.incidents(active_only=True)) == ["hot", "~account"]
    gh.close()


def test_a_key_that_works_again_clears_the_account_alert(tmp_path, modem):
    fake = FakeKavenegar(key="the-key-in-the-panel")
    gh = Greenhouse(tmp_path, HOT_CRITICAL, transports=[KavenegarTransport(KEY, "2000660110", http=fake.transport),
                                                       ModemTransport(modem.port, timeout=2)])
    gh.run(minutes=2, air_temperature=41)
    assert sorted(i["rule_id"] for i in gh.service.engine.store.incidents(active_only=True)) == ["hot", "~account"]
    fake.key = KEY  # fixed in the panel (or the right key put in place and the daemon restarted)
    gh.run(minutes=30, air_temperature=41)  # the next repeat goes through Kavenegar
    assert fake.sent and [i["rule_id"] for i in gh.service.engine.store.incidents(active_only=True)] == ["hot"]
    gh.close()


def test_with_only_kavenegar_a_wrong_key_keeps_the_sms_queued_and_edge_status_and_alerts_say_so(tmp_path):
    from click.testing import CliRunner

    from alerts_kit import config_text
    from edge.cli import main

    key_file = tmp_path / "kavenegar.key"
    key_file.write_text(KEY + "\n")
    sms = (f"sms:\n  transports:\n    - {{type: kavenegar, api_key_file: {key_file}, sender: '2000660110', "
           "receive: false}\n")
    fake = FakeKavenegar(key="the-key-in-the-panel")
    gh = Greenhouse(tmp_path, HOT_CRITICAL, sms=sms,
                    transports=[KavenegarTransport(KEY, "2000660110", http=fake.transport, receive=False)])
    gh.run(minutes=5, air_temperature=41)
    gh.close()
    config = tmp_path / "gateway.yaml"
    config.write_text(config_text(HOT_CRITICAL, sms=sms, buffer=tmp_path / "buffer.db"))
    runner = CliRunner()
    report = json.loads(runner.invoke(main, ["status", "-c", str(config), "--json"]).output)
    assert report["sms"]["queued"] == 2  # the alert and the alert about the key: both wait, neither is lost
    assert report["sms"]["transports"]["kavenegar"]["state"] == "refused"
    assert report["sms"]["transports"]["kavenegar"]["detail"].startswith("403 invalid API key")
    text = runner.invoke(main, ["status", "-c", str(config)]).output
    assert "sms      2 queued, oldest " in text and "kavenegar REFUSED since " in text
    alerts = runner.invoke(main, ["alerts", "-c", str(config), "--active"]).output
    assert "~account" in alerts and "FIRING" in alerts


def test_the_alerts_learn_of_a_switch_when_it_happens_with_no_polling(tmp_path):
    gh = Greenhouse(tmp_path, PUMP)
    hardware = open_hardware(gh.config, gh.clock, sensors=False)
    supervisor = Supervisor(gh.config, hardware.actuators, gh.buffer, gh.clock)
    supervisor.on_switch.append(gh.service.observe_switch)  # as the daemon wires them
    try:
        assert "pump" not in gh.service.engine.world.outputs
        supervisor.command("pump", "on", 600, "cli:ali")  # no alerts job runs, no time passes
        assert gh.service.engine.world.outputs["pump"] == (1.0, "manual:cli:ali")
        [event] = [e for e in gh.buffer.events() if e["kind"] == "actuator.change"]  # still recorded for the DC
        assert event["source"] == "pump"
    finally:
        hardware.close()
        gh.close()
