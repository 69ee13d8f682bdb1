"""What the console and remote commands keep in PostgreSQL (migration 5), on a real PostgreSQL: tokens made before
scopes keep working, read-only; the collector counts each new reading once per gateway and hour (the fleet's
coverage); a gateway's command.result settles its command once, even after it expired; the fleet query."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from edge.contract import protocol
from edge.contract.events import CommandResult
from edge.datacenter import commands, queries, tokens
from edge.datacenter.store import MIGRATIONS, Store, Work, migrate

pytestmark = pytest.mark.slow

UTC = timezone.utc


def test_tokens_made_before_scopes_still_work_read_only(postgres):
    with postgres.connect() as conn:
        migrate(conn, [m for m in MIGRATIONS if m.version < 5])
        conn.execute("INSERT INTO api_tokens (name, token_hash, gateways) VALUES ('old', %s, %s)",
                     (tokens.digest("edge_old-secret"), ["gh-*"]))
        conn.commit()
        assert migrate(conn)[:1] == [5]
        old = tokens.lookup(conn, "edge_old-secret")
        assert (old.state(), old.scope, old.controls, old.sees("gh-a")) == ("active", "read", False, True)
        secret = tokens.create(conn, "ops", ["gh-*"], scope="control")
        assert tokens.lookup(conn, secret).controls
        with pytest.raises(tokens.TokenError, match="invalid scope 'admin'"):
            tokens.create(conn, "root", ["*"], scope="admin")


def readings(gateway_id: str, first: int, count: int, start: datetime) -> protocol.ReadingBatch:
    return protocol.ReadingBatch(gateway_id, 1, tuple(
        protocol.Reading(seq, start.timestamp() + (seq - first) * 60, "air", "temperature", 21.5, "°C",
                         quality="good" if seq % 10 else "implausible")
        for seq in range(first, first + count)))


def test_the_collector_counts_new_readings_once_per_gateway_and_hour(postgres):
    store = Store.connect(postgres.url)
    try:
        hour = datetime(2026, 3, 1, 10, tzinfo=UTC)
        work = Work(readings=[readings("gh-a", 1, 90, hour), readings("gh-b", 1, 30, hour)])
        store.write(work)
        store.write(work)  # a re-send: nothing new, nothing counted
        store.write(Work(readings=[readings("gh-a", 80, 20, hour + timedelta(minutes=79))]))  # 91..99 new
        rows = store.conn.execute("SELECT gateway_id, hour, readings, good FROM gateway_hours ORDER BY 1, 2").fetchall()
        assert rows == [("gh-a", hour, 60, 54), ("gh-a", hour + timedelta(hours=1), 39, 36),
                        ("gh-b", hour, 30, 27)]
    finally:
        store.close()


def result_event(seq: int, command_id: str, ok: bool, **fields) -> protocol.Event:
    return protocol.Event(seq, 1_760_000_000.0 + seq, CommandResult.KIND, "sync",
                          CommandResult(command_id, ok, op="ping", **fields).to_data())


def test_a_command_result_settles_its_command_once_even_after_it_expired(postgres):
    store = Store.connect(postgres.url)
    try:
        conn = store.conn
        conn.autocommit = True
        done = commands.record(conn, "gh-a", "ping", {}, "cli:test", 60)
        late = commands.record(conn, "gh-a", "ping", {}, "cli:test", 60)
        conn.execute("UPDATE commands SET expires_at = now() - interval '1 second' WHERE id = %s", (late.id,))
        other = commands.record(conn, "gh-b", "ping", {}, "cli:test", 60)
        conn.autocommit = False
        assert commands.get(conn, late.id).state == "expired"  # pending past its expiry reads expired
        events = [result_event(1, done.id, True, result={"pong": 1.0}), result_event(2, late.id, True),
                  result_event(3, other.id, False, error="not for this gateway"),  # gh-b's id, from gh-a
                  result_event(4, "dc-unknown", True)]
        store.write(Work(events=[protocol.EventBatch("gh-a", 1, tuple(events))]))
        replay = result_event(5, done.id, False, error="command already received")
        store.write(Work(events=[protocol.EventBatch("gh-a", 1, (replay,))]))
        conn.commit()
        assert commands.get(conn, done.id).state == "done"
        assert commands.get(conn, done.id).result["result"] == {"pong": 1.0}
        assert commands.get(conn, late.id).state == "done"  # the gateway did carry it out
        assert commands.get(conn, other.id).state == "pending"
        assert "done: pong" in commands.get(conn, done.id).answer()
    finally:
        store.close()


def test_the_fleet_query_reads_clock_alerts_and_coverage(postgres):
    store = Store.connect(postgres.url)
    try:
        conn = store.conn
        now = datetime.now(UTC)
        hour = now.replace(minute=0, second=0, microsecond=0)
        conn.execute("INSERT INTO gateway_status (gateway_id, state, state_since, last_seen) VALUES "
                     "('gh-a', 'online', now(), now()), ('gh-b', 'offline', now(), now())")
        conn.execute("INSERT INTO gateway_hours SELECT 'gh-a', %s - h * interval '1 hour', 100, 100 "
                     "FROM generate_series(1, 18) h", (hour,))
        conn.execute("INSERT INTO gateway_hours VALUES ('gh-a', %s - interval '30 hours', 1000, 1000)", (hour,))
        conn.execute("INSERT INTO readings (gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, "
                     "clock) VALUES ('gh-a', 2, 7, now(), 'air', 'temperature', 20, '°C', 'good', 0), "
                     "('gh-a', 1, 9, now() + interval '1 hour', 'air', 'temperature', 20, '°C', 'good', 1)")
        conn.execute("INSERT INTO events (gateway_id, epoch, seq, ts, kind, source, data) VALUES "
                     "('gh-b', 1, 1, now(), 'alert.fired', 'too-cold:air', '{}'), "
                     "('gh-b', 1, 2, now(), 'alert.fired', 'too-humid:air', '{}'), "
                     "('gh-b', 1, 3, now() + interval '1 second', 'alert.resolved', 'too-humid:air', '{}')")
        rows = {row[0]: dict(zip(queries.FLEET_FIELDS, row)) for row in queries.fleet(conn)}
        assert rows["gh-a"]["coverage_24h"] == 0.75 and rows["gh-b"]["coverage_24h"] is None
        assert rows["gh-a"]["clock"] == "unsynced"  # the newest reading is the latest epoch's, whatever its time
        assert (rows["gh-a"]["alerts"], rows["gh-b"]["alerts"]) == (0, 1)
        assert json.dumps(rows["gh-a"]["last_seen"]).endswith('Z"')
        assert rows["gh-a"]["last_seen"] == queries.iso(conn.execute(
            "SELECT last_seen FROM gateway_status WHERE gateway_id = 'gh-a'").fetchone()[0])
    finally:
        store.close()


def test_a_command_that_cannot_be_sent_is_settled_as_refused_with_the_reason(postgres, tmp_path):
    from edge.datacenter.config import BrokerConfig, CommandsConfig

    with postgres.connect(autocommit=True) as conn:
        migrate(conn)
        missing = tmp_path / "commander.pw"
        with pytest.raises(commands.CommandError, match="cannot read commands.password_file"):
            commands.send(conn, BrokerConfig(url="mqtt://127.0.0.1:1"), CommandsConfig(password_file=missing),
                          "gh-a", "ping", {}, "cli:test", 60)
        state, result = conn.execute("SELECT state, result FROM commands").fetchone()
    assert state == "refused" and result["error"].startswith("not sent: cannot read commands.password_file")
