"""Where the collector's messages come from: the seam between its writer and a broker.

The writer (:class:`~edge.datacenter.collector.Collector`) takes messages from a :class:`Source`, commits them, sends
each gateway its application-level ack through the source, and only then settles the messages with the source (an
MQTT ack; a JetStream ack for a NATS source). A message the writer never settles stays with the broker, which
delivers it again: that is what makes a crash anywhere before the settle harmless.

:class:`MqttSource` is the MQTT 5 source (a shared subscription, manual acks, a retained presence after every
subscribe); :class:`MemorySource` carries messages in memory, for tests of the writer without a broker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from edge import mqtt
from edge.contract import protocol
from edge.datacenter.config import BrokerConfig, DataCenterConfig

log = logging.getLogger(__name__)

UPLINK = f"{protocol.TOPIC_ROOT}/+/up/#"
STATUS = f"{protocol.TOPIC_ROOT}/+/{protocol.STATUS}"


@dataclass(frozen=True)
class Incoming:
    """One message as the source handed it over, before any decoding. ``mid`` and ``qos`` are the source's, for
    :meth:`Source.settle`."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool = False


class Source(Protocol):
    #: Set while connected to the broker, and once the subscriptions are confirmed (tests and tools wait on them).
    connected: threading.Event
    subscribed: threading.Event
    #: Where the messages come from, for logs (never a secret).
    where: str

    def start(self) -> None:
        """Connect (in the background, retrying) and start delivering."""

    def get(self, timeout: float) -> Incoming | None:
        """The next message, waiting at most ``timeout`` seconds (0: only one already here); None if none came."""

    def reply(self, topic: str, payload: bytes) -> None:
        """Send one message to a gateway (an ack after the commit), at least once."""

    def settle(self, message: Incoming) -> None:
        """``message`` is committed (and answered): the broker may forget it."""

    def stop(self) -> None:
        """Disconnect; whatever was delivered and not settled stays with the broker."""


class MqttSource:
    """The collector's MQTT 5 source: ``$share/<group>/greenhouse/v1/+/up/#`` and the (unshared) status topic, a
    session kept across restarts, manual acks. paho's network thread only puts messages on a queue."""

    def __init__(self, config: BrokerConfig, client_id: str):
        self.config = config
        self.client_id = client_id
        self.login, self.session = login_of(config), session_of(config, client_id)
        self.where = f"broker {self.login.where}, share group {config.share_group}"
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._stopping = False
        self._inbox: queue.Queue[Incoming] = queue.Queue()
        paho_log = logging.getLogger("edge.datacenter.paho")
        paho_log.setLevel(logging.WARNING)
        paho_log.addFilter(_not_news)
        client = self._client = mqtt.build_client(self.login, self.session, paho_log)
        client.reconnect_delay_set(int(max(1, config.reconnect_min)), int(max(1, config.reconnect_max)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_connect_fail = self._on_connect_fail

    def start(self) -> None:
        self._client.connect_async(self.login.host, self.login.port, **mqtt.connect_args(self.login, self.session))
        self._client.loop_start()

    def get(self, timeout: float) -> Incoming | None:
        return _take(self._inbox, timeout)

    def reply(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1)

    def settle(self, message: Incoming) -> None:
        if message.qos:
            self._client.ack(message.mid, message.qos)

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    # paho callbacks (its network thread): record, hand over

    def _on_connect(self, client, _userdata, flags, reason_code, _properties=None) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s (check mqtt.username / password_file)", reason_code)
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        group = self.config.share_group
        client.subscribe([(f"$share/{group}/{UPLINK}", SubscribeOptions(qos=1)),
                          # not shared: a shared subscription gets no retained messages; and only on a new
                          # subscription (retainHandling 1), not again at every reconnect
                          (STATUS, SubscribeOptions(qos=1, retainHandling=1))])
        # After the SUBSCRIBE on this connection, so subscribed when gateways see it: a broker restarted without our
        # session dropped what gateways sent meanwhile, and a new start id tells them to re-send it now.
        client.publish(protocol.PRESENCE_TOPIC, protocol.encode_presence(
            uuid.uuid4().hex, client=self.client_id, ts=round(time.time(), 3)), qos=1, retain=True)
        self.connected.set()
        log.info("connected to the broker (session %s)", "resumed" if flags.session_present else "new")

    def _on_connect_fail(self, _client, _userdata) -> None:
        log.warning("cannot reach the broker at %s; retrying", self.login.where)

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties=None) -> None:
        failed = [str(code) for code in reason_codes if code.is_failure]
        if failed:
            log.error("the broker refused a subscription: %s (check the collector's ACL)", ", ".join(failed))
        else:
            self.subscribed.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties=None) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if self._stopping:
            return
        hint = (" (another collector logged in with the same account or client id? each needs its own account)"
                if reason_code == "Session taken over" else "")
        log.warning("disconnected from the broker: %s%s; reconnecting", reason_code, hint)

    def _on_message(self, _client, _userdata, message) -> None:
        self._inbox.put(Incoming(message.topic, bytes(message.payload), message.mid, message.qos,
                                 bool(message.retain)))


def open_source(config: DataCenterConfig, client_id: str) -> Source:
    """The source the config names: ``mqtt`` (:class:`MqttSource`) or ``nats``
    (:class:`~edge.datacenter.nats_source.NatsSource`, imported only then)."""
    if config.source == "nats":
        from edge.datacenter.nats_source import NatsSource

        return NatsSource(config.nats, client_id)
    return MqttSource(config.mqtt, client_id)


def login_of(config: BrokerConfig) -> mqtt.BrokerLogin:
    """Where the collector's broker is and who logs in (MQTT 5 always: shared subscriptions need it)."""
    return mqtt.BrokerLogin(config.url, "mqttv5", config.username, config.password_file, config.ca_file,
                            config.cert_file, config.key_file)


def session_of(config: BrokerConfig, client_id: str) -> mqtt.Session:
    """A session kept across restarts (0, the MQTT default, would end it at disconnect), manually acknowledged."""
    return mqtt.Session(client_id, config.keepalive, clean_start=False, session_expiry=int(config.session_expiry),
                        receive_maximum=config.receive_maximum, manual_ack=True)


def _not_news(record: logging.LogRecord) -> bool:
    """paho 2.2's network thread logs "Client is not connected" as an ERROR after every failed connection attempt
    and after our own disconnect; the collector says what happened in its own words."""
    return not str(record.msg).startswith("Client is not connected")


class MemorySource:
    """A source with no broker, for tests: ``put()`` delivers a message; what the writer sends back lands in
    ``replies`` and what it settles in ``settled`` (each in order)."""

    where = "memory"

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.replies: list[tuple[str, bytes]] = []
        self.settled: list[Incoming] = []
        self._inbox: queue.Queue[Incoming] = queue.Queue()
        self._mid = 0

    def put(self, topic: str, payload: bytes, retain: bool = False) -> Incoming:
        self._mid += 1
        message = Incoming(topic, payload, self._mid, 1, retain)
        self._inbox.put(message)
        return message

    def start(self) -> None:
        self.connected.set()
        self.subscribed.set()

    def get(self, timeout: float) -> Incoming | None:
        return _take(self._inbox, timeout)

    def reply(self, topic: str, payload: bytes) -> None:
        self.replies.append((topic, payload))

    def settle(self, message: Incoming) -> None:
        self.settled.append(message)

    def stop(self) -> None:
        self.connected.clear()
        self.subscribed.clear()


def _take(inbox: queue.Queue, timeout: float) -> Incoming | None:
    """The next message of ``inbox``, waiting up to ``timeout`` seconds (none: not at all); None when there is none."""
    try:
        return inbox.get(timeout=timeout) if timeout > 0 else inbox.get_nowait()
    except queue.Empty:
        return None
