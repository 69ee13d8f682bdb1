"""The history API's CSV export, beside PostgreSQL's own COPY of the same rows, measured in the same run.

1. Export rate: N readings (default 10,000,000: one gateway, 40 series at 10 s, about 29 days) exported as CSV
   through `edge dc api` (uvicorn, a subprocess) and read by an httpx client, against
   `COPY (SELECT <the same columns> FROM readings WHERE <the same rows>) TO STDOUT (FORMAT csv)` read by psycopg
   (no ordering, no formatting: the cheapest way PostgreSQL has to hand the rows out). Target: >= 0.5x COPY.
2. The API server's peak RSS during an export of a tenth of the rows and during the whole export.
   Target: <= 150 MB, and flat in the number of rows.

Usage:  .venv/bin/python bench/history.py [--readings 10000000]
Needs Debian's postgresql (scripts/test installs it).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from services import PostgresServer, _postgres_bin, free_port  # noqa: E402  (test services, usable outside pytest)

from edge.datacenter import queries, tokens  # noqa: E402
from edge.datacenter.api import series_params  # noqa: E402
from edge.datacenter.store import migrate  # noqa: E402

GATEWAY = "gh-bench"
SERIES = 40
START = datetime(2025, 7, 1, tzinfo=timezone.utc)


def fill(conn, count: int) -> None:
    """``count`` readings: 40 series (20 sensors x temperature, humidity) every 10 s, a random walk each."""
    conn.execute("""
        INSERT INTO gateway_status (gateway_id, state, state_since, last_seen) VALUES (%s, 'online', now(), now())
    """, (GATEWAY,))
    conn.execute("""
        INSERT INTO readings (gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, clock)
        SELECT %(g)s, 1, g, %(start)s + ((g - 1) / 40) * interval '10 seconds',
               's' || lpad(((g - 1) %% 20)::text, 2, '0'),
               CASE WHEN (g - 1) %% 40 < 20 THEN 'temperature' ELSE 'humidity' END,
               round((20 + 5 * sin(g / 4000.0) + random())::numeric, 1),
               CASE WHEN (g - 1) %% 40 < 20 THEN '°C' ELSE '%%' END, 'good', 1
        FROM generate_series(1, %(n)s) AS g""", {"g": GATEWAY, "start": START, "n": count})
    conn.execute("ANALYZE readings")
    conn.commit()


def bare_copy(conn, end: datetime) -> tuple[float, int]:
    """The rows as PostgreSQL hands them out at its cheapest: no order, no formatting."""
    query = ("COPY (SELECT ts, gateway_id, sensor, quantity, value, unit, quality, clock, epoch, seq FROM readings "
             "WHERE gateway_id = %s AND ts >= %s AND ts < %s) TO STDOUT (FORMAT csv)")
    return _copy(conn, query, (GATEWAY, START, end))


def same_copy(conn, end: datetime) -> tuple[float, int]:
    """The very rows, order and text the API sends, as one COPY statement over the whole range."""
    series = queries.series(conn, GATEWAY)
    export = queries.Export(queries.RAW, START, end, {"gateway": GATEWAY, **series_params(series)},
                            guard_names=False)
    return _copy(conn, export.sql("csv"), {"gateway": GATEWAY, **series_params(series), "start": START,
                                           "end": end, "origin": queries.ORIGIN})


def _copy(conn, query: str, params) -> tuple[float, int]:
    size = 0
    began = time.perf_counter()
    with conn.cursor() as cur, cur.copy(query, params) as copy:
        for block in copy:
            size += len(block)
    return time.perf_counter() - began, size


class Server:
    """`edge dc api` with its RSS sampled every 50 ms."""

    def __init__(self, database_url: str, config: Path):
        self.port = free_port()
        env = {**os.environ, "EDGE_DATABASE_URL": database_url, "EDGE_MQTT_URL": "mqtt://localhost:1883"}
        self.proc = psutil.Popen([sys.executable, "-m", "edge", "dc", "api", "-c", str(config), "--listen",
                                  f"127.0.0.1:{self.port}", "--log-level", "warning"], env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        self.peak = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/openapi.json").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)

    def export(self, token: str, end: datetime) -> tuple[float, int, int, float]:
        """Seconds, bytes and rows of one CSV export, and the server's peak RSS (MB) meanwhile."""
        self.peak = 0
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(done,))
        watcher.start()
        size = rows = 0
        began = time.perf_counter()
        params = {"from": START.isoformat(), "to": end.isoformat()}
        with httpx.stream("GET", f"{self.url}/v1/gateways/{GATEWAY}/readings", params=params, timeout=600,
                          headers={"Authorization": f"Bearer {token}"}) as response:
            response.raise_for_status()
            for block in response.iter_raw():
                size += len(block)
                rows += block.count(b"\n")
        seconds = time.perf_counter() - began
        done.set()
        watcher.join()
        return seconds, size, rows - 1, self.peak / 2**20

    def _watch(self, done: threading.Event) -> None:
        while not done.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=10_000_000)
    args = parser.parse_args()
    span = timedelta(seconds=10 * -(-args.readings // SERIES))
    server_pg = PostgresServer(_postgres_bin()).start()
    try:
        database = server_pg.create_database()
        with database.connect() as conn:
            migrate(conn)
            began = time.perf_counter()
            fill(conn, args.readings)
            print(f"filled {args.readings:,} readings in {time.perf_counter() - began:.0f}s", flush=True)
            secret = tokens.create(conn, "bench", [GATEWAY])
        config = Path(server_pg.workdir) / "datacenter.yaml"
        config.write_text("mqtt: {url: '${EDGE_MQTT_URL}'}\ndatabase: {url: '${EDGE_DATABASE_URL}'}\n")
        api = Server(database.url, config)
        try:
            with database.connect(options="-c TimeZone=UTC -c jit=off") as conn:
                bare = bare_copy(conn, START + span)  # first: it also sets the freshly loaded rows' hint bits
                same = same_copy(conn, START + span)
            small = api.export(secret, START + span / 10)
            whole = api.export(secret, START + span)
        finally:
            api.stop()
    finally:
        server_pg.stop()
    api_rate = whole[2] / whole[0]
    for name, (seconds, size) in (("bare COPY (no order, no formatting)", bare),
                                  ("COPY of the API's rows, order and text", same)):
        rate = args.readings / seconds
        print(f"{name + ':':42} {args.readings:,} rows in {seconds:.1f}s = {rate:,.0f} rows/s "
              f"({size / seconds / 1e6:.0f} MB/s); the API makes {api_rate / rate:.2f}x of it")
    print(f"{'history API CSV export over HTTP:':42} {whole[2]:,} rows in {whole[0]:.1f}s = {api_rate:,.0f} rows/s "
          f"({whole[1] / whole[0] / 1e6:.0f} MB/s)")
    print(f"API server peak RSS: {small[3]:.1f} MB exporting {small[2]:,} rows, {whole[3]:.1f} MB exporting "
          f"{whole[2]:,} rows (target <= 150 MB, flat)")


if __name__ == "__main__":
    main()
