"""Bytes on disk per reading at the data center, indexes included: fresh (the hot table) and compacted.

Loads N realistic readings (several gateways, 40 series each: air and leaf temperature, humidity, CO2, light, soil
moisture, pressure, derived VPD and dew point; two decimals where the sensor gives two, one reading a minute with a
few milliseconds of jitter, one in a thousand an error without value) through the real :class:`Store` into a private
PostgreSQL, and prints, from ``pg_total_relation_size`` of every table involved (every partition, its indexes and
its TOAST table):

- the baseline, measured in the same run: the same readings in the gateway's wire encoding
  (``protocol.encode_readings``, one batch per gateway and hour: the information itself, compressed), and the same
  columns in a plain table without any index (what a row costs PostgreSQL at the least);
- fresh: the hot ``readings`` table (both indexes) and ``gateway_hours``;
- compacted: once ``edge.datacenter.storage.maintain`` has run with ``raw_days`` 0 (every day older than today is
  compacted): the compacted chunks with their index and their key ranges, and the roll-ups beside them;
- a gateway's raw CSV export (the history API's query) before and after the compaction: time and bytes;
- what the look-up of compacted keys costs the collector's insert: Store.write's rate with nothing compacted, with
  15,000 compacted runs and live readings (which skip it), and with every reading looked up.

Usage:  .venv/bin/python bench/storage.py [--gateways 4] [--days 3] [--interval 60]
Needs Debian's postgresql (scripts/test installs it). Target: compacted <= 10 bytes per reading, indexes included.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from services import PostgresServer, _postgres_bin  # noqa: E402  (test services, usable outside pytest)

from edge.contract.protocol import Reading, ReadingBatch, encode_readings  # noqa: E402
from edge.datacenter.store import Store, Work  # noqa: E402

START = datetime(2025, 7, 1, tzinfo=timezone.utc)

#: 40 series: (sensor, quantity, unit, decimals, mean, daily swing, noise)
SERIES = [
    *[(f"air-{i}", "temperature", "°C", 2, 24.0, 8.0, 0.05) for i in range(1, 7)],
    *[(f"air-{i}", "humidity", "%", 2, 65.0, -20.0, 0.3) for i in range(1, 7)],
    *[(f"leaf-{i}", "temperature", "°C", 2, 23.0, 9.0, 0.08) for i in range(1, 5)],
    *[(f"co2-{i}", "co2", "ppm", 0, 600.0, -150.0, 6.0) for i in range(1, 4)],
    *[(f"light-{i}", "light", "lx", 1, 20_000.0, 40_000.0, 150.0) for i in range(1, 4)],
    *[(f"soil-{i}", "soil_moisture", "%", 1, 35.0, -3.0, 0.2) for i in range(1, 9)],
    *[(f"soil-{i}", "temperature", "°C", 1, 21.0, 2.0, 0.05) for i in range(1, 3)],
    ("baro", "pressure", "hPa", 2, 880.0, 1.5, 0.05),
    ("tank", "level", "", 0, 1.0, 0.0, 0.0),
    *[(f"climate-{i}", "vpd", "kPa", 3, 1.0, 0.8, 0.01) for i in range(1, 4)],
    *[(f"climate-{i}", "dew_point", "°C", 2, 14.0, 2.0, 0.05) for i in range(1, 4)],
]
assert len(SERIES) == 40


def rounds(gateway: int, days: float, interval: float, rng: random.Random):
    """Each sampling round of one gateway: its readings (seqs numbered from 1, one epoch)."""
    seq = 0
    walks = [0.0] * len(SERIES)
    t0 = START.timestamp() + gateway * 0.37
    for n in range(int(days * 86400 / interval)):
        now = t0 + n * interval
        day = math.sin(2 * math.pi * ((now % 86400) / 86400 - 0.3))
        readings = []
        for i, (sensor, quantity, unit, decimals, mean, swing, noise) in enumerate(SERIES):
            seq += 1
            walks[i] = 0.98 * walks[i] + rng.gauss(0, noise)
            ts = round(now + rng.randint(0, 40) / 1000 + i * 0.002, 3)
            if rng.random() < 0.001:
                readings.append(Reading(seq, ts, sensor, quantity, None, unit, "error", "no answer"))
                continue
            value = round(max(0.0, mean + swing * max(day, -0.2 if quantity == "light" else -1) + walks[i]),
                          decimals)
            readings.append(Reading(seq, ts, sensor, quantity, value, unit))
        yield readings


def total_size(conn, *tables: str) -> int:
    """pg_total_relation_size of every table named (each partition of a partitioned one included)."""
    size = 0
    for table in tables:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
            continue
        size += conn.execute("SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(%s) "
                             "WHERE isleaf", (table,)).fetchone()[0] or \
            conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]
    return int(size)


def load(store: Store, gateways: int, days: float, interval: float) -> tuple[int, int]:
    """Every gateway's readings through Store.write, an hour of one gateway per round; (readings, wire bytes)."""
    count = wire = 0
    per_hour = max(1, int(3600 / interval))
    rng = random.Random(17)
    for g in range(gateways):
        gateway_id = f"gh-{g:04d}"
        hour: list[Reading] = []
        for readings in rounds(g, days, interval, rng):
            hour.extend(readings)
            if len(hour) >= per_hour * len(SERIES):
                wire += _write(store, gateway_id, hour)
                count += len(hour)
                hour = []
        if hour:
            wire += _write(store, gateway_id, hour)
            count += len(hour)
    return count, wire


def _write(store: Store, gateway_id: str, readings: list[Reading]) -> int:
    store.write(Work(readings=[ReadingBatch(gateway_id, 1, tuple(readings))]))
    return len(encode_readings(gateway_id, 1, readings))


def plain_copy(conn) -> int:
    """The readings' columns in a table without any index: the least a row costs PostgreSQL."""
    conn.execute("CREATE TABLE plain AS SELECT gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, "
                 "reason, clock FROM readings")
    conn.execute("VACUUM ANALYZE plain")
    return total_size(conn, "plain")


def ingest(server: PostgresServer, rounds: int = 60) -> list[tuple[str, float]]:
    """Store.write's rate (100 batches of 200 readings a round, the three databases' rounds interleaved): nothing
    compacted; 15,000 compacted runs held (5,000 gateways) with live readings newer than every compacted day; the
    same runs with every reading looked up (a backlog older than the compacted days)."""
    stores = {}
    for name, horizon in [("nothing compacted", None), ("15,000 compacted runs, live readings", 0.0),
                          ("15,000 compacted runs, every reading looked up", float("inf"))]:
        store = Store.connect(server.create_database().url)
        if horizon is not None:
            store.conn.execute("INSERT INTO readings_compacted SELECT 'gh-' || lpad(g::text, 4, '0'), 1, "
                               "r * 1000000 + 1, r * 1000000 + 500000 FROM generate_series(0, 4999) g, "
                               "generate_series(0, 2) r")
            store.conn.execute("UPDATE compaction_horizon SET before = %s", (horizon,))
            store.conn.commit()
        stores[name] = store
    took = dict.fromkeys(stores, 0.0)
    rng, seqs, count = random.Random(7), {}, 0
    for n in range(rounds):
        batches = []
        for g in range(100):
            gateway_id = f"gh-{(n * 100 + g) % 5000:04d}"
            first = seqs.get(gateway_id, 3_000_000)
            seqs[gateway_id] = first + 200
            batches.append(ReadingBatch(gateway_id, 1, tuple(
                Reading(first + i, START.timestamp() + n * 10 + i / 1000, f"s{i % 40}", "temperature",
                        20.0 + i % 7, "°C") for i in range(1, 201))))
        count += 200 * 100
        order = list(stores.items())
        rng.shuffle(order)
        for name, store in order:
            began = time.perf_counter()
            store.write(Work(readings=batches))
            took[name] += time.perf_counter() - began
    for store in stores.values():
        store.close()
    return [(name, count / seconds) for name, seconds in took.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=4)
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between a sensor's readings")
    args = parser.parse_args()
    server = PostgresServer(_postgres_bin()).start()
    try:
        database = server.create_database()
        store = Store.connect(database.url)
        began = time.perf_counter()
        count, wire = load(store, args.gateways, args.days, args.interval)
        loaded = time.perf_counter() - began
        conn = database.connect(autocommit=True)
        conn.execute("VACUUM ANALYZE")
        print(f"{count:,} readings: {args.gateways} gateways x {len(SERIES)} series every {args.interval:g} s for "
              f"{args.days:g} days, loaded through Store.write in {loaded:.1f} s ({count / loaded:,.0f}/s on a "
              "busy machine)")
        rows = [("baseline: wire encoding (encode_readings, a batch per gateway-hour)", wire),
                ("baseline: plain table, same columns, no index", plain_copy(conn)),
                ("fresh: readings (hot, 16 partitions, both indexes) + gateway_hours",
                 total_size(conn, "readings", "gateway_hours"))]
        hot_export = export_seconds(database.url, "gh-0000", args.days)
        rows.extend(compacted(conn, database.url))
        cold_export = export_seconds(database.url, "gh-0000", args.days)
        width = max(len(name) for name, _ in rows)
        for name, size in rows:
            print(f"  {name:<{width}}  {size / 2**20:9.2f} MiB  {size / count:7.2f} bytes/reading")
        store.close()
        conn.close()
        print(f"raw CSV export of gh-0000 ({count // args.gateways:,} readings): hot {hot_export[0]:.2f} s, compacted "
              f"{cold_export[0]:.2f} s ({hot_export[0] / cold_export[0]:.2f}x the hot rate), "
              f"{'the same bytes' if hot_export[1] == cold_export[1] else 'OTHER BYTES'}")
        rates = ingest(server)
        print("ingest, Store.write (rounds interleaved, busy machine):")
        for name, rate in rates:
            print(f"  {name:<{width}}  {rate:9,.0f} readings/s  {rate / rates[0][1]:5.2f}x the first")
    finally:
        server.stop()


def export_seconds(url: str, gateway_id: str, days: float) -> tuple[float, int]:
    """Seconds and bytes of one gateway's raw CSV export over the whole load, as the history API streams it."""
    import psycopg

    from edge.datacenter import queries
    from edge.datacenter.api import series_params

    with psycopg.connect(url) as conn:
        chosen = queries.series(conn, gateway_id)
    export = queries.Export(queries.RAW, START, START + timedelta(days=days + 1),
                            {"gateway": gateway_id, **series_params(chosen)})
    began = time.perf_counter()
    size = sum(len(block) for block in queries.stream(lambda: psycopg.connect(url), export, "csv"))
    return time.perf_counter() - began, size


def compacted(conn, url: str) -> list[tuple[str, int]]:
    """Run the maintenance with raw_days 0, then measure what is left (nothing when it does not exist yet)."""
    try:
        from edge.datacenter import storage
    except ImportError:
        return []
    import psycopg

    with psycopg.connect(url) as work:
        began = time.perf_counter()
        done = storage.maintain(work, storage.Settings(raw_days=0, budget=float("inf")),
                                now=datetime.now(timezone.utc))
        took = time.perf_counter() - began
    conn.execute("VACUUM ANALYZE")
    print(f"maintenance: {done} in {took:.1f} s (busy machine)")
    rows = [("compacted: readings_compact (chunks, TOAST, index) + compacted key ranges",
             total_size(conn, *storage.COMPACT_TABLES))] if hasattr(storage, "COMPACT_TABLES") else []
    for table in ("rollup_1h", "rollup_1d"):
        rows.append((f"roll-ups, kept for ever: {table}", total_size(conn, table)))
    for table in ("readings", "rollup_1m"):  # rows deleted: the files keep their space for the next rows
        left = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        rows.append((f"left: {table} ({left} rows; the rest free space reused by new rows)", total_size(conn, table)))
    return rows


if __name__ == "__main__":
    main()
