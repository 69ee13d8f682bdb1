"""The history API and `edge history`, end to end: a gateway's buffer -> its real sync -> Mosquitto -> the collector
-> PostgreSQL -> `edge dc api` (uvicorn, a subprocess on a free port) -> `edge history pull` -> a CSV file.

The truth is the gateway's own buffer: the pulled rows must be exactly its rows, in the API's order. One system is
built for the module (six hours of a small greenhouse with a sensor gap, an error and an implausible reading,
actuator changes); the tests then read it in every way an agronomist would.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

from conftest import wait_until
from dc_kit import StandInGateway, datacenter_config, reading_batch
from edge.cli import main
from edge.datacenter.collector import Collector
from edge.gateway.buffer import Buffer
from edge.gateway.clock import Clock
from edge.gateway.sync import Sync, SyncConfig
from history_kit import (GAP, HOURS, T0, Proxy, buffer_rows, greenhouse_events, greenhouse_readings,
                         hourly_aggregates, iso)
from services import Broker, free_port

try:
    import schemathesis
except ImportError:  # the fuzz test is skipped
    schemathesis = None

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DC_CONFIG = str(ROOT / "config" / "datacenter.example.yaml")
NORTH, SOUTH, NOWHERE = "gh-north-01", "gh-south-02", "gh-east-03"
FROM, TO = iso(T0.timestamp()), iso((T0 + timedelta(hours=HOURS)).timestamp())
ENDPOINTS = ["/v1/gateways", "/v1/gateways/{g}", "/v1/gateways/{g}/sensors",
             "/v1/gateways/{g}/readings?from={f}&to={t}", "/v1/gateways/{g}/events?from={f}&to={t}",
             "/v1/gateways/{g}/coverage?from={f}&to={t}"]


# ------------------------------------------------------------------------------------------------- the system


def sync_gateway(buffer_path: Path, broker: Broker) -> None:
    """The gateway's day goes through its real buffer and its real sync until every row is acknowledged."""
    buffer, _ = Buffer.open(buffer_path, now=time.time(), boot_id="boot-1")
    try:
        readings = greenhouse_readings()
        for i in range(0, len(readings), 500):  # one transaction per sampling round, roughly
            buffer.append_readings(readings[i:i + 500])
        for at, kind, source, data in greenhouse_events():
            buffer.append_event(kind, source, data, ts=at.timestamp())
        sync = Sync(SyncConfig(url=broker.url, interval="0.2s", reconnect_min="1s", reconnect_max="2s"), NORTH,
                    buffer, Clock("synced"))
        sync.start()
        try:
            wait_until(lambda: buffer.counts("readings")["pending"] == buffer.counts("events")["pending"] == 0,
                       30, "the gateway's buffer to be acknowledged")
        finally:
            sync.stop()
    finally:
        buffer.close()


def another_gateway(broker: Broker) -> None:
    south = StandInGateway(broker, SOUTH)
    try:
        south.publish(reading_batch(SOUTH, first=1, count=20, ts=T0.timestamp()))
        wait_until(lambda: south.acked(), 10, "the other gateway's ack")
    finally:
        south.close()


class Api:
    """`edge dc api` as a subprocess, with tokens made by `edge dc token create`."""

    def __init__(self, env: dict[str, str], tmp: Path, config: str = DC_CONFIG):
        self.env, self.tmp, self.config = env, tmp, config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"api-{self.port}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "dc", "api", "-c", config, "--listen",
                                      f"127.0.0.1:{self.port}", "--log-level", "warning"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.log.open("w"), text=True)
        wait_until(self._answers, 30, "the history API to answer")

    def _answers(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.url}/openapi.json").status_code == 200
        except httpx.TransportError:
            return False

    def cli(self, *args: str):
        return CliRunner(env=self.env).invoke(main, list(args), catch_exceptions=False)

    def token(self, name: str, *patterns: str) -> str:
        result = self.cli("dc", "token", "create", "-c", self.config, "--name", name,
                          *[a for p in patterns for a in ("--gateways", p)])
        assert result.exit_code == 0, result.output
        return result.stdout.strip()

    def token_file(self, secret: str) -> str:
        path = self.tmp / f"token-{secret[-6:]}"
        path.write_text(secret + "\n")
        path.chmod(0o600)
        return str(path)

    def get(self, path: str, secret: str | None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.get(self.url + path, headers=headers, **{"timeout": 30, **kwargs})

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=15)


@pytest.fixture(scope="module")
def system(tmp_path_factory, postgres_server):
    """The gateway's day, synced through a real collector, and the API in front of the database."""
    tmp = tmp_path_factory.mktemp("history")
    broker = Broker(tmp / "broker").start()
    database = postgres_server.create_database()
    collector = Collector(datacenter_config(broker, database), client_id="history-collector").start()
    try:
        assert collector.subscribed.wait(10)
        sync_gateway(tmp / "gateway.db", broker)
        another_gateway(broker)

        def north_state():
            with database.connect() as conn:
                row = conn.execute("SELECT state FROM gateway_status WHERE gateway_id = %s", (NORTH,)).fetchone()
                return row and row[0]

        # the gateway's goodbye goes out as its sync stops, and its writer may store it after south's ack
        wait_until(lambda: north_state() == "offline", 15, "the north gateway's goodbye to be stored")
    finally:
        collector.stop()
        broker.kill()
    api = Api({**os.environ, "EDGE_MQTT_URL": broker.url, "EDGE_DATABASE_URL": database.url}, tmp)
    api.truth = buffer_rows(tmp / "gateway.db")
    api.database = database
    api.north = api.token("north", "gh-north-*")
    api.everything = api.token("everything", "gh-*")
    yield api
    api.stop()


def pull(system, *args: str, token: str | None = None, server: str | None = None):
    return system.cli("history", "pull", "--server", server or system.url, "--token-file",
                      system.token_file(token or system.north), "--gateway", NORTH, "--from", FROM, "--to", TO,
                      *args)


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def as_truth(row: dict[str, str]) -> tuple:
    return (row["ts"], row["sensor"], row["quantity"], int(row["epoch"]), int(row["seq"]),
            float(row["value"]) if row["value"] else None, row["unit"], row["quality"])


def truth_tuples(rows) -> list[tuple]:
    return [(r.ts, r.sensor, r.quantity, r.epoch, r.seq, r.value, r.unit, r.quality) for r in rows]


# ------------------------------------------------------------------------------------------------- pulling rows


def test_a_pulled_csv_holds_exactly_the_gateways_readings_in_order(system, tmp_path):
    out = tmp_path / "north.csv"
    result = pull(system, "-o", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert text.startswith("ts,gateway,sensor,quantity,value,unit,quality,clock,epoch,seq\n")
    rows = csv_rows(text)
    assert len(system.truth) > 4000
    assert [as_truth(r) for r in rows] == truth_tuples(system.truth)
    assert {r["quality"] for r in rows} == {"good", "error", "implausible"}
    assert {(r["gateway"], r["clock"]) for r in rows} == {(NORTH, "synced")}


def test_a_sensor_and_quantity_filter_pulls_only_that_series(system, tmp_path):
    out = tmp_path / "soil.csv"
    result = pull(system, "--sensor", "soil", "--quantity", "soil_moisture", "-o", str(out))
    assert result.exit_code == 0, result.output
    expected = [r for r in system.truth if r.sensor == "soil"]
    assert [as_truth(r) for r in csv_rows(out.read_text())] == truth_tuples(expected)


def test_an_hourly_pull_matches_aggregates_computed_from_the_raw_rows(system, tmp_path):
    out = tmp_path / "hourly.csv"
    result = pull(system, "--every", "1h", "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = csv_rows(out.read_text())
    expected = hourly_aggregates(system.truth)
    assert [(r["ts"], r["sensor"], r["quantity"], r["unit"]) for r in rows] == sorted(expected)
    for row in rows:
        count, low, mean, high = expected[(row["ts"], row["sensor"], row["quantity"], row["unit"])]
        assert (int(row["count"]), float(row["min"]), float(row["max"])) == (count, low, high)
        assert math.isclose(float(row["mean"]), mean, rel_tol=1e-5)  # six significant digits


def test_ndjson_rows_are_the_same_readings(system, tmp_path):
    out = tmp_path / "north.ndjson"
    result = pull(system, "--format", "ndjson", "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["ts"], r["sensor"], r["quantity"], r["epoch"], r["seq"], r["value"], r["unit"], r["quality"])
            for r in rows] == truth_tuples(system.truth)


def test_a_connection_cut_mid_stream_is_resumed_without_a_duplicate_or_a_gap(system, tmp_path):
    whole, cut = tmp_path / "whole.csv", tmp_path / "cut.csv"
    assert pull(system, "-o", str(whole)).exit_code == 0
    proxy = Proxy(system.port, cut_after=[100_000, 150_000])  # two cuts, then a clean connection
    try:
        result = pull(system, "-o", str(cut), server=proxy.url)
    finally:
        proxy.close()
    assert result.exit_code == 0, result.output
    assert proxy.connections == 3
    assert result.stderr.count("continuing after the last complete row") == 2
    assert cut.read_bytes() == whole.read_bytes()
    wait_until(lambda: api_sessions(system) == 0, 10, "the cut exports to release their database sessions")


def api_sessions(system) -> int:
    with system.database.connect() as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'edge-history'"
                            ).fetchone()[0]


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_resume_continues_a_file_a_killed_pull_left_at_any_byte(system, tmp_path, fmt):
    whole = tmp_path / f"whole.{fmt}"
    assert pull(system, "--format", fmt, "-o", str(whole)).exit_code == 0
    data = whole.read_bytes()
    first_row_end = data.index(b"\n") + 1
    for offset in (0, 10, first_row_end, first_row_end + 7, len(data) // 2, data.rindex(b"\n", 0, -1) + 1,
                   len(data) - 3, len(data)):
        left = tmp_path / f"left-{offset}.{fmt}"
        left.write_bytes(data[:offset])
        result = pull(system, "--format", fmt, "-o", str(left), "--resume")
        assert result.exit_code == 0, result.output
        assert left.read_bytes() == data, f"resumed from byte {offset}"


def test_a_pull_killed_with_sigkill_is_resumed_to_the_same_file(system, tmp_path):
    whole, killed = tmp_path / "whole.csv", tmp_path / "killed.csv"
    assert pull(system, "-o", str(whole)).exit_code == 0
    proxy = Proxy(system.port, rate=200_000)  # slow enough to be killed half way
    try:
        proc = subprocess.Popen([sys.executable, "-m", "edge", "history", "pull", "--server", proxy.url,
                                 "--token-file", system.token_file(system.north), "--gateway", NORTH,
                                 "--from", FROM, "--to", TO, "-o", str(killed)], env=system.env)
        wait_until(lambda: killed.exists() and killed.stat().st_size > 50_000, 20, "half a pull")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proxy.close()
    assert 0 < killed.stat().st_size < whole.stat().st_size
    result = pull(system, "-o", str(killed), "--resume")
    assert result.exit_code == 0, result.output
    assert killed.read_bytes() == whole.read_bytes()


def test_pulling_without_a_readable_token_file_says_so(system, tmp_path):
    result = system.cli("history", "pull", "--server", system.url, "--token-file", str(tmp_path / "missing"),
                        "--gateway", NORTH, "--from", FROM, "--to", TO)
    assert result.exit_code == 1
    assert "cannot read the token file" in result.stderr


# -------------------------------------------------------------------------------------------------- the API


def test_the_gateway_list_shows_only_what_the_token_sees_with_status(system):
    north = system.get("/v1/gateways", system.north).json()
    assert [g["id"] for g in north] == [NORTH]
    assert (north[0]["state"], north[0]["epoch"]) == ("offline", 1)  # its sync stopped cleanly: last will sent
    assert north[0]["last_seen"].endswith("Z") and north[0]["version"]
    assert [g["id"] for g in system.get("/v1/gateways", system.everything).json()] == [NORTH, SOUTH]
    listed = system.cli("history", "gateways", "--server", system.url, "--token-file", system.token_file(system.north))
    assert listed.exit_code == 0 and listed.stdout.split("\n")[1].split()[:2] == [NORTH, "offline"]
    assert SOUTH not in listed.stdout


def test_sensors_lists_each_series_with_its_unit_and_extent(system):
    series = system.get(f"/v1/gateways/{NORTH}/sensors", system.north).json()
    assert [(s["sensor"], s["quantity"], s["unit"]) for s in series] == [
        ("air", "humidity", "%"), ("air", "temperature", "°C"), ("soil", "soil_moisture", "%")]
    assert series[0]["first"] == system.truth[0].ts


def test_events_show_why_the_pump_ran(system):
    response = system.get(f"/v1/gateways/{NORTH}/events?from={FROM}&to={TO}&kind=actuator&format=json",
                          system.north)
    assert response.status_code == 200
    changes = [(e["source"], e["data"]["value"], e["data"]["reason"]) for e in response.json()]
    assert changes == [("pump", 1.0, "schedule:irrigation-morning"), ("pump", 0.0, "schedule:irrigation-morning"),
                       ("fan", 0.6, "rule:cooling"), ("fan", 0.0, "rule:cooling")]
    all_kinds = csv_rows(system.get(f"/v1/gateways/{NORTH}/events?from={FROM}&to={TO}", system.north).text)
    assert [e["kind"] for e in all_kinds] == ["daemon.start", "actuator.change", "actuator.change",
                                              "actuator.change", "alert.fired", "actuator.change"]


def test_coverage_shows_the_half_hour_the_air_sensor_missed(system):
    response = system.get(f"/v1/gateways/{NORTH}/coverage?from={FROM}&to={TO}&format=json", system.north)
    assert response.status_code == 200
    rows = {(r["hour"], r["sensor"], r["quantity"]): r for r in response.json()}
    gap_hour = GAP[0].strftime("%Y-%m-%dT%H:00:00.000Z")
    air = rows[(gap_hour, "air", "temperature")]
    assert (air["interval"], air["interval_source"]) == (10, "config")
    assert (air["expected"], air["received"], air["missing"]) == (360, 180, 180)
    soil = rows[(gap_hour, "soil", "soil_moisture")]
    assert (soil["interval"], soil["interval_source"], soil["expected"], soil["missing"]) == (60, "median", 60, 0)
    others = [r for key, r in rows.items() if key[0] != gap_hour]
    assert len(others) == 3 * (HOURS - 1) and all(r["missing"] == 0 for r in others)
    error_hour = rows[("2025-07-14T23:00:00.000Z", "air", "temperature")]
    assert (error_hour["received"], error_hour["good"]) == (360, 359)


def test_a_token_scoped_to_one_gateway_gets_the_same_404_for_another_as_for_none(system):
    for endpoint in ENDPOINTS[1:]:
        other = system.get(endpoint.format(g=SOUTH, f=FROM, t=TO), system.north)
        missing = system.get(endpoint.format(g=NOWHERE, f=FROM, t=TO), system.north)
        assert other.status_code == missing.status_code == 404, endpoint
        assert other.json() == {**missing.json(), "detail": missing.json()["detail"].replace(NOWHERE, SOUTH)}
        assert other.headers["content-type"] == "application/problem+json"
        assert system.get(endpoint.format(g=SOUTH, f=FROM, t=TO), system.everything).status_code == 200


def test_every_endpoint_refuses_a_missing_unknown_revoked_or_expired_token(system):
    revoked, expired = system.token("revoked", "*"), system.token("expired", "*")
    assert system.cli("dc", "token", "revoke", "-c", DC_CONFIG, "revoked").exit_code == 0
    with system.database.connect() as conn:
        conn.execute("UPDATE api_tokens SET expires_at = now() - interval '1 minute' WHERE name = 'expired'")
    for endpoint in ENDPOINTS:
        path = endpoint.format(g=NORTH, f=FROM, t=TO)
        for secret, status, kind in ((None, 401, "unauthorized"), ("edge_not-a-token", 401, "unauthorized"),
                                     (revoked, 403, "token-revoked"), (expired, 403, "token-expired")):
            response = system.get(path, secret)
            assert (response.status_code, response.json()["type"].rsplit("/", 1)[1]) == (status, kind), path
        assert system.get(path, None).headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("query, kind, detail", [
    ("from={f}&to={t}&colour=red", "unknown-parameter", "unknown parameter 'colour'"),
    ("from={f}&to={t}&to={t}", "invalid-parameter", "to: given more than once"),
    ("from={t}&to={f}", "bad-range", "must be before to"),
    ("from={f}&to={f}", "bad-range", "must be before to"),
    ("from=yesterday&to={t}", "invalid-parameter", "from: 'yesterday' is not an ISO-8601 date or time"),
    ("to={t}", "invalid-parameter", "from: required"),
    ("from={f}&to={t}&every=5m", "invalid-parameter", "every:"),
    ("from={f}&to={t}&format=xlsx", "invalid-parameter", "format:"),
    ("from={f}&to={t}&after=2025-07-15T00:00:00Z,air", "bad-cursor", "expected 5 comma-separated fields"),
    ("from={f}&to={t}&after=2025-07-15T00:00:00Z,air,temperature,1,x", "bad-cursor", "field seq"),
])
def test_bad_parameters_get_a_400_problem_naming_them(system, query, kind, detail):
    response = system.get(f"/v1/gateways/{NORTH}/readings?" + query.format(f=FROM, t=TO), system.north)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert set(problem) == {"type", "title", "status", "detail"} and problem["status"] == 400
    assert problem["type"].endswith("/" + kind)
    assert detail in problem["detail"]


def test_a_request_that_is_not_valid_http_is_answered_with_a_problem_too(system):
    """A malformed header never reaches the app: the server answers it, and as the API answers every error (a
    schema fuzzer sent ``Content-Length: b`` and got uvicorn's plain text)."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(system.url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as conn:
        conn.sendall(f"GET /v1/gateways/{NORTH}/sensors HTTP/1.1\r\nHost: x\r\nContent-Length: b\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/problem+json" in head.lower()
    problem = json.loads(body)
    assert problem["type"].endswith("/malformed-request") and problem["status"] == 400
    assert problem["detail"] == "Invalid HTTP request received."


def test_an_unknown_sensor_is_a_404_that_names_the_known_ones(system):
    response = system.get(f"/v1/gateways/{NORTH}/readings?from={FROM}&to={TO}&sensor=roof", system.north)
    assert response.status_code == 404
    assert response.json()["detail"] == "gateway 'gh-north-01' has no readings of sensor 'roof' (it has: air, soil)"


def test_the_openapi_document_describes_every_error_as_a_problem(system):
    document = httpx.get(f"{system.url}/openapi.json").json()
    for path, operations in document["paths"].items():
        for operation in operations.values():
            statuses = set(operation["responses"])
            assert {"200", "400", "401", "403", "503"} <= statuses and "422" not in statuses, path
            assert ("404" in statuses) == ("{gateway_id}" in path)
            for status in statuses - {"200"}:
                assert "application/problem+json" in operation["responses"][status]["content"]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def openapi_document() -> dict:
    """The document `edge dc api` serves (building the app touches no database)."""
    from edge.datacenter.api import create_app
    from edge.datacenter.config import DataCenterConfig

    config = DataCenterConfig.model_validate({"mqtt": {"url": "mqtt://unused:1883"},
                                              "database": {"url": "postgresql://unused/edge"}})
    return create_app(config).openapi()


def test_the_served_openapi_document_is_the_one_fuzzed(system):
    assert httpx.get(f"{system.url}/openapi.json").json() == openapi_document()


if schemathesis is None:
    def test_fuzzing_the_openapi_document_finds_no_server_error_and_no_schema_violation():
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
else:
    @schemathesis.openapi.from_dict(openapi_document()).parametrize()
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def test_fuzzing_the_openapi_document_finds_no_server_error_and_no_schema_violation(case, system):
        from schemathesis import checks

        case.call_and_validate(base_url=system.url, headers={"Authorization": f"Bearer {system.everything}"},
                               checks=[checks.not_a_server_error, checks.status_code_conformance,
                                       checks.content_type_conformance, checks.response_schema_conformance,
                                       checks.response_headers_conformance])


# ---------------------------------------------------------------------------------------------------- tokens


def test_tokens_are_stored_only_as_hashes_and_listed_without_them(system):
    secret = system.token("listed", "gh-north-*", "gh-0[1-5]")
    with system.database.connect() as conn:
        stored = conn.execute("SELECT token_hash, gateways FROM api_tokens WHERE name = 'listed'").fetchone()
        everything = conn.execute("SELECT string_agg(t::text, ' ') FROM api_tokens t").fetchone()[0]
    assert secret.startswith("edge_") and len(secret) >= 40
    assert secret not in everything and stored[1] == ["gh-north-*", "gh-0[1-5]"]
    listing = system.cli("dc", "token", "list", "-c", DC_CONFIG)
    assert listing.exit_code == 0
    assert "listed" in listing.stdout and "gh-north-* gh-0[1-5]" in listing.stdout
    assert secret not in listing.stdout


def test_revoking_an_unknown_token_fails_with_a_clear_message(system):
    result = system.cli("dc", "token", "revoke", "-c", DC_CONFIG, "nobody")
    assert result.exit_code == 1
    assert "no active token named 'nobody'" in result.stderr


# ------------------------------------------------------------------------------------------------------ plot


def test_edge_history_plot_writes_a_png_with_the_readings(system, tmp_path):
    pytest.importorskip("matplotlib")
    chart = tmp_path / "chart.png"
    result = system.cli("history", "plot", "--server", system.url, "--token-file", system.token_file(system.north),
                        "--gateway", NORTH, "--from", FROM, "--to", TO, "-o", str(chart))
    assert result.exit_code == 0, result.output
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 20_000
