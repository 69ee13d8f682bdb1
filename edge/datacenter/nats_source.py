"""The collector's NATS JetStream source: a durable pull consumer shared by every collector, on a replicated stream.

Gateways keep speaking MQTT 3.1.1, to any node of the cluster (NATS' MQTT listener). What they publish on their
uplink topics (``greenhouse/v1/<id>/up/...``, ``.../status``) lands on the NATS subjects of the same names (``/`` →
``.``), which the stream ``GREENHOUSE_UP`` (replicated on ``nats.replicas`` nodes, work-queue retention) keeps until
a collector acknowledges them. Every collector pulls from the one durable consumer ``collectors``: JetStream splits
the messages between them, and gives a message taken by a collector that died to another after ``ack_wait``.

The order of a round is the writer's (:mod:`edge.datacenter.collector`): commit; then :meth:`NatsSource.reply`, the
gateway's ack, published into the gateway's MQTT session (a QoS 1 message on ``greenhouse/v1/<id>/down/ack``: stored
in the MQTT listener's ``$MQTT_msgs`` stream, so a gateway that is away gets it when it returns); then
:meth:`NatsSource.settle`, the JetStream ack, only once every reply before it was stored by the cluster. A crash or a
node's death anywhere before that leaves the message with the stream, which delivers it again; the database's
unique keys make the second write a no-op and the ack goes out again.

nats-py is asyncio: one thread runs the event loop (connect and reconnect, the pull loop, publishes and acks); the
writer thread only touches a queue and futures.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

from edge.contract import protocol
from edge.datacenter import nats_config
from edge.datacenter.config import NatsConfig
from edge.datacenter.source import Incoming, _take

log = logging.getLogger(__name__)

#: How long one publish of an ack waits for the cluster's answer before it is tried again.
REPLY_WAIT = 5.0
#: How long one pull waits for messages.
PULL_WAIT = 1.0


class NatsSource:
    """``start()`` connects (retrying across ``config.servers``), makes the stream and the consumer if missing, and
    pulls; ``get()`` hands over one message; ``reply()`` and ``settle()`` as the :class:`Source` seam says."""

    def __init__(self, config: NatsConfig, client_id: str):
        self.config = config
        self.client_id = client_id
        self.where = f"NATS {','.join(_host_port(s) for s in config.servers)}, consumer {config.stream}/{config.consumer}"
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._inbox: queue.Queue[Incoming] = queue.Queue()
        self._held: dict[int, Any] = {}  # mid -> the JetStream message, taken and not yet settled
        self._held_lock = threading.Lock()
        self._mids = itertools.count(1)
        self._replies: list[Future] = []  # acks published since the last settle, not yet confirmed
        self._reply_failed = False
        self._reply_trouble = False  # acks failing to be stored right now (logged once)
        self._stopping = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="collector-nats", daemon=True)
        self._nc: Any = None
        self._js: Any = None
        self._wake: asyncio.Event | None = None

    # ------------------------------------------------------------------------------------------ the writer's side

    def start(self) -> None:
        self._thread.start()

    def get(self, timeout: float) -> Incoming | None:
        return _take(self._inbox, timeout)

    def reply(self, topic: str, payload: bytes) -> None:
        """Publish the ack into the gateway's MQTT session; :meth:`settle` waits until the cluster stored it."""
        subject = nats_config.MQTT_MSGS + nats_config.subject_of(topic)
        self._replies.append(asyncio.run_coroutine_threadsafe(self._publish_stored(subject, payload), self._loop))

    def settle(self, message: Incoming) -> None:
        """The JetStream ack, after every reply sent before it is stored (an ack that cannot be stored leaves the
        message unsettled: the stream delivers it again and the ack goes out again)."""
        replies, self._replies = self._replies, []
        for future in replies:
            try:
                if not future.result():
                    self._reply_failed = True
            except Exception:  # noqa: BLE001 - cancelled at stop
                self._reply_failed = True
        with self._held_lock:
            msg = self._held.pop(message.mid, None)
        if msg is None or self._reply_failed or self._stopping.is_set():
            self._wake_puller()
            return
        asyncio.run_coroutine_threadsafe(self._ack(msg), self._loop)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(lambda: None)
            self._thread.join(15)
        self.connected.clear()
        self.subscribed.clear()

    @property
    def held(self) -> int:
        """Messages taken from the stream and not yet settled."""
        with self._held_lock:
            return len(self._held)

    # ------------------------------------------------------------------------------------------ the event loop

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        delay = self.config.reconnect_wait
        while not self._stopping.is_set():
            try:
                await self._connect()
                break
            except Exception as exc:  # noqa: BLE001 - no server reachable yet, or refused: say so and retry
                log.warning("cannot reach %s (%s); retrying in %.0fs", self.where, _reason(exc), delay)
                await self._sleep(delay)
                delay = min(delay * 2, 30.0)
        pull = None
        while not self._stopping.is_set():
            try:
                if pull is None:
                    await self._ensure_stream()
                    pull = await self._js.pull_subscribe_bind(self.config.consumer, stream=self.config.stream)
                    self.subscribed.set()
                    log.info("pulling from %s", self.where)
                    await self._announce()
                await self._pull(pull)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a node died, a leader is being elected: wait and go on
                if self._stopping.is_set():
                    break
                log.warning("pulling from NATS failed (%s); retrying", _reason(exc))
                await self._sleep(self.config.reconnect_wait)
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception:  # noqa: BLE001 - already gone
                pass

    async def _connect(self) -> None:
        import nats

        options: dict[str, Any] = dict(
            servers=list(self.config.servers), name=self.client_id, connect_timeout=self.config.connect_timeout,
            reconnect_time_wait=self.config.reconnect_wait, max_reconnect_attempts=-1, allow_reconnect=True,
            error_cb=self._on_error, disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected)
        if self.config.credentials_file is not None:
            options["user_credentials"] = str(self.config.credentials_file)
        elif self.config.username is not None:
            options["user"] = self.config.username
            options["inbox_prefix"] = nats_config.inbox_of(self.config.username).encode()
            if self.config.password_file is not None:
                options["password"] = self.config.password_file.read_text().strip()
        if any(s.startswith("tls://") for s in self.config.servers):
            import ssl

            options["tls"] = ssl.create_default_context(
                cafile=str(self.config.ca_file) if self.config.ca_file else None)
        self._nc = await nats.connect(**options)
        self._js = self._nc.jetstream(timeout=REPLY_WAIT)
        self.connected.set()
        log.info("connected to NATS %s", self._nc.connected_url.netloc if self._nc.connected_url else "")

    async def _ensure_stream(self) -> None:
        """The stream and the consumer, made when missing (a collector's account may make only these)."""
        from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
        from nats.js.errors import NotFoundError

        c = self.config
        try:
            await self._js.stream_info(c.stream)
        except NotFoundError:
            await self._js.add_stream(StreamConfig(
                name=c.stream, subjects=list(nats_config.UPLINK_SUBJECTS), num_replicas=c.replicas,
                retention=RetentionPolicy.WORK_QUEUE, max_age=c.max_age))
            log.info("made the stream %s (%d replicas)", c.stream, c.replicas)
        try:
            await self._js.consumer_info(c.stream, c.consumer)
        except NotFoundError:
            await self._js.add_consumer(c.stream, ConsumerConfig(
                durable_name=c.consumer, ack_policy=AckPolicy.EXPLICIT, ack_wait=c.ack_wait,
                max_ack_pending=-1))
            log.info("made the consumer %s of %s", c.consumer, c.stream)

    async def _pull(self, pull) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        room = self.config.max_pending - self.held
        if room <= 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
            return
        try:
            messages = await pull.fetch(min(room, 256), timeout=PULL_WAIT)
        except (NatsTimeout, asyncio.TimeoutError):
            return
        for msg in messages:
            mid = next(self._mids)
            with self._held_lock:
                self._held[mid] = msg
            self._inbox.put(Incoming(nats_config.topic_of(msg.subject), msg.data, mid, 1, False))

    async def _publish_stored(self, subject: str, payload: bytes) -> bool:
        """Publish until the cluster stored it (True), or the source stops (False)."""
        while not self._stopping.is_set():
            try:
                await self._js.publish(subject, payload, headers={nats_config.MQTT_HEADER: "1"},
                                       timeout=REPLY_WAIT)
                if self._reply_trouble:
                    self._reply_trouble = False
                    log.info("acks to the gateways are stored again")
                return True
            except Exception as exc:  # noqa: BLE001 - no leader for the moment, a node died: try again
                # once per outage (a round's acks all fail together), not once per ack and attempt
                (log.debug if self._reply_trouble else log.warning)(
                    "acks to the gateways are not stored (%s); sending them again until they are", _reason(exc))
                self._reply_trouble = True
                await self._sleep(self.config.reconnect_wait)
        return False

    async def _ack(self, msg) -> None:
        try:
            await msg.ack()
        except Exception as exc:  # noqa: BLE001 - the stream delivers it again after ack_wait: a duplicate, no loss
            log.warning("a JetStream ack was lost (%s); the message will come again", _reason(exc))
        self._wake_puller()

    async def _announce(self) -> None:
        """Tell the gateways a collector (re)started pulling: they send again what awaits an ack (live only)."""
        payload = protocol.encode_presence(uuid.uuid4().hex, client=self.client_id, ts=round(time.time(), 3))
        try:
            await self._nc.publish(nats_config.subject_of(protocol.PRESENCE_TOPIC), payload)
        except Exception as exc:  # noqa: BLE001 - gateways re-send on their own timer anyway
            log.warning("could not announce this collector (%s)", _reason(exc))

    def _wake_puller(self) -> None:
        if self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, deadline - time.monotonic()))

    # nats-py callbacks (on the loop)

    async def _on_error(self, exc: Exception) -> None:
        log.debug("NATS: %s", _reason(exc))

    async def _on_disconnected(self) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning("disconnected from NATS; reconnecting to another node")

    async def _on_reconnected(self) -> None:
        self.connected.set()
        log.info("reconnected to NATS %s", self._nc.connected_url.netloc if self._nc.connected_url else "")


def _host_port(server: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(server)
    return f"{parts.hostname}:{parts.port or 4222}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__



# ------------------------------------------------------------------------------------- the cluster's state


def cluster_state(config: NatsConfig, timeout: float = 10.0) -> list[str]:
    """What ``edge dc nats-status`` prints: the node answering, the uplink stream (messages waiting, its copies and
    whether each is current) and the shared consumer (not yet taken, taken and not settled, collectors pulling).
    Raises OSError when no node answers, LookupError when the stream or the consumer does not exist yet."""
    return asyncio.run(asyncio.wait_for(_cluster_state(config), timeout))


async def _cluster_state(config: NatsConfig) -> list[str]:
    import nats
    from nats.js.errors import NotFoundError

    options: dict[str, Any] = dict(servers=list(config.servers), connect_timeout=config.connect_timeout,
                                   allow_reconnect=False, max_reconnect_attempts=0)
    if config.credentials_file is not None:
        options["user_credentials"] = str(config.credentials_file)
    elif config.username is not None:
        options.update(user=config.username, inbox_prefix=nats_config.inbox_of(config.username).encode())
        if config.password_file is not None:
            options["password"] = config.password_file.read_text().strip()

    async def quiet(_exc: Exception) -> None:
        pass

    try:
        nc = await nats.connect(error_cb=quiet, **options)
    except Exception as exc:  # noqa: BLE001 - no server answered, or the login was refused
        raise OSError(f"no node of {', '.join(_host_port(s) for s in config.servers)} answered: {_reason(exc)}") \
            from None
    try:
        js = nc.jetstream(timeout=REPLY_WAIT)
        try:
            stream = await js.stream_info(config.stream)
            consumer = await js.consumer_info(config.stream, config.consumer)
        except NotFoundError:
            raise LookupError(f"no stream {config.stream} with consumer {config.consumer} yet (the first collector "
                              "makes them)") from None
        answering = getattr(nc, "_server_info", {}) or {}  # what the server said at connect (nats-py keeps it so)
        lines = [f"connected to {nc.connected_url.netloc if nc.connected_url else '?'} (node "
                 f"{answering.get('server_name', '?')}, nats-server {answering.get('version', '?')})"]
        state = stream.state
        lines.append(f"stream {config.stream}: {state.messages} messages waiting ({state.bytes} bytes), "
                     f"{stream.config.num_replicas} copies")
        lines += _copies(stream.cluster)
        lines.append(f"consumer {config.consumer}: {consumer.num_pending} not yet taken, {consumer.num_ack_pending} "
                     f"taken and not settled, {consumer.num_redelivered} redelivered, {consumer.num_waiting} pulls "
                     "waiting (collectors)")
        lines += _copies(consumer.cluster)
        return lines
    finally:
        await nc.close()


def _copies(cluster) -> list[str]:
    """One line per copy: the leader, then each replica, current or behind or offline."""
    if cluster is None:
        return ["  one node, no cluster"]
    lines = [f"  leader {cluster.leader or 'NONE (no quorum: nothing flows)'}"]
    for peer in cluster.replicas or []:
        if peer.offline:
            how = "OFFLINE"
        elif peer.current:
            how = "current"
        else:
            how = f"behind by {peer.lag or 0} operations"
        lines.append(f"  replica {peer.name}: {how}, last heard from {(peer.active or 0) / 1e9:.1f}s ago")
    return lines
