"""The project's broker config (config/mosquitto/) on a private Mosquitto: logins, the per-gateway ACL, the service
accounts' least privilege (collectors ack, the commander commands) and sessions bound to accounts."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import wait_until
from dc_kit import Login, StandInGateway, datacenter_config, reading_batch, reading_keys
from edge.contract import protocol
from edge.datacenter.collector import Collector
from edge.datacenter.store import migrate
from edge.gateway.buffer import Buffer, NewReading
from edge.gateway.clock import Clock
from edge.gateway.sync import Sync, SyncConfig
from services import ROOT

pytestmark = pytest.mark.slow

NOT_AUTHORIZED = 0x87
TAKEN_OVER = "already connected, closing old connection"  # what Mosquitto logs when a session is taken over


@pytest.fixture
def secure_collector(secure_broker, postgres, tmp_path):
    with postgres.connect() as conn:
        migrate(conn)
    password_file = tmp_path / "collector-password"
    password_file.write_text(secure_broker.users["collector"] + "\n")
    collector = Collector(datacenter_config(secure_broker, postgres, username="collector",
                                            password_file=password_file), client_id="collector-1").start()
    assert collector.subscribed.wait(10), "the collector account could not subscribe"
    yield collector
    collector.stop()


@pytest.fixture
def gateway_a(secure_broker):
    gateway = StandInGateway(secure_broker, "gh-a", password=secure_broker.users["gh-a"])
    yield gateway
    gateway.close()


def test_a_gateway_cannot_publish_under_another_gateways_id(secure_collector, gateway_a, postgres):
    foreign = gateway_a.publish(reading_batch("gh-b", first=1, count=10), under="gh-b")
    own = gateway_a.publish(reading_batch("gh-a", first=1, count=10))
    assert gateway_a.puback_codes[foreign] == NOT_AUTHORIZED
    assert gateway_a.puback_codes[own] == 0
    wait_until(lambda: gateway_a.acked() == [(1, 1, 10)], 10, "the ack of gh-a's own batch")
    assert reading_keys(postgres) == [("gh-a", 1, seq) for seq in range(1, 11)]  # nothing of "gh-b" arrived


def test_a_gateway_reads_only_its_own_downlink(secure_broker, secure_collector, gateway_a, postgres):
    gateway_b = StandInGateway(secure_broker, "gh-b", password=secure_broker.users["gh-b"])
    try:
        gateway_a.subscribed.clear()
        gateway_a.client.subscribe(protocol.topic("gh-b", protocol.DOWN_ACK), qos=1)  # eavesdropping attempt
        assert gateway_a.subscribed.wait(5)
        gateway_b.publish(reading_batch("gh-b", first=1, count=7))
        wait_until(lambda: gateway_b.acked() == [(1, 1, 7)], 10, "gh-b's ack")
        gateway_a.publish(reading_batch("gh-a", first=1, count=5))
        wait_until(lambda: (1, 1, 5) in gateway_a.acked(), 10, "gh-a's ack")
        assert gateway_a.acked() == [(1, 1, 5)]  # gh-b's ack (1..7) never reached gh-a
        assert gateway_a.topics == [protocol.topic("gh-a", protocol.DOWN_ACK)]
    finally:
        gateway_b.close()


def test_anonymous_and_wrong_password_logins_are_refused(secure_broker):
    for username, password in ((None, None), ("gh-a", "wrong")):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        refused = []
        client.on_connect = lambda _c, _u, _f, reason_code, _p: refused.append(reason_code.is_failure)
        if username:
            client.username_pw_set(username, password)
        client.connect(secure_broker.host, secure_broker.port)
        wait_until(lambda: client.loop(0.05) != 0 or refused, 5, "the broker's answer")
        assert refused == [True], username
        client.disconnect()


def test_a_gateway_may_publish_only_its_own_status(secure_collector, gateway_a, postgres):
    birth = protocol.encode_status("online", version="1.0", epoch=1, backlog=0)
    foreign = gateway_a.publish(birth, protocol.STATUS, under="gh-b", retain=True)
    own = gateway_a.publish(birth, protocol.STATUS, retain=True)
    assert (gateway_a.puback_codes[foreign], gateway_a.puback_codes[own]) == (NOT_AUTHORIZED, 0)

    def gateways_known():
        with postgres.connect() as conn:
            return [r[0] for r in conn.execute("SELECT gateway_id FROM gateway_status")]

    assert wait_until(gateways_known, 10, "gh-a's status") == ["gh-a"]


# ---------------------------------------------------------------------------------- sessions bound to accounts


def test_a_gateway_using_the_collectors_client_id_does_not_kick_the_collector(secure_broker, secure_collector,
                                                                             gateway_a):
    for attempt in range(3):  # once would already be bad; the field saw it again at every reconnect
        for stolen_id in ("collector-1", "collector"):  # the collector's configured id and its account name
            attacker = Login(secure_broker, "gh-b", client_id=stolen_id, clean_start=True)
            attacker.close()
        gateway_a.publish(reading_batch("gh-a", first=attempt * 5 + 1, count=5))
        wait_until(lambda: (1, attempt * 5 + 1, attempt * 5 + 5) in gateway_a.acked(), 10, "the collector's ack")
    assert TAKEN_OVER not in secure_broker.log_text()
    assert secure_collector.connected.is_set()


def test_the_collectors_session_survives_a_clean_login_with_its_client_id_while_it_is_away(
        secure_broker, secure_collector, gateway_a, postgres, tmp_path):
    secure_collector.stop()  # its session (and its place in the share group) waits for it at the broker
    attacker = Login(secure_broker, "gh-b", client_id="collector-1", clean_start=True)  # would wipe that session
    attacker.close()
    sent = gateway_a.publish(reading_batch("gh-a", first=1, count=8))
    assert gateway_a.puback_codes[sent] == 0  # 0x10 would say: no subscriber any more, the batch went nowhere
    password_file = tmp_path / "collector-password"
    back = Collector(datacenter_config(secure_broker, postgres, username="collector", password_file=password_file),
                     client_id="collector-1").start()
    try:
        wait_until(lambda: gateway_a.acked() == [(1, 1, 8)], 10, "the batch queued in the collector's session")
    finally:
        back.stop()


def test_two_collectors_with_their_own_accounts_share_the_stream_even_with_one_client_id(
        secure_broker, secure_collector, gateway_a, postgres, tmp_path):
    password_file = tmp_path / "collector-2-password"
    password_file.write_text(secure_broker.users["collector-2"] + "\n")
    # a clumsy operator copied the first collector's --client-id: the broker names the session by account anyway
    second = Collector(datacenter_config(secure_broker, postgres, username="collector-2",
                                         password_file=password_file), client_id="collector-1").start()
    try:
        assert second.subscribed.wait(10), "the collector-2 account could not subscribe"
        for first in range(1, 101, 5):
            gateway_a.publish(reading_batch("gh-a", first=first, count=5))
        wait_until(lambda: len(gateway_a.acked()) == 20, 15, "20 acks")
        assert sorted(gateway_a.acked()) == [(1, first, first + 4) for first in range(1, 101, 5)]
        assert secure_collector.stats.messages > 0 and second.stats.messages > 0  # both took a share
        assert secure_collector.stats.messages + second.stats.messages == 20
        assert TAKEN_OVER not in secure_broker.log_text()
    finally:
        second.stop()
    assert reading_keys(postgres) == [("gh-a", 1, seq) for seq in range(1, 101)]


def test_the_collector_command_logs_in_with_the_account_given_by_username(secure_broker, postgres, gateway_a,
                                                                          tmp_path):
    secret = tmp_path / "collector-2-password"
    secret.write_text(secure_broker.users["collector-2"] + "\n")
    config = tmp_path / "datacenter.yaml"  # one file for every instance; each instance names its own account
    config.write_text(f"mqtt: {{url: '{secure_broker.url}', username: collector, password_file: '{secret}'}}\n"
                      f"database: {{url: '{postgres.url}'}}\ncollector: {{batch_wait: 0.05s}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "edge", "dc", "collector", "-c", str(config), "--username",
                             "collector-2"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "Received SUBSCRIBE from collector-2" in secure_broker.log_text(), 15,
                   "collector-2 to subscribe")
        gateway_a.publish(reading_batch("gh-a", first=1, count=10))
        wait_until(lambda: gateway_a.acked() == [(1, 1, 10)], 15, "the ack")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err


# ------------------------------------------------------------------------------------ what each account may do


@pytest.fixture
def listening_gateway(secure_broker):
    """gh-a, subscribed to its acks and commands."""
    gateway = Login(secure_broker, "gh-a")
    for leaf in (protocol.DOWN_ACK, protocol.DOWN_CMD):
        assert gateway.subscribe(protocol.topic("gh-a", leaf)) == 1
    yield gateway
    gateway.close()


COMMAND = protocol.encode_command(protocol.Command(id="c-1", issued=1_760_000_000.0, op="ping", args={}))


def test_the_collector_account_acks_but_cannot_command_nor_publish_as_a_gateway(secure_broker, listening_gateway):
    collector = Login(secure_broker, "collector")
    try:
        ack = protocol.encode_ack(protocol.Ack("readings", 1, ((1, 5),)))
        assert collector.publish(protocol.topic("gh-a", protocol.DOWN_ACK), ack) == 0
        refused = {leaf: collector.publish(protocol.topic(gateway, leaf), COMMAND if leaf == protocol.DOWN_CMD
                                           else b"x")
                   for gateway, leaf in (("gh-a", protocol.DOWN_CMD), ("collector", protocol.UP_READINGS),
                                         ("collector", protocol.STATUS), ("gh-a", protocol.UP_READINGS))}
        assert set(refused.values()) == {NOT_AUTHORIZED}, refused
        # a round trip of the gateway's after all that: what the broker was going to deliver to it has arrived
        assert listening_gateway.publish(protocol.topic("gh-a", protocol.STATUS)) < 0x80
        assert listening_gateway.messages == [(protocol.topic("gh-a", protocol.DOWN_ACK), ack)]  # no command
    finally:
        collector.close()


def test_only_the_commander_commands_and_it_can_do_nothing_else(secure_broker, listening_gateway):
    commander = Login(secure_broker, "commander")
    gh_b = Login(secure_broker, "gh-b")
    try:
        assert commander.publish(protocol.topic("gh-a", protocol.DOWN_CMD), COMMAND) == 0
        wait_until(lambda: listening_gateway.messages, 5, "the command")
        assert listening_gateway.messages == [(protocol.topic("gh-a", protocol.DOWN_CMD), COMMAND)]
        for leaf in (protocol.DOWN_ACK, protocol.UP_READINGS, protocol.UP_EVENTS, protocol.STATUS):
            assert commander.publish(protocol.topic("gh-a", leaf)) == NOT_AUTHORIZED, leaf
        assert commander.publish(protocol.topic("commander", protocol.UP_READINGS)) == NOT_AUTHORIZED
        # Mosquitto 2.0's ACL file cannot refuse a SUBSCRIBE; it filters what is delivered: nothing, here
        for topic in ("greenhouse/v1/+/up/#", "greenhouse/v1/+/status", "greenhouse/v1/+/down/#"):
            commander.subscribe(topic)
        assert gh_b.publish(protocol.topic("gh-b", protocol.UP_READINGS)) < 0x80  # 0x10: no one else subscribed
        assert gh_b.publish(protocol.topic("gh-b", protocol.STATUS)) < 0x80
        # gateways command no one, themselves included
        for target in ("gh-a", "gh-b"):
            assert gh_b.publish(protocol.topic(target, protocol.DOWN_CMD), COMMAND) == NOT_AUTHORIZED, target
        assert listening_gateway.messages == [(protocol.topic("gh-a", protocol.DOWN_CMD), COMMAND)]
        # a round trip of the commander's after all that: what the broker was going to deliver to it has arrived
        assert commander.publish(protocol.topic("gh-a", protocol.DOWN_ACK)) == NOT_AUTHORIZED
        assert commander.messages == []
    finally:
        commander.close()
        gh_b.close()


def test_a_gateway_in_the_collectors_share_group_receives_no_batch(secure_broker, gateway_a):
    thief = Login(secure_broker, "gh-b")
    try:
        for topic in ("$share/collectors/greenhouse/v1/+/up/#", "greenhouse/v1/+/up/#", "greenhouse/v1/+/status"):
            thief.subscribe(topic)  # granted: Mosquitto 2.0's ACL file filters deliveries, not subscriptions
        for first in range(1, 51, 5):
            gateway_a.publish(reading_batch("gh-a", first=first, count=5))
        gateway_a.publish(protocol.encode_status("online", version="1.0", epoch=1, backlog=0), protocol.STATUS)
        # a round trip through the broker after those: whatever was going to reach the thief has by now
        assert thief.publish(protocol.topic("gh-b", protocol.STATUS)) < 0x80
        assert thief.messages == []
    finally:
        thief.close()


def test_a_real_gateway_uplink_works_under_its_account_with_acks_and_a_command(secure_broker, secure_collector,
                                                                                postgres, tmp_path):
    password = tmp_path / "gh-a-password"
    password.write_text(secure_broker.users["gh-a"] + "\n")
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=time.time(), boot_id="b")
    commands: list[protocol.Command] = []
    config = SyncConfig(url=secure_broker.url, password_file=password, interval="1s", reconnect_min="1s",
                        reconnect_max="2s")
    sync = Sync(config, "gh-a", buffer, Clock("synced"),
                on_command=lambda command: commands.append(command) or {"state": "on"})
    sync.start()
    commander = Login(secure_broker, "commander")
    try:
        now = time.time()
        buffer.append_readings([NewReading(now + i, "air", "temperature", 20.0 + i / 10, "°C") for i in range(10)])
        wait_until(lambda: buffer.counts("readings")["pending"] == 0, 15, "the collector's acks")
        assert len(reading_keys(postgres)) == 10
        command = protocol.Command(id="c-7", issued=time.time(), op="actuate",
                                   args={"actuator": "fan", "action": "on", "for": 60})
        assert commander.publish(protocol.topic("gh-a", protocol.DOWN_CMD), protocol.encode_command(command)) == 0
        assert wait_until(lambda: commands, 10, "the command") == [command]
    finally:
        commander.close()
        sync.stop()
        buffer.close()
