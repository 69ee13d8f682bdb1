"""The greenhouse page: its weight, its time to first render on a slow connection, and what `edge web` costs in RAM.

The simulated demo greenhouse with a full day of readings in its buffer (so every chart is drawn from 288 buckets),
`edge run` sampling beside it, and `edge web` serving the page. Measured in one run:

- **weight**: bytes of the page's HTML, JS and CSS as served (gzip, which every browser asks for) and raw.
- **first render** on a throttled connection (Chrome DevTools network emulation through Selenium: ``--kbps``,
  ``--latency``; cache disabled): first contentful paint and the load event, median of ``--loads`` loads, beside the
  same for a **baseline** page (one line of Persian text, no assets) served by the standard library in the same run.
- **RSS** of the `edge web` process after serving the loads, beside a **baseline** bare interpreter
  (``python -c 'import time; time.sleep(...)'``): the difference is what the page adds to the gateway. With
  ``MALLOC_ARENA_MAX=2``, as the unit runs it (``--default-malloc``: glibc's default).

Usage:  .venv/bin/python bench/web.py [--loads 5] [--kbps 400] [--latency 300] [--default-malloc]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

BASELINE = '<!doctype html><html lang="fa" dir="rtl"><head><meta charset="utf-8"><title>گلخانه</title></head>' \
           "<body><p>گلخانه نمونه: دما ۱۶°C</p></body></html>"


def fill_a_day(config_path: Path) -> int:
    """A day of readings, as the demo's sensors take them, ending now: the charts are full."""
    from edge.gateway.buffer import Buffer, NewReading
    from edge.gateway.config import load_config

    from edge.gateway.hardware.base import UNITS

    config = load_config(config_path, env={})
    now = time.time()
    buffer, _ = Buffer.open(config.buffer.path, now=now - 86400, boot_id="bench")
    count = 0
    try:
        for sensor in config.sensors:
            rows = []
            ts = now - 86400
            while ts < now - 60:
                for quantity in sensor.quantities():
                    unit = UNITS[quantity]
                    phase = (ts % 86400) / 86400
                    rows.append(NewReading(ts, sensor.id, quantity, 20 + 8 * abs(phase - 0.5), unit))
                ts += sensor.interval
            for start in range(0, len(rows), 5000):
                buffer.append_readings(rows[start:start + 5000])
            count += len(rows)
        buffer.mark_clean_stop(now - 60)
    finally:
        buffer.close()
    return count


def sizes(url: str) -> dict[str, tuple[int, int]]:
    """{resource: (raw bytes, gzip bytes as served)}."""
    page = urllib.request.urlopen(url, timeout=30).read()
    found = {"html": page}
    for asset in re.findall(rb'(?:href|src)="(/static/[^"?]+)', page):
        found[asset.decode().rsplit("/", 1)[1]] = urllib.request.urlopen(url.rstrip("/") + asset.decode(),
                                                                          timeout=30).read()
    result = {}
    for name, body in found.items():
        request = urllib.request.Request(url if name == "html" else url.rstrip("/") + "/static/" + name,
                                         headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            served = answer.read()
            compressed = len(served) if answer.headers.get("Content-Encoding") == "gzip" else \
                len(gzip.compress(body, 6))
        result[name] = (len(body), compressed)
    return result


def render_times(driver, url: str, loads: int, kbps: int, latency: int, cold: bool = True) -> tuple[float, float]:
    """Median (first contentful paint, load event) in ms over ``loads`` loads on the throttled connection: cold
    (cache off: a first visit), or warm (the CSS and script cached, as the page's own 30 s reloads find them)."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": cold})
    if not cold:
        driver.get(url)
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": latency, "downloadThroughput": kbps * 1000 / 8,
        "uploadThroughput": kbps * 1000 / 8})
    paints, loaded = [], []
    for _ in range(loads):
        driver.get("about:blank")
        driver.get(url)
        deadline = time.monotonic() + 30
        while True:  # the first paint can come after the load event: wait for it
            timing = driver.execute_script(
                "const p = performance.getEntriesByName('first-contentful-paint')[0];"
                "const n = performance.getEntriesByType('navigation')[0];"
                "return [p ? p.startTime : null, n.loadEventEnd];")
            if timing[0] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if timing[0] is not None:
            paints.append(timing[0])
        loaded.append(timing[1])
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    return (statistics.median(paints) if paints else float("nan")), statistics.median(loaded)


def rss_of(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--kbps", type=int, default=400, help="throttled bandwidth, kbit/s")
    parser.add_argument("--latency", type=int, default=300, help="added round-trip latency, ms")
    parser.add_argument("--default-malloc", action="store_true",
                        help="glibc's default arenas (one per thread), not MALLOC_ARENA_MAX=2 as the unit sets")
    args = parser.parse_args()

    from browser import Browser, static_page
    from test_web_browser import WebProcess

    if not args.default_malloc:
        os.environ["MALLOC_ARENA_MAX"] = "2"  # as systemd/edge-web.service runs it (inherited by every process below)

    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        demo = (ROOT / "edge" / "gateway" / "demo.yaml").read_text()
        config = tmp / "gateway.yaml"
        config.write_text(demo.replace("./var/", f"{tmp}/").replace("127.0.0.1:8090", "127.0.0.1:0")
                          .replace("${EDGE_MQTT_URL:-}", "\"\""))
        started = time.monotonic()
        rows = fill_a_day(config)
        print(f"buffer: {rows:,} readings over the last 24 h ({time.monotonic() - started:.1f} s to write)")
        daemon = subprocess.Popen([sys.executable, "-m", "edge", "run", "-c", str(config)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        web = WebProcess(config)
        idle_rss = rss_of(web.proc.pid)
        bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        baseline = contextlib.ExitStack()
        baseline_url = baseline.enter_context(static_page(BASELINE))
        browser = Browser()
        try:
            time.sleep(2)  # the daemon's first round, so the page shows it running
            weight = sizes(web.url)
            raw, packed = sum(r for r, _ in weight.values()), sum(g for _, g in weight.values())
            print("\npage weight (as served: gzip / raw bytes)")
            for name, (r, g) in weight.items():
                print(f"  {name:<10} {g:>7,} / {r:>7,}")
            print(f"  {'total':<10} {packed:>7,} / {raw:>7,}   (baseline page {len(BASELINE.encode()):,} raw)")

            browser.driver.set_window_size(360, 740)
            base_paint, base_load = render_times(browser.driver, baseline_url, args.loads, args.kbps, args.latency)
            page_paint, page_load = render_times(browser.driver, web.url, args.loads, args.kbps, args.latency)
            print(f"\nfirst render at {args.kbps} kbit/s, {args.latency} ms latency, cache off (median of "
                  f"{args.loads} loads)")
            print(f"  baseline page   first paint {base_paint:7.0f} ms   load {base_load:7.0f} ms")
            print(f"  greenhouse page first paint {page_paint:7.0f} ms   load {page_load:7.0f} ms   "
                  f"ratio {page_paint / base_paint:.2f}x / {page_load / base_load:.2f}x")
            warm_paint, warm_load = render_times(browser.driver, web.url, args.loads, args.kbps, args.latency,
                                                 cold=False)
            print(f"  greenhouse page, CSS and JS cached (its reloads): first paint {warm_paint:7.0f} ms   "
                  f"load {warm_load:7.0f} ms   ratio {warm_paint / base_paint:.2f}x / {warm_load / base_load:.2f}x")

            for _ in range(20):  # the page as a few phones refreshing it would
                urllib.request.urlopen(web.url, timeout=30).read()
            web_rss, bare_rss, daemon_rss = rss_of(web.proc.pid), rss_of(bare.pid), rss_of(daemon.pid)
            print("\nRSS after serving the page")
            print(f"  bare interpreter (baseline) {bare_rss / 1e6:6.1f} MB")
            print(f"  edge web, before any page   {idle_rss / 1e6:6.1f} MB")
            print(f"  edge web                    {web_rss / 1e6:6.1f} MB   (+{(web_rss - bare_rss) / 1e6:.1f} MB, "
                  f"{web_rss / bare_rss:.1f}x the bare interpreter)")
            print(f"  edge run (for scale)        {daemon_rss / 1e6:6.1f} MB")
        finally:
            browser.close()
            baseline.close()
            bare.kill()
            web.stop()
            daemon.terminate()
            daemon.wait(timeout=30)


if __name__ == "__main__":
    main()
