"""Store-and-forward uplink: buffered readings and events to the data center over MQTT, removed only by its acks.

One thread owns the link (:mod:`edge.gateway.sync.link`: over MQTT, paho 2.x driven with ``client.loop()`` from this
thread) and the sync logic, so no lock is needed and the link only hands messages over when polled. The buffer is the
queue: a batch is read from it, published, and stays pending until the data center's application-level ack (sent
after its database commit) marks it acknowledged. A broker PUBACK means nothing here; paho's in-memory queue is never
trusted across a reconnect.

Three lanes share the link: **events** (always first, small), **live** readings (taken since the link came up:
sent every ``interval``, so a long backlog never delays them), and the **backlog** (older pending readings, oldest
first, at most ``backlog_rate`` readings per second and ``max_inflight`` batches awaiting acks). A batch whose ack
does not come within ``ack_timeout`` is sent again, oldest first; a reconnect sends everything unacknowledged again,
and so does a collector announcing itself (``protocol.PRESENCE_TOPIC``: after a broker restart the broker drops what
was published before any collector had subscribed again). The data center's unique key makes every re-send harmless.

The uplink cannot die silently. One message (an ack, a command) that cannot be handled is answered or logged and the
thread goes on; a buffer row that cannot be read or encoded (a garbled cell on a failing SD card) is moved to
``sync_quarantine`` with its raw cells, and the data center is told (a ``buffer.gap`` for a reading, a
``buffer.set_aside`` for an event); any other failure is logged and retried. The buffer reads each pending reading
into the contract's :class:`~edge.contract.protocol.Reading`, the type the encoder takes, or reports its row garbled
(:class:`~edge.gateway.buffer.PendingReading`); event rows are read here. A batch of good readings on file (a
backlog's usual batch) is read and encoded as columns instead (:meth:`Sync._publish_good`), the same payload made
faster. :meth:`Sync.problem` says when the thread
has ended or made no progress for ``stall_after``: the daemon's watchdog then stops pinging and systemd restarts it,
and ``edge status`` shows the link ``down`` or ``stalled`` with the reason (from ``beat`` in ``sync_state``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from edge import __version__, mqtt
from edge.contract import protocol
from edge.contract.events import BufferGap, BufferSetAside, CommandResult
from edge.errors import BufferWriteError
from edge.gateway.buffer import Buffer, PendingReading
from edge.gateway.control.commands import AlreadyReceived, CommandError, Stale
from edge.gateway.sync.config import SyncConfig
from edge.gateway.sync.link import Link, LinkDown, Message, MqttLink
from edge.gateway.sync.state import SyncState

if TYPE_CHECKING:
    from edge.gateway.clock import Clock

log = logging.getLogger(__name__)

#: The thread writes its heartbeat (``beat`` in ``sync_state``, for ``edge status``) at most this often (and at least
#: twice within ``sync.stall_after``): each one is a commit, a write to the SD card, so not every 10 s as it was.
BEAT_EVERY = 60.0
#: Longest single sleep of the thread (reconnect backoff is cut into slices this long, each one a heartbeat).
SLICE = 5.0


#: Seconds a probe of the broker's port (a TCP connect, before a whole MQTT session) waits for an answer.
PROBE_WAIT = 2.0


def reconnect_delay(down_for: float, minimum: float, maximum: float, share: float, rng: random.Random) -> float:
    """Seconds to wait before the next connection attempt, for a link down ``down_for`` seconds. Pure.

    At most ``share`` of the outage so far, kept between ``minimum`` and ``maximum``: after a one-minute outage the
    broker's return is noticed within 6 s (with the defaults), after an hour's within 2 minutes, so a gateway comes
    back about as fast as its outage was short, and a long outage costs the broker few attempts. The jitter is
    bounded to the upper half of that ceiling: gateways that lost the broker together spread their attempts evenly
    over half the ceiling (a province's herd becomes a steady stream), while none waits more than the ceiling."""
    ceiling = min(maximum, max(minimum, down_for * share))
    return max(minimum, rng.uniform(ceiling / 2, ceiling))


#: A pending row as the buffer hands it over: a reading (read by the buffer into the contract's type, or garbled),
#: or an event row.
Row = PendingReading | dict[str, Any]


class BadRow(Exception):
    """A buffer row that cannot be sent as it is (a cell that cannot be decoded, a value that cannot be encoded)."""


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
    """The uplink. ``start()`` runs it in a thread; ``stop()`` ends it. Safe to build with an empty URL (offline).
    ``link``: the transport (default: :class:`MqttLink` to ``config.url``); tests hand a ``MemoryLink`` and drive
    :meth:`turn` themselves."""

    def __init__(self, config: SyncConfig, gateway_id: str, buffer: Buffer, clock: Clock,
                 on_command: Callable[[protocol.Command], dict[str, Any]] | None = None,
                 on_link: Callable[[bool, float], None] | None = None, link: Link | None = None):
        self.config = config
        self.gateway_id = gateway_id
        self.buffer = buffer
        self.clock = clock
        self.on_command = on_command
        self.on_link = on_link
        self.connected = False
        self.inbox: deque[tuple[str, bytes, bool]] = deque()
        self.inflight: dict[tuple[str, int, int], Inflight] = {}
        self.resend: deque[Inflight] = deque()
        self.lanes: list[Lane] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.link: Link = link if link is not None else MqttLink(self._login, self._session())
        self._failures = 0
        self._broker = 0  # which of config.urls the link uses (the next one after a failure or a lost link)
        self._down_since = clock.monotonic()  # when the link was last lost (or the first attempt began)
        self._rng = random.Random()
        self._next_fill = 0.0
        self._wake = False
        self._next_status = 0.0
        self._link_since = clock.time()
        self.last_ack: float | None = None
        self._beat_mono = clock.monotonic()  # when the thread last made progress (clock.monotonic)
        self._beat_saved = float("-inf")  # when the heartbeat was last written for edge status (clock.monotonic)
        self._last_error: str | None = None  # the last failure of the thread's loop, while it lasts
        self._errors = 0  # failures in a row
        self._last_refusal: str | None = None  # the last reason a connection attempt failed (logged once)
        self._ended: str | None = None  # why the thread ended, if it did without being stopped
        self.state = SyncState(buffer)

    @property
    def enabled(self) -> bool:
        return bool(self.config.url)

    # --------------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if not self.enabled:
            log.info("sync: no broker url configured; buffering only")
            self._save_state(link="offline", error=None)
            return
        self._beat_mono = self.clock.monotonic()
        self._save_state(link="connecting", error=None)  # not the previous run's "up"
        self._thread = threading.Thread(target=self._run, name="sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def problem(self) -> str | None:
        """Why the uplink is not doing its job (for the watchdog), or None: the thread ended although nobody stopped
        it, or it has made no progress for ``stall_after`` (wedged, or failing at every turn). A link that is down
        is not a problem here: the thread is then busy reconnecting, and the link_down alert covers the outage."""
        if self._thread is None or self._stop.is_set():
            return None
        if not self._thread.is_alive():
            return f"the uplink thread has ended ({self._ended or 'no reason recorded'})"
        quiet = self.clock.monotonic() - self._beat_mono
        if quiet > self.config.stall_after:
            return f"the uplink is stalled: no progress for {quiet:.0f}s" + (
                f" (last error: {self._last_error})" if self._last_error else "")
        return None

    def _run(self) -> None:
        why = "stopped"
        try:
            while not self._stop.is_set():
                try:
                    self.turn()
                except Exception as exc:  # never the end of the uplink: logged, retried, and watched by problem()
                    self._failed(exc)
            if self.connected:
                self._goodbye()
        except BaseException as exc:
            why = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if not self._stop.is_set():
                self._ended = why
                log.critical("sync: the uplink thread has ended (%s); the watchdog will restart the daemon", why)
                self._quietly(self._save_state, link="down", error=f"the uplink thread has ended: {why}", beat=None)
            self.buffer.close_thread_connection()

    def turn(self) -> None:
        """One turn of the thread: connect (or wait to), or poll the link once and do the work."""
        if not self.connected:
            if not self._connect():
                self._sleep(self._backoff())
            self._alive()
            return
        if not self._poll(min(0.05, self.config.interval)):
            return
        self.step()
        self._alive()

    def _alive(self) -> None:
        """The thread made progress: feed problem(), and now and then the heartbeat edge status reads."""
        self._beat_mono = self.clock.monotonic()
        if self._errors:
            log.info("sync: working again after %d failed turns", self._errors)
            self._errors, self._last_error = 0, None
            self._save_state(error=None)
        if self._beat_mono - self._beat_saved >= min(BEAT_EVERY, self.config.stall_after / 2):
            self._save_state()

    def _failed(self, exc: Exception) -> None:
        self._errors += 1
        self._last_error = _printable(f"{type(exc).__name__}: {exc}")
        if self._errors == 1 or self._errors % 100 == 0:
            log.exception("sync: a turn failed (%d in a row); retrying, everything stays buffered", self._errors)
        self._quietly(self._save_state, error=self._last_error)
        self._stop.wait(min(1.0, self.config.interval))

    def _sleep(self, seconds: float) -> None:
        """Wait (for the reconnect backoff) in slices, each one a sign of life."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self._stop.wait(min(left, SLICE))
            self._alive()

    @staticmethod
    def _quietly(action: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            action(*args, **kwargs)
        except Exception as exc:
            log.warning("sync: could not record the uplink's state: %s", exc)

    # ----------------------------------------------------------------------------------------------- connection

    def _connect(self) -> bool:
        """One connection attempt. Any failure (the broker, the network, a password or CA file that cannot be read,
        a buffer that cannot take up the new connection) leaves the link down with the reason, and the caller waits
        out the backoff: a failure to connect is an outage, not a stalled uplink, so it never makes the watchdog
        restart the daemon."""
        will = Message(protocol.topic(self.gateway_id, protocol.STATUS),
                       protocol.encode_status("offline", version=__version__), retained=True)
        subscriptions = [protocol.topic(self.gateway_id, protocol.DOWN_ACK),
                         protocol.topic(self.gateway_id, protocol.DOWN_CMD), protocol.PRESENCE_TOPIC]
        try:
            if self._failures and not self.link.probe(PROBE_WAIT):  # the broker is still away: no session tried
                self._failures += 1
                log.debug("sync: %s still does not answer (attempt %d)%s", _redact(self._url()), self._failures,
                          self._next_broker())  # with several brokers, the next attempt probes the next one
                return False
            if not self.link.connect(subscriptions, will, self._stop):
                self._failures += 1
                return False
            self.connected = True
            self._failures = 0
            try:
                self._link_changed(True)
            except Exception as exc:  # say, the buffer locked past its timeout: this connection is not usable
                log.exception("sync: could not take up the new connection; reconnecting")
                self.connected = False
                raise OSError(f"could not take up the connection ({_reason(exc, named=True)})") from None
        except Exception as exc:
            self._failures += 1
            log.log(logging.WARNING if self._failures == 1 or str(exc) != self._last_refusal else logging.DEBUG,
                    "sync: cannot connect to %s (%s); retrying%s", _redact(self._url()), exc, self._next_broker(),
                    exc_info=not isinstance(exc, (OSError, ValueError)))
            self._last_refusal = str(exc)
            self.link.close()
            self._save_state(link="down", error=str(exc))
            return False
        return True

    def _url(self) -> str:
        urls = self.config.urls
        return urls[self._broker % len(urls)] if urls else ""

    def _next_broker(self) -> str:
        """Move to the next broker of the list (any node of a cluster serves the same session); words for the log."""
        urls = self.config.urls
        if len(urls) < 2:
            return ""
        self._broker = (self._broker + 1) % len(urls)
        return f" with {_redact(urls[self._broker])}"

    def _login(self) -> mqtt.BrokerLogin:
        cfg = self.config
        return mqtt.BrokerLogin(self._url(), cfg.mqtt_version, cfg.username or self.gateway_id, cfg.password_file,
                                cfg.ca_file, cfg.cert_file, cfg.key_file)

    def _session(self) -> mqtt.Session:
        # commands and acks queued while we are away are kept a day
        return mqtt.Session(f"edge-{self.gateway_id}", self.config.keepalive, clean_start=False,
                            session_expiry=86400)

    def _lost(self, why: str) -> None:
        log.warning("sync: link to %s lost (%s); everything unacknowledged stays buffered; reconnecting%s",
                    _redact(self._url()), why, self._next_broker())
        self.connected = False
        self._down_since = self.clock.monotonic()
        self._failures = 1  # the broker just went away: the next attempt probes first
        self.link.close()
        self._link_changed(False, why)

    def _link_changed(self, up: bool, why: str | None = None) -> None:
        now = self.clock.time()
        self._link_since = now
        self.inflight.clear()  # after a reconnect everything unacknowledged is sent again
        self.resend.clear()
        if up:
            self._open_lanes()
            self._next_status = 0.0
            log.info("sync: connected to %s", _redact(self._url()))
        self._save_state(link="up" if up else "down", error=why)
        if self.on_link is not None:
            try:
                self.on_link(up, now)
            except Exception:
                log.exception("sync: link listener failed")

    def _backoff(self) -> float:
        """The wait before the next attempt: see :func:`reconnect_delay`."""
        cfg = self.config
        return reconnect_delay(self.clock.monotonic() - self._down_since, cfg.reconnect_min, cfg.reconnect_max,
                               cfg.reconnect_share, self._rng)

    def _goodbye(self) -> None:
        """On a clean stop: say offline (the will is only for unclean ends) and disconnect."""
        self.link.close(Message(protocol.topic(self.gateway_id, protocol.STATUS),
                                protocol.encode_status("offline", version=__version__), retained=True))
        self.connected = False

    # ------------------------------------------------------------------------------------------------- the work

    def _open_lanes(self) -> None:
        """Readings taken from now on are live; older pending ones are the backlog."""
        live_from = self.buffer.last_pending_key("readings") or (0, 0)  # a garbled key is swept aside by _read
        self.lanes = [Lane("events", "events"), Lane("live", "readings", after=live_from),
                      Lane("backlog", "readings", until=live_from, rate=self.config.backlog_rate)]
        self._last_step = self.clock.monotonic()

    def step(self) -> None:
        """Handle what arrived, then send what the window and the rates allow. Called by the sync thread."""
        self._handle_inbox()
        if not self.connected:
            return  # a reconnect sends everything again anyway
        now_mono = self.clock.monotonic()
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
                need = min(self.config.batch_size, lane.rate)
                if limit < need:  # fill again as soon as the budget allows a batch, not an interval later
                    self._next_fill = min(self._next_fill, self.clock.monotonic() + (need - lane.budget) / lane.rate)
                    return
            sent = self._publish_good(lane, limit) if lane.stream == "readings" else None
            if sent is None:
                found = self._read(lane.stream, "(epoch, seq) > (?, ?) ORDER BY epoch, seq LIMIT ?",
                                   (*lane.after, limit), lambda: self._pending(lane.stream, limit, lane.after))
                rows = self._sendable(lane, found)
                if not rows:
                    return
                published = self._publish(lane.stream, rows, lane.name)
                sent = (_key(published[-1]), len(published)) if published else None
            if not self.connected:
                return
            if sent:
                lane.after, count = sent
                if lane.rate is not None:
                    lane.budget -= count
                self._between_batches()
                if not self.connected:
                    return

    def _between_batches(self) -> None:
        """While a lane sends batch after batch (a backlog), what arrived meanwhile (acks above all) is handled
        between two of them, as at the start of a step: the buffer's work for an ack then overlaps the data
        center's work for the next batches instead of waiting for the last batch to go."""
        if self._poll(0):
            self._handle_inbox()

    def _poll(self, timeout: float) -> bool:
        """Take what the link has for us into the inbox (waiting up to ``timeout``); False once the link is lost
        (what arrived before that is kept)."""
        try:
            arrived = self.link.poll(timeout)
        except LinkDown as exc:
            self.inbox.extend((m.topic, m.payload, m.retained) for m in exc.arrived)
            self._lost(str(exc))
            return False
        self.inbox.extend((m.topic, m.payload, m.retained) for m in arrived)
        return True

    def _handle_inbox(self) -> None:
        """Handle what arrived, in order, until the link is lost. Acks that arrived one after the other are recorded
        together (:meth:`_handle_acks`)."""
        ack_topic = protocol.topic(self.gateway_id, protocol.DOWN_ACK)
        while self.inbox and self.connected:
            if len(self.inbox) > 1 and self.inbox[0][0] == ack_topic and self.inbox[1][0] == ack_topic:
                burst = []
                while self.inbox and self.inbox[0][0] == ack_topic:
                    burst.append(self.inbox.popleft())
                self._handle_acks(burst)
            else:
                self._handle(*self.inbox.popleft())

    def _handle_acks(self, burst: list[tuple[str, bytes, bool]]) -> None:
        """Acks that arrived together (a backlog's batches are acknowledged in bursts), recorded in one buffer
        transaction: one commit, so one write to the SD card, instead of one per batch. A burst with an ack that
        cannot be read or that holds conflicts, or whose transaction fails, is handled one ack at a time, as any
        message is (:meth:`_handle`)."""
        try:
            acks = [protocol.decode_ack(payload) for _, payload, _ in burst]
        except protocol.ProtocolError:
            acks = []
        if not acks or any(ack.conflicts for ack in acks):
            for message in burst:
                self._handle(*message)
            return
        now = self.clock.time()
        try:
            with self.buffer.transaction():
                for ack in acks:
                    if ack.max_epoch is not None:
                        self.buffer.raise_epoch_floor(ack.max_epoch, now,
                                                      f"the data center holds epoch {ack.max_epoch}")
                    for first, last in ack.ranges:
                        self.buffer.ack(ack.stream, ack.epoch, first, last)
        except Exception as exc:  # nothing of the burst was recorded: each ack on its own, with its own outcome
            log.debug("sync: a burst of %d acks could not be recorded together (%s); one at a time", len(burst),
                      _reason(exc, named=True))
            for message in burst:
                self._handle(*message)
            return
        for ack in acks:
            for first, last in ack.ranges:
                self._settled(ack.stream, ack.epoch, first, last)
        self.last_ack = now
        self._wake = True  # the window has room again

    def _sendable(self, lane: Lane, found: list[Row]) -> list[Row]:
        """Of the rows a lane read (in key order): those of the first one's epoch, up to the lane's bound, not in a
        batch awaiting its ack. One pass, stopping at the first row past the epoch or the bound (a backlog batch is
        thousands of rows)."""
        if not found:
            return found
        epoch = _key(found[0])[0]
        until = lane.until
        busy = {key[2] for key in self.inflight if key[0] == lane.stream and key[1] == epoch}
        rows = []
        for row in found:
            key = (row.epoch, row.seq) if isinstance(row, PendingReading) else _key(row)
            if key[0] != epoch or (until is not None and key > until):
                break
            if busy and key[1] in busy:
                continue
            rows.append(row)
        return rows

    def _publish(self, stream: str, rows: list[Row], lane: str) -> list[Row]:
        """Publish ``rows`` (one epoch, seq order), or as many of them as fit one payload; rows that cannot be
        encoded are set aside. Returns the rows sent (none if all were set aside or the link was lost)."""
        payload, rows = self._encode(stream, rows)
        if not rows:
            return []
        epoch, first = _key(rows[0])
        return rows if self._send(stream, epoch, first, _key(rows[-1])[1], len(rows), payload, lane) else []

    def _send(self, stream: str, epoch: int, first: int, last: int, count: int, payload: bytes, lane: str) -> bool:
        """Publish one batch's payload and await its ack; False if the link was lost."""
        leaf = protocol.UP_READINGS if stream == "readings" else protocol.UP_EVENTS
        try:
            self.link.publish(Message(protocol.topic(self.gateway_id, leaf), payload))
        except LinkDown as exc:
            self._lost(str(exc))
            return False
        self.inflight[(stream, epoch, first)] = Inflight(stream, epoch, first, last, count, self.clock.monotonic(),
                                                         lane)
        return True

    def _publish_good(self, lane: Lane, limit: int) -> tuple[tuple[int, int], int] | None:
        """The lane's next batch the quick way, when it is all good readings of the lane's epoch on file
        (:meth:`Buffer.good_readings`, a backlog's usual batch): read and encoded as columns, no
        :class:`~edge.contract.protocol.Reading` per row. Returns the last key sent and how many, or None when the
        next rows are not such a batch (the row-by-row path then reads them, and sets aside any that cannot go) or
        the link was lost."""
        epoch, after = lane.after
        if any(stream == "readings" and at == epoch and first > after for stream, at, first in self.inflight):
            return None  # a batch ahead of the lane awaits its ack: the row-by-row path steps around it
        try:
            batch = self.buffer.good_readings(lane.after, limit, lane.until)
            if batch is None:
                return None
            payload = protocol.encode_good_readings(self.gateway_id, *batch)
        except Exception as exc:  # the row-by-row path meets the same rows, and says what is wrong with them
            log.debug("sync: a batch could not be sent as columns (%s)", _reason(exc, named=True))
            return None
        if len(payload) > protocol.MAX_PAYLOAD:
            return None  # the row-by-row path cuts it in two
        if not self._send("readings", epoch, batch.seqs[0], batch.seqs[-1], len(batch.seqs), payload, lane.name):
            return None
        return (epoch, batch.seqs[-1]), len(batch.seqs)

    def _resend(self, item: Inflight) -> None:
        rows = self._read(item.stream, "epoch = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                          (item.epoch, item.first, item.last),
                          lambda: self._pending_range(item.stream, item.epoch, item.first, item.last))
        while rows and self.connected:
            sent = self._publish(item.stream, rows[:self.config.batch_size], "resend")
            if not sent:
                return  # the link was lost (everything goes again after the reconnect), or every row was set aside
            rows = [r for r in rows if _key(r)[1] > _key(sent[-1])[1]]

    def _pending(self, stream: str, limit: int, after: tuple[int, int]) -> list[Row]:
        if stream == "readings":
            return self.buffer.pending_readings(limit=limit, after=after)
        return self.buffer.pending(stream, limit=limit, after=after)

    def _pending_range(self, stream: str, epoch: int, first: int, last: int) -> list[Row]:
        if stream == "readings":
            return self.buffer.pending_readings_range(epoch, first, last)
        return self.buffer.pending_range(stream, epoch, first, last)

    # --------------------------------------------------------------------------------------- rows that cannot go

    def _read(self, stream: str, where: str, params: tuple, query: Callable[[], list[Row]]) -> list[Row]:
        """``query()``; if SQLite cannot decode a cell of the rows it reads (invalid UTF-8 in a TEXT column passes
        ``quick_check``), find the rows at fault one by one (``where`` selects the same pending rows), set them
        aside, and read again."""
        try:
            return query()
        except sqlite3.OperationalError as exc:
            if not _undecodable(exc):
                raise
        _table(stream)
        for hex_epoch, hex_seq in self.buffer.garbled_keys(stream):  # a garbled key first: it cannot be selected
            self._set_aside(stream, f"x'{hex_epoch}'", f"x'{hex_seq}'", "its key is not a pair of integers",
                            match=("hex(epoch) = ? AND hex(seq) = ?", (hex_epoch, hex_seq)))
        for epoch, seq, error in self.buffer.undecodable(stream, where, params):
            self._set_aside(stream, epoch, seq, f"cannot be read: {error}")
        return query()

    def _encode(self, stream: str, rows: list[Row]) -> tuple[bytes | None, list[Row]]:
        """The payload of ``rows`` and the rows it carries. A row that cannot be encoded alone is set aside; a
        payload over the protocol's limit carries fewer rows (the rest go in the next batch)."""
        try:
            payload = self._payload(stream, rows)
        except Exception as exc:  # which row? try each alone; the culprits go aside, the rest goes on
            good = []
            for row in rows:
                try:
                    self._payload(stream, [row])
                    good.append(row)
                except Exception as row_exc:
                    self._set_aside(stream, *_key(row),
                                    f"cannot be encoded: {_reason(row_exc, named=not isinstance(row_exc, BadRow))}")
            if len(good) == len(rows):
                raise exc  # no single row is at fault: not a row problem
            if not good:
                return None, []
            return self._encode(stream, good)
        while len(payload) > protocol.MAX_PAYLOAD:
            if len(rows) == 1:
                self._set_aside(stream, *_key(rows[0]),
                                f"too large to send ({len(payload)} bytes encoded)")
                return None, []
            rows = rows[:len(rows) // 2]
            payload = self._payload(stream, rows)
        return payload, rows

    def _payload(self, stream: str, rows: list[Row]) -> bytes:
        epoch = _key(rows[0])[0]
        if stream == "readings":  # the buffer read them: the encoder takes its readings as they are
            for row in rows:
                if row.reading is None:
                    raise BadRow(row.garbled)
            return protocol.encode_readings(self.gateway_id, epoch, [row.reading for row in rows])
        return protocol.encode_events(self.gateway_id, epoch, [_event(r) for r in rows])

    def _set_aside(self, stream: str, epoch: Any, seq: Any, reason: str,
                   match: tuple[str, tuple] | None = None) -> None:
        """Move one row that cannot be sent to ``sync_quarantine`` (its raw cells kept, hex-encoded, so nothing is
        lost on the gateway and nothing undecodable is read again) and tell the data center in the same transaction:
        a reading becomes a ``buffer.gap`` of one row (the record the disk budget uses, so the data center's gap
        table names it); an event, or a row whose key itself is garbled (``match`` then finds it by the hex of its
        key), a ``buffer.set_aside`` event."""
        reason = _printable(reason)
        now = self.clock.time()
        where, params = match or ("epoch = ? AND seq = ?", (epoch, seq))
        with self.buffer.transaction():
            cells = self.buffer.take_raw(_table(stream), where, params)
            if cells is None:
                return  # already gone (acknowledged and pruned meanwhile)
            self.state.quarantine(stream, epoch, seq, now, reason, cells)
            if stream == "readings" and match is None:
                ts = _number(cells.get("ts"))
                self.buffer.append_event(BufferGap.KIND, "sync", BufferGap(
                    epoch, seq, seq, 1, ts, ts, "readings", reason=f"set aside: {reason}").to_data(), ts=now)
            else:
                self.buffer.append_event(BufferSetAside.KIND, "sync",
                                         BufferSetAside(stream, epoch, seq, reason).to_data(), ts=now)
        log.error("sync: %s %s of epoch %s %s; moved to sync_quarantine and reported to the data center",
                  stream[:-1], seq, epoch, reason)

    def _expire(self, now_mono: float) -> None:
        late = [key for key, item in self.inflight.items() if now_mono - item.sent_at > self.config.ack_timeout]
        for key in sorted(late, key=lambda k: (k[1], k[2])):  # oldest first
            item = self.inflight.pop(key)
            log.info("sync: no ack for %s %d..%d of epoch %d within %gs; sending it again", item.stream,
                     item.first, item.last, item.epoch, self.config.ack_timeout)
            self.resend.append(item)

    def _handle(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """One message from the broker. Whatever it holds, it ends here: a command is answered, anything else that
        cannot be handled is logged, and the thread goes on."""
        try:
            if topic == protocol.PRESENCE_TOPIC:
                self._presence(payload, retained)
                return
            _, leaf = protocol.parse_topic(topic)
            if leaf == protocol.DOWN_ACK:
                self._acked(protocol.decode_ack(payload))
            elif leaf == protocol.DOWN_CMD:
                self._command(payload)
        except protocol.ProtocolError as exc:
            log.warning("sync: ignored a malformed message on %s: %s", _printable(topic), _printable(str(exc)))
        except BufferWriteError as exc:  # a full disk: an unrecorded ack is re-sent after its timeout, and
            log.debug("sync: %s not recorded (%s)", _printable(topic), exc)  # the data center drops the duplicate
        except Exception as exc:
            log.exception("sync: a message on %s (%d bytes) could not be handled (%s); ignored",
                          _printable(topic), len(payload), _reason(exc, named=True))

    def _presence(self, payload: bytes, retained: bool) -> None:
        """A collector (re)subscribed. A retained presence only says one did before we subscribed; a live one says
        it did just now, so whatever we sent while it was away may have been dropped by the broker: send everything
        awaiting an ack again at once, instead of waiting for ``ack_timeout``."""
        presence = protocol.decode_presence(payload)
        if retained or not self.inflight:
            return
        log.info("sync: a collector is back (%s); sending the %d batches awaiting acks again now",
                 _printable(str(presence.get("client", "?"))), len(self.inflight))
        for key in sorted(self.inflight, key=lambda k: (k[1], k[2])):
            self.resend.append(self.inflight.pop(key))
        self._wake = True

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
        """Carry out one command and answer it with a ``command.result`` event, whatever the payload holds: a
        malformed one (deep JSON, a huge number, a lone surrogate, a wrong type) is answered with the reason."""
        now = self.clock.time()
        try:
            command = protocol.decode_command(payload)
        except Exception as exc:  # ProtocolError, or whatever a hostile payload makes the decoder raise
            error = _reason(exc) if isinstance(exc, protocol.ProtocolError) else \
                f"malformed command: {_reason(exc, named=True)}"
            command_id = getattr(exc, "command_id", None)
            log.warning("sync: refused a malformed command%s: %s", f" {command_id}" if command_id else "", error)
            self.buffer.append_event(CommandResult.KIND, "sync",
                                     CommandResult(command_id, False, error=error).to_data(), ts=now)
            return
        refusal = self._replay_refusal(command, now)
        if refusal is not None:
            result = {"ok": False, "error": refusal.answer}
        elif command.op == "ping":
            result = {"ok": True, "result": {"pong": now}}
        elif self.on_command is None:
            result = {"ok": False, "error": f"op {command.op!r} is not available on this gateway"}
        else:
            try:
                result = {"ok": True, "result": self.on_command(command)}
            except CommandError as exc:  # refused: report why, change nothing else
                result = {"ok": False, "error": _printable(exc.answer)}
            except Exception as exc:  # a bad argument: the same
                result = {"ok": False, "error": _reason(exc)}
        if not isinstance(refusal, AlreadyReceived):  # a replay is answered, not recorded again
            self.state.record_command(command.id, command.issued, now, result["ok"])
        self.buffer.append_event(CommandResult.KIND, "sync",
                                 CommandResult(command.id, op=command.op, **result).to_data(), ts=now)
        log.info("sync: command %s (%s): %s", command.id, command.op,
                 "done" if result["ok"] else f"refused: {result['error']}")

    def _replay_refusal(self, command: protocol.Command, now: float) -> CommandError | None:
        """Each command id is carried out once, and only while fresh (issued time and id: replay protection)."""
        if self.state.seen(command.id):
            return AlreadyReceived(f"command {command.id} was already received")
        if self.clock.is_synced():
            if now - command.issued > self.config.command_max_age:
                return Stale(f"command expired: issued {now - command.issued:.0f}s ago")
            if command.issued - now > 60:
                return Stale("command issued in the future: check the clocks")
        return None

    # ------------------------------------------------------------------------------------------------- status

    def _publish_status(self) -> None:
        counts = self.buffer.counts("readings")
        payload = protocol.encode_status("online", version=__version__, epoch=self.buffer.epoch,
                                         backlog=counts["pending"], ts=self.clock.time())
        try:
            self.link.publish(Message(protocol.topic(self.gateway_id, protocol.STATUS), payload, retained=True))
        except LinkDown:
            return  # the next poll finds the link lost

        self._next_status = self.clock.time() + self.config.status_interval
        self._save_state(link="up")

    def _save_state(self, **values: Any) -> None:
        """Record the uplink's state for ``edge status``; every record is also a heartbeat (``beat``, wall time)."""
        state = {"since": self._link_since, "last_ack": self.last_ack, "beat": self.clock.time(), **values}
        try:
            self.state.record_link(**{key: None if value is None else _printable(str(value))
                                      for key, value in state.items()})
        except BufferWriteError as exc:  # what edge status shows; the uplink goes on without it
            log.debug("sync: link state not recorded (%s)", exc)
            return
        self._beat_saved = self.clock.monotonic()


def _key(row: Row) -> tuple[Any, Any]:
    """``(epoch, seq)`` of a pending reading or event row (a garbled key as its cells hold it)."""
    if isinstance(row, PendingReading):
        return row.epoch, row.seq
    return row["epoch"], row["seq"]


def _event(row: dict[str, Any]) -> protocol.Event:
    data = row["data"]
    try:
        data = json.loads(data) if isinstance(data, str) else data
    except (ValueError, RecursionError) as exc:
        raise BadRow(f"data is not JSON ({_reason(exc, named=True)})") from None
    if not isinstance(data, dict):
        raise BadRow("data is not a JSON object")
    return protocol.Event(_int(row, "seq"), _finite(row, "ts"), _text(row, "kind"), _text(row, "source"), data)


def _int(row: dict[str, Any], key: str) -> int:
    value = row[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRow(f"{key} {value!r} is not an integer")
    return value


def _finite(row: dict[str, Any], key: str, bound: float | None = 1e15) -> float:
    """A number cell: finite, and for times within ``bound`` seconds of 1970 (a clock's nonsense, not a time)."""
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            bound is not None and not -bound < value < bound):
        raise BadRow(f"{key} {str(value)[:40]!r} is not a finite number" + ("" if bound is None else " of seconds"))
    return float(value)


def _text(row: dict[str, Any], key: str, optional: bool = False) -> str | None:
    value = row[key]
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise BadRow(f"{key} {str(value)[:40]!r} is not text")
    return value


def _table(stream: str) -> str:
    if stream not in ("readings", "events"):
        raise ValueError(f"unknown stream {stream!r}")
    return stream


def _undecodable(exc: sqlite3.Error) -> bool:
    return "Could not decode" in str(exc)


def _number(cell: list[Any] | None) -> float | None:
    """The value of a raw cell if it is a finite number (the ``ts`` of a gap record), else None."""
    if not cell or cell[0] not in ("integer", "real"):
        return None
    try:
        value = float(cell[1])
    except ValueError:
        return None
    return value if -1e15 < value < 1e15 else None


def _reason(exc: BaseException, named: bool = False) -> str:
    """An exception as one printable line of bounded length, for events and logs; ``named`` puts its type first
    (for failures that are not refusals: a RecursionError says more by its name than by its message)."""
    text = str(exc) or type(exc).__name__
    return _printable(f"{type(exc).__name__}: {text}" if named else text)


def _printable(text: str, limit: int = 300) -> str:
    """``text`` safe to store and log: lone surrogates and control characters escaped, at most ``limit`` chars."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _redact(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"
