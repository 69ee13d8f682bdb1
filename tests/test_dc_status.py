"""`edge dc status`: which database node is primary, who is connected, whether the broker answers, gateways online."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from edge.datacenter.store import migrate
from services import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "config" / "datacenter.example.yaml")


def dc_status(broker_url: str, database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGE_MQTT_URL": broker_url, "EDGE_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "edge", "dc", "status", "-c", EXAMPLE, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_status_names_the_primary_an_unreachable_node_the_clients_the_broker_and_the_gateways(broker, postgres):
    with postgres.connect() as conn:
        migrate(conn)
        conn.execute("INSERT INTO gateway_status (gateway_id, state, state_since, last_seen) VALUES "
                     "('gh-a', 'online', now(), now()), ('gh-b', 'offline', now(), now()), "
                     "('gh-c', 'online', now(), now())")
    dead = free_port()
    url = postgres.url.replace("@127.0.0.1:", f"@127.0.0.1:{dead},127.0.0.1:") + "?target_session_attrs=read-write"
    with psycopg.connect(postgres.url, application_name="collector-7"):  # a collector connected meanwhile
        result = dc_status(broker.url, url, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(n["port"], n["role"]) for n in report["nodes"]] == [(dead, "unreachable"), (postgres.server.port,
                                                                                          "primary")]
    assert report["sessions"] == {"collector-7": 1}
    assert report["gateways"] == {"online": 2, "offline": 1}
    assert report["broker_reachable"] is True and report["ok"] is True

    text = dc_status(broker.url, url)
    assert text.returncode == 0
    assert f"127.0.0.1:{dead}" in text.stdout and "UNREACHABLE" in text.stdout
    assert "2 online, 1 offline" in text.stdout


def test_status_fails_when_no_primary_answers_or_the_broker_is_down(postgres):
    result = dc_status(f"mqtt://127.0.0.1:{free_port()}", f"postgresql://edge:s3cret@127.0.0.1:{free_port()}/edge")
    assert result.returncode == 1
    assert "NO PRIMARY" in result.stdout and "broker" in result.stdout and "UNREACHABLE" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr
