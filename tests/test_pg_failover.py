"""The data center's database fails over: the primary dies mid-stream, the standby takes over, nothing is lost.

Real processes throughout, as in test_end_to_end.py: `edge run` on a simulated greenhouse -> a private Mosquitto ->
two `edge dc collector`s -> PostgreSQL as a primary and a standby managed by pg_auto_failover (tests/pg_failover.py).
The collectors know both nodes through one libpq multi-host URL with ``target_session_attrs=read-write``; when the
primary's machine dies (its keeper and PostgreSQL killed together), the monitor promotes the standby, each collector's
round in flight fails, is retried against whichever node is now primary, and only then acknowledged.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from conftest import wait_until
from test_dc_status import dc_status
from test_end_to_end import System, assert_exactly_once

pytestmark = pytest.mark.slow


def stored(database) -> int:
    """Readings in the database now; 0 before a collector has created the schema (the collectors start with the
    test, and the first query may come before their migration)."""
    try:
        with database.connect() as conn:
            return conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0
    except psycopg.OperationalError:  # the primary being replaced: nothing to count right now
        return 0


def test_the_primary_killed_mid_stream_fails_over_and_every_reading_arrives_once(tmp_path, broker, pg_failover):
    database = pg_failover.create_database()
    with database.connect() as conn:  # synchronous while the standby is healthy: a confirmed commit is on both
        assert conn.execute("SHOW synchronous_standby_names").fetchone()[0].startswith("ANY 1")
        assert conn.execute("SELECT inet_server_port()").fetchone()[0] == pg_failover.primary().port
    system = System(tmp_path, broker, database)
    try:
        system.start_collector("c1")
        system.start_collector("c2")
        system.start_gateway()
        wait_until(lambda: stored(database) >= 100, timeout=60, what="readings in the database")
        old = pg_failover.primary()
        pg_failover.kill(old)  # mid-stream: the gateway keeps publishing, rounds are in flight
        new = pg_failover.failover_from(old)
        with database.connect() as conn:  # the same multi-host URL the collectors use now reaches the new primary
            assert conn.execute("SELECT inet_server_port()").fetchone()[0] == new.port
            before = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        wait_until(lambda: stored(database) >= before + 200, timeout=90, what="readings flowing into the new primary")
        assert all(proc.poll() is None for proc in system.collectors.values()), "a collector died on the failover"
        system.drain()
        assert_exactly_once(system.check(), 300)
        pg_failover.revive(old)  # its machine comes back: the keeper rejoins it as the new primary's standby
        assert pg_failover.primary() is new
        result = dc_status(broker.url, database.url, "--json")  # what an operator sees now
        assert result.returncode == 0, result.stdout + result.stderr
        nodes = {node["port"]: node for node in json.loads(result.stdout)["nodes"]}
        assert {port: node["role"] for port, node in nodes.items()} == {new.port: "primary", old.port: "standby"}
        assert [standby["state"] for standby in nodes[new.port]["standbys"]] == ["streaming"]
    finally:
        system.stop_all()


def test_the_collector_logs_every_host_of_a_multi_host_url_and_never_its_password():
    from edge.datacenter.collector import _safe_dsn

    assert _safe_dsn("postgresql://edge:s3cret@db1:5432,db2:5433/edge?target_session_attrs=read-write") == \
        "postgresql://edge@db1:5432,db2:5433/edge"
    assert _safe_dsn("postgresql://edge:s3cret@db1,db2/edge") == "postgresql://edge@db1:5432,db2:5432/edge"
    assert "s3cret" not in _safe_dsn("postgresql://edge:s3cret@127.0.0.1/edge")
