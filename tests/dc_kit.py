"""Helpers for data-center tests: collector configs, a stand-in gateway that publishes batches and records acks, a
raw login under any account of the secure broker, and queries that count what reached PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from conftest import wait_until
from edge.contract import protocol
from edge.datacenter.config import DataCenterConfig

EXAMPLE = "config/datacenter.example.yaml"


def datacenter_config(broker, database, *, username: str | None = None, password_file=None,
                      round_timeout: str = "1m", **collector) -> DataCenterConfig:
    """A collector config for a test broker and database (fast retries, small rounds unless overridden)."""
    return DataCenterConfig.model_validate({
        "mqtt": {"url": broker.url, "username": username, "password_file": password_file,
                 "reconnect_min": "1s", "reconnect_max": "2s"},
        "database": {"url": database.url, "retry_min": "0.1s", "retry_max": "0.5s", "round_timeout": round_timeout},
        "collector": {"batch_wait": "0.05s", **collector},
    })


def reading_batch(gateway_id: str, first: int, count: int, epoch: int = 1, ts: float = 1_760_000_000.0,
                  clock: int = 1, sensor: str = "air") -> bytes:
    readings = [protocol.Reading(seq=seq, ts=ts + (seq - first) * 10, sensor=sensor, quantity="temperature",
                                 value=20 + seq % 7 / 10, unit="°C", clock=clock,
                                 boot_id=None if clock == 1 else "boot-1", mono=None if clock == 1 else 5.0)
                for seq in range(first, first + count)]
    return protocol.encode_readings(gateway_id, epoch, readings)


def event_batch(gateway_id: str, events: list[protocol.Event], epoch: int = 1) -> bytes:
    return protocol.encode_events(gateway_id, epoch, events)


class StandInGateway:
    """Publishes under one gateway id (optionally with credentials) and records the acks it receives.

    ``on_ack`` runs in paho's thread as each ack arrives, so a test can look at the database at that very moment.
    """

    def __init__(self, broker, gateway_id: str, *, password: str | None = None,
                 on_ack: Callable[[protocol.Ack], object] | None = None, version: int = mqtt.MQTTv5,
                 port: int | None = None):
        self.gateway_id = gateway_id
        self.acks: list[protocol.Ack] = []
        self.topics: list[str] = []  # the topic of every message received
        self.seen_at_ack: list[object] = []
        self.puback_codes: dict[int, int] = {}
        self.on_ack = on_ack
        self._lock = threading.Lock()
        # MQTT 3.1.1 (version=mqtt.MQTTv311) for NATS' MQTT listener: a kept session, as a gateway's
        v311 = {"clean_session": False} if version == mqtt.MQTTv311 else {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{gateway_id}",
                                  protocol=version, **v311)
        if password is not None:
            self.client.username_pw_set(gateway_id, password)
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect(broker.host, port or broker.port)
        self.client.subscribe(protocol.topic(gateway_id, protocol.DOWN_ACK), qos=1)
        self.client.loop_start()
        assert self.subscribed.wait(5), "the stand-in gateway could not subscribe"

    def _on_message(self, _client, _userdata, message) -> None:
        ack = protocol.decode_ack(message.payload)
        seen = self.on_ack(ack) if self.on_ack else None
        with self._lock:
            self.topics.append(message.topic)
            self.acks.append(ack)
            self.seen_at_ack.append(seen)

    def _on_publish(self, _client, _userdata, mid, reason_code, _properties=None) -> None:
        self.puback_codes[mid] = reason_code.value

    def publish(self, payload: bytes, leaf: str = protocol.UP_READINGS, *, under: str | None = None,
                retain: bool = False) -> int:
        """Publish and wait for the broker's PUBACK; returns the mid (its reason code is in ``puback_codes``)."""
        info = self.client.publish(protocol.topic(under or self.gateway_id, leaf), payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        wait_until(lambda: info.mid in self.puback_codes, 5, "the broker's PUBACK")
        return info.mid

    def acked(self, stream: str = "readings") -> list[tuple[int, int, int]]:
        """``(epoch, first, last)`` of every range acked so far, in arrival order."""
        with self._lock:
            return [(a.epoch, first, last) for a in self.acks if a.stream == stream for first, last in a.ranges]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Login:
    """One raw MQTT v5 login under an account of the secure broker, recording every answer of the broker."""

    def __init__(self, broker, username: str, *, client_id: str = "", clean_start: bool = True,
                 session_expiry: int = 0):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, broker.users[username])
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.client.on_connect = lambda _c, _u, _f, code, _p: code.is_failure or self.connected.set()
        self.client.on_publish = lambda _c, _u, mid, code, _p: self.pubacks.__setitem__(mid, code.value)
        self.client.on_subscribe = lambda _c, _u, mid, codes, _p: self.subacks.__setitem__(
            mid, [code.value for code in codes])
        self.client.on_message = lambda _c, _u, message: self.messages.append((message.topic,
                                                                               bytes(message.payload)))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
        self.client.connect(broker.host, broker.port, clean_start=clean_start, properties=props)
        self.client.loop_start()
        assert self.connected.wait(5), f"{username} could not log in"

    def publish(self, topic: str, payload: bytes = b"x") -> int:
        """The PUBACK reason code of one QoS 1 publish."""
        info = self.client.publish(topic, payload, qos=1)
        wait_until(lambda: info.mid in self.pubacks, 5, f"the PUBACK of {topic}")
        return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> int:
        """The SUBACK reason code of one QoS 1 subscription (0x01: granted QoS 1)."""
        _, mid = self.client.subscribe(topic, qos=1)
        return wait_until(lambda: self.subacks.get(mid), 5, f"the SUBACK of {topic}")[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def count(database, sql: str, *params) -> int:
    with database.connect() as conn:
        return conn.execute(sql, params).fetchone()[0]


def reading_keys(database) -> list[tuple[str, int, int]]:
    with database.connect() as conn:
        return [tuple(r) for r in conn.execute("SELECT gateway_id, epoch, seq FROM readings ORDER BY 1, 2, 3")]


def wait_for_rows(database, table: str, expected: int, timeout: float = 15.0) -> None:
    wait_until(lambda: count(database, f"SELECT count(*) FROM {table}") >= expected, timeout,
               f"{expected} rows in {table}")


def nats_datacenter_config(cluster, database, *, username: str = "collector", **nats) -> DataCenterConfig:
    """A collector config reading from a test NATS cluster (tests/nats_services.py) with ``username``'s account
    (quick redelivery: a message a dead collector held comes back after 3 s)."""
    return DataCenterConfig.model_validate({
        "source": "nats",
        "nats": {"servers": cluster.servers, "username": username, "password_file": cluster.password_file(username),
                 "replicas": cluster.replicas, "ack_wait": "3s", "reconnect_wait": "0.2s", **nats},
        "database": {"url": database.url, "retry_min": "0.1s", "retry_max": "0.5s"},
        "collector": {"batch_wait": "0.05s"},
    })
