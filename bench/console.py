"""The console's fleet view at 5,000 gateways, beside a plain SELECT of the same rows, measured in the same run.

The database holds N gateways (default 5,000) in gateway_status, each with 24 hours of gateway_hours (the 24 h
coverage), 20 readings (the clock of the newest) and, one in ten, alert events. Measured, each as the median of
several runs:

1. baseline: ``SELECT * FROM gateway_status ORDER BY gateway_id``, fetched by psycopg (the rows alone);
2. ``queries.fleet`` in PostgreSQL through psycopg (the summary's one query: status, clock, alerts, coverage);
3. ``GET /v1/fleet`` through `edge dc api` (a subprocess) read by httpx (query, token scope, JSON);
4. the fleet view in Debian's headless chromium: from loading /console/ (token in the tab) until the first page of
   the table is drawn; then one filter keystroke's re-render over all the rows (the page's own clock).

Usage:  .venv/bin/python bench/console.py [--gateways 5000] [--runs 7]
Needs Debian's postgresql, chromium and chromium-driver (scripts/test installs them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from services import PostgresServer, _postgres_bin, free_port  # noqa: E402  (test services, usable outside pytest)

from edge.datacenter import queries, tokens  # noqa: E402
from edge.datacenter.store import migrate  # noqa: E402


def fill(conn, count: int) -> None:
    conn.execute("""
        INSERT INTO gateway_status (gateway_id, name, state, state_since, last_seen, backlog, version)
        SELECT 'gh-' || lpad(g::text, 5, '0'), 'گلخانه ' || g, CASE WHEN g %% 7 = 0 THEN 'offline' ELSE 'online' END,
               now(), now() - g * interval '13 seconds', g * 37 %% 1000, '0.1.0'
        FROM generate_series(1, %(n)s) AS g""", {"n": count})
    conn.execute("""
        INSERT INTO gateway_hours (gateway_id, hour, readings, good)
        SELECT 'gh-' || lpad(g::text, 5, '0'), date_bin('1 hour', now(), '2000-01-01Z') - h * interval '1 hour',
               360 - (g %% 5) * 10, 360 - (g %% 5) * 10
        FROM generate_series(1, %(n)s) AS g, generate_series(0, 24) AS h""", {"n": count})
    conn.execute("""
        INSERT INTO readings (gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, clock)
        SELECT 'gh-' || lpad(g::text, 5, '0'), 1, s, now() - (20 - s) * interval '10 seconds', 'air',
               'temperature', 20, '°C', 'good', 1
        FROM generate_series(1, %(n)s) AS g, generate_series(1, 20) AS s""", {"n": count})
    conn.execute("""
        INSERT INTO events (gateway_id, epoch, seq, ts, kind, source, data)
        SELECT 'gh-' || lpad(g::text, 5, '0'), 1, 1, now() - interval '1 hour', 'alert.fired', 'too-cold:air', '{}'
        FROM generate_series(10, %(n)s, 10) AS g""", {"n": count})
    conn.execute("ANALYZE")
    conn.commit()


def median_ms(work, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def in_browser(url: str, secret: str, runs: int, expected_rows: int) -> tuple[float, float]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from browser import Browser

    browser = Browser()
    try:
        loads, filters = [], []
        for _ in range(runs):
            browser.open(f"{url}/console/static/favicon.svg", size="desktop")
            browser.driver.execute_script("sessionStorage.setItem('edge-console-token', arguments[0]);"
                                          "localStorage.setItem('edge-console-lang', 'en')", secret)
            start = time.perf_counter()
            browser.driver.get(f"{url}/console/#/")
            WebDriverWait(browser.driver, 60, poll_frequency=0.005).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, "#fleet-rows tr")) == 50)
            loads.append((time.perf_counter() - start) * 1000)
            shown = browser.driver.execute_script("return state.fleet.length")
            assert shown == expected_rows, shown
            filters.append(browser.driver.execute_script(
                "const t = performance.now(); document.getElementById('filter').value = 'gh-0004';"
                "state.page = 0; renderFleet(); return performance.now() - t;"))
        return statistics.median(loads), statistics.median(filters)
    finally:
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    server = PostgresServer(_postgres_bin()).start()
    api = None
    try:
        database = server.create_database()
        with database.connect() as conn:
            migrate(conn)
            fill(conn, args.gateways)
            secret = tokens.create(conn, "bench", ["gh-*"])
            conn.commit()
        config = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-console-{os.getpid()}.yaml"
        config.write_text(f"mqtt: {{url: 'mqtt://127.0.0.1:1'}}\ndatabase: {{url: '{database.url}'}}\n")
        port = free_port()
        api = subprocess.Popen([sys.executable, "-m", "edge", "dc", "api", "-c", str(config), "--listen",
                                f"127.0.0.1:{port}", "--log-level", "warning"], stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {secret}"}

        with database.connect() as conn:
            def plain():
                conn.execute("SELECT * FROM gateway_status ORDER BY gateway_id").fetchall()

            def summary_query():
                rows = list(queries.fleet(conn))
                assert len(rows) == args.gateways

            median_ms(plain, 2)
            baseline = median_ms(plain, args.runs)
            query = median_ms(summary_query, args.runs)
        with httpx.Client(headers=headers, timeout=60) as client:
            def endpoint():
                answer = client.get(f"{url}/v1/fleet")
                assert answer.status_code == 200 and len(answer.json()["gateways"]) == args.gateways
            median_ms(endpoint, 2)
            api_ms = median_ms(endpoint, args.runs)
            size = len(client.get(f"{url}/v1/fleet").content)
        page_ms, filter_ms = in_browser(url, secret, max(3, args.runs // 2), args.gateways)

        print(f"fleet view at {args.gateways:,} gateways (medians of {args.runs} runs; a busy shared machine)")
        print(f"  baseline: SELECT * FROM gateway_status        {baseline:8.1f} ms    1.0x")
        print(f"  summary query (queries.fleet)                 {query:8.1f} ms  {query / baseline:5.1f}x")
        print(f"  {'GET /v1/fleet (%s KiB JSON)' % f'{size / 1024:,.0f}':46}{api_ms:8.1f} ms  {api_ms / baseline:5.1f}x")
        print(f"  page: load to first 50 rows drawn (chromium)  {page_ms:8.1f} ms  {page_ms / baseline:5.1f}x")
        print(f"  page: one filter keystroke, re-rendered       {filter_ms:8.1f} ms  {filter_ms / baseline:5.1f}x")
    finally:
        if api is not None:
            api.terminate()
            api.wait(15)
        server.stop()


if __name__ == "__main__":
    main()
