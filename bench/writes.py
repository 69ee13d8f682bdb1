"""How much the gateway writes to its SD card per hour at the demo load, beside the size of the readings themselves.

Runs `edge run -c config/demo.yaml` (5 simulated sensors, 7 quantities, at 10 s to 1 min; offline: no broker) for
a few minutes in a scratch directory, and reads the daemon's /proc/<pid>/io over a steady-state window (after a
warm-up, before the stop):

- ``write_bytes - cancelled_write_bytes``: what the process made the kernel write to the file system (SQLite's WAL
  appends, its checkpoints into the database file, the journald socket does not count). This is the figure.
- the readings stored in the same window, written out as `edge readings --format csv` prints them: the bytes of the
  information itself (the baseline), and the ratio of the two (write amplification);
- the growth of the database in use (pages, whatever is still in the WAL included): what the disk budget and the
  retention have to hold;
- with strace available and permitted (root), the fsync calls in the window: each one is also an ext4 journal commit
  (a few 4 KiB blocks of metadata) that /proc/<pid>/io does not count; and the bytes written per fsync (about one
  fsync per commit of the buffer: the commit window's rounds, an event, a checkpoint);
- the commit window the run used (``buffer.commit_every``, from the config or ``--commit-every``): what a power cut
  can lose;
- the baseline written for real in the same run by a child process: the same readings as CSV, appended to a file
  and fsynced once per commit window (once per 10 s round without a window), an hour's worth: the least a
  durable log of them can cost.

Usage:  .venv/bin/python bench/writes.py [--minutes 3] [--warmup 20] [--dir /var/tmp] [--commit-every 1m]
The scratch directory must be on a real disk (not tmpfs, whose writes are not counted): default /var/tmp.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo.yaml"


def proc_io(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        values[key] = int(value)
    return values


def written(pid: int) -> int:
    counters = proc_io(pid)
    return counters["write_bytes"] - counters["cancelled_write_bytes"]


def stored_bytes(buffer_path: Path) -> int:
    """The database's size in use as SQLite sees it (pages in use, WAL content included, free pages not)."""
    from edge.gateway.buffer import Buffer

    buffer = Buffer.reader(buffer_path)
    try:
        page_size, pages, free = (buffer._db.execute(f"PRAGMA {name}").fetchone()[0]
                                  for name in ("page_size", "page_count", "freelist_count"))
    finally:
        buffer.close()
    return (pages - free) * page_size


def csv_bytes(buffer_path: Path, since: float, until: float) -> tuple[int, int]:
    """(readings, bytes) of the readings taken in [since, until), as `edge readings --format csv` writes them."""
    from edge.cli import READING_COLUMNS, _iso
    from edge.gateway.buffer import Buffer

    buffer = Buffer.reader(buffer_path)
    try:
        rows = [r for r in buffer._db.query("SELECT * FROM readings WHERE ts >= ? AND ts < ?", (since, until))]
    finally:
        buffer.close()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow([_iso(row["ts"]) if c == "ts" else row[c] for c in READING_COLUMNS])
    return len(rows), len(out.getvalue().encode())


def count_fsyncs(pid: int, seconds: float) -> int | None:
    """fsync/fdatasync calls of ``pid`` (all threads) during ``seconds``, or None without strace or permission."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        tracer = subprocess.Popen([strace, "-f", "-qq", "-c", "-e", "trace=fsync,fdatasync", "-o", out.name,
                                   "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(seconds)
        tracer.send_signal(signal.SIGINT)
        _, err = tracer.communicate(timeout=30)
        summary = Path(out.name).read_text()
    if "Operation not permitted" in err.decode() or not summary.strip():
        return None
    calls = [int(m.group(1)) for m in re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?f(?:data)?sync$",
                                                   summary, re.MULTILINE)]
    return sum(calls)


BASELINE = """
import os, sys
path, appends, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
row = b"2026-11-26T10:00:00.000Z,air,temperature,21.5,\\xc2\\xb0C,good,,1\\n"
chunk = (row * (size // len(row) + 1))[:size]
with open(path, "ab") as handle:
    for _ in range(appends):
        handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
print(open("/proc/self/io").read())
"""


def csv_baseline(directory: Path, csv_per_hour: float, window: float) -> tuple[float, int]:
    """(bytes, fsyncs) an hour of the readings costs as CSV appended and fsynced once per ``window`` seconds (10 s,
    the demo's shortest round, without a window): written for real by a child process, counted by its own
    /proc/<pid>/io."""
    every = window if window > 0 else 10.0
    appends = int(3600 / every)
    out = subprocess.run([sys.executable, "-c", BASELINE, str(directory / "baseline.csv"), str(appends),
                          str(max(1, int(csv_per_hour / appends)))], capture_output=True, text=True, check=True)
    counters = dict(line.split(": ") for line in out.stdout.strip().splitlines())
    return int(counters["write_bytes"]) - int(counters["cancelled_write_bytes"]), appends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long the daemon runs (default 3)")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds left out at the start (default 20)")
    parser.add_argument("--dir", default="/var/tmp", help="where the scratch directory goes (a real disk)")
    parser.add_argument("--commit-every", default=None,
                        help="run the demo with this buffer.commit_every (e.g. 0s, 10s, 1m); default: the config's")
    args = parser.parse_args()
    total = args.minutes * 60
    window = total - args.warmup - 5  # and the last 5 s, where the daemon stops
    if window < 30:
        sys.exit("--minutes too short for the warm-up: the window must be at least 30 s")

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="edge-writes-") as tmp:
        directory = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k != "EDGE_MQTT_URL"}  # the demo offline, as shipped
        config, commit_window = demo_config(directory, args.commit_every)
        daemon = subprocess.Popen([sys.executable, "-m", "edge", "run", "-c", str(config), "--for", f"{int(total)}s"],
                                  cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            time.sleep(args.warmup)
            buffer_path = directory / "var" / "demo-buffer.db"
            begin_wall, begin_bytes, begin_db = time.time(), written(daemon.pid), stored_bytes(buffer_path)
            began = time.monotonic()
            fsyncs = count_fsyncs(daemon.pid, window)
            time.sleep(max(0.0, window - (time.monotonic() - began)))
            seconds = time.monotonic() - began
            end_wall, end_bytes, end_db = time.time(), written(daemon.pid), stored_bytes(buffer_path)
        finally:
            _, err = daemon.communicate(timeout=total + 60)
        if daemon.returncode != 0:
            sys.exit(f"edge run failed ({daemon.returncode}): {err.decode()[-2000:]}")
        readings, raw = csv_bytes(buffer_path, begin_wall, end_wall)
        per_hour = 3600 / seconds
        base_bytes, base_fsyncs = csv_baseline(directory, raw * per_hour, commit_window)

    disk = (end_bytes - begin_bytes) * per_hour
    print(f"demo load (config/demo.yaml, offline), steady state over {seconds:.0f} s of a {total:.0f} s run:")
    print(f"  commit window          buffer.commit_every {commit_window:g} s: "
          + (f"a power cut or kill -9 loses at most the last {commit_window + 5:g} s of readings (recorded at the "
             f"next start)" if commit_window else "every round committed at once: a power cut loses nothing committed"))
    print(f"  readings stored        {readings * per_hour:10.0f} per hour")
    print(f"  the readings as CSV    {raw * per_hour / 1e6:10.3f} MB/h   (baseline: the information itself)")
    print(f"  daemon write_bytes     {disk / 1e6:10.3f} MB/h   {disk / max(raw * per_hour, 1):.0f}x the baseline;"
          f" {disk * 24 / 1e6:.0f} MB/day, {disk * 24 * 365 / 1e9:.1f} GB/year")
    print(f"  database growth        {(end_db - begin_db) * per_hour / 1e6:10.3f} MB/h   (what the budget holds;"
          f" {(end_db - begin_db) * per_hour * 24 * 7 / 1e6:.0f} MB a week)")
    every = f"once per {commit_window:g} s window" if commit_window else "once per 10 s round"
    print(f"  baseline: the same readings as CSV, appended and fsynced {every}: {base_bytes / 1e6:.3f} MB/h, "
          f"{base_fsyncs} fsyncs/h   (daemon: {disk / max(base_bytes, 1):.1f}x the bytes)")
    if fsyncs is None:
        print("  fsync calls            (not counted: needs strace and root)")
    else:
        print(f"  fsync calls            {fsyncs * per_hour:10.0f} per hour   (each also an ext4 journal commit;"
              f" baseline {base_fsyncs}, {fsyncs * per_hour / max(base_fsyncs, 1):.1f}x)")
        print(f"  bytes per fsync        {disk / max(fsyncs * per_hour, 1) / 1024:10.1f} KiB      (about one fsync per "
              f"commit)")
    print(f"  targets: <= 2 MB/h {'ok' if disk <= 2e6 else 'MISSED'}; <= 200 fsyncs/h "
          f"{'ok' if fsyncs is not None and fsyncs * per_hour <= 200 else 'MISSED' if fsyncs is not None else '?'}")


def demo_config(directory: Path, commit_every: str | None) -> tuple[Path, float]:
    """The demo's config (with ``commit_every`` instead of its own, if given) in ``directory``, and the window."""
    import yaml

    from edge.durations import parse_duration_or_zero

    text = DEMO.read_text()
    if commit_every is not None:
        text = re.sub(r"(?m)^  commit_every:.*$", "", text).replace(
            "buffer:\n", f"buffer:\n  commit_every: {commit_every}\n", 1)
    path = directory / "demo.yaml"
    path.write_text(text)
    window = (yaml.safe_load(text).get("buffer") or {}).get("commit_every", 0)
    return path, float(parse_duration_or_zero(window)) if window else 0.0


if __name__ == "__main__":
    main()
