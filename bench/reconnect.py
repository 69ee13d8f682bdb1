"""Coming back after an outage: broker return to backlog delivered, median of N runs, beside the drain itself.

A private Mosquitto and PostgreSQL (tests/services.py), one `edge dc collector`, and one `edge run` gateway with 40
simulated sensors every second and the default sync settings. Each run kills the broker (SIGKILL), keeps it away for
``--outage`` seconds (default 60) while the gateway buffers, then starts it again on the same port, and measures:

- broker return -> backlog delivered: from the broker's port answering again until PostgreSQL holds every reading
  the gateway took before that moment (counted in the gateway's buffer);
- the drain alone (the baseline in the same run): from the first of those readings reaching PostgreSQL after the
  return until the last: what moving the backlog takes once the link is up. The rest is the reconnect's wait.

Target: median broker return -> backlog delivered <= 15 s after a 60 s outage.

The collector runs with ``reconnect_max: 5s`` (the example config's 1m would measure the collector's own paho
backoff, not the gateway's: one collector per data center can retry often at no cost; docs/datacenter.md).

Usage:  .venv/bin/python bench/reconnect.py [--runs 5] [--outage 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from services import Broker, PostgresServer, _postgres_bin  # noqa: E402  (test services, usable outside pytest)

from edge.gateway.buffer import Buffer  # noqa: E402

SENSORS = 40
GATEWAY = "reconnect-gw"


def gateway_config(tmp: Path, broker: Broker) -> Path:
    sensors = "\n".join(f"  - {{id: s{i:02d}, type: simulated, measures: [temperature], interval: 1s}}"
                        for i in range(SENSORS))
    config = tmp / "gateway.yaml"
    config.write_text(f"gateway: {{id: {GATEWAY}}}\nclock: {{trust: synced}}\nbuffer: {{path: {tmp / 'gw.db'}}}\n"
                      f"control: {{socket: {tmp / 'gw.sock'}}}\nsync: {{url: {broker.url}}}\nlog: {{level: warning}}\n"
                      f"sensors:\n{sensors}\n")
    return config


def collector_config(tmp: Path) -> Path:
    text = (ROOT / "config/datacenter.example.yaml").read_text().replace("reconnect_max: 1m", "reconnect_max: 5s")
    path = tmp / "datacenter.yaml"
    path.write_text(text)
    return path


def taken_before(buffer_path: Path, moment: float) -> int:
    buffer = Buffer.reader(buffer_path)
    try:
        return buffer._db.execute("SELECT COUNT(*) FROM readings WHERE ts < ?", (moment,)).fetchone()[0]
    finally:
        buffer.close()


def one_outage(broker: Broker, conn, buffer_path: Path, outage: float) -> tuple[float, float]:
    """(broker return -> backlog delivered, first -> last backlog reading committed) in seconds."""
    broker.kill()
    lost = time.time()
    time.sleep(outage)
    broker.start()
    back = time.time()
    time.sleep(1.5)  # every round taken before the return is stored by now
    expected = taken_before(buffer_path, back)
    first_new = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        row = conn.execute("SELECT COUNT(*), MIN(received_at) FILTER (WHERE ts >= to_timestamp(%s)) FROM readings "
                           "WHERE gateway_id = %s AND ts < to_timestamp(%s)", (lost, GATEWAY, back)).fetchone()
        conn.commit()
        if row[0] >= expected:
            done = time.time()
            first_new = row[1].timestamp() if row[1] else done
            return done - back, done - max(first_new, back)
        time.sleep(0.1)
    raise SystemExit(f"the backlog was not delivered within 300 s ({row[0]} of {expected})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--outage", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = Broker(tmp / "broker").start()
        server = PostgresServer(_postgres_bin()).start()
        collector = gateway = None
        try:
            database = server.create_database()
            env = {**os.environ, "EDGE_MQTT_URL": broker.url, "EDGE_DATABASE_URL": database.url}
            collector = subprocess.Popen([sys.executable, "-m", "edge", "dc", "collector", "-c",
                                          str(collector_config(tmp)), "--client-id", "bench-c1", "--log-level",
                                          "error"], env=env)
            gateway = subprocess.Popen([sys.executable, "-m", "edge", "run", "-c", str(gateway_config(tmp, broker))],
                                       stderr=subprocess.DEVNULL)
            time.sleep(15)  # connected, steady
            results = []
            with database.connect() as conn:
                for run in range(args.runs):
                    delivered, drain = one_outage(broker, conn, tmp / "gw.db", args.outage)
                    results.append((delivered, drain))
                    print(f"  run {run + 1}: broker return -> backlog delivered {delivered:5.1f} s "
                          f"(drain of the backlog itself {drain:4.1f} s)", flush=True)
                    time.sleep(5)
            median = statistics.median(d for d, _ in results)
            print(f"{args.outage:g} s outages, {SENSORS} sensors at 1 s ({SENSORS * args.outage:.0f} readings "
                  f"buffered each), {args.runs} runs:")
            print(f"  broker return -> backlog delivered   median {median:5.1f} s   (max {max(d for d, _ in results):.1f}"
                  f" s)   target <= 15 s: {'ok' if median <= 15 else 'MISSED'}")
            print(f"  baseline, the drain alone            median {statistics.median(d for _, d in results):5.1f} s"
                  f"   (the rest is waiting for the reconnect)")
        finally:
            for proc in (gateway, collector):
                if proc is not None:
                    proc.terminate()
                    proc.wait(30)
            broker.kill()
            server.stop()


if __name__ == "__main__":
    main()
