"""The NATS side's permissions (edge/datacenter/nats_config.py, config/nats/) on a real nats-server, the same
refusals tests/test_broker_acl.py proves for Mosquitto: a gateway publishes only its own uplink and reads only its own
downlink; a collector reads the uplink and sends acks, nothing else; the commander only commands. NATS drops a
forbidden publish silently (the PUBACK still comes), so each test shows the message never reached the stream, the
database or the other subscriber."""

from __future__ import annotations

import asyncio
import threading

import paho.mqtt.client as mqtt
import pytest

from conftest import wait_until
from dc_kit import StandInGateway, nats_datacenter_config, reading_batch, reading_keys
from edge.contract import protocol
from edge.datacenter import nats_config
from edge.datacenter.collector import Collector
from edge.datacenter.store import migrate

pytestmark = pytest.mark.slow

SUBACK_FAILURE = 0x80


class MqttLogin:
    """One MQTT 3.1.1 login under an account of the test node, recording SUBACKs and what arrives."""

    def __init__(self, node, username: str, password: str):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"login-{username}",
                                  protocol=mqtt.MQTTv311, clean_session=True)
        self.client.username_pw_set(username, password)
        self.subacks: dict[int, list[int]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.client.on_connect = lambda _c, _u, _f, code, _p: code.is_failure or self.connected.set()
        self.client.on_subscribe = lambda _c, _u, mid, codes, _p: self.subacks.__setitem__(
            mid, [code.value for code in codes])
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.connect(node.host, node.mqtt_port)
        self.client.loop_start()
        assert self.connected.wait(5), f"{username} could not log in"

    def subscribe(self, topic: str) -> int:
        _, mid = self.client.subscribe(topic, qos=1)
        return wait_until(lambda: self.subacks.get(mid), 5, f"the SUBACK of {topic}")[0]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def collector(nats_node, postgres):
    with postgres.connect() as conn:
        migrate(conn)
    running = Collector(nats_datacenter_config(nats_node, postgres), client_id="collector-1").start()
    assert running.subscribed.wait(20), "the collector account could not bind to the consumer"
    yield running
    running.stop()


@pytest.fixture
def gateway(nats_node):
    made = []

    def make(gateway_id: str) -> StandInGateway:
        node = nats_node.nodes[0]
        made.append(StandInGateway(node, gateway_id, password=nats_node.users[gateway_id], version=mqtt.MQTTv311,
                                   port=node.mqtt_port))
        return made[-1]

    yield make
    for g in made:
        g.close()


def test_a_gateway_cannot_publish_under_another_gateways_id(collector, gateway, nats_node, postgres):
    gh_a = gateway("gh-a")
    gh_a.publish(reading_batch("gh-b", first=1, count=10), under="gh-b")  # PUBACKed, and dropped
    gh_a.publish(reading_batch("gh-a", first=1, count=10))
    wait_until(lambda: gh_a.acked() == [(1, 1, 10)], 15, "the ack of gh-a's own batch")
    assert reading_keys(postgres) == [("gh-a", 1, seq) for seq in range(1, 11)]  # nothing of "gh-b" arrived
    assert collector.stats.messages == 1  # the stream never held the forged batch
    assert 'Publish Violation - Subject "greenhouse.v1.gh-b.up.readings"' in nats_node.nodes[0].log_text()


def test_a_gateway_reads_only_its_own_downlink(collector, gateway, nats_node, postgres):
    gh_b = gateway("gh-b")
    spy = MqttLogin(nats_node.nodes[0], "gh-a", nats_node.users["gh-a"])
    try:
        assert spy.subscribe(protocol.topic("gh-b", "down/#")) == SUBACK_FAILURE
        assert spy.subscribe(protocol.topic("gh-a", "down/#")) == 1
        gh_b.publish(reading_batch("gh-b", first=1, count=10))
        wait_until(lambda: gh_b.acked() == [(1, 1, 10)], 15, "gh-b's ack")
        spy.publish(protocol.topic("gh-a", protocol.UP_READINGS), reading_batch("gh-a", first=1, count=5))
        wait_until(lambda: spy.messages, 15, "gh-a's own ack")  # its own downlink does arrive...
        assert [topic for topic, _ in spy.messages] == [protocol.topic("gh-a", protocol.DOWN_ACK)]  # ...gh-b's not
    finally:
        spy.close()


def _as_collector(nats_node, *subjects: str) -> list[str]:
    """Publish each subject as the collector account (core NATS); the permission errors the server sent back."""
    import nats

    errors: list[str] = []

    async def run() -> None:
        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(nats_node.servers, user="collector", password=nats_node.users["collector"],
                                inbox_prefix=nats_config.inbox_of("collector").encode(), error_cb=on_error)
        for subject in subjects:
            await nc.publish(subject, b"forged", headers={nats_config.MQTT_HEADER: "1"})
        await nc.flush()
        await asyncio.sleep(0.3)
        await nc.close()

    asyncio.run(run())
    return errors


def test_a_collector_sends_acks_but_cannot_command_a_gateway_nor_publish_as_one(collector, gateway, nats_node,
                                                                                 postgres):
    gh_a = gateway("gh-a")
    listener = MqttLogin(nats_node.nodes[0], "gh-b", nats_node.users["gh-b"])
    try:
        assert listener.subscribe(protocol.topic("gh-b", "down/#")) == 1
        command = nats_config.MQTT_MSGS + nats_config.subject_of(protocol.topic("gh-b", protocol.DOWN_CMD))
        uplink = nats_config.subject_of(protocol.topic("gh-a", protocol.UP_READINGS))
        errors = _as_collector(nats_node, command, uplink)
        assert any("permissions violation" in e and "down.cmd" in e for e in errors), errors
        assert any("permissions violation" in e and "up.readings" in e for e in errors), errors
        gh_a.publish(reading_batch("gh-a", first=1, count=3))
        wait_until(lambda: gh_a.acked() == [(1, 1, 3)], 15, "the collector's ack (what it may send)")
        assert listener.messages == [] and collector.stats.messages == 1
    finally:
        listener.close()


def test_the_commander_commands_and_cannot_publish_uplink(collector, gateway, nats_node, postgres):
    target = MqttLogin(nats_node.nodes[0], "gh-a", nats_node.users["gh-a"])
    commander = MqttLogin(nats_node.nodes[0], "commander", nats_node.users["commander"])
    try:
        assert target.subscribe(protocol.topic("gh-a", "down/#")) == 1
        assert commander.subscribe(protocol.topic("gh-a", "up/#")) == SUBACK_FAILURE
        commander.publish(protocol.topic("gh-a", protocol.UP_READINGS), reading_batch("gh-a", first=1, count=3))
        commander.publish(protocol.topic("gh-a", protocol.DOWN_CMD), b"a command")
        wait_until(lambda: target.messages, 15, "the command")
        assert target.messages == [(protocol.topic("gh-a", protocol.DOWN_CMD), b"a command")]
        assert collector.stats.messages == 0 and reading_keys(postgres) == []
    finally:
        target.close()
        commander.close()
