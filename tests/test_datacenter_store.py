"""The data-center schema on a real PostgreSQL: tracked migrations, the key that makes writes idempotent, and the
index that serves time-range queries per gateway and sensor."""

from __future__ import annotations

import re

import pytest

from edge.contract import protocol
from edge.datacenter.store import (MIGRATIONS, READING_PARTITIONS, Migration, Rejected, StatusUpdate, Work,
                                   migrate)

pytestmark = pytest.mark.slow


def batch(gateway_id: str, first: int, count: int, epoch: int = 1) -> protocol.ReadingBatch:
    return protocol.ReadingBatch(gateway_id, epoch, tuple(
        protocol.Reading(seq, 1_760_000_000.0 + seq, "air", "temperature", 21.5, "°C") for seq in
        range(first, first + count)))


def test_migrations_are_recorded_and_applied_once(postgres):
    with postgres.connect() as conn:
        assert migrate(conn) == [m.version for m in MIGRATIONS]
        assert migrate(conn) == []
        later = Migration(99, "a later change", "ALTER TABLE readings ADD COLUMN note text")
        assert migrate(conn, [*MIGRATIONS, later]) == [99]
        recorded = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert recorded == [(m.version, m.name) for m in MIGRATIONS] + [(99, "a later change")]


def test_writing_the_same_batches_again_changes_nothing(store):
    work = Work(readings=[batch("gh-a", 1, 100), batch("gh-b", 1, 100), batch("gh-a", 1, 100)])
    first = store.write(work)
    again = store.write(work)
    assert (first.readings_new, first.readings_duplicate) == (200, 100)
    assert (again.readings_new, again.readings_duplicate) == (0, 300)
    assert store.conn.execute("SELECT count(*), count(DISTINCT (gateway_id, epoch, seq)) FROM readings"
                              ).fetchone() == (200, 200)


def test_the_same_seq_in_another_epoch_is_another_reading(store):
    store.write(Work(readings=[batch("gh-a", 1, 10, epoch=1), batch("gh-a", 1, 10, epoch=2)]))
    assert store.conn.execute("SELECT count(*) FROM readings").fetchone() == (20,)


def test_readings_are_spread_over_hash_partitions_and_keyed_without_time(store):
    store.write(Work(readings=[batch(f"gh-{n:03d}", 1, 5) for n in range(64)]))
    partitions = store.conn.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'readings'::regclass").fetchone()[0]
    used = store.conn.execute("SELECT count(DISTINCT tableoid) FROM readings").fetchone()[0]
    key = store.conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'readings'::regclass "
        "AND contype = 'p'").fetchone()[0]
    assert partitions == READING_PARTITIONS
    assert used > READING_PARTITIONS // 2
    assert key == "PRIMARY KEY (gateway_id, epoch, seq)"


def test_a_time_range_query_for_one_sensor_uses_the_series_index_on_one_partition(store):
    store.write(Work(readings=[batch(f"gh-{n:03d}", 1, 2000) for n in range(20)]))
    store.conn.execute("ANALYZE readings")
    plan = "\n".join(r[0] for r in store.conn.execute(
        "EXPLAIN SELECT ts, value FROM readings WHERE gateway_id = 'gh-007' AND sensor = 'air' "
        "AND quantity = 'temperature' AND ts >= to_timestamp(1760000100) AND ts < to_timestamp(1760000200)"))
    assert "Index" in plan and "gateway_id_sensor_quantity_ts_idx" in plan, plan
    assert len(set(re.findall(r"readings_p\d\d", plan))) == 1, plan  # pruned to the gateway's partition


def test_a_last_will_keeps_what_the_birth_said_and_a_replayed_status_is_not_a_sign_of_life(store):
    store.write(Work(statuses=[StatusUpdate("gh-a", "online", live=True, version="1.0", epoch=3, backlog=10)]))
    seen = store.conn.execute("SELECT last_seen FROM gateway_status").fetchone()[0]
    store.write(Work(statuses=[StatusUpdate("gh-a", "offline", live=True)]))
    store.write(Work(statuses=[StatusUpdate("gh-a", "online", live=False, version="1.1")]))
    row = store.conn.execute("SELECT state, version, epoch, backlog, last_seen FROM gateway_status").fetchone()
    assert row == ("online", "1.1", 3, 10, seen)


def test_a_rejected_payload_is_kept_up_to_64_kib_with_its_size(store):
    store.write(Work(rejected=[Rejected("greenhouse/v1/gh-a/up/readings", "bad magic", b"x" * 100_000)]))
    row = store.conn.execute("SELECT reason, length(payload), payload_size FROM rejected_messages").fetchone()
    assert row == ("bad magic", 64 * 1024, 100_000)
