"""The history API cannot be broken or tied up: whatever the database holds it never answers 500, and no request
(long ranges, huge exports, clients that give up or disconnect) keeps the database busy or the API from answering.

The database is written directly, as an older collector (that believed everything) might have: readings in 32 BC
and AD 33658, 1970 and 2100 marked clock-synced, values of 1e308. `edge dc api` runs as a subprocess with small
limits (config written below), in front of the test PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import os
import threading
import time
from datetime import datetime, timezone

import httpx
import pytest
from click.testing import CliRunner

from conftest import wait_until
from edge.cli import main
from edge.datacenter import queries
from edge.datacenter.store import migrate
from test_history import Api

pytestmark = pytest.mark.slow

UTC = timezone.utc
LIAR, SPAN, DENSE = "gh-liar", "gh-span", "gh-dense"
DENSE_ROWS = 200_000
MAX_ROWS = 50_000
CONFIG = """\
mqtt: {{url: "mqtt://127.0.0.1:1"}}
database: {{url: "{database}"}}
api: {{max_rows: {max_rows}, statement_timeout: 5s, max_exports: 4}}
"""

#: Rows no collector of this version stores: what an older one took at the gateway's word.
LIES = [
    ("0032-06-01 12:00:00+00 BC", 20.0, 1),
    ("33658-01-01 00:00:00+00", 20.0, 1),
    ("1970-01-01 00:00:00+00", 20.0, 1),
    ("2100-01-01 00:00:00+00", 20.0, 1),
    ("2025-07-15 06:00:00+00", 1e308, 1),
    ("2025-07-15 06:00:10+00", 1e308, 1),
    ("2025-07-15 06:00:20+00", -1e308, 1),
    ("2025-07-15 06:00:30+00", 21.5, 1),
]


def _store_lies(conn) -> None:
    conn.execute("INSERT INTO gateway_status (gateway_id, state, state_since, last_seen) VALUES "
                 "(%s, 'online', now(), now()), (%s, 'online', now(), now()), (%s, 'online', now(), now())",
                 (LIAR, SPAN, DENSE))
    for seq, (ts, value, clock) in enumerate(LIES, 1):
        conn.execute("INSERT INTO readings (gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, "
                     "clock) VALUES (%s, 1, %s, %s, 'air', 'temperature', %s, '°C', 'good', %s)",
                     (LIAR, seq, ts, value, clock))
    conn.execute("INSERT INTO events (gateway_id, epoch, seq, ts, kind, source, data) VALUES "
                 "(%s, 1, 1, '0032-06-01 00:00:00+00 BC', 'daemon.start', 'daemon', "
                 "'{\"intervals\": {\"air\": 1e-300}}'),"
                 "(%s, 1, 2, '33658-01-01 00:00:00+00', 'alert.fired', 'alerts', '{}'),"
                 "(%s, 1, 3, '2025-07-15 06:00:00+00', 'actuator.change', 'pump', '{\"value\": 1e308}')",
                 (LIAR, LIAR, LIAR))
    # one reading a year from 1970 to 2100, and one dense day
    conn.execute("INSERT INTO readings (gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, clock) "
                 "SELECT %s, 1, y, make_timestamptz(y, 3, 1, 12, 0, 0, 'UTC'), 'air', 'temperature', 20, '°C', "
                 "'good', 1 FROM generate_series(1970, 2100) AS y", (SPAN,))
    conn.execute("INSERT INTO readings (gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, clock) "
                 "SELECT %s, 2, n, '2025-07-15'::timestamptz + n * interval '10 s', 'air', 'temperature', 20, '°C', "
                 "'good', 1 FROM generate_series(1, 8640) AS n", (SPAN,))
    conn.execute("INSERT INTO readings (gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, clock) "
                 "SELECT %s, 1, n, '2025-07-15'::timestamptz + n * interval '1 s', 'air', 'temperature', "
                 "20 + n %% 50 / 10.0, '°C', 'good', 1 FROM generate_series(1, %s) AS n", (DENSE, DENSE_ROWS))
    conn.execute("ANALYZE readings")


@pytest.fixture(scope="module")
def api(tmp_path_factory, postgres_server):
    tmp = tmp_path_factory.mktemp("limits")
    database = postgres_server.create_database()
    with database.connect() as conn:
        migrate(conn)
        _store_lies(conn)
    config = tmp / "dc.yaml"
    config.write_text(CONFIG.format(database=database.url, max_rows=MAX_ROWS))
    running = Api({**os.environ, "EDGE_DATABASE_URL": database.url}, tmp, str(config))
    running.database = database
    running.secret = running.token("all", "gh-*")
    yield running
    running.stop()


def get(api, path: str, **kwargs) -> httpx.Response:
    return api.get(path, api.secret, **kwargs)


def history_backends(api) -> list[tuple]:
    """The API's sessions in PostgreSQL that are doing something (running, or waiting for a lock)."""
    with api.database.connect() as conn:
        return conn.execute("SELECT pid, state, wait_event_type, left(query, 60) FROM pg_stat_activity "
                            "WHERE application_name = 'edge-history' AND state <> 'idle'").fetchall()


# ------------------------------------------------------------------------------------------------ never a 500

NARROW = "from=2025-07-14&to=2025-07-16"
WIDE = "from=2000-01-01&to=2009-12-31"  # within max_range, still full of lies (year 1, 33658 clamped around it)
PATHS = ["/v1/gateways", f"/v1/gateways/{LIAR}", f"/v1/gateways/{LIAR}/sensors"] + [
    f"/v1/gateways/{LIAR}/{what}?{window}{extra}"
    for window in (NARROW, WIDE, "from=0001-01-01&to=0010-01-01", "from=9990-01-01&to=9999-12-31T23:59:59.999")
    for what, extra in [("readings", ""), ("readings", "&format=ndjson"), ("readings", "&format=json"),
                        ("readings", "&every=1m"), ("readings", "&every=1h"), ("readings", "&every=1d&format=json"),
                        ("coverage", ""), ("coverage", "&format=json"), ("events", ""), ("events", "&format=json")]]


@pytest.mark.parametrize("path", PATHS)
def test_whatever_an_older_collector_stored_the_api_never_answers_500(api, path):
    response = get(api, path)
    assert response.status_code < 500, response.text
    if response.status_code != 200:  # a bound (a coverage of ten years), said as a problem
        assert response.headers["content-type"] == "application/problem+json" and response.json()["detail"]
    elif "format=json" in path or "/readings" not in path and "/coverage" not in path and "/events" not in path:
        response.json()  # complete, valid JSON


def test_the_lies_are_exported_as_stored_and_aggregates_use_only_believable_values(api):
    sensors = get(api, f"/v1/gateways/{LIAR}/sensors").json()
    assert sensors == [{"sensor": "air", "name": None, "quantity": "temperature", "unit": "°C",
                        "first": "0001-01-01T00:00:00.000Z", "last": "9999-12-30T00:00:00.000Z"}]
    raw = list(csv.DictReader(io.StringIO(get(api, f"/v1/gateways/{LIAR}/readings?{NARROW}").text)))
    assert [r["value"] for r in raw] == ["1e+308", "1e+308", "-1e+308", "21.5"]
    hourly = get(api, f"/v1/gateways/{LIAR}/readings?{NARROW}&every=1h&format=json").json()
    assert [(h["count"], h["mean"]) for h in hourly] == [(1, 21.5)]
    years = get(api, f"/v1/gateways/{LIAR}/readings?from=1960-01-01&to=1970-01-02&format=json").json()
    assert [r["ts"] for r in years] == ["1970-01-01T00:00:00.000Z"]


# ------------------------------------------------------------------------------------------------------ bounds


def test_a_range_longer_than_max_range_is_a_400_naming_the_limit(api):
    for what in ("readings", "events", "coverage"):
        response = get(api, f"/v1/gateways/{SPAN}/{what}?from=1970-01-01&to=2100-01-01")
        assert response.status_code == 400
        problem = response.json()
        assert problem["type"].endswith("/range-too-long")
        assert problem["detail"] == ("from 1970-01-01T00:00:00.000Z to 2100-01-01T00:00:00.000Z spans 47,482 days; one "
                                     "request may span at most 3,660 days (api.max_range): split the range")


def test_a_coverage_larger_than_max_rows_is_a_413_naming_the_limit(api):
    response = get(api, f"/v1/gateways/{SPAN}/coverage?from=2015-01-01&to=2024-12-31")
    assert response.status_code == 413 and response.headers["content-type"] == "application/problem+json"
    assert f"at most {MAX_ROWS:,} rows (api.max_rows)" in response.json()["detail"]


def test_an_export_reads_only_the_days_that_hold_data(api):
    start, end = datetime(2015, 1, 1, tzinfo=UTC), datetime(2024, 12, 31, tzinfo=UTC)
    export = queries.Export(queries.RAW, start, end, {"gateway": SPAN, "sensors": ["air"],
                                                      "quantities": ["temperature"]})
    with api.database.connect() as conn:
        days = [w["start"].date() for w in export.windows(queries._probe(conn, export))]
    assert days == [datetime(year, 3, 1).date() for year in range(2015, 2025)]  # 10 queries, not 3,652
    rows = get(api, f"/v1/gateways/{SPAN}/readings?from=2015-01-01&to=2024-12-31&format=json").json()
    assert [r["ts"][:10] for r in rows] == [f"{year}-03-01" for year in range(2015, 2025)]


def test_an_export_past_max_rows_is_cut_and_the_pull_resumes_it_to_the_last_row(api, tmp_path):
    out = tmp_path / "dense.csv"
    result = CliRunner(env=api.env).invoke(main, [
        "history", "pull", "--server", api.url, "--token-file", api.token_file(api.secret), "--gateway", DENSE,
        "--from", "2025-07-15", "--to", "2025-07-18", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [int(r["seq"]) for r in rows] == list(range(1, DENSE_ROWS + 1))
    assert "api.max_rows" in api.log.read_text()  # it was cut (several times) on the way


def test_a_query_past_statement_timeout_is_a_503_problem(api):
    with api.database.connect() as locker, locker.transaction():
        locker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")  # every read of readings waits
        began = time.monotonic()
        response = get(api, f"/v1/gateways/{DENSE}/readings?{NARROW}")
    assert response.status_code == 503 and 4 < time.monotonic() - began < 20
    assert response.json()["type"].endswith("/query-timeout") and response.headers["retry-after"] == "30"
    assert "api.statement_timeout" in response.json()["detail"]


# ------------------------------------------------------------------------------------------------ cancellation


def give_up(api, path: str, after: float) -> None:
    """A client that waits ``after`` seconds for an answer, then gives up (closes its connection)."""
    try:
        get(api, path, timeout=after)
    except httpx.TimeoutException:
        pass


def test_clients_that_give_up_on_waiting_exports_leave_nothing_running_and_the_api_answers(api):
    """Finding 8: 50 clients ask for exports the database cannot serve yet, then give up. Meanwhile and after,
    /v1/gateways answers at once, and none of that work stays in PostgreSQL."""
    paths = [f"/v1/gateways/{DENSE}/readings?{NARROW}", f"/v1/gateways/{SPAN}/readings?{WIDE}&every=1d",
             f"/v1/gateways/{LIAR}/coverage?{NARROW}", f"/v1/gateways/{LIAR}/sensors"]
    with api.database.connect() as locker, locker.transaction():
        locker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
        clients = [threading.Thread(target=give_up, args=(api, paths[n % len(paths)], 3.0)) for n in range(50)]
        for client in clients:
            client.start()
        wait_until(lambda: len(history_backends(api)) == 4, 10, "max_exports requests waiting on the lock")
        began = time.monotonic()
        assert get(api, "/v1/gateways", timeout=5).status_code == 200
        assert time.monotonic() - began < 3, "the gateway list waited for the exports"
        for client in clients:
            client.join(15)
        wait_until(lambda: history_backends(api) == [], 10, "the given-up queries to be cancelled")
        began = time.monotonic()
        assert get(api, "/v1/gateways", timeout=5).status_code == 200
        assert time.monotonic() - began < 3
    assert get(api, f"/v1/gateways/{LIAR}/readings?{NARROW}").status_code == 200


def test_clients_that_disconnect_mid_export_leave_no_query_running(api):
    def read_a_little_then_leave() -> None:
        with httpx.Client(timeout=30) as client, client.stream(
                "GET", f"{api.url}/v1/gateways/{DENSE}/readings?{NARROW}&format=ndjson",
                headers={"Authorization": f"Bearer {api.secret}"}) as response:
            assert response.status_code == 200
            next(response.iter_bytes())  # the first block, then the connection closes

    clients = [threading.Thread(target=read_a_little_then_leave) for _ in range(20)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(30)
    wait_until(lambda: history_backends(api) == [], 10, "the abandoned exports' queries to end")
    began = time.monotonic()
    assert get(api, "/v1/gateways", timeout=5).status_code == 200
    assert time.monotonic() - began < 3
