"""The alert service wired up: the daemon feeds it, replies come back by modem or by Kavenegar, credit runs out."""

from __future__ import annotations

import sqlite3

import pytest

from alerts_kit import OWNER, Greenhouse
from conftest import wait_until
from edge.config import load_config
from edge.gateway.alerts.transports.kavenegar import KavenegarTransport
from edge.gateway.alerts.transports.modem import ModemTransport
from edge.gateway.alerts.transports.modem_sim import SimulatedModem
from edge.gateway.daemon import Daemon
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
        assert text.startswith("هشدار فوری gh-test: رطوبت هوا (air)")
        assert {job.id for job in daemon.scheduler.get_jobs()} >= {"alerts-tick", "sms-outbox", "sms-replies"}
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
    assert len(modem.messages) == 1
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
    assert len(fake.sent) == 1
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


def test_actuator_changes_recorded_in_the_buffer_reach_the_alerts(tmp_path):
    gh = Greenhouse(tmp_path, PUMP)
    gh.run(minutes=1, soil_soil_moisture=30)
    gh.buffer.append_event("actuator.change", "pump", {"value": 1.0, "previous": 0.0, "reason": "rule:irrigation"},
                           ts=gh.clock.time())  # as the supervisor records it
    gh.run(minutes=8, soil_soil_moisture=30)
    assert gh.texts()[0].startswith("Warning Demo: pump is on but does not respond")
    gh.close()
