"""The project's broker config (config/mosquitto/) on a private Mosquitto: logins, and the per-gateway ACL."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from conftest import wait_until
from dc_kit import StandInGateway, datacenter_config, reading_batch, reading_keys
from edge import protocol
from edge.datacenter.collector import Collector
from edge.datacenter.store import migrate

pytestmark = pytest.mark.slow

NOT_AUTHORIZED = 0x87


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
