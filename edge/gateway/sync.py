"""Store-and-forward uplink: buffered readings and events to the data center over MQTT, removed only by its acks.

One thread owns the MQTT client (paho 2.x, driven with ``client.loop()``) and the sync logic, so no lock is needed
and paho's callbacks only hand messages over. The buffer is the queue: a batch is read from it, published, and stays
pending until the data center's application-level ack (sent after its database commit) marks it acknowledged. A
broker PUBACK means nothing here; paho's in-memory queue is never trusted across a reconnect.

Three lanes share the link: **events** (always first, small), **live** readings (taken since the link came up:
sent every ``interval``, so a long backlog never delays them), and the **backlog** (older pending readings, oldest
first, at most ``backlog_rate`` readings per second and ``max_inflight`` batches awaiting acks). A batch whose ack
does not come within ``ack_timeout`` is sent again, oldest first; a reconnect sends everything unacknowledged again.
The data center's unique key makes every re-send harmless.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from edge import __version__, protocol
from edge.durations import Duration
from edge.errors import BufferWriteError
from edge.gateway.hardware.base import StrictModel

log = logging.getLogger(__name__)

MIGRATIONS = [(1, "sync state", """
    CREATE TABLE sync_commands (id TEXT PRIMARY KEY, issued REAL NOT NULL, received REAL NOT NULL, ok INTEGER NOT NULL);
    CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT);
""")]


class SyncConfig(StrictModel):
    url: str = Field(default="", description="mqtt://host:1883 or mqtts://host:8883; empty: no uplink, buffer only")
    mqtt_version: Literal["mqttv5", "mqttv311"] = Field(default="mqttv5",
                                                        description="MQTT 5, or 3.1.1 for old brokers")
    username: str | None = Field(default=None, description="broker user; default: the gateway id")
    password_file: Path | None = Field(default=None, description="file holding the broker password (not inline)")
    ca_file: Path | None = Field(default=None, description="CA certificate for mqtts:// (default: system CAs)")
    cert_file: Path | None = Field(default=None, description="client certificate, for brokers that require one")
    key_file: Path | None = Field(default=None, description="client certificate's private key")
    keepalive: Duration = 30.0
    interval: Duration = Field(default=1.0, description="how often new readings and events are sent")
    batch_size: int = Field(default=1000, ge=1, le=protocol.MAX_ROWS, description="readings per batch")
    max_inflight: int = Field(default=8, ge=1, description="batches awaiting the data center's ack")
    ack_timeout: Duration = Field(default=30.0, description="re-send a batch whose ack has not come by then")
    backlog_rate: int = Field(default=20_000, ge=1, description="backlog readings sent per second at most")
    reconnect_min: Duration = 1.0
    reconnect_max: Duration = 120.0
    status_interval: Duration = Field(default=60.0, description="how often the retained status (backlog) is renewed")
    command_max_age: Duration = Field(default=300.0, description="commands issued longer ago than this are refused")

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        return protocol.check_broker_url(value) if value.strip() else ""


@dataclass
class Inflight:
    stream: str
    epoch: int
    first: int
    last: int
    count: int
    sent_at: float
    lane: str


@dataclass
class Lane:
    """A cursor over one stream's pending rows: events, live readings, or the readings backlog."""

    name: str
    stream: str
    after: tuple[int, int] = (0, 0)
    until: tuple[int, int] | None = None  # inclusive upper bound (backlog), None for no bound
    rate: float | None = None  # rows per second at most
    budget: float = 0.0  # rows that may be sent now (token bucket)


class Sync:
    """The uplink. ``start()`` runs it in a thread; ``stop()`` ends it. Safe to build with an empty URL (offline)."""

    def __init__(self, config: SyncConfig, gateway_id: str, buffer: Any, clock: Any,
                 on_command: Callable[[protocol.Command], dict[str, Any]] | None = None,
                 on_link: Callable[[bool, float], None] | None = None):
        self.config = config
        self.gateway_id = gateway_id
        self.buffer = buffer
        self.clock = clock
        self.on_command = on_command
        self.on_link = on_link
        self.connected = False
        self.inbox: deque[tuple[str, bytes]] = deque()
        self.inflight: dict[tuple[str, int, int], Inflight] = {}
        self.resend: deque[Inflight] = deque()
        self.lanes: list[Lane] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = None
        self._failures = 0
        self._refused: str | None = None
        self._next_fill = 0.0
        self._wake = False
        self._next_status = 0.0
        self._link_since = clock.time()
        self.last_ack: float | None = None
        buffer.migrate("sync", MIGRATIONS)

    @property
    def enabled(self) -> bool:
        return bool(self.config.url)

    # --------------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if not self.enabled:
            log.info("sync: no broker url configured; buffering only")
            self._save_state(link="offline")
            return
        self._thread = threading.Thread(target=self._run, name="sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.connected:
                    if not self._connect():
                        self._stop.wait(self._backoff())
                    continue
                rc = self._client.loop(timeout=min(0.05, self.config.interval))
                if rc != 0 and self.connected:
                    self._lost(f"network loop: {_paho_error(rc)}")
                    continue
                self.step()
            if self.connected:
                self._goodbye()
        except Exception:
            log.exception("sync thread failed; the buffer keeps everything and the next start resends it")
        finally:
            self.buffer.close_thread_connection()

    # ----------------------------------------------------------------------------------------------- connection

    def _connect(self) -> bool:
        self._refused = None
        client = self._make_client()
        parts = urlsplit(self.config.url)
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        kwargs: dict[str, Any] = {"keepalive": int(self.config.keepalive)}
        if self.config.mqtt_version == "mqttv5":
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 86400  # commands and acks queued while we are away are kept a day
            kwargs.update(clean_start=False, properties=props)
        try:
            client.connect(parts.hostname, port, **kwargs)
            deadline = time.monotonic() + 10
            while not self.connected and time.monotonic() < deadline and not self._stop.is_set():
                rc = client.loop(timeout=0.1)
                if self._refused:  # the CONNACK said no (bad credentials, not authorised): say so, not "closed"
                    raise OSError(self._refused)
                if rc != 0:
                    raise OSError(_paho_error(rc))
        except (OSError, ValueError) as exc:
            self._failures += 1
            log.warning("sync: cannot connect to %s:%s (%s); retrying", parts.hostname, port, exc)
            self._save_state(link="down", error=str(exc))
            _close(client)
            return False
        if not self.connected:
            _close(client)
            return False
        return True

    def _make_client(self):
        import paho.mqtt.client as mqtt

        cfg = self.config
        version = mqtt.MQTTv5 if cfg.mqtt_version == "mqttv5" else mqtt.MQTTv311
        kwargs = {} if version == mqtt.MQTTv5 else {"clean_session": False}
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-{self.gateway_id}",
                             protocol=version, **kwargs)
        client.enable_logger(logging.getLogger("edge.gateway.sync.paho"))
        logging.getLogger("edge.gateway.sync.paho").setLevel(logging.WARNING)
        username = cfg.username or self.gateway_id
        password = cfg.password_file.read_text().strip() if cfg.password_file else None
        client.username_pw_set(username, password)
        if urlsplit(cfg.url).scheme == "mqtts":
            client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                           certfile=str(cfg.cert_file) if cfg.cert_file else None,
                           keyfile=str(cfg.key_file) if cfg.key_file else None)
        client.will_set(protocol.topic(self.gateway_id, protocol.STATUS),
                        protocol.encode_status("offline", version=__version__), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        return client

    # paho callbacks: they only record and hand over

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties=None) -> None:
        if reason_code.is_failure:
            self._refused = f"broker refused the connection: {reason_code}"
            return
        client.subscribe([(protocol.topic(self.gateway_id, protocol.DOWN_ACK), 1),
                          (protocol.topic(self.gateway_id, protocol.DOWN_CMD), 1)])
        self.connected = True
        self._failures = 0
        self._link_changed(True)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties=None) -> None:
        if self._stop.is_set():
            self.connected = False  # our own goodbye
        elif self.connected:
            self._lost(f"disconnected: {reason_code}")

    def _on_message(self, _client, _userdata, message) -> None:
        self.inbox.append((message.topic, bytes(message.payload)))

    def _lost(self, why: str) -> None:
        log.warning("sync: link to the broker lost (%s); everything unacknowledged stays buffered", why)
        self.connected = False
        _close(self._client)
        self._link_changed(False, why)

    def _link_changed(self, up: bool, why: str | None = None) -> None:
        now = self.clock.time()
        self._link_since = now
        self.inflight.clear()  # after a reconnect everything unacknowledged is sent again
        self.resend.clear()
        if up:
            self._open_lanes()
            self._next_status = 0.0
            log.info("sync: connected to %s", _redact(self.config.url))
        self._save_state(link="up" if up else "down", error=why)
        if self.on_link is not None:
            try:
                self.on_link(up, now)
            except Exception:
                log.exception("sync: link listener failed")

    def _backoff(self) -> float:
        """Exponential backoff with full jitter, so a province of gateways does not reconnect in step."""
        ceiling = min(self.config.reconnect_max, self.config.reconnect_min * 2 ** min(self._failures, 16))
        return random.uniform(self.config.reconnect_min, max(self.config.reconnect_min, ceiling))

    def _goodbye(self) -> None:
        """On a clean stop: say offline (the will is only for unclean ends) and disconnect."""
        try:
            self._client.publish(protocol.topic(self.gateway_id, protocol.STATUS),
                                 protocol.encode_status("offline", version=__version__), qos=1, retain=True)
            self._client.loop(timeout=0.2)
            self._client.disconnect()
            self._client.loop(timeout=0.2)
        except (OSError, ValueError):
            pass

    # ------------------------------------------------------------------------------------------------- the work

    def _open_lanes(self) -> None:
        """Readings taken from now on are live; older pending ones are the backlog."""
        row = self.buffer.db.execute(
            "SELECT epoch, seq FROM readings WHERE acked = 0 ORDER BY epoch DESC, seq DESC LIMIT 1").fetchone()
        live_from = tuple(row) if row else (0, 0)
        self.lanes = [Lane("events", "events"), Lane("live", "readings", after=live_from),
                      Lane("backlog", "readings", until=live_from, rate=self.config.backlog_rate)]
        self._last_step = time.monotonic()

    def step(self) -> None:
        """Handle what arrived, then send what the window and the rates allow. Called by the sync thread."""
        while self.inbox:
            self._handle(*self.inbox.popleft())
        now_mono = time.monotonic()
        if now_mono < self._next_fill and not self._wake:
            return  # nothing new to send before the next interval, and no ack freed the window
        self._wake = False
        self._next_fill = now_mono + self.config.interval
        elapsed, self._last_step = now_mono - self._last_step, now_mono
        self._expire(now_mono)
        for lane in self.lanes:
            if lane.rate is not None:
                lane.budget = min(lane.budget + lane.rate * elapsed, lane.rate)  # at most a second's worth
        while self.resend and len(self.inflight) < self.config.max_inflight:
            self._resend(self.resend.popleft())
        for lane in self.lanes:
            self._fill(lane)
        if self.clock.time() >= self._next_status:
            self._publish_status()

    def _fill(self, lane: Lane) -> None:
        while len(self.inflight) < self.config.max_inflight + (2 if lane.name != "backlog" else 0):
            limit = self.config.batch_size
            if lane.rate is not None:
                limit = min(limit, int(lane.budget))
                if limit < min(self.config.batch_size, lane.rate):
                    return
            rows = self.buffer.pending(lane.stream, limit=limit, after=lane.after)
            rows = [r for r in rows if r["epoch"] == rows[0]["epoch"]] if rows else rows
            if lane.until is not None:
                rows = [r for r in rows if (r["epoch"], r["seq"]) <= lane.until]
            rows = [r for r in rows if (lane.stream, r["epoch"], r["seq"]) not in self.inflight]
            if not rows:
                return
            self._publish(lane.stream, rows, lane.name)
            lane.after = (rows[-1]["epoch"], rows[-1]["seq"])
            if lane.rate is not None:
                lane.budget -= len(rows)

    def _publish(self, stream: str, rows: list[dict[str, Any]], lane: str) -> None:
        epoch = rows[0]["epoch"]
        if stream == "readings":
            payload = protocol.encode_readings(self.gateway_id, epoch, [_reading(r) for r in rows])
            leaf = protocol.UP_READINGS
        else:
            payload = protocol.encode_events(self.gateway_id, epoch, [_event(r) for r in rows])
            leaf = protocol.UP_EVENTS
        info = self._client.publish(protocol.topic(self.gateway_id, leaf), payload, qos=1)
        if info.rc != 0:
            self._lost(f"publish: {_paho_error(info.rc)}")
            return
        item = Inflight(stream, epoch, rows[0]["seq"], rows[-1]["seq"], len(rows), time.monotonic(), lane)
        self.inflight[(stream, epoch, item.first)] = item

    def _resend(self, item: Inflight) -> None:
        rows = self.buffer.pending_range(item.stream, item.epoch, item.first, item.last)
        for start in range(0, len(rows), self.config.batch_size):
            self._publish(item.stream, rows[start:start + self.config.batch_size], "resend")

    def _expire(self, now_mono: float) -> None:
        late = [key for key, item in self.inflight.items() if now_mono - item.sent_at > self.config.ack_timeout]
        for key in sorted(late, key=lambda k: (k[1], k[2])):  # oldest first
            item = self.inflight.pop(key)
            log.info("sync: no ack for %s %d..%d of epoch %d within %gs; sending it again", item.stream,
                     item.first, item.last, item.epoch, self.config.ack_timeout)
            self.resend.append(item)

    def _handle(self, topic: str, payload: bytes) -> None:
        try:
            _, leaf = protocol.parse_topic(topic)
            if leaf == protocol.DOWN_ACK:
                self._acked(protocol.decode_ack(payload))
            elif leaf == protocol.DOWN_CMD:
                self._command(payload)
        except protocol.ProtocolError as exc:
            log.warning("sync: ignored a malformed message on %s: %s", topic, exc)
        except BufferWriteError as exc:  # a full disk: an unrecorded ack is re-sent after its timeout, and
            log.debug("sync: %s not recorded (%s)", topic, exc)  # the data center drops the duplicate

    def _acked(self, ack: protocol.Ack) -> None:
        """Committed ranges leave the pending set; conflicting ones are re-keyed into a new epoch and sent again
        (the live lane picks them up); an epoch the data center holds above ours moves us above it."""
        now = self.clock.time()
        if ack.max_epoch is not None:
            self.buffer.raise_epoch_floor(ack.max_epoch, now, f"the data center holds epoch {ack.max_epoch}")
        for first, last in ack.ranges:
            self.buffer.ack(ack.stream, ack.epoch, first, last)
            self._settled(ack.stream, ack.epoch, first, last)
        for first, last in ack.conflicts:
            self.buffer.rekey(ack.stream, ack.epoch, first, last, now)
            self._settled(ack.stream, ack.epoch, first, last)
        self.last_ack = now
        self._wake = True  # the window has room again

    def _settled(self, stream: str, epoch: int, first: int, last: int) -> None:
        """Batches starting in ``first..last`` of ``epoch`` await no ack any more."""
        for key in [k for k in self.inflight if k[0] == stream and k[1] == epoch and first <= k[2] <= last]:
            del self.inflight[key]

    # ------------------------------------------------------------------------------------------------ commands

    def _command(self, payload: bytes) -> None:
        now = self.clock.time()
        try:
            command = protocol.decode_command(payload)
        except protocol.ProtocolError as exc:
            log.warning("sync: refused a malformed command: %s", exc)
            self.buffer.append_event("command.result", "sync", {"id": None, "ok": False, "error": str(exc)}, ts=now)
            return
        refusal = self._replay_refusal(command, now)
        if refusal:
            result = {"ok": False, "error": refusal}
        elif command.op == "ping":
            result = {"ok": True, "result": {"pong": now}}
        elif self.on_command is None:
            result = {"ok": False, "error": f"op {command.op!r} is not available on this gateway"}
        else:
            try:
                result = {"ok": True, "result": self.on_command(command)}
            except Exception as exc:  # a refusal or a bad argument: report it, change nothing else
                result = {"ok": False, "error": str(exc)}
        if refusal is None or "already" not in refusal:
            with self.buffer.transaction() as db:
                db.execute("INSERT OR IGNORE INTO sync_commands VALUES (?, ?, ?, ?)",
                           (command.id, command.issued, now, int(result["ok"])))
        self.buffer.append_event("command.result", "sync", {"id": command.id, "op": command.op, **result}, ts=now)
        log.info("sync: command %s (%s): %s", command.id, command.op,
                 "done" if result["ok"] else f"refused: {result['error']}")

    def _replay_refusal(self, command: protocol.Command, now: float) -> str | None:
        """Each command id is carried out once, and only while fresh (issued time and id: replay protection)."""
        if self.buffer.db.execute("SELECT 1 FROM sync_commands WHERE id = ?", (command.id,)).fetchone():
            return f"command {command.id} was already received"
        if self.clock.is_synced():
            if now - command.issued > self.config.command_max_age:
                return f"command expired: issued {now - command.issued:.0f}s ago"
            if command.issued - now > 60:
                return "command issued in the future: check the clocks"
        return None

    # ------------------------------------------------------------------------------------------------- status

    def _publish_status(self) -> None:
        counts = self.buffer.counts("readings")
        payload = protocol.encode_status("online", version=__version__, epoch=self.buffer.epoch,
                                         backlog=counts["pending"], ts=self.clock.time())
        self._client.publish(protocol.topic(self.gateway_id, protocol.STATUS), payload, qos=1, retain=True)
        self._next_status = self.clock.time() + self.config.status_interval
        self._save_state(link="up")

    def _save_state(self, **values: Any) -> None:
        state = {"since": self._link_since, "last_ack": self.last_ack, **values}
        try:
            with self.buffer.transaction() as db:
                for key, value in state.items():
                    db.execute("INSERT OR REPLACE INTO sync_state VALUES (?, ?)", (key, None if value is None
                                                                                  else str(value)))
        except BufferWriteError as exc:  # what edge status shows; the uplink goes on without it
            log.debug("sync: link state not recorded (%s)", exc)


def _reading(row: dict[str, Any]) -> protocol.Reading:
    return protocol.Reading(row["seq"], row["ts"], row["sensor"], row["quantity"], row["value"], row["unit"],
                            row["quality"], row["reason"], row["clock"], row["boot_id"], row["mono"])


def _event(row: dict[str, Any]) -> protocol.Event:
    import json

    return protocol.Event(row["seq"], row["ts"], row["kind"], row["source"], json.loads(row["data"]))


def _close(client) -> None:
    """Drop a client's connection without waiting for anything (a new client is made for the next attempt)."""
    if client is None or not client.is_connected():
        return
    try:
        client.disconnect()
    except (OSError, ValueError):
        pass


def _paho_error(rc: int) -> str:
    import paho.mqtt.client as mqtt

    return mqtt.error_string(rc)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"
