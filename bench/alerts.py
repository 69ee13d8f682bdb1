"""Alert latency: from a threshold crossing (after its for-duration) to the SMS handed to a transport.

Real time, real scheduler: a sensor sampled every ``--interval`` seconds steps above a critical threshold at a random
moment; the rule must hold ``--for`` seconds. Per trial it measures, on the wall clock:

- **baseline** (same run, same sampler): crossing -> the first reading above the threshold reaches the listeners.
  This is the sampling delay any alerting gets, at most one interval.
- **alert latency**: (crossing + for-duration) -> the SMS handed to the transport, through the engine (state in
  SQLite), the outbox (queued in SQLite first) and the sender. Target: within one sampling interval plus 1 s.

The difference between the two is what the alert machinery adds (its tick runs every second).

Usage:  .venv/bin/python bench/alerts.py [--trials 5] [--interval 1] [--for 2]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from edge.gateway.config import parse_config
from edge.gateway.alerts import build
from edge.gateway.alerts.transports.base import OutgoingSms, SendResult
from edge.gateway.buffer import Buffer
from edge.gateway.clock import Clock
from edge.gateway.hardware.base import Sample
from edge.gateway.sampler import Sampler, SensorSlot
from edge.gateway.scheduler import Scheduler

THRESHOLD = 40.0

CONFIG = """\
gateway: {{id: bench}}
buffer: {{path: {buffer}}}
sensors:
  - {{id: probe, type: simulated, measures: [temperature], interval: {interval}s}}
alerts:
  recipients:
    - {{name: Bench, number: "09120000000"}}
  rules:
    - {{id: hot, type: above, input: {{sensor: probe, quantity: temperature}}, threshold: {threshold},
       for: {hold}s, severity: critical}}
sms:
  transports:
    - {{type: console}}
"""


class StepSensor:
    """Reads 25 °C until ``cross_at`` (wall clock), then 45 °C."""

    id = "probe"

    def __init__(self):
        self.cross_at = float("inf")

    def quantities(self) -> tuple[str, ...]:
        return ("temperature",)

    def read(self) -> list[Sample]:
        return [Sample("temperature", 45.0 if time.time() >= self.cross_at else 25.0, "°C")]

    def close(self) -> None:
        pass


class Recorder:
    """A transport that notes when it is handed an SMS."""

    name, needs_uplink = "recorder", False

    def __init__(self):
        self.handed: list[float] = []
        self.done = threading.Event()

    def send(self, sms: OutgoingSms) -> SendResult:
        self.handed.append(time.time())
        self.done.set()
        return SendResult("accepted")

    def receive(self) -> list:
        return []

    def close(self) -> None:
        pass


class FirstAbove:
    """A listener noting when the first reading above the threshold arrives: the baseline."""

    def __init__(self):
        self.at: float | None = None

    def __call__(self, readings) -> None:
        if self.at is None and any(r.value is not None and r.value > THRESHOLD for r in readings):
            self.at = time.time()


def trial(interval: float, hold: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(CONFIG.format(buffer=Path(tmp) / "b.db", interval=interval, threshold=THRESHOLD,
                                            hold=hold))
        clock = Clock("synced")
        buffer, _ = Buffer.open(config.buffer.path, now=clock.time(), boot_id="bench")
        recorder, sensor, first = Recorder(), StepSensor(), FirstAbove()
        service = build(config, buffer, clock, transports=[recorder])
        sampler = Sampler([SensorSlot(sensor, interval)], buffer, clock, listeners=[first, service.listener])
        scheduler = Scheduler({"jobs": 4})
        sampler.schedule(scheduler, "jobs")
        for job, seconds, job_id in service.jobs():
            scheduler.add(job, seconds, id=job_id, pool="jobs")
        scheduler.start()
        try:
            time.sleep(2 * interval + random.uniform(0, interval))  # settle, then cross at a random phase
            sensor.cross_at = crossed = time.time()
            if not recorder.done.wait(timeout=hold + 4 * interval + 10):
                sys.exit("no SMS within the time limit")
        finally:
            scheduler.shutdown(wait=True)
            service.close()
            buffer.close()
    return first.at - crossed, recorder.handed[0] - (crossed + hold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0, help="sampling interval, s")
    parser.add_argument("--for", dest="hold", type=float, default=2.0, help="the rule's for-duration, s")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; sampling every {args.interval:g} s, "
          f"for-duration {args.hold:g} s, {args.trials} trials")
    results = [trial(args.interval, args.hold) for _ in range(args.trials)]
    baseline = [b for b, _ in results]
    latency = [a for _, a in results]
    target = args.interval + 1.0
    print(f"  baseline (crossing -> first reading above)      mean {statistics.mean(baseline):5.2f} s   "
          f"max {max(baseline):5.2f} s")
    print(f"  alert latency (crossing + for -> SMS handed)    mean {statistics.mean(latency):5.2f} s   "
          f"max {max(latency):5.2f} s")
    print(f"  added by the alert machinery                    mean "
          f"{statistics.mean(a - b for b, a in results):5.2f} s")
    print(f"  target: max latency <= interval + 1 s = {target:g} s: {'ok' if max(latency) <= target else 'MISSED'}")


if __name__ == "__main__":
    main()
