"""Benchmarks of the gateway foundation, each printed beside a baseline measured in the same run.

1. The daemon's footprint: `edge run` on a simulated greenhouse with N sensors (default 40 at 10 s) for S seconds
   (default 60): peak RSS and CPU share of one core, against a bare Python interpreter sleeping for the same time.
   Targets: RSS <= 40 MB, CPU <= 1 % (issue 19; were 60 MB and 2 %).
   Also the time from `edge run` to the first reading stored (polled in the buffer), beside the time a bare
   interpreter takes to start and exit.
   The daemon runs as installed: the project's modules compiled to bytecode first (pip compiles a wheel's modules
   when it installs them; a checkout run with PYTHONDONTWRITEBYTECODE=1 compiles every module at each start, about
   2 MB more and a slower start), into ``edge/**/__pycache__`` (ignored by git). ``--source-only`` removes that
   bytecode and measures without it.
2. Buffer append throughput: `Buffer.append_readings` in rounds of N readings (one transaction each) against raw
   `sqlite3.executemany` into the same schema with the same pragmas and the same transaction size.
   Target: >= 0.5x raw.

Usage:  .venv/bin/python bench/run.py [--seconds 60] [--sensors 40] [--rows 200000] [--source-only]
"""

from __future__ import annotations

import argparse
import compileall
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from edge.gateway.buffer import MIGRATIONS, Buffer, NewReading, _connect


def gateway_config(directory: Path, sensors: int) -> Path:
    lines = ["gateway: {id: bench}", "hardware: {backend: simulated}", "clock: {trust: synced}",
             f"buffer: {{path: {directory / 'buffer.db'}}}", "log: {level: warning}", "sensors:"]
    for i in range(sensors):
        lines += [f"  - id: s{i:02d}", "    type: simulated", "    measures: [temperature]", "    interval: 10s"]
    path = directory / "bench.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def watch(cmd: list[str], seconds: float) -> tuple[float, float]:
    """Run ``cmd`` for ``seconds``; return (peak RSS in MB, CPU share of one core in %) over the whole run."""
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    began = time.monotonic()
    cpu = proc.cpu_times()
    try:
        while proc.poll() is None and time.monotonic() - began < seconds + 30:
            try:
                peak = max(peak, proc.memory_info().rss)
                cpu = proc.cpu_times()
            except psutil.NoSuchProcess:
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.terminate()
        err = proc.communicate()[1]
    wall = time.monotonic() - began
    if proc.returncode not in (0, -15):
        sys.exit(f"{cmd[:4]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return peak / 2**20, 100 * (cpu.user + cpu.system) / wall


def first_reading(sensors: int) -> tuple[float, float]:
    """(seconds from `edge run` to the first reading in its buffer, seconds a bare interpreter takes to run)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = gateway_config(Path(tmp), sensors)
        path = Path(tmp) / "buffer.db"
        began = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "-c", str(config), "--for", "30s"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while time.monotonic() - began < 60:
                if path.exists():
                    try:
                        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
                        try:
                            if conn.execute("SELECT 1 FROM readings LIMIT 1").fetchone():
                                break
                        finally:
                            conn.close()
                    except sqlite3.Error:
                        pass
                time.sleep(0.01)
            took = time.monotonic() - began
        finally:
            proc.terminate()
            proc.wait(30)
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return took, time.monotonic() - began


def compiled() -> None:
    """The project's modules compiled to bytecode next to them (``__pycache__``, ignored by git), as a wheel install
    has them: the standard library and the installed packages have theirs already."""
    package = Path(__file__).resolve().parent.parent / "edge"
    if not compileall.compile_dir(package, quiet=1):
        sys.exit(f"cannot compile {package}")


def bench_daemon(seconds: float, sensors: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = gateway_config(Path(tmp), sensors)
        rss, cpu = watch([sys.executable, "-m", "edge", "run", "-c", str(config), "--for", f"{int(seconds)}s"],
                         seconds)
        buffer = Buffer.reader(Path(tmp) / "buffer.db")
        stored = buffer.counts()["total"]
        buffer.close()
    base_rss, base_cpu = watch([sys.executable, "-c", f"import time; time.sleep({seconds})"], seconds)
    print(f"daemon, {sensors} simulated sensors at 10s for {seconds:g}s ({stored} readings stored):")
    print(f"  peak RSS   {rss:6.1f} MB   bare python {base_rss:5.1f} MB   ratio {rss / base_rss:4.1f}x"
          f"   target <= 40 MB: {'ok' if rss <= 40 else 'MISSED'}")
    print(f"  CPU        {cpu:6.2f} %    bare python {base_cpu:5.2f} %                 "
          f"   target <= 1 % of one core: {'ok' if cpu <= 1 else 'MISSED'}")
    took, bare = first_reading(sensors)
    print(f"  edge run to the first stored reading {took:5.2f} s   bare python start and exit {bare:5.2f} s")


def rows(n: int) -> list[NewReading]:
    return [NewReading(ts=1.7e9 + i, sensor=f"s{i % 40:02d}", quantity="temperature", value=20.0 + (i % 97) / 10,
                       unit="°C") for i in range(n)]


def bench_append(total: int, round_size: int) -> None:
    data = rows(total)
    batches = [data[i:i + round_size] for i in range(0, total, round_size)]
    with tempfile.TemporaryDirectory() as tmp:
        buffer, _ = Buffer.open(Path(tmp) / "buffer.db", now=time.time(), boot_id="bench")
        began = time.perf_counter()
        for batch in batches:
            buffer.append_readings(batch)
        ours = total / (time.perf_counter() - began)
        buffer.close()

        conn = _connect(Path(tmp) / "raw.db")  # same pragmas: WAL, synchronous=FULL
        for statement in filter(str.strip, MIGRATIONS[0][2].split(";")):
            conn.execute(statement)
        seq = 0
        began = time.perf_counter()
        for batch in batches:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO readings (epoch, seq, ts, sensor, quantity, value, unit, quality, reason, clock, "
                "boot_id, mono) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(1, seq + i + 1, r.ts, r.sensor, r.quantity, r.value, r.unit, r.quality, r.reason, r.clock,
                  r.boot_id, r.mono) for i, r in enumerate(batch)])
            conn.execute("COMMIT")
            seq += len(batch)
        raw = total / (time.perf_counter() - began)
        conn.close()
    print(f"buffer append, {total} readings in rounds of {round_size} (one transaction each, WAL, synchronous=FULL):")
    print(f"  Buffer.append_readings {ours:10,.0f} readings/s   raw executemany {raw:10,.0f} readings/s   "
          f"ratio {ours / raw:4.2f}x   target >= 0.5x: {'ok' if ours / raw >= 0.5 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--sensors", type=int, default=40)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--source-only", action="store_true",
                        help="run the daemon without compiled bytecode (as a checkout under PYTHONDONTWRITEBYTECODE)")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, sqlite {sqlite3.sqlite_version}, "
          f"load average {os.getloadavg()[0]:.1f}")
    bench_append(args.rows, args.sensors)
    if args.source_only:
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # and none written: each start compiles from source
        for stale in (Path(__file__).resolve().parent.parent / "edge").rglob("__pycache__"):
            for pyc in stale.glob("*.pyc"):
                pyc.unlink()
    else:
        compiled()
    print("the project's modules", "from source (no bytecode)" if args.source_only else "compiled to bytecode first")
    bench_daemon(args.seconds, args.sensors)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
