"""The collector on a NATS JetStream source (edge/datacenter/nats_source.py), against a real nats-server: gateways
speak MQTT 3.1.1 to its MQTT listener, the collectors share one durable pull consumer, acks reach the gateways'
MQTT sessions; the scenarios of tests/test_collector.py that concern the source."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from conftest import wait_until
from dc_kit import StandInGateway, count, nats_datacenter_config, reading_batch, reading_keys, wait_for_rows
from edge.contract import protocol
from edge.datacenter.collector import Collector
from edge.datacenter.store import migrate
from services import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def migrated(postgres):
    with postgres.connect() as conn:
        migrate(conn)
    return postgres


@pytest.fixture
def start_collector(nats_node, migrated):
    started: list[Collector] = []

    def start(client_id: str = "collector-1", username: str = "collector", **options) -> Collector:
        collector = Collector(nats_datacenter_config(nats_node, migrated, username=username),
                              client_id=client_id, **options).start()
        started.append(collector)
        assert collector.subscribed.wait(20), "the collector did not bind to the consumer"
        return collector

    yield start
    for collector in started:
        collector.stop()


@pytest.fixture
def gateways(nats_node):
    made: list[StandInGateway] = []

    def make(gateway_id: str, node: int = 0, **kwargs) -> StandInGateway:
        server = nats_node.nodes[node]
        made.append(StandInGateway(server, gateway_id, password=nats_node.users[gateway_id],
                                   version=mqtt.MQTTv311, port=server.mqtt_port, **kwargs))
        return made[-1]

    yield make
    for gateway in made:
        gateway.close()


def test_a_batch_published_twice_is_stored_once_and_acked_twice(start_collector, gateways, migrated):
    start_collector()
    gateway = gateways("gh-a")
    batch = reading_batch("gh-a", first=1, count=50)
    gateway.publish(batch)
    gateway.publish(batch)
    wait_until(lambda: len(gateway.acked()) == 2, 15, "two acks")
    assert gateway.acked() == [(1, 1, 50), (1, 1, 50)]
    assert gateway.topics == [protocol.topic("gh-a", protocol.DOWN_ACK)] * 2
    assert reading_keys(migrated) == [("gh-a", 1, seq) for seq in range(1, 51)]


def test_the_ack_arrives_only_after_the_rows_are_visible(start_collector, gateways, migrated):
    def rows_visible_now(ack: protocol.Ack) -> int:
        first, last = ack.ranges[0]
        return count(migrated, "SELECT count(*) FROM readings WHERE gateway_id = 'gh-a' AND epoch = %s "
                               "AND seq BETWEEN %s AND %s", ack.epoch, first, last)

    start_collector()
    gateway = gateways("gh-a", on_ack=rows_visible_now)
    for first in range(1, 1001, 100):
        gateway.publish(reading_batch("gh-a", first=first, count=100))
    wait_until(lambda: len(gateway.acks) == 10, 15, "ten acks")
    assert gateway.seen_at_ack == [100] * 10


def mqtt_clients(server) -> set[str]:
    """The client ids of the MQTT connections a NATS node holds, from its monitoring endpoint."""
    with urllib.request.urlopen(f"http://{server.host}:{server.monitor_port}/connz?limit=4096", timeout=5) as answer:
        return {c["mqtt_client"] for c in json.load(answer).get("connections", []) if c.get("mqtt_client")}


def test_the_ack_reaches_a_gateway_that_was_away_when_it_was_sent(start_collector, gateways, nats_node, migrated):
    """The ack goes into the gateway's MQTT session (QoS 1, stored by the cluster), not only to a live socket."""
    hold = threading.Event()
    start_collector(after_commit=lambda: hold.wait(20))
    gateway = gateways("gh-a")
    gateway.publish(reading_batch("gh-a", first=1, count=10))
    wait_for_rows(migrated, "readings", 10)
    server = nats_node.nodes[0]
    assert "test-gh-a" in mqtt_clients(server)
    gateway.close()  # away while the collector answers
    # ... once the server knows it: an ack sent to a connection it has not yet seen go is given to that connection,
    # and comes again only after the server's ack_wait (30 s), which a loaded machine once showed
    wait_until(lambda: "test-gh-a" not in mqtt_clients(server), 15, "the server to see the gateway go")
    hold.set()
    wait_until(lambda: count(migrated, "SELECT count(*) FROM readings") == 10, 5, "the rows")
    back = gateways("gh-a")  # the same client id, its session kept (clean_session false)
    wait_until(lambda: back.acked() == [(1, 1, 10)], 15, "the ack kept in the session")
    assert gateway.acks == []


def test_birth_and_last_will_update_the_gateway_status(start_collector, nats_node, migrated):
    """A status published by the gateway and its last will published by NATS both land in the stream."""
    start_collector()
    status_topic = protocol.topic("gh-a", protocol.STATUS)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-gh-a", protocol=mqtt.MQTTv311,
                         clean_session=False)
    client.username_pw_set("gh-a", nats_node.users["gh-a"])
    client.will_set(status_topic, protocol.encode_status("offline", version="1.2.3"), qos=1, retain=True)
    client.connect(nats_node.nodes[0].host, nats_node.nodes[0].mqtt_port)
    client.publish(status_topic, protocol.encode_status("online", version="1.2.3", epoch=7, backlog=42,
                                                        ts=1_760_000_000.0), qos=1, retain=True)
    for _ in range(20):
        client.loop(0.05)

    def status():
        with migrated.connect() as conn:
            return conn.execute("SELECT state, version, epoch, backlog FROM gateway_status "
                                "WHERE gateway_id = 'gh-a'").fetchone()

    assert wait_until(status, 15, "the birth") == ("online", "1.2.3", 7, 42)
    client.socket().close()  # the connection drops without DISCONNECT: the server publishes the last will
    wait_until(lambda: status()[0] == "offline", 15, "the last will")


def test_two_collectors_share_the_consumer_and_store_everything_once(start_collector, gateways, migrated):
    first, second = start_collector("collector-1"), start_collector("collector-2", username="collector-2")
    senders = [gateways(f"gh-{n}") for n in "abcd"]
    for batch in range(25):
        for gateway in senders:
            gateway.publish(reading_batch(gateway.gateway_id, first=batch * 40 + 1, count=40))
    wait_for_rows(migrated, "readings", 4 * 25 * 40, timeout=30)
    assert reading_keys(migrated) == sorted((g.gateway_id, 1, seq) for g in senders for seq in range(1, 1001))
    wait_until(lambda: all(len(set(g.acked())) == 25 for g in senders), 15, "an ack for every batch")
    assert first.stats.messages > 0 and second.stats.messages > 0
    # each reading new once across both (a message held past the test's 3 s ack_wait on a loaded machine comes again,
    # to either collector: a duplicate, counted as such, and acked again)
    assert first.stats.readings_new + second.stats.readings_new == 4 * 25 * 40


def test_a_collector_killed_between_commit_and_ack_loses_and_duplicates_nothing(nats_node, migrated, gateways,
                                                                                tmp_path):
    config = tmp_path / "datacenter.yaml"
    config.write_text(nats_datacenter_config(nats_node, migrated).model_dump_json())
    crashing = subprocess.Popen([sys.executable, str(ROOT / "tests" / "crashing_collector.py"), str(config),
                                 "collector-x"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert crashing.stdout.readline().strip() == "subscribed"
    gateway = gateways("gh-a")
    gateway.publish(reading_batch("gh-a", first=1, count=100))
    assert crashing.wait(15) == -signal.SIGKILL
    assert count(migrated, "SELECT count(*) FROM readings") == 100  # committed...
    assert gateway.acks == []  # ...but never acknowledged
    gateway.publish(reading_batch("gh-a", first=101, count=100))  # waits in the stream

    restarted = subprocess.Popen([sys.executable, "-m", "edge", "dc", "collector", "-c", str(config),
                                  "--client-id", "collector-y"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: sorted(gateway.acked()) == [(1, 1, 100), (1, 101, 200)], 20, "both acks")
    finally:
        restarted.send_signal(signal.SIGTERM)
        _, err = restarted.communicate(timeout=15)
    assert restarted.returncode == 0, err
    assert reading_keys(migrated) == [("gh-a", 1, seq) for seq in range(1, 201)]
    assert "pw-collector" not in err


def test_a_database_outage_delays_acks_but_loses_nothing(start_collector, gateways, migrated):
    collector = start_collector()
    gateway = gateways("gh-a")
    with migrated.connect(autocommit=True) as conn:
        conn.execute("ALTER TABLE readings RENAME TO readings_away")  # every write fails as the database's fault
        try:
            gateway.publish(reading_batch("gh-a", first=1, count=10))
            wait_until(lambda: collector.stats.database_errors >= 2, 15, "the writer to retry")
            assert gateway.acks == []
        finally:
            conn.execute("ALTER TABLE readings_away RENAME TO readings")
    # held past the test's 3 s ack_wait (a loaded machine), the message comes again: then acked twice, harmless
    wait_until(lambda: gateway.acked(), 15, "the ack after the outage")
    assert set(gateway.acked()) == {(1, 1, 10)}
    assert reading_keys(migrated) == [("gh-a", 1, seq) for seq in range(1, 11)]


def test_nats_status_shows_the_stream_and_the_consumer_as_a_collector_sees_them(start_collector, gateways,
                                                                                 nats_node, migrated, tmp_path):
    from click.testing import CliRunner

    from edge.cli import main

    config = tmp_path / "datacenter.yaml"
    config.write_text(nats_datacenter_config(nats_node, migrated).model_dump_json())
    result = CliRunner().invoke(main, ["dc", "nats-status", "-c", str(config)])
    assert result.exit_code == 1 and "no stream GREENHOUSE_UP" in result.output  # before any collector made it
    hold = threading.Event()
    start_collector(after_commit=lambda: hold.wait(20))  # the round stays taken and unsettled meanwhile
    gateways("gh-a").publish(reading_batch("gh-a", first=1, count=10))
    wait_for_rows(migrated, "readings", 10)
    result = CliRunner().invoke(main, ["dc", "nats-status", "-c", str(config)])
    hold.set()
    assert result.exit_code == 0, result.output
    assert "node n1, nats-server 2." in result.output
    assert "stream GREENHOUSE_UP: 1 messages waiting" in result.output
    assert "consumer collectors: 0 not yet taken, 1 taken and not settled" in result.output
    assert "pw-collector" not in result.output
