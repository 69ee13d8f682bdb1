"""The collector: gateway uplink from MQTT into PostgreSQL, acknowledged only after the commit.

Per round, a writer's reader thread takes up to ``collector.batch_messages`` messages from its source
(:mod:`edge.datacenter.source`: MQTT, or in memory for tests; waiting at most ``collector.batch_wait``) and decodes
them while the writer thread writes the round before; the writer writes all of them in ONE transaction, commits,
then sends an application-level :class:`~edge.contract.protocol.Ack` for every batch to ``greenhouse/v1/<gateway>/down/ack`` and only then settles the messages with the source (MQTT:
``manual_ack``). A crash anywhere before the MQTT ack leaves the messages with the
broker, which delivers them again; the database's unique keys make the second write a no-op, and the ack goes out
again. A gateway deletes a batch only on that ack.

Input never stops the stream. Any failure while decoding, planning or writing one message is confined to that
message: a payload that is malformed, truncated, oversized, of an unknown version, out of the protocol's bounds
(``edge.contract.protocol``), names a gateway other than its topic's, or that the database refuses, is stored in
``rejected_messages`` with the reason and acknowledged; readings the data center does not believe (a value outside
the physical range, a time outside 2000..now+1d) are stored flagged ``implausible``. Only the database being
unavailable is the opposite: nothing is acknowledged, the round is retried with backoff, and the broker keeps the rest.

One gateway cannot stall the others: messages wait in a queue per gateway, and each round takes them in turn, one
message per gateway per turn, up to ``collector.round_rows`` rows. A gateway that sent more than
``collector.gateway_rate`` rows a second (decoding time counted as rows) goes after every gateway within its rate,
so a flood waits its turn while the others go first; it is slowed, never dropped.

The collector is stateless. Several run side by side on the shared subscription ``$share/<group>/...``; each needs
its own client id, kept across restarts so the broker session (and what was in flight) is resumed.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import conninfo_to_dict

from edge.contract import protocol
from edge.datacenter import storage
from edge.datacenter.config import DataCenterConfig
from edge.datacenter.source import Incoming, Source, open_source
from edge.datacenter.store import Rejected, StatusUpdate, Store, Work, Written

log = logging.getLogger(__name__)

#: SQLSTATE classes that blame the data, not the database: data exception, integrity violation, program limit
#: exceeded (a value too large for an index or a jsonb). Any other database error means the database is unavailable.
_MESSAGE_FAULTS = ("22", "23", "54")
_REPORT_EVERY = 60.0
#: A second of decoding counts like this many rows against a gateway's rate (about what a second of writing stores).
DECODE_ROWS_PER_SECOND = 100_000


def default_client_id() -> str:
    return f"edge-collector-{socket.gethostname()}"


# ---------------------------------------------------------------------------------------------- decoding (pure)


Item = protocol.ReadingBatch | protocol.EventBatch | StatusUpdate | Rejected


@dataclass(frozen=True)
class Decoded:
    message: Incoming
    item: Item


_UPLINK_DECODERS = {protocol.UP_READINGS: protocol.decode_readings, protocol.UP_EVENTS: protocol.decode_events}


def decode(message: Incoming, now: float | None = None) -> Decoded:
    """What a message carries, with the readings the data center does not believe flagged (``now``: the
    collector's clock), or a :class:`Rejected` naming what is wrong with it. Never raises on input: an unexpected
    exception (a bug this input found) rejects the message too, with its type in the reason."""
    try:
        item = _decode(message)
        if isinstance(item, protocol.ReadingBatch):
            item = protocol.flag_implausible(item, time.time() if now is None else now)
        return Decoded(message, item)
    except protocol.ProtocolError as exc:
        return Decoded(message, Rejected(message.topic, str(exc), message.payload))
    except Exception as exc:  # noqa: BLE001 - belt and braces: no input may end the writer
        log.exception("decoding a message on %s failed unexpectedly", message.topic)
        return Decoded(message, Rejected(message.topic, f"could not decode it: {_describe(exc)}", message.payload))


def _decode(message: Incoming) -> Item:
    gateway_id, leaf = protocol.parse_topic(message.topic)
    if leaf == protocol.STATUS:
        return StatusUpdate.from_message(gateway_id, protocol.decode_status(message.payload), live=not message.retain)
    if leaf not in _UPLINK_DECODERS:
        raise protocol.ProtocolError(f"{leaf} is not an uplink topic")
    batch = _UPLINK_DECODERS[leaf](message.payload)
    if batch.gateway_id != gateway_id:
        raise protocol.ProtocolError(f"payload names gateway {batch.gateway_id!r} but was published under "
                                     f"{gateway_id!r}")
    return batch


def plan(decoded: Iterable[Decoded]) -> Work:
    """Sort decoded messages into the one write a round makes."""
    work = Work()
    lists = {protocol.ReadingBatch: work.readings, protocol.EventBatch: work.events, StatusUpdate: work.statuses,
             Rejected: work.rejected}
    for d in decoded:
        lists[type(d.item)].append(d.item)
    return work


def acks(decoded: Iterable[Decoded], written: Written | None = None) -> list[tuple[str, bytes]]:
    """``(topic, payload)`` of the ack for every batch of a committed round: one per batch, its own ranges, less the
    rows whose keys the database holds with other content (sent back as conflicts), with the highest epoch held."""
    written = written or Written()
    out = []
    for d in decoded:
        batch = d.item
        if not isinstance(batch, (protocol.ReadingBatch, protocol.EventBatch)):
            continue
        stream = "readings" if isinstance(batch, protocol.ReadingBatch) else "events"
        conflicting = set(written.conflicting(batch))
        stored = batch.ranges()
        if conflicting:
            rows = batch.readings if stream == "readings" else batch.events
            stored = protocol.seq_ranges([r.seq for r in rows if r.seq not in conflicting])
        ack = protocol.Ack(stream, batch.epoch, tuple(stored), tuple(protocol.seq_ranges(sorted(conflicting))),
                           written.max_epochs.get(batch.gateway_id))
        out.append((protocol.topic(batch.gateway_id, protocol.DOWN_ACK), protocol.encode_ack(ack)))
    return out


def refused(d: Decoded, reason: str) -> Decoded:
    """The same message, now rejected because the database refused it (a value it cannot store, a bug)."""
    return Decoded(d.message, Rejected(d.message.topic, f"database refused it: {reason}", d.message.payload))


def rows_of(item: Item) -> int:
    """What a decoded message costs to write, in rows (at least 1)."""
    if isinstance(item, protocol.ReadingBatch):
        return len(item.readings)
    if isinstance(item, protocol.EventBatch):
        return len(item.events)
    return 1


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_first_line(exc)}"[:protocol.MAX_REASON]


def _gateway_of(topic: str) -> str:
    try:
        return protocol.parse_topic(topic)[0]
    except protocol.ProtocolError:
        return ""


# ------------------------------------------------------------------------------------------ fairness (pure)


@dataclass
class _Lane:
    """One gateway's waiting messages and its budget: rows it may send now before it yields to the others."""

    messages: deque = field(default_factory=deque)
    budget: float = 0.0


class FairQueue:
    """Messages waiting to be written, one FIFO per gateway (a gateway's messages keep their order).

    ``take()`` makes a round: gateways in turn, one message each per turn, those within their rate (a budget of
    ``rate`` rows a second, at most one second's worth saved up) before those over it, until the round holds
    ``max_messages`` messages or ``max_rows`` rows. A message's cost is its rows plus its decoding time (at
    ``DECODE_ROWS_PER_SECOND``). Nothing is ever dropped: a gateway over its rate is only served after the others.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 timer: Callable[[], float] = time.perf_counter):
        self.rate = rate
        self.clock = clock  # refills the budgets
        self.timer = timer  # times each decoding
        self._lanes: dict[str, _Lane] = {}
        self._count = 0
        self._turn = 0  # rotates which gateway goes first among equals
        self._refilled = clock()

    def put(self, message: Incoming) -> None:
        gateway = _gateway_of(message.topic)
        lane = self._lanes.get(gateway)
        if lane is None:
            lane = self._lanes[gateway] = _Lane(budget=self.rate)
        lane.messages.append(message)
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def waiting(self) -> dict[str, int]:
        """Messages waiting per gateway."""
        return {gateway: len(lane.messages) for gateway, lane in self._lanes.items() if lane.messages}

    def take(self, max_messages: int, max_rows: int, decode: Callable[[Incoming], Decoded]) -> list[Decoded]:
        self._refill()
        taken: list[Decoded] = []
        rows = 0
        while len(taken) < max_messages and rows < max_rows:
            order = self._order()
            if not order:
                break
            for gateway in order:
                if len(taken) >= max_messages or rows >= max_rows:
                    break
                lane = self._lanes[gateway]
                started = self.timer()
                d = decode(lane.messages.popleft())
                self._count -= 1
                cost = rows_of(d.item)
                lane.budget -= cost + (self.timer() - started) * DECODE_ROWS_PER_SECOND
                taken.append(d)
                rows += cost
        self._forget_idle()
        return taken

    def _order(self) -> list[str]:
        """Gateways with messages waiting: those within their rate first (in turn), then the others (the least
        over their rate first). One message each is taken per turn, so a turn never favours the big."""
        waiting = [g for g, lane in self._lanes.items() if lane.messages]
        if not waiting:
            return []
        self._turn = (self._turn + 1) % len(waiting)
        waiting = waiting[self._turn:] + waiting[:self._turn]
        within = [g for g in waiting if self._lanes[g].budget > 0]
        if within:
            return within
        return sorted(waiting, key=lambda g: -self._lanes[g].budget)[:1]

    def _refill(self) -> None:
        now = self.clock()
        elapsed, self._refilled = max(0.0, now - self._refilled), now
        for lane in self._lanes.values():
            lane.budget = min(lane.budget + elapsed * self.rate, self.rate)

    def _forget_idle(self) -> None:
        """A gateway with nothing waiting and a full budget is forgotten (thousands of gateways come and go)."""
        for gateway in [g for g, lane in self._lanes.items() if not lane.messages and lane.budget >= self.rate]:
            del self._lanes[gateway]


# ----------------------------------------------------------------------------------------------------- collector


@dataclass
class Stats:
    messages: int = 0
    rounds: int = 0
    readings_new: int = 0
    readings_duplicate: int = 0
    events_new: int = 0
    gaps_new: int = 0
    rejected: int = 0
    conflicts: int = 0
    acks: int = 0
    database_errors: int = 0

    def add(self, decoded: list[Decoded], written: Written, acks: int) -> None:
        self.rounds += 1
        self.messages += len(decoded)
        self.readings_new += written.readings_new
        self.readings_duplicate += written.readings_duplicate
        self.events_new += written.events_new
        self.gaps_new += written.gaps_new
        self.rejected += sum(isinstance(d.item, Rejected) for d in decoded)
        self.conflicts += sum(len(seqs) for _, seqs in written.conflicts.values())
        self.acks += acks


class Collector:
    """``start()`` connects and runs the writers; ``stop()`` finishes the rounds in hand and disconnects.

    ``collector.writers`` writers share the work, each with its own database connection: a gateway's messages always
    go to the same writer (by a hash of its id), so they keep their order, and each writer acknowledges what it
    committed itself. With one writer it takes messages from the source directly; with more, a dispatcher thread
    hands each message to its gateway's writer. ``after_commit`` is called between a commit and its acks (tests use
    it to kill the process right there).
    """

    def __init__(self, config: DataCenterConfig, *, client_id: str | None = None,
                 after_commit: Callable[[], None] | None = None, source: Source | None = None):
        self.config = config
        self.client_id = client_id or config.client_id or default_client_id()
        self.after_commit = after_commit
        self.source: Source = source if source is not None else open_source(config, self.client_id)
        self.stats = Stats()
        self.connected = self.source.connected
        self.subscribed = self.source.subscribed  # set once the broker confirmed the subscriptions
        self.failure: Exception | None = None
        self._stop = threading.Event()
        self._stats_lock = threading.Lock()
        count = config.collector.writers
        self.writers = [Writer(self, i, self.source.get if count == 1 else None) for i in range(count)]
        self._dispatcher = (threading.Thread(target=self._dispatch, name="collector-dispatch", daemon=True)
                            if count > 1 else None)
        kept = config.storage
        self.maintenance = storage.Maintenance(
            config.database.url, storage.Settings(raw_days=kept.raw_days, compacted_days=kept.compacted_days),
            kept.maintain_every) if kept.maintain else None

    # ------------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> Collector:
        log.info("collector %s: %s, database %s, %d writer(s)", self.client_id, self.source.where,
                 _safe_dsn(self.config.database.url), len(self.writers))
        self.source.start()
        for writer in self.writers:
            writer.thread.start()
            writer.reader.start()
        if self._dispatcher is not None:
            self._dispatcher.start()
        if self.maintenance is not None:
            self.maintenance.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the rounds in hand (commit, acks), leave the rest unacknowledged with the broker, disconnect."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        if self.maintenance is not None:
            self.maintenance.stop(timeout=0)  # it ends after the transaction in hand; joined below
        for thread in [self._dispatcher, *(t for w in self.writers for t in (w.reader, w.thread)),
                       self.maintenance.thread if self.maintenance is not None else None]:
            if thread is not None and thread.is_alive():
                thread.join(max(0.1, deadline - time.monotonic()))
        self.source.stop()
        for writer in self.writers:
            writer.close_store()
        log.info("collector %s stopped: %s", self.client_id, self._summary())

    @property
    def running(self) -> bool:
        """False once a writer has ended (after stop(), or on a failure: see ``failure``)."""
        return all(w.thread.is_alive() for w in self.writers)

    def handle(self, messages: list[Incoming]) -> None:
        """One round of these messages on the first writer, in this order: decode, commit, acks, then MQTT acks."""
        self.writers[0].handle(messages)

    def writer_of(self, topic: str) -> Writer:
        """The writer of a message's gateway (a message whose topic names none goes to the first)."""
        if len(self.writers) == 1:
            return self.writers[0]
        return self.writers[zlib.crc32(_gateway_of(topic).encode()) % len(self.writers)]

    def _dispatch(self) -> None:
        """Hand every message to its gateway's writer. A writer's inbox is bounded by what the broker may have in
        flight to us (``mqtt.receive_maximum``): nothing else queues here."""
        while not self._stop.is_set():
            message = self.source.get(0.2)
            if message is not None:
                self.writer_of(message.topic).inbox.put(message)

    def _failed(self, exc: Exception) -> None:
        with self._stats_lock:
            if self.failure is None:
                self.failure = exc

    def _add_stats(self, decoded: list[Decoded], written: Written, acks: int) -> None:
        with self._stats_lock:
            self.stats.add(decoded, written, acks)

    def _database_error(self) -> None:
        with self._stats_lock:
            self.stats.database_errors += 1

    def _summary(self) -> str:
        s = self.stats
        return (f"{s.messages} messages in {s.rounds} rounds, {s.readings_new} readings stored "
                f"({s.readings_duplicate} already there), {s.events_new} events, {s.gaps_new} gaps, "
                f"{s.rejected} rejected, {s.conflicts} in conflict with stored keys, {s.acks} acks sent")


class Writer:
    """One writer: its own database connection, its own fair queue, its own thread. It takes rounds from its inbox
    (or straight from the source when it is the only one), commits them, then acks them."""

    def __init__(self, collector: Collector, index: int, get: Callable[[float], Incoming | None] | None):
        self.collector = collector
        self.config = collector.config
        self.index = index
        self.inbox: queue.Queue[Incoming] = queue.Queue()
        self.get = get if get is not None else self._from_inbox
        self.waiting = FairQueue(self.config.collector.gateway_rate)
        self._store: Store | None = None
        #: the next round, taken, decoded and planned while this one is written (or what ended the reader)
        self._rounds: queue.Queue[tuple[list[Decoded], Work] | BaseException] = queue.Queue(maxsize=1)
        name = "collector-writer" if index == 0 else f"collector-writer-{index}"
        self.thread = threading.Thread(target=self._write_loop, name=name, daemon=True)
        self.reader = threading.Thread(target=self._read_loop, name=f"{name}-reader", daemon=True)

    def _from_inbox(self, timeout: float) -> Incoming | None:
        try:
            return self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return None

    @property
    def _stop(self) -> threading.Event:
        return self.collector._stop

    def _write_loop(self) -> None:
        next_report = time.monotonic() + _REPORT_EVERY
        try:
            self._open_store()
        except psycopg.Error as exc:
            log.warning("database unavailable (%s); will retry with the first messages", _first_line(exc))
        try:
            while not self._stop.is_set():
                try:
                    taken = self._rounds.get(timeout=0.2)
                except queue.Empty:
                    taken = None
                if isinstance(taken, BaseException):
                    raise taken
                if taken is not None:
                    self._handle(*taken)
                if self.index == 0 and time.monotonic() >= next_report:
                    log.info("collector: %s", self.collector._summary())
                    next_report = time.monotonic() + _REPORT_EVERY
        except Exception as exc:  # a bug, not input: end loudly so systemd restarts us; nothing unsaved was acked
            log.exception("collector: a writer failed; exiting so that a restart resumes the session")
            self.collector._failed(exc)
        finally:
            self.close_store()

    def _read_loop(self) -> None:
        """Take, decode and plan the next round (:meth:`_take`, :meth:`_prepare`) while the writer writes the one
        before: a round's Python work then overlaps the database's work on the last one, and a backlog drains at the
        pace of the slower of the two instead of their sum. One round waits at most; rounds keep their order.
        Nothing is acknowledged here: a round taken and not yet written when the collector stops stays with the
        broker."""
        try:
            while not self._stop.is_set():
                decoded = self._take()
                if decoded:
                    self._hand_over((decoded, self._prepare(decoded)))
        except Exception as exc:  # a bug, not input: the writer ends on it, loudly
            self._hand_over(exc)

    def _hand_over(self, item: tuple[list[Decoded], Work] | BaseException) -> None:
        """Put ``item`` for the writer, waiting for room (one round waits at most) until the collector stops."""
        while not self._stop.is_set():
            try:
                self._rounds.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    @staticmethod
    def _prepare(decoded: list[Decoded]) -> Work:
        """The round's write, with its readings' ``COPY`` rows made (:meth:`Work.with_copy`). Rows that cannot be
        made here are made by the writer, whose failure handling then rejects the message at fault."""
        work = plan(decoded)
        try:
            return work.with_copy()
        except Exception as exc:  # noqa: BLE001 - the writer meets the same error and deals with it
            log.debug("the rows of a round could not be made ahead (%s)", _describe(exc))
            return work

    def _take(self) -> list[Decoded]:
        """The next round: whatever arrived (waiting for the first message, then gathering for batch_wait) goes to
        its gateway's queue, and the round takes from the queues in turn (:class:`FairQueue`)."""
        collector = self.config.collector
        if not self.waiting:
            first = self.get(0.2)
            if first is None:
                return []
            self.waiting.put(first)
            deadline = time.monotonic() + collector.batch_wait
            while len(self.waiting) < collector.batch_messages:
                message = self.get(max(0.0, deadline - time.monotonic()))
                if message is None:
                    break
                self.waiting.put(message)
        while (message := self.get(0)) is not None:  # everything else here already: the round may prefer it
            self.waiting.put(message)
        return self.waiting.take(collector.batch_messages, collector.round_rows, decode)

    def handle(self, messages: list[Incoming]) -> None:
        """One round of these messages, in this order: decode, commit, acks to the gateways, then MQTT acks."""
        self._handle([decode(m) for m in messages])

    def _handle(self, decoded: list[Decoded], work: Work | None = None) -> None:
        """Commit, then acks to the gateways, then MQTT acks. Nothing is acked uncommitted. ``work``: the round's
        write, when planned ahead (:meth:`_prepare`)."""
        for d in decoded:
            if isinstance(d.item, Rejected):
                log.warning("rejected a message on %s (%d bytes): %s", d.message.topic, len(d.message.payload),
                            d.item.reason)
        result = self._commit(decoded, work if work is not None else plan(decoded))
        if result is None:
            return  # stopping during a database outage: the broker keeps the messages
        decoded, written = result
        outgoing = acks(decoded, written)
        # counted before a gateway can see its ack: whoever saw an ack finds its round in the counters
        self.collector._add_stats(decoded, written, len(outgoing))
        if self.collector.after_commit is not None:
            self.collector.after_commit()
        source = self.collector.source
        for topic, payload in outgoing:
            source.reply(topic, payload)
        for d in decoded:
            source.settle(d.message)
        log.debug("round: %d messages, %d new readings, %d duplicates, %d acks", len(decoded), written.readings_new,
                  written.readings_duplicate, len(outgoing))

    def _commit(self, decoded: list[Decoded], work: Work) -> tuple[list[Decoded], Written] | None:
        """Write the round, retrying with backoff while the database is unavailable; None if stopped meanwhile."""
        delay = self.config.database.retry_min
        while not self._stop.is_set():
            try:
                return self._write(self._open_store(), decoded, work)
            except Exception as exc:
                if not isinstance(exc, psycopg.Error) and not self._database_unavailable(exc):
                    raise  # writing a rejection failed: a bug; end loudly, nothing of the round was acked
                self.collector._database_error()
                log.warning("database unavailable (%s); retrying in %.1fs, nothing acknowledged meanwhile",
                            _first_line(exc), delay)
                self.close_store()
                self._stop.wait(delay)
                delay = min(delay * 2, self.config.database.retry_max)
        return None

    def _database_unavailable(self, exc: BaseException) -> bool:
        """True when the database failed (connection lost, shut down, out of disk, a timeout...): the round is
        retried and nothing is acked. False when the message is to blame (the database refused its data, or an
        unexpected error while preparing it): that message alone is rejected."""
        if self._store is None or self._store.broken:
            return True
        if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)):
            return False
        if isinstance(exc, psycopg.Error):
            return not (exc.sqlstate or "").startswith(_MESSAGE_FAULTS)
        return False

    def _write(self, store: Store, decoded: list[Decoded], work: Work) -> tuple[list[Decoded], Written]:
        """The round's writing and commit, within ``database.round_timeout``: a database that never answers (its
        machine froze; its TCP stack still acknowledges, so no socket option notices) gets its connection shut down
        from a timer, which makes the waiting call fail like a lost connection, and the round is retried."""
        timer = threading.Timer(self.config.database.round_timeout, self._abandon, args=(store,))
        timer.daemon = True
        timer.start()
        try:
            return self._write_round(store, decoded, work)
        finally:
            timer.cancel()

    def _abandon(self, store: Store) -> None:
        log.warning("the database has not answered for %.0fs; dropping the connection and retrying the round",
                    self.config.database.round_timeout)
        store.abandon()  # the waiting call fails, and _commit counts the error and retries

    def _write_round(self, store: Store, decoded: list[Decoded], work: Work) -> tuple[list[Decoded], Written]:
        try:
            return decoded, store.write(work)
        except Exception as exc:
            if self._database_unavailable(exc):
                raise
            log.warning("a round failed (%s); writing its messages one by one", _describe(exc))
        return self._write_one_by_one(store, decoded)

    def _write_one_by_one(self, store: Store, decoded: list[Decoded]) -> tuple[list[Decoded], Written]:
        """Isolate the message(s) that fail to write, so one bad batch cannot wedge the stream."""
        out, total = [], Written()
        for d in decoded:
            try:
                written = store.write(plan([d]))
            except Exception as exc:
                if self._database_unavailable(exc):
                    raise
                if not isinstance(exc, psycopg.Error):
                    log.error("writing a message on %s failed unexpectedly", d.message.topic, exc_info=exc)
                d = refused(d, _describe(exc))
                log.warning("rejected a message on %s: %s", d.message.topic, d.item.reason)
                written = store.write(plan([d]))
            out.append(d)
            total += written
        return out, total

    def _open_store(self) -> Store:
        if self._store is None or self._store.broken:
            self.close_store()
            self._store = Store.connect(self.config.database.url, application_name=self.collector.client_id,
                                        connect_timeout=10)
            if self.index == 0:
                log.info("connected to the database %s", _safe_dsn(self.config.database.url))
        return self._store

    def close_store(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            except psycopg.Error:
                pass  # already gone
            self._store = None


def _safe_dsn(url: str) -> str:
    """The database URL without its password, for logs; every host of a multi-host URL (a primary and its standbys,
    ``postgresql://edge@db1:5432,db2:5432/edge?target_session_attrs=read-write``) is named."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "(an unreadable database URL)"
    hosts = (info.get("host") or "localhost").split(",")
    ports = (info.get("port") or "5432").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    where = ",".join(f"{host}:{port or 5432}" for host, port in zip(hosts, ports))
    user = f"{info['user']}@" if info.get("user") else ""
    return f"postgresql://{user}{where}/{info.get('dbname', '')}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
