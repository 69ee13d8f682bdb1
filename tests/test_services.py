"""The test services themselves (tests/services.py): private, restartable, and never the machine's own."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from conftest import wait_until

pytestmark = pytest.mark.slow


def retained(broker, topic: str) -> bytes | None:
    """The retained message on ``topic``, or None. A marker published once subscribed comes after anything the
    subscription delivered (one client's messages keep their order): no guess at how long to wait."""
    got: list[tuple[str, bytes]] = []
    subscribed = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, message: got.append((message.topic, message.payload))
    client.on_subscribe = lambda *_: subscribed.append(True)
    client.connect(broker.host, broker.port)
    client.subscribe([(topic, 1), ("test/marker", 1)])
    wait_until(lambda: client.loop(0.05) != 0 or subscribed, 5, "the subscription")
    client.publish("test/marker", b"end", qos=1)
    wait_until(lambda: client.loop(0.05) != 0 or ("test/marker", b"end") in got, 5, "the marker")
    client.disconnect()
    return next((payload for t, payload in got if t == topic), None)


def publish_retained(broker, topic: str, payload: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_a_broker_stopped_with_sigterm_comes_back_on_its_port_with_what_it_saved(broker):
    port = broker.port
    publish_retained(broker, "t/kept", b"saved at SIGTERM")
    broker.stop()
    assert not broker.running
    broker.start()
    assert broker.port == port and broker.url == f"mqtt://127.0.0.1:{port}"
    assert retained(broker, "t/kept") == b"saved at SIGTERM"


def test_a_broker_killed_with_sigkill_forgets_what_it_had_not_saved(broker):
    publish_retained(broker, "t/lost", b"never snapshotted")
    broker.kill()
    broker.start()
    assert retained(broker, "t/lost") is None  # FIELD_NOTES: PUBACK is not tied to disk


def test_each_test_gets_an_empty_database_on_a_private_server(postgres):
    assert postgres.url.startswith("postgresql://postgres@127.0.0.1:") and ":5432/" not in postgres.url
    with postgres.connect() as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
        fsync = conn.execute("SHOW fsync").fetchone()[0]
    assert (tables, fsync) == (0, "off")
