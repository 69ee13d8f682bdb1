"""The link under the uplink: what :class:`~edge.gateway.sync.uplink.Sync` needs from a broker, and nothing more.

``Sync`` decides what to send, when, and what an ack settles; a :class:`Link` only carries bytes: it connects (with
the subscriptions and the last will ``Sync`` names), publishes one message at a time, hands over what arrived when
polled, and closes. Every call comes from the one sync thread, so a link needs no lock of its own.

:class:`MqttLink` is the link of a running gateway (paho, driven with ``client.loop()`` from the sync thread: no paho
network thread); :class:`MemoryLink` is a link with no network at all, for tests of lanes, acks, re-sends and
commands without a broker (and the shape a second broker engine's link takes).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edge import mqtt

log = logging.getLogger(__name__)

#: How long one connection attempt waits for the broker's answer (CONNACK).
CONNECT_WAIT = 10.0


@dataclass(frozen=True)
class Message:
    """One message, in either direction. ``retained``: the broker kept it from before we subscribed."""

    topic: str
    payload: bytes
    retained: bool = False


class LinkDown(Exception):
    """The link is lost (its text says why). ``arrived`` holds what came in before it was lost, still to handle."""

    def __init__(self, why: str, arrived: Sequence[Message] = ()):
        super().__init__(why)
        self.arrived = list(arrived)


class Link(Protocol):
    def connect(self, subscriptions: Sequence[str], will: Message, stop: threading.Event) -> bool:
        """Connect and subscribe (QoS 1), ``will`` left with the broker for an unclean end. True once up; False when
        it gave up without a reason (``stop`` was set, or no answer in time); raises (OSError, ValueError) naming why
        the broker or the network said no."""

    def probe(self, timeout: float) -> bool:
        """Whether the broker answers at all now (cheaply: no session, no TLS), waiting at most ``timeout``."""

    def poll(self, timeout: float) -> list[Message]:
        """Do the link's I/O for at most ``timeout`` seconds; what arrived meanwhile. Raises :class:`LinkDown`."""

    def publish(self, message: Message) -> None:
        """Hand one message (QoS 1) to the link: sent, or queued to be sent by the next polls. This is no proof of
        delivery (only the data center's ack is); raises :class:`LinkDown` when the link cannot take it."""

    def close(self, last: Message | None = None) -> None:
        """Publish ``last`` if the link is up (a clean stop's "offline"), then disconnect. Never raises."""


class MqttLink:
    """The link over MQTT (paho 2.x). A new client for each connection attempt: paho's in-memory queue is never
    trusted across a reconnect; the broker session (no clean start, a day's expiry) keeps commands meanwhile."""

    def __init__(self, login: Callable[[], mqtt.BrokerLogin], session: mqtt.Session):
        self._login = login  # called at each attempt: a password file changed meanwhile is read again
        self.session = session
        self._client: Any = None
        self._arrived: list[Message] = []
        self._answer: Any = None  # the CONNACK's reason code, once it came
        self._down: str | None = None  # why the link was lost, found by a callback during a loop

    def connect(self, subscriptions: Sequence[str], will: Message, stop: threading.Event) -> bool:
        self.close()
        self._arrived, self._answer, self._down = [], None, None
        login = self._login()
        paho_log = logging.getLogger("edge.gateway.sync.paho")
        paho_log.setLevel(logging.WARNING)
        client = self._client = mqtt.build_client(login, self.session, paho_log)
        client.will_set(will.topic, will.payload, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._subscriptions = list(subscriptions)
        try:
            client.connect(login.host, login.port, **mqtt.connect_args(login, self.session))
            deadline = time.monotonic() + CONNECT_WAIT
            while self._answer is None and time.monotonic() < deadline and not stop.is_set():
                rc = client.loop(timeout=0.1)
                if self._answer is not None and self._answer.is_failure:
                    # the CONNACK said no (bad credentials, not authorised): say so, not "closed"
                    raise OSError(f"broker refused the connection: {self._answer}")
                if rc != 0:
                    raise OSError(mqtt.error_string(rc))
        except BaseException:
            self._drop()
            raise
        if self._answer is None or self._answer.is_failure:
            self._drop()
            return False
        return True

    def probe(self, timeout: float) -> bool:
        """A TCP connect to the broker's port, closed at once: a refused or unanswered one costs the broker nothing
        (no TLS handshake, no session), so a gateway may retry often while its outage is young."""
        try:
            login = self._login()
            with socket.create_connection((login.host, login.port), timeout=timeout):
                return True
        except (OSError, ValueError):
            return False

    def poll(self, timeout: float) -> list[Message]:
        if self._client is None:
            raise LinkDown("not connected")
        rc = self._client.loop(timeout=timeout)
        arrived, self._arrived = self._arrived, []
        if self._down is None and rc != 0:
            self._down = f"network loop: {mqtt.error_string(rc)}"
        if self._down is not None:
            why = self._down
            self._drop()
            raise LinkDown(why, arrived)
        return arrived

    def publish(self, message: Message) -> None:
        if self._client is None:
            raise LinkDown("not connected")
        info = self._client.publish(message.topic, message.payload, qos=1, retain=message.retained)
        if info.rc != 0:
            self._drop()
            raise LinkDown(f"publish: {mqtt.error_string(info.rc)}")

    def close(self, last: Message | None = None) -> None:
        """paho sends the DISCONNECT and closes the socket inside ``disconnect()`` when no loop thread runs, so no
        ``loop()`` may follow it (paho would log "Client is not connected" as an ERROR)."""
        client = self._client
        if client is None:
            return
        try:
            if last is not None and client.is_connected():
                client.publish(last.topic, last.payload, qos=1, retain=last.retained)
                client.loop(timeout=0.2)
        except (OSError, ValueError):
            pass
        self._drop()

    def _drop(self) -> None:
        """Drop the client's connection without waiting for anything (a new client is made for the next attempt)."""
        client, self._client = self._client, None
        if client is None or not client.is_connected():
            return
        try:
            client.disconnect()
        except (OSError, ValueError):
            pass

    # paho callbacks (inside loop()): they only record

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties=None) -> None:
        self._answer = reason_code
        if not reason_code.is_failure:
            client.subscribe([(topic, 1) for topic in self._subscriptions])

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties=None) -> None:
        if self._answer is not None and self._client is not None:
            self._down = f"disconnected: {reason_code}"

    def _on_message(self, _client, _userdata, message) -> None:
        self._arrived.append(Message(message.topic, bytes(message.payload), bool(message.retain)))


class MemoryLink:
    """A link with no network, for tests: what is published lands in ``sent``; ``deliver()`` queues a message for
    the next poll; ``lose()`` makes the next poll find the link lost; ``refuse`` (a reason) makes ``connect`` fail."""

    def __init__(self) -> None:
        self.up = False
        self.sent: list[Message] = []
        self.subscriptions: list[str] = []
        self.will: Message | None = None
        self.connects = 0
        self.probes = 0
        self.refuse: str | None = None
        self._incoming: deque[Message] = deque()
        self._lost: str | None = None

    def deliver(self, topic: str, payload: bytes, retained: bool = False) -> None:
        self._incoming.append(Message(topic, payload, retained))

    def lose(self, why: str = "connection lost") -> None:
        self._lost = why

    def connect(self, subscriptions: Sequence[str], will: Message, stop: threading.Event) -> bool:
        if self.refuse:
            raise OSError(self.refuse)
        self.up, self._lost = True, None
        self.connects += 1
        self.subscriptions, self.will = list(subscriptions), will
        return True

    def probe(self, timeout: float) -> bool:
        self.probes += 1
        return not self.refuse

    def poll(self, timeout: float) -> list[Message]:
        if not self.up:
            raise LinkDown("not connected")
        arrived = list(self._incoming)
        self._incoming.clear()
        if self._lost:
            self.up = False
            raise LinkDown(self._lost, arrived)
        return arrived

    def publish(self, message: Message) -> None:
        if not self.up:
            raise LinkDown("publish: not connected")
        self.sent.append(message)

    def close(self, last: Message | None = None) -> None:
        if last is not None and self.up:
            self.sent.append(last)
        self.up = False

    def taken(self, topic_leaf: str | None = None) -> list[Message]:
        """What was published since the last call (only topics ending in ``topic_leaf``, if given)."""
        sent, self.sent = self.sent, []
        return [m for m in sent if topic_leaf is None or m.topic.endswith(topic_leaf)]
