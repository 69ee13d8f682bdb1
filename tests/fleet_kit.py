"""A fleet of simulated gateways for the data center's benchmarks and tests (``bench/fleet.py``, tests/test_fleet.py).

Each simulated gateway is its own MQTT connection with its own account and client id, speaking the real protocol from
the real encoder (:mod:`edge.contract.protocol`): readings batches, events, a retained status with a last will, and
the application-level acks back. Like a gateway's uplink (``edge/gateway/sync/uplink.py``) it keeps what it produced
until the data center acknowledges it, sends at most ``max_inflight`` batches awaiting acks (two more for live
readings), sends everything unacknowledged again after a reconnect, after ``ack_timeout`` and when a collector
announces itself (presence), sends events first, then live readings, then the backlog (merged into batches of up to
``batch_size``), and reconnects with exponential backoff and full jitter.

What makes a fleet realistic: each gateway has its own epoch and seqs per stream, its own sampling interval (5, 10
or 20 s, 10 s on average), a mix of quantities as random walks at 0.1 resolution, a failed read now and then (quality
``error``, no value), an actuator switching now and then (``actuator.change``), a reboot now and then (a new epoch,
seqs from 1, ``daemon.start``) and a gap now and then (readings that never leave the gateway, reported by a
``buffer.gap`` event as a pruned buffer would).

The :class:`Ledger` keeps every key ``(gateway, stream, epoch, seq)`` produced (as ranges) and the sum of the values
of each ``(gateway, epoch)``; :func:`check` compares it with the database: ``lost`` (produced, not stored),
``unexpected`` (stored, never produced, including gap keys), ``duplicated`` (a key stored more than once) and
``altered`` (a ``(gateway, epoch)`` whose values add up to something else).

Why asyncio with a small MQTT 3.1.1 client on ``asyncio.Protocol``: ``bench/fleet.py --engines`` connects 500
clients that each publish 20 real 40-reading batches at QoS 1 and wait for the PUBACKs, against a private broker. On
the 2-core development machine (busy with other work) this engine took 0.016 CPU seconds per 1,000 messages, paho
with every client driven from one selector thread (``loop_read`` / ``loop_write``) 0.048: three times as much. One
event loop multiplexes every socket with one ``epoll`` and parses only the five packet types a gateway needs; MQTT
3.1.1 (a gateway's ``sync.mqtt_version: mqttv311``) has the smallest CONNECT, and the broker queues QoS 1 for it
exactly as for MQTT 5. A thread per paho client (``loop_start``) was not measured further: 5,000 threads.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import random
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from edge.contract import protocol
from edge.contract.events import ActuatorChange, BufferGap, DaemonStart

# ------------------------------------------------------------------------------------------- MQTT 3.1.1 packets

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 1, 2, 3, 4, 8, 9, 12, 13, 14


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(raw)) + raw


def connect_packet(client_id: str, username: str, password: str, keepalive: int, will_topic: str,
                   will_payload: bytes, clean: bool = False) -> bytes:
    flags = 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | (0x02 if clean else 0)  # user, password, will retained QoS 1
    body = (_text("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + _text(client_id) + _text(will_topic)
            + _text(will_payload) + _text(username) + _text(password))
    return bytes([CONNECT << 4]) + _length(len(body)) + body


def publish_packet(topic: str, payload: bytes, pid: int, qos: int = 1, retain: bool = False,
                   dup: bool = False) -> bytes:
    head = _text(topic) + (struct.pack("!H", pid) if qos else b"")
    flags = (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    return bytes([PUBLISH << 4 | flags]) + _length(len(head) + len(payload)) + head + payload


def puback_packet(pid: int) -> bytes:
    return bytes([PUBACK << 4, 2]) + struct.pack("!H", pid)


def subscribe_packet(pid: int, topics: list[str], qos: int = 1) -> bytes:
    body = struct.pack("!H", pid) + b"".join(_text(t) + bytes([qos]) for t in topics)
    return bytes([SUBSCRIBE << 4 | 2]) + _length(len(body)) + body


PINGREQ_PACKET = bytes([PINGREQ << 4, 0])
DISCONNECT_PACKET = bytes([DISCONNECT << 4, 0])


def read_packets(buf: bytearray) -> list[tuple[int, int, bytes]]:
    """Every whole packet at the start of ``buf`` as ``(type, flags, body)``; what is left stays in ``buf``."""
    out, pos, end = [], 0, len(buf)
    while end - pos >= 2:
        n, mult, i = 0, 1, pos + 1
        while True:
            if i >= end:
                del buf[:pos]
                return out
            byte = buf[i]
            n += (byte & 0x7F) * mult
            mult *= 128
            i += 1
            if not byte & 0x80:
                break
        if end - i < n:
            break
        out.append((buf[pos] >> 4, buf[pos] & 0x0F, bytes(buf[i:i + n])))
        pos = i + n
    del buf[:pos]
    return out


# ----------------------------------------------------------------------------------------------------- the ledger


@dataclass
class Ledger:
    """Every key the fleet produced, as seq ranges per ``(gateway, stream, epoch)``, and what it left out (gaps)."""

    produced: dict[tuple[str, str, int], list[list[int]]] = field(default_factory=dict)
    gaps: dict[tuple[str, str, int], list[list[int]]] = field(default_factory=dict)
    value_sums: dict[tuple[str, int], int] = field(default_factory=dict)  # sum of round(value * 10)
    readings: int = 0
    events: int = 0

    def add(self, gateway: str, stream: str, epoch: int, first: int, last: int, gap: bool = False) -> None:
        ranges = (self.gaps if gap else self.produced).setdefault((gateway, stream, epoch), [])
        if ranges and ranges[-1][1] + 1 == first:
            ranges[-1][1] = last
        else:
            ranges.append([first, last])
        if not gap:
            if stream == "readings":
                self.readings += last - first + 1
            else:
                self.events += last - first + 1

    def rows(self, which: str = "produced"):
        for (gateway, stream, epoch), ranges in getattr(self, which).items():
            for first, last in ranges:
                yield gateway, stream, epoch, first, last


# ---------------------------------------------------------------------------------------------------- a gateway

QUANTITIES = [("temperature", "°C", 22.0), ("humidity", "%", 60.0), ("co2", "ppm", 600.0), ("light", "lx", 8000.0),
              ("soil_moisture", "%", 35.0)]
INTERVALS = (5.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 20.0, 20.0, 10.0)  # 10 s on average: 0.1 rounds/s


@dataclass
class Settings:
    sensors: int = 40
    interval: float | None = None  # None: each gateway its own, from INTERVALS
    batch_size: int = 1000
    max_inflight: int = 8
    ack_timeout: float = 30.0
    keepalive: int = 60
    reconnect_min: float = 1.0
    reconnect_max: float = 120.0
    status_interval: float = 60.0
    p_error: float = 0.002  # a read that failed
    p_gap: float = 0.002  # a round that never leaves the gateway (a buffer.gap reports it)
    p_reboot: float = 0.0005  # a new epoch
    p_switch: float = 0.02  # an actuator.change event in a round


@dataclass
class Chunk:
    """Rows of one stream and epoch waiting to be sent, and when the oldest was taken."""

    stream: str
    epoch: int
    rows: list  # protocol.Reading or protocol.Event
    produced: float
    live: bool = True


@dataclass
class Flight:
    chunk: Chunk
    first: int
    last: int
    sent_at: float


def _order(chunk: Chunk) -> tuple[int, int]:
    return chunk.epoch, chunk.rows[0].seq


class SimGateway(asyncio.Protocol):
    def __init__(self, fleet: Fleet, index: int, gateway_id: str, password: str, rng: random.Random):
        self.fleet, self.id, self.password, self.rng = fleet, gateway_id, password, rng
        s = fleet.settings
        self.interval = s.interval or rng.choice(INTERVALS)
        self.series = [(f"s{i:02d}", *QUANTITIES[i % len(QUANTITIES)]) for i in range(s.sensors)]
        self.values = [base * (1 + rng.uniform(-0.1, 0.1)) for _, _, _, base in self.series]
        self.epoch = rng.randint(1, 5)
        self.seq = {"readings": 0, "events": 0}
        self.events_q: deque[Chunk] = deque()
        self.live: deque[Chunk] = deque()
        self.backlog: deque[Chunk] = deque()
        self.inflight: dict[tuple[str, int, int], Flight] = {}
        self.transport: asyncio.Transport | None = None
        self.connected = False  # CONNACK accepted
        self.connecting = False
        self.buf = bytearray()
        self.pid = 0
        self.failures = 0
        self.next_status = 0.0
        self.last_write = 0.0
        self.topic_up = protocol.topic(gateway_id, protocol.UP_READINGS)
        self.topic_ev = protocol.topic(gateway_id, protocol.UP_EVENTS)
        self.topic_status = protocol.topic(gateway_id, protocol.STATUS)
        self._start(previous_stop="none")

    # ------------------------------------------------------------------------------------------------ producing

    def _event(self, kind: str, source: str, data: dict[str, Any], now: float) -> None:
        self.seq["events"] += 1
        seq = self.seq["events"]
        event = protocol.Event(seq, round(now, 3), kind, source, data)
        self.fleet.ledger.add(self.id, "events", self.epoch, seq, seq)
        if self.events_q and self.events_q[-1].epoch == self.epoch and len(self.events_q[-1].rows) < 100:
            self.events_q[-1].rows.append(event)
        else:
            self.events_q.append(Chunk("events", self.epoch, [event], time.monotonic()))

    def _start(self, previous_stop: str) -> None:
        now = time.time()
        self._event(DaemonStart.KIND, "daemon", DaemonStart(
            version="fleet", epoch=self.epoch, previous_stop=previous_stop, clock_synced=True,
            intervals={name: self.interval for name, *_ in self.series}).to_data(), now)

    def round(self) -> None:
        """One sampling round: every sensor read once, stored under the next seqs."""
        s, rng, now = self.fleet.settings, self.rng, time.time()
        if rng.random() < s.p_reboot:
            self.epoch += 1
            self.seq = {"readings": 0, "events": 0}
            self._start(previous_stop="unclean")
        first = self.seq["readings"] + 1
        readings, total = [], 0
        for i, (sensor, quantity, unit, base) in enumerate(self.series):
            seq = first + i
            ts = round(now + i * 0.003, 3)
            if rng.random() < s.p_error:
                readings.append(protocol.Reading(seq, ts, sensor, quantity, None, unit, "error", "no answer"))
                continue
            value = self.values[i] = round(self.values[i] + rng.gauss(0, base * 0.002) + (base - self.values[i])
                                           * 0.01, 1)
            total += round(value * 10)
            readings.append(protocol.Reading(seq, ts, sensor, quantity, value, unit))
        last = first + len(readings) - 1
        self.seq["readings"] = last
        ledger = self.fleet.ledger
        if rng.random() < s.p_gap:  # pruned before it was sent: never leaves the gateway, a gap event says so
            ledger.add(self.id, "readings", self.epoch, first, last, gap=True)
            self._event(BufferGap.KIND, "buffer", BufferGap(
                epoch=self.epoch, first_seq=first, last_seq=last, count=last - first + 1, first_ts=readings[0].ts,
                last_ts=readings[-1].ts, reason="disk budget").to_data(), now)
        else:
            ledger.add(self.id, "readings", self.epoch, first, last)
            key = (self.id, self.epoch)
            ledger.value_sums[key] = ledger.value_sums.get(key, 0) + total
            self.live.append(Chunk("readings", self.epoch, readings, time.monotonic()))
        if rng.random() < s.p_switch:
            on = rng.random() < 0.5
            self._event(ActuatorChange.KIND, "heater-1", ActuatorChange(
                value=1.0 if on else 0.0, previous=0.0 if on else 1.0, reason="rule:frost").to_data(), now)
        self.pump()

    # -------------------------------------------------------------------------------------------------- sending

    def _take(self, queue: deque[Chunk]) -> Chunk:
        """The next batch of ``queue``: consecutive chunks of one stream and epoch, up to batch_size rows."""
        chunk = queue.popleft()
        limit = self.fleet.settings.batch_size
        if queue and queue[0].stream == chunk.stream and queue[0].epoch == chunk.epoch \
                and queue[0].rows[0].seq > chunk.rows[-1].seq and len(chunk.rows) + len(queue[0].rows) <= limit:
            rows = list(chunk.rows)
            while queue and queue[0].stream == chunk.stream and queue[0].epoch == chunk.epoch \
                    and queue[0].rows[0].seq > rows[-1].seq and len(rows) + len(queue[0].rows) <= limit:
                rows.extend(queue.popleft().rows)
            chunk = Chunk(chunk.stream, chunk.epoch, rows, chunk.produced, chunk.live)
        return chunk

    def pump(self) -> None:
        """Send what the window allows: events, then live readings, then the backlog."""
        if not self.connected:
            return
        window = self.fleet.settings.max_inflight
        while self.events_q and len(self.inflight) < window + 2:
            self._send(self._take(self.events_q))
        while self.live and len(self.inflight) < window + 2:
            self._send(self._take(self.live))
        while self.backlog and len(self.inflight) < window:
            self._send(self._take(self.backlog))

    def _send(self, chunk: Chunk) -> None:
        rows = chunk.rows
        if chunk.stream == "readings":
            payload, topic = protocol.encode_readings(self.id, chunk.epoch, rows), self.topic_up
        else:
            payload, topic = protocol.encode_events(self.id, chunk.epoch, rows), self.topic_ev
        self.inflight[(chunk.stream, chunk.epoch, rows[0].seq)] = Flight(chunk, rows[0].seq, rows[-1].seq,
                                                                          time.monotonic())
        self._write(publish_packet(topic, payload, self._pid()))
        self.fleet.sent_batches += 1

    def _pid(self) -> int:
        self.pid = self.pid % 65535 + 1
        return self.pid

    def _write(self, data: bytes) -> None:
        self.transport.write(data)
        self.last_write = time.monotonic()

    def requeue_all(self) -> None:
        """Everything unacknowledged goes back to the backlog, oldest first (a reconnect, a collector's presence)."""
        flights = sorted(self.inflight.values(), key=lambda f: (f.chunk.epoch, f.first, f.chunk.stream))
        self.inflight.clear()
        waiting = [f.chunk for f in flights] + list(self.live) + list(self.backlog)
        self.live.clear()
        self.backlog = deque(sorted((c for c in waiting if c.stream == "readings"), key=_order))
        for c in self.backlog:
            c.live = False
        events = sorted([c for c in waiting if c.stream == "events"] + list(self.events_q), key=_order)
        self.events_q = deque(events)
        self.fleet.resent_batches += len(flights)

    def sweep(self, now: float) -> None:
        """Once a second: batches whose ack is late go again; the status and a keepalive when due."""
        if not self.connected:
            return
        late = [k for k, f in self.inflight.items() if now - f.sent_at > self.fleet.settings.ack_timeout]
        if late:
            for key in late:
                chunk = self.inflight.pop(key).chunk
                chunk.live = False
                (self.events_q if chunk.stream == "events" else self.backlog).append(chunk)
            self.events_q = deque(sorted(self.events_q, key=_order))  # oldest first, as the gateway re-sends
            self.backlog = deque(sorted(self.backlog, key=_order))
            self.fleet.resent_batches += len(late)
            self.fleet.timeouts += len(late)
            self.pump()
        if now >= self.next_status:
            self._status()
        elif now - self.last_write > self.fleet.settings.keepalive / 2:
            self._write(PINGREQ_PACKET)

    def _status(self) -> None:
        backlog = sum(len(c.rows) for c in self.backlog) + sum(len(c.rows) for c in self.live)
        payload = protocol.encode_status("online", version="fleet", epoch=self.epoch, backlog=backlog,
                                         ts=round(time.time(), 3))
        self._write(publish_packet(self.topic_status, payload, self._pid(), retain=True))
        self.next_status = time.monotonic() + self.fleet.settings.status_interval

    # ------------------------------------------------------------------------------------------ the connection

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        will = protocol.encode_status("offline", version="fleet")
        self._write(connect_packet(f"edge-{self.id}", self.id, self.password, self.fleet.settings.keepalive,
                                   self.topic_status, will))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        for kind, flags, body in read_packets(self.buf):
            if kind == PUBLISH:
                self._publish_in(flags, body)
            elif kind == CONNACK:
                self._connack(body)

    def _connack(self, body: bytes) -> None:
        if len(body) < 2 or body[1] != 0:
            self.fleet.refused += 1
            self.transport.close()
            return
        self.connected = True
        self.failures = 0
        self.fleet.connects += 1
        self._write(subscribe_packet(self._pid(), [protocol.topic(self.id, protocol.DOWN_ACK),
                                                   protocol.topic(self.id, protocol.DOWN_CMD),
                                                   protocol.PRESENCE_TOPIC]))
        self._status()
        self.requeue_all()  # the uplink sends everything unacknowledged again after a (re)connect
        self.pump()

    def _publish_in(self, flags: int, body: bytes) -> None:
        n = struct.unpack_from("!H", body)[0]
        topic = body[2:2 + n].decode()
        pos = 2 + n
        qos = (flags >> 1) & 3
        if qos:
            self._write(puback_packet(struct.unpack_from("!H", body, pos)[0]))
            pos += 2
        payload = body[pos:]
        try:
            if topic == protocol.PRESENCE_TOPIC:
                protocol.decode_presence(payload)
                if not flags & 1 and self.inflight:  # a live presence: a collector (re)subscribed just now
                    self.requeue_all()
                    self.pump()
            elif topic.endswith("/down/ack"):
                self._acked(protocol.decode_ack(payload))
        except protocol.ProtocolError:
            self.fleet.bad_messages += 1

    def _acked(self, ack: protocol.Ack) -> None:
        now = time.monotonic()
        fleet = self.fleet
        for first, last in ack.ranges:
            for key in [k for k in self.inflight if k[0] == ack.stream and k[1] == ack.epoch
                        and first <= k[2] <= last]:
                flight = self.inflight.pop(key)
                fleet.settled(flight.chunk, now)
            # an ack of a copy sent before a reconnect or a timeout put it back in line: like the gateway's buffer
            # (acked rows are no longer pending), it is not sent again
            for queue in (self.events_q,) if ack.stream == "events" else (self.backlog, self.live):
                for chunk in [c for c in queue if c.epoch == ack.epoch and first <= c.rows[0].seq <= last]:
                    queue.remove(chunk)
                    fleet.settled(chunk, now)
        if ack.conflicts:
            fleet.conflicts += sum(last - first + 1 for first, last in ack.conflicts)
        self.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        was = self.connected
        self.connected = False
        self.transport = None
        self.buf.clear()
        if was:
            self.fleet.disconnects += 1
        self.fleet.reconnect_later(self)

    def unacked(self) -> int:
        return sum(len(f.chunk.rows) for f in self.inflight.values()) + sum(
            len(c.rows) for q in (self.live, self.backlog, self.events_q) for c in q)

    def oldest(self) -> float | None:
        """When the oldest row awaiting an ack was taken (monotonic), or None."""
        times = [f.chunk.produced for f in self.inflight.values()] + [
            c.produced for q in (self.live, self.backlog, self.events_q) for c in q]
        return min(times) if times else None


# --------------------------------------------------------------------------------------------------------- the fleet


class Fleet:
    """``run(seconds)`` connects every gateway, samples for ``seconds``, then waits until everything produced is
    acknowledged (at most ``drain`` seconds). The counters and latencies are read afterwards (:meth:`summary`)."""

    def __init__(self, host: str, port: int, accounts: list[tuple[str, str]], settings: Settings | None = None,
                 seed: int = 1, connect_concurrency: int = 200):
        self.host, self.port = host, port
        self.settings = settings or Settings()
        self.ledger = Ledger()
        rng = random.Random(seed)
        self.gateways = [SimGateway(self, i, gw, pw, random.Random(rng.random())) for i, (gw, pw) in
                         enumerate(accounts)]
        self.connect_slots: asyncio.Semaphore | None = None
        self.connect_concurrency = connect_concurrency
        self.latencies: list[float] = []
        self.live_latencies: list[tuple[float, float]] = []  # (ack time, latency) of live readings batches
        self.acked_readings = 0
        self.acked_events = 0
        self.sent_batches = self.resent_batches = self.timeouts = 0
        self.connects = self.disconnects = self.refused = self.bad_messages = self.conflicts = 0
        self.producing = False
        self.rounds = self.rounds_late = 0
        self.max_lag = 0.0
        self.marks: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    def settled(self, chunk: Chunk, now: float) -> None:
        latency = now - chunk.produced
        if chunk.stream == "readings":
            self.acked_readings += len(chunk.rows)
            self.latencies.append(latency)
            if chunk.live:
                self.live_latencies.append((now, latency))
        else:
            self.acked_events += len(chunk.rows)

    def reconnect_later(self, gw: SimGateway) -> None:
        if self._loop is None or self._stopping:
            return
        s = self.settings
        ceiling = min(s.reconnect_max, s.reconnect_min * 2 ** min(gw.failures, 16))
        delay = random.uniform(s.reconnect_min, max(s.reconnect_min, ceiling))
        gw.failures += 1
        self._loop.call_later(delay, lambda: self._loop.create_task(self._connect(gw)))

    async def _connect(self, gw: SimGateway) -> None:
        if self._stopping or gw.transport is not None or gw.connecting:
            return
        gw.connecting = True
        try:
            async with self.connect_slots:
                await self._loop.create_connection(lambda: gw, self.host, self.port)
        except OSError:
            gw.connecting = False
            self.reconnect_later(gw)
            return
        gw.connecting = False

    def unacked(self) -> int:
        return sum(gw.unacked() for gw in self.gateways)

    def oldest(self) -> float | None:
        """When the oldest row awaiting an ack anywhere in the fleet was taken (monotonic), or None."""
        times = [t for t in (gw.oldest() for gw in self.gateways) if t is not None]
        return min(times) if times else None

    async def _ticker(self) -> None:
        """Sampling rounds when due (a heap of next rounds), and a sweep of every gateway once a second."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        heap = [(start + gw.rng.uniform(0, gw.interval), i) for i, gw in enumerate(self.gateways)]
        heapq.heapify(heap)
        next_sweep = start + 1
        paused = start  # while not sampling, the rounds' phases are kept: they move on by the pause when it ends
        while not self._stopping:
            now = loop.time()
            if self.producing:
                if paused is not None:
                    heap = [(due + now - paused, i) for due, i in heap]
                    heapq.heapify(heap)
                    paused = None
                while heap and heap[0][0] <= now:
                    due, i = heapq.heappop(heap)
                    gw = self.gateways[i]
                    late = now - due  # the simulator itself falling behind (a busy machine)
                    self.rounds += 1
                    self.rounds_late += late > 1.0
                    self.max_lag = max(self.max_lag, late)
                    gw.round()
                    heapq.heappush(heap, (due + gw.interval, i))
            elif paused is None:
                paused = now
            if now >= next_sweep:
                mono = time.monotonic()
                for gw in self.gateways:
                    gw.sweep(mono)
                next_sweep = now + 1
            await asyncio.sleep(0.05)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self.connect_slots = asyncio.Semaphore(self.connect_concurrency)
        self._tick = asyncio.create_task(self._ticker())
        began = time.monotonic()
        await asyncio.gather(*(self._connect(gw) for gw in self.gateways))
        await self.wait_for(lambda: all(gw.connected for gw in self.gateways), 120 + len(self.gateways) / 50,
                            "every gateway to connect")
        self.marks["connect_s"] = time.monotonic() - began
        # The fleet holds millions of readings awaiting acks: full collections over them would stall the loop for
        # seconds (late rounds, late acks). What exists now is kept out of them, and they run rarely.
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)

    async def wait_for(self, predicate, timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            await asyncio.sleep(0.2)
        if what:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        return False

    async def drain(self, timeout: float) -> float | None:
        """Seconds until nothing produced awaits an ack (None: not within ``timeout``)."""
        began = time.monotonic()
        if await self.wait_for(lambda: self.unacked() == 0, timeout, ""):
            return time.monotonic() - began
        return None

    async def stop(self) -> None:
        self._stopping = True
        for gw in self.gateways:
            if gw.transport is not None:
                gw.transport.write(DISCONNECT_PACKET)
                gw.transport.close()
        await asyncio.sleep(0.1)
        self._tick.cancel()

    def summary(self, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(len(lat) * p))], 3) if lat else None

        return {"gateways": len(self.gateways), "seconds": seconds, "readings": self.ledger.readings,
                "events": self.ledger.events, "acked_readings": self.acked_readings,
                "offered_per_s": round(self.ledger.readings / seconds, 1) if seconds else None,
                "ack_p50_s": pct(0.50), "ack_p99_s": pct(0.99), "ack_max_s": round(lat[-1], 3) if lat else None,
                "batches_sent": self.sent_batches, "batches_resent": self.resent_batches,
                "ack_timeouts": self.timeouts, "connects": self.connects, "disconnects": self.disconnects,
                "refused": self.refused, "conflicts": self.conflicts, "unacked": self.unacked(),
                "rounds": self.rounds, "rounds_late_over_1s": self.rounds_late,
                "simulator_max_lag_s": round(self.max_lag, 2),
                **{k: round(v, 2) for k, v in self.marks.items()}}


# ------------------------------------------------------------------------------------------------------ the checker

_CHECK = """
WITH p AS (SELECT * FROM fleet_keys WHERE kind = %(kind)s),
     stored AS (SELECT count(*) AS n FROM {table} t JOIN p ON t.gateway_id = p.gateway_id AND t.epoch = p.epoch
                AND t.seq BETWEEN p.first AND p.last),
     ours AS (SELECT count(*) AS n FROM {table} WHERE gateway_id = ANY(%(gateways)s)),
     dup AS (SELECT coalesce(sum(n - 1), 0) AS n FROM (SELECT count(*) AS n FROM {table}
             WHERE gateway_id = ANY(%(gateways)s) GROUP BY gateway_id, epoch, seq HAVING count(*) > 1) d)
SELECT (SELECT n FROM stored), (SELECT n FROM ours), (SELECT n FROM dup)"""


def check(conn, fleet: Fleet) -> dict[str, int]:
    """Compare every key the fleet produced with the database (``conn``: psycopg, autocommit or not)."""
    ledger = fleet.ledger
    gateways = [gw.id for gw in fleet.gateways]
    conn.execute("CREATE TEMPORARY TABLE IF NOT EXISTS fleet_keys (kind text, gateway_id text, epoch bigint, "
                 "first bigint, last bigint)")
    conn.execute("TRUNCATE fleet_keys")
    with conn.cursor() as cur, cur.copy("COPY fleet_keys FROM STDIN") as copy:
        for gateway, stream, epoch, first, last in ledger.rows():
            copy.write_row((stream, gateway, epoch, first, last))
    conn.execute("ANALYZE fleet_keys")
    out = {"lost": 0, "unexpected": 0, "duplicated": 0}
    for stream, produced in (("readings", ledger.readings), ("events", ledger.events)):
        stored, ours, dup = conn.execute(_CHECK.format(table=stream), {"kind": stream, "gateways": gateways}
                                         ).fetchone()
        out[f"{stream}_stored"] = ours
        stored, ours, dup = int(stored), int(ours), int(dup)
        out["lost"] += produced - (stored - dup)
        out["unexpected"] += ours - stored
        out["duplicated"] += dup
    sums = dict(((g, e), int(s)) for g, e, s in conn.execute(
        "SELECT gateway_id, epoch, coalesce(sum(round(value * 10)), 0) FROM readings WHERE gateway_id = ANY(%s) "
        "GROUP BY 1, 2", (gateways,)).fetchall())
    out["altered"] = sum(1 for key, total in ledger.value_sums.items() if sums.get(key, 0) != total)
    gap_rows = sum(1 for _ in ledger.rows("gaps"))
    out["gaps_reported"] = conn.execute("SELECT count(*) FROM gaps WHERE gateway_id = ANY(%s)", (gateways,)
                                        ).fetchone()[0]
    out["gaps_made"] = gap_rows
    conn.execute("DROP TABLE fleet_keys")
    return out


def accounts(count: int, prefix: str = "fleet") -> list[tuple[str, str]]:
    """``count`` gateway accounts: ids and (test-only) passwords."""
    return [(f"{prefix}-{i:05d}", f"pw-{prefix}-{i}") for i in range(count)]
