"""The collector's usual round goes straight into ``readings`` with one binary COPY; a round that meets a key already
held takes the staged path. Both store the same rows and count the same hours, and the exactly-once key still
decides: a re-send is a duplicate, another collector's write of the same keys too."""

from __future__ import annotations

import re
import threading
import time

import pytest

from edge.contract import protocol
from edge.datacenter.store import Store, Work, copy_readings

pytestmark = pytest.mark.slow

HOUR = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a whole hour
READING_COLUMNS = "gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, reason, clock, boot_id, mono"


def mixed_batch(gateway_id: str = "gh-a", epoch: int = 7) -> protocol.ReadingBatch:
    """Every kind of row the wire carries: good and failed readings, reasons with tabs, newlines, backslashes and
    Persian, an empty unit, unsynced and corrected clocks with their boot id and monotonic time, 1970 times from a
    Pi without its clock (before the hours' origin, one exactly on an hour), hour boundaries and milliseconds."""
    R = protocol.Reading
    readings = [
        R(1, HOUR, "air", "temperature", 21.5, "°C"),
        R(2, HOUR - 0.001, "air", "temperature", -3.25, "°C"),
        R(3, HOUR + 3599.999, "air", "humidity", 55.0, "%"),
        R(4, HOUR + 3600.0, "air", "humidity", None, "%", "error", "no answer (CRC)\tretry\nagain \\ دوباره"),
        R(5, HOUR + 1.5, "soil-1", "soil_moisture", 31.123456, "", "implausible", "data center: out of range"),
        R(6, 1_000.25, "air", "temperature", 19.0, "°C", "good", None, 0, "boot-1", 1_000.25),
        R(7, -3600.0, "air", "temperature", 19.1, "°C", "good", None, 0, "boot-1", None),
        R(8, 946_684_799.999, "air", "temperature", 1e300, "°C", "implausible", "x", 0, None, 12.5),
        R(9, HOUR + 7.777, "air", "temperature", 0.0, "°C", "good", None, 2, "boot-2", 7.777),
        R(10, 253_402_300_799.999, "lux", "light", 120_000.0, "lx"),
        R(12, HOUR + 2.0, "نور", "light", 5.0, "lx", "good", None, 1, "boot-3", None),
    ]
    return protocol.ReadingBatch(gateway_id, epoch, tuple(readings))


def stored(store: Store) -> tuple[list, list]:
    readings = store.conn.execute(f"SELECT {READING_COLUMNS} FROM readings ORDER BY 1, 2, 3").fetchall()
    hours = store.conn.execute("SELECT gateway_id, hour, readings, good FROM gateway_hours ORDER BY 1, 2").fetchall()
    return readings, hours


def refuse_staging(store: Store, monkeypatch) -> list:
    """Make the staged path fail the test if it is taken; return the list of rounds it was asked for."""
    calls: list = []
    monkeypatch.setattr(store, "_write_readings_staged", lambda batches, written: calls.append(batches))
    return calls


def without_corrected(batch: protocol.ReadingBatch) -> protocol.ReadingBatch:
    return protocol.ReadingBatch(batch.gateway_id, batch.epoch, tuple(r for r in batch.readings if r.clock != 2))


def test_the_direct_write_and_the_staged_write_store_the_same_rows_and_hours(postgres_server, monkeypatch):
    batches = [without_corrected(mixed_batch("gh-a")), without_corrected(mixed_batch("gh-b", epoch=1))]
    direct = Store.connect(postgres_server.create_database().url)
    staged = Store.connect(postgres_server.create_database().url)
    try:
        staging = refuse_staging(direct, monkeypatch)
        written = direct.write(Work(readings=batches))
        assert staging == []  # every key was new: the round went straight in
        assert (written.readings_new, written.readings_duplicate, written.conflicts) == (20, 0, {})
        with staged.conn.transaction():
            staged._write_readings_staged(batches, type(written)())
        assert stored(direct) == stored(staged)
        readings, hours = stored(direct)
        assert len(readings) == 20 and sum(h[2] for h in hours) == 20 and sum(h[3] for h in hours) == 14
    finally:
        direct.close()
        staged.close()


def test_a_round_with_a_re_timed_reading_or_one_older_than_the_compaction_horizon_takes_the_staged_path(
        store, monkeypatch):
    """Their keys may be held compacted (no longer a row of ``readings``, so a COPY would not fail on them): only the
    staged insert looks those up."""
    staging = refuse_staging(store, monkeypatch)
    store.write(Work(readings=[mixed_batch()]))  # it holds a re-timed reading (clock 2)
    assert len(staging) == 1
    store.write(Work(readings=[without_corrected(mixed_batch("gh-b"))]))
    assert len(staging) == 1  # nothing compacted yet: every reading is newer than the horizon
    store.conn.execute("UPDATE compaction_horizon SET before = %s", (HOUR,))
    store.conn.commit()
    store.write(Work(readings=[without_corrected(mixed_batch("gh-c"))]))  # holds 1970 times
    assert len(staging) == 2
    late = protocol.ReadingBatch("gh-d", 1, (protocol.Reading(1, HOUR + 60, "air", "temperature", 20.0, "°C"),))
    store.write(Work(readings=[late]))
    assert len(staging) == 2


def test_a_round_that_meets_a_held_key_takes_the_staged_path_and_counts_it_once(store):
    first = protocol.ReadingBatch("gh-a", 1, mixed_batch().readings[:4])
    store.write(Work(readings=[first]))
    again = store.write(Work(readings=[mixed_batch(), first]))  # a re-send of four beside seven new ones
    assert (again.readings_new, again.readings_duplicate, again.conflicts) == (11, 4, {})
    readings, hours = stored(store)
    assert len(readings) == 15
    assert sum(h[2] for h in hours) == 15  # the duplicates are not counted twice


def test_a_batch_twice_in_one_round_is_stored_once(store):
    work = Work(readings=[mixed_batch(), mixed_batch()])
    written = store.write(work)
    assert (written.readings_new, written.readings_duplicate) == (11, 11)
    assert len(stored(store)[0]) == 11


def test_a_conflicting_key_in_a_round_is_still_found_and_recorded(store):
    store.write(Work(readings=[mixed_batch()]))
    other = protocol.ReadingBatch("gh-a", 7, (protocol.Reading(1, HOUR, "air", "temperature", 99.0, "°C"),))
    written = store.write(Work(readings=[other]))
    assert written.conflicting(other) == [1]
    assert store.conn.execute("SELECT value FROM readings WHERE seq = 1").fetchone() == (21.5,)


def test_another_collector_writing_the_same_keys_makes_this_round_wait_then_count_them_as_duplicates(
        postgres, monkeypatch):
    one, two = Store.connect(postgres.url), Store.connect(postgres.url)
    watcher = postgres.connect(autocommit=True)
    try:
        work = Work(readings=[mixed_batch()])
        results: list = []
        with one.conn.transaction():  # the first collector's round, not committed yet
            assert one.write(work).readings_new == 11
            second = threading.Thread(target=lambda: results.append(two.write(work)))
            second.start()
            deadline = time.monotonic() + 30
            while not watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                      ).fetchone()[0]:
                assert time.monotonic() < deadline, "the second round never waited for the first one's keys"
                time.sleep(0.01)
        second.join(30)
        assert [(w.readings_new, w.readings_duplicate) for w in results] == [(0, 11)]
        readings, hours = stored(one)
        assert len(readings) == 11 and sum(h[2] for h in hours) == 11
    finally:
        one.close()
        two.close()
        watcher.close()


def test_the_copy_data_counts_rows_and_hours_per_gateway():
    data, count, hours = copy_readings([mixed_batch("gh-a"), mixed_batch("gh-b")])
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
    assert count == 22
    assert hours[("gh-a", int(HOUR))] == [5, 4]  # seqs 1, 3, 5, 9 and 12; 5 is implausible
    assert hours[("gh-a", int(HOUR) - 3600)] == [1, 1]  # a millisecond before the hour
    assert hours[("gh-a", int(HOUR) + 3600)] == [1, 0]  # exactly on the next hour: that hour's
    assert hours[("gh-a", -3600)] == [1, 1]  # before 1970 and on an hour
    assert hours[("gh-a", 946_681_200)] == [1, 0]  # the last millisecond before the origin of the hours
    assert sum(n for n, _ in hours.values()) == 22 and hours[("gh-b", int(HOUR))] == [5, 4]


def test_a_round_of_re_sends_looks_its_keys_up_in_the_index_not_in_every_stored_reading(store):
    """A reconnect storm's rounds are nearly all re-sends; comparing them with what is stored must cost the round's
    size, not the table's: the planner once hashed every stored reading for it (seconds at a few million rows)."""
    from edge.datacenter import store as module

    def batch(gateway_id: str, first: int, count: int) -> protocol.ReadingBatch:
        return protocol.ReadingBatch(gateway_id, 1, tuple(
            protocol.Reading(seq, HOUR + seq, f"s{seq % 40}", "temperature", 20.0 + seq % 7, "°C")
            for seq in range(first, first + count)))

    for g in range(20):
        store.write(Work(readings=[batch(f"gh-{g:02d}", 1, 10_000)]))
    store.conn.execute("ANALYZE readings")
    store.conn.commit()
    resent = [batch(f"gh-{g:02d}", 5_001, 1_000) for g in range(0, 20, 2)]
    with store.conn.transaction(), store.conn.cursor() as cur:
        with cur.copy(module._COPY) as copy:
            copy.set_types(module._STAGE_TYPES)
            for number, one in enumerate(resent):
                for row in module.staged_readings(one, number):
                    copy.write_row(row)
        for query in (module._CONFLICTING_STAGED, module._RETIME_STAGED):
            plan = "\n".join(row[0] for row in cur.execute("EXPLAIN " + query).fetchall())
            scanned = re.findall(r"Seq Scan on readings_p\d+ \S+ +\(cost=[\d.]+\.\.([\d.]+)", plan)
            assert not [cost for cost in scanned if float(cost) > 0], plan  # an empty partition's scan is free
            assert "Index Scan using readings_p" in plan, plan
    assert store.write(Work(readings=resent)).readings_duplicate == 10_000
