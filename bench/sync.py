"""Store-and-forward throughput and latency, each beside a baseline measured in the same run.

1. Drain: N buffered readings (default 1,000,000, 40 sensors) from a gateway buffer through a private Mosquitto and
   `edge dc collector` into a private PostgreSQL, until every one is committed and acknowledged back (the buffer's
   pending count reaches 0). Baselines: raw paho QoS 1 publish of the same payloads (PUBACKs only, no database),
   and raw PostgreSQL COPY of the same rows into a table of the same columns. Target: >= 50,000 readings/s.
2. Bytes on the wire per reading (the encoded payloads).
3. Steady state: `edge run` with 40 simulated sensors every second and the default sync settings for S seconds;
   latency from a reading's timestamp to its commit in PostgreSQL (p50, p99). Target p99 <= 2 s.

Usage:  .venv/bin/python bench/sync.py [--readings 1000000] [--seconds 60]
Needs Debian's mosquitto and postgresql (scripts/test installs them).
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from services import Broker, PostgresServer, _postgres_bin  # noqa: E402  (test services, usable outside pytest)

from edge.contract import protocol  # noqa: E402
from edge.gateway.buffer import Buffer, NewReading  # noqa: E402
from edge.gateway.clock import Clock  # noqa: E402
from edge.gateway.sync import Sync, SyncConfig  # noqa: E402

SENSORS = 40
BATCH = int(os.environ.get("BENCH_BATCH", "10000"))


def fill_buffer(path: Path, count: int) -> None:
    import random

    buffer, _ = Buffer.open(path, now=time.time(), boot_id="bench")
    start = time.time() - count / SENSORS * 10
    rng = random.Random(1)
    values = [20.0] * SENSORS
    rows = []
    for i in range(count):
        s = i % SENSORS
        values[s] = round(values[s] + rng.gauss(0, 0.15), 1)  # a sensor's noisy random walk at 0.1 resolution
        rows.append(NewReading(start + i // SENSORS * 10 + s * 0.002 + rng.random() / 100, f"s{s:02d}", "temperature", values[s], "°C"))
        if len(rows) == 10_000:
            buffer.append_readings(rows)
            rows = []
    if rows:
        buffer.append_readings(rows)
    buffer.close()


def payloads(path: Path) -> tuple[list[bytes], list[list[protocol.Reading]], int]:
    buffer = Buffer.reader(path)
    out, batches, after = [], [], (0, 0)
    while rows := buffer.pending_readings(limit=BATCH, after=after):
        readings = [r.reading for r in rows]
        out.append(protocol.encode_readings("bench-gw", rows[0].epoch, readings))
        batches.append(readings)
        after = (rows[-1].epoch, rows[-1].seq)
    buffer.close()
    return out, batches, sum(len(p) for p in out)


def raw_publish(broker: Broker, data: list[bytes]) -> float:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(64)
    client.connect(broker.host, broker.port)
    client.loop_start()
    began = time.perf_counter()
    infos = [client.publish("greenhouse/v1/bench-raw/up/readings", p, qos=1) for p in data]
    for info in infos:
        info.wait_for_publish(60)
    elapsed = time.perf_counter() - began
    client.loop_stop()
    client.disconnect()
    return elapsed


def raw_copy(database, batches: list[list[protocol.Reading]]) -> float:
    with database.connect() as conn:
        conn.execute("CREATE TABLE raw_readings (gateway_id text, epoch bigint, seq bigint, ts timestamptz, "
                     "sensor text, quantity text, value double precision, unit text, quality text, reason text, "
                     "clock smallint, boot_id text, mono double precision)")
        conn.commit()
        from datetime import datetime, timezone

        began = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY raw_readings FROM STDIN") as copy:
            for batch in batches:
                for r in batch:
                    copy.write_row(("bench-gw", 1, r.seq, datetime.fromtimestamp(r.ts, timezone.utc), r.sensor,
                                    r.quantity, r.value, r.unit, r.quality, r.reason, r.clock, r.boot_id, r.mono))
        conn.commit()
        return time.perf_counter() - began


def postgres_cpu(server) -> float:
    """CPU seconds used so far by the private PostgreSQL's processes (the collector's backends among them)."""
    import psutil

    postmaster = psutil.Process(int((server.datadir / "postmaster.pid").read_text().split()[0]))
    total = 0.0
    for process in [postmaster, *postmaster.children()]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass  # ended meanwhile
    return total


def start_collector(broker: Broker, database, name: str) -> subprocess.Popen:
    env = {**os.environ, "EDGE_MQTT_URL": broker.url, "EDGE_DATABASE_URL": database.url}
    return subprocess.Popen([sys.executable, "-m", "edge", "dc", "collector", "-c",
                             str(ROOT / "config/datacenter.example.yaml"), "--client-id", name, "--log-level",
                             "warning"], env=env)


def drain(path: Path, broker: Broker) -> tuple[float, float]:
    """(seconds the drain took, CPU seconds the gateway's sync thread used meanwhile)."""
    buffer, _ = Buffer.open(path, now=time.time(), boot_id="bench")
    config = SyncConfig(url=broker.url, batch_size=BATCH, max_inflight=int(os.environ.get("BENCH_INFLIGHT", "32")), backlog_rate=1_000_000)
    sync = Sync(config, "bench-gw", buffer, Clock("synced"))
    began = time.perf_counter()
    sync.start()
    while buffer.pending(limit=1):  # the partial index answers at once (a COUNT would scan the table)
        time.sleep(0.2)
    elapsed = time.perf_counter() - began
    import psutil

    busy = next((t.user_time + t.system_time for t in psutil.Process().threads()
                 if t.id == sync._thread.native_id), float("nan"))
    sync.stop()
    buffer.close()
    return elapsed, busy


def steady_state(broker: Broker, database, seconds: float, tmp: Path) -> list[float]:
    """Seconds from each reading to its commit, past the first few seconds of the run (the daemon's start)."""
    warm_up = min(5.0, seconds / 4)
    config = tmp / "steady.yaml"
    sensors = "\n".join(f"  - {{id: s{i:02d}, type: simulated, measures: [temperature], interval: 1s}}"
                        for i in range(SENSORS))
    config.write_text(f"gateway: {{id: steady-gw}}\nclock: {{trust: synced}}\nbuffer: {{path: {tmp / 'steady.db'}}}"
                      f"\ncontrol: {{socket: {tmp / 'steady.sock'}}}\nsync: {{url: {broker.url}}}\nlog: {{level: warning}}"
                      f"\nsensors:\n{sensors}\n")
    subprocess.run([sys.executable, "-m", "edge", "run", "-c", str(config), "--for", f"{int(seconds)}s"], check=True)
    time.sleep(3)  # the last round's ack
    with database.connect() as conn:
        rows = conn.execute("SELECT EXTRACT(EPOCH FROM received_at - ts) FROM readings WHERE gateway_id = "
                            "'steady-gw' AND ts > (SELECT MIN(ts) FROM readings WHERE gateway_id = 'steady-gw') "
                            "+ make_interval(secs => %s)", (warm_up,)).fetchall()
    return sorted(float(r[0]) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = Broker(tmp / "broker").start()
        server = PostgresServer(_postgres_bin()).start()
        try:
            database = server.create_database()
            path = tmp / "gateway.db"
            print(f"filling a buffer with {args.readings:,} readings of {SENSORS} sensors ...", flush=True)
            fill_buffer(path, args.readings)
            data, batches, wire = payloads(path)
            raw_pub = raw_publish(broker, data)
            raw_cp = raw_copy(server.create_database(), batches)
            count = len(data)
            # The baselines' copies of the backlog (a million readings) are not the gateway's: kept alive, every full
            # garbage collection of the gateway's process would walk them during the drain.
            del data, batches
            gc.collect()
            collector = start_collector(broker, database, "bench-c1")
            time.sleep(2)
            import psutil

            collector_cpu = sum(psutil.Process(collector.pid).cpu_times()[:2])
            database_cpu = postgres_cpu(server)
            ours, busy = drain(path, broker)
            collector_cpu = sum(psutil.Process(collector.pid).cpu_times()[:2]) - collector_cpu
            database_cpu = postgres_cpu(server) - database_cpu
            n = args.readings
            print(f"drain of {n:,} buffered readings to committed-and-acknowledged (batches of {BATCH}):")
            print(f"  edge sync + collector   {n / ours:10,.0f} readings/s   ({ours:.1f} s)   target >= 50,000: "
                  f"{'ok' if n / ours >= 50_000 else 'MISSED'}")
            print(f"  raw paho QoS 1 publish  {n / raw_pub:10,.0f} readings/s   ratio {raw_pub / ours:4.2f}x")
            print(f"  raw PostgreSQL COPY     {n / raw_cp:10,.0f} readings/s   ratio {raw_cp / ours:4.2f}x   "
                  f"target >= 0.5x: {'ok' if raw_cp / ours >= 0.5 else 'MISSED'}")
            print(f"  where the time went: the gateway's sync thread used {busy:.1f} s of CPU, the collector "
                  f"{collector_cpu:.1f} s, PostgreSQL {database_cpu:.1f} s, in the {ours:.1f} s of the drain")
            print(f"bytes on the wire: {wire / n:.2f} per reading ({wire:,} bytes in {count} batches)")
            latencies = steady_state(broker, database, args.seconds, tmp)
            collector.terminate()
            collector.wait(30)
            if not latencies:
                print(f"steady state: no reading was committed in {args.seconds:g} s (the broker or the collector?)")
                return
            p50 = latencies[len(latencies) // 2]
            p99 = latencies[int(len(latencies) * 0.99)]
            print(f"steady state, {SENSORS} sensors at 1 s for {args.seconds:g} s ({len(latencies)} readings), "
                  f"reading to commit: p50 {p50:.2f} s, p99 {p99:.2f} s, max {latencies[-1]:.2f} s   "
                  f"target p99 <= 2 s: {'ok' if p99 <= 2 else 'MISSED'}")
        finally:
            broker.kill()
            server.stop()


if __name__ == "__main__":
    main()
