"""Storage that fits a province, on a real PostgreSQL through the real Store: roll-ups kept for ever and read by the
history API's aggregates, old raw readings compacted per series and day, the exactly-once key across compaction
(a late re-send of a compacted key is not stored twice, a genuinely new late reading is stored and merged), and
exports that read the same before and after."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from edge.contract.protocol import Reading, ReadingBatch
from edge.datacenter import queries, storage
from edge.datacenter.api import series_params
from edge.datacenter.store import Store, Work

pytestmark = pytest.mark.slow

UTC = timezone.utc
DAY0 = datetime(2025, 7, 1, tzinfo=UTC)
T0 = DAY0.timestamp()
NOW = DAY0 + timedelta(days=40)  # every reading of these tests is 39-40 days old
KEEP_ALL = storage.Settings(raw_days=365)
COMPACT = storage.Settings(raw_days=30)
SENSORS = [("air", "temperature", "°C"), ("air", "humidity", "%"), ("soil", "soil_moisture", "%")]
GATEWAY = "gh-store"


@pytest.fixture
def db(postgres):
    """A connection of the test's own for its checks (the store's is the collector's: its writes commit)."""
    conn = psycopg.connect(postgres.url, autocommit=True)
    yield conn
    conn.close()


@pytest.fixture
def maintenance(postgres):
    conn = psycopg.connect(postgres.url)
    yield lambda settings=COMPACT, now=NOW: storage.maintain(conn, settings, now=now)
    conn.close()


def day_of_readings(start: float = T0, rounds: int = 2 * 24 * 6, every: float = 600.0, epoch_seq: int = 1
                    ) -> list[Reading]:
    """Two days of three series every 10 minutes, with everything a reading can carry: values of 0 to 3 decimals,
    a value no decimal scale gives back (1/3), -0.0, an error without value but with a reason, an implausible
    reading, unsynced readings with their boot and monotonic time, a unit that changes."""
    readings, seq = [], epoch_seq
    for n in range(rounds):
        ts = start + n * every + (n % 7) * 0.013
        for i, (sensor, quantity, unit) in enumerate(SENSORS):
            value: float | None = round(20 + (n % 50) * 0.37 + i, [2, 1, 3][i])
            quality, reason, clock, boot, mono = "good", None, 1, None, None
            if n == 5 and i == 0:
                value = 1 / 3
            elif n == 6 and i == 1:
                value = -0.0
            elif (n == 7 and i == 2) or (n == 144 and i == 0):  # the latter a day's first reading of its series
                value, quality, reason = None, "error", "no answer from the sensor"
            elif n == 8 and i == 0:
                value, quality, reason = 1500.0, "implausible", "above 1000"
            elif 10 <= n < 13:
                clock, boot, mono = 0, "boot-1", 1234.567 + n
            if n >= 200 and i == 2:
                unit = "m3/m3"
            readings.append(Reading(seq, round(ts + i * 0.002, 3), sensor, quantity, value, unit, quality, reason,
                                    clock, boot, mono))
            seq += 1
    return readings


def write(store: Store, readings: list[Reading], epoch: int = 1, gateway: str = GATEWAY):
    return store.write(Work(readings=[ReadingBatch(gateway, epoch, tuple(readings))]))


def export(postgres, shape: queries.Shape, start: datetime = DAY0, end: datetime = DAY0 + timedelta(days=3),
           fmt: str = "csv", every: str = "1h", tz: str | None = None) -> bytes:
    with postgres.connect() as conn:
        chosen = queries.series(conn, GATEWAY)
    params = {"gateway": GATEWAY, **series_params(chosen), "bucket": queries.BUCKETS[every],
              "unit": queries.LOCAL_BUCKETS[every]}
    request = queries.Export(shape, start, end, params, tz=tz)
    return b"".join(queries.stream(postgres.connect, request, fmt))


def hot_rows(db) -> int:
    return db.execute("SELECT count(*) FROM readings").fetchone()[0]


def exports(postgres) -> dict[str, bytes]:
    """Every export of the history API's readings over the three days: raw, and each downsampling."""
    found = {"raw": export(postgres, queries.RAW), "raw json": export(postgres, queries.RAW, fmt="ndjson"),
             "coverage": b""}
    for every in ("1m", "1h", "1d"):
        found[every] = export(postgres, queries.AGGREGATES[every], every=every)
        found[f"{every} Asia/Tehran"] = export(postgres, queries.LOCAL_AGGREGATE, every=every, tz="Asia/Tehran")
    # a range that starts and ends inside buckets
    found["1h partial"] = export(postgres, queries.AGGREGATES["1h"], DAY0 + timedelta(hours=3, minutes=17),
                                 DAY0 + timedelta(days=1, hours=5, minutes=3), every="1h")
    found["1d partial"] = export(postgres, queries.AGGREGATES["1d"], DAY0 + timedelta(hours=3, minutes=17),
                                 DAY0 + timedelta(days=1, hours=5, minutes=3), every="1d")
    return found


# ------------------------------------------------------------------------------------------------------ roll-ups


def test_roll_ups_hold_count_min_max_and_sum_of_the_good_readings_per_minute_hour_and_day(db, store, maintenance):
    write(store, day_of_readings())
    done = maintenance(KEEP_ALL)
    assert done.hours_rolled == 48 and done.days_compacted == 0
    rows = {width: db.execute(
        f"SELECT bucket, readings, good, min, max, sum FROM rollup_{width} WHERE sensor = 'air' "
        "AND quantity = 'temperature' ORDER BY bucket").fetchall() for width in ("1m", "1h", "1d")}
    assert len(rows["1m"]) == 2 * 24 * 6 and len(rows["1h"]) == 48 and len(rows["1d"]) == 2
    first_hour = [r for r in day_of_readings()[:18] if r.sensor == "air" and r.quantity == "temperature"]
    good = [r.value for r in first_hour if r.quality == "good"]
    bucket, readings, counted, low, high, total = rows["1h"][0]
    assert (bucket, readings, counted, low, high) == (DAY0, 6, 6, min(good), max(good))
    assert total == pytest.approx(sum(good))
    hour_two = rows["1h"][1]  # its implausible reading is counted, not believed
    assert hour_two[1:3] == (6, 5)
    assert sum(r[1] for r in rows["1d"]) == sum(r[1] for r in rows["1h"]) == sum(r[1] for r in rows["1m"])
    assert not db.execute("SELECT count(*) FROM gateway_hours WHERE dirty").fetchone()[0]


def test_an_hour_is_rolled_up_once_it_ended_and_settled(store, maintenance):
    write(store, day_of_readings(rounds=6))  # 00:00 .. 00:50
    assert maintenance(KEEP_ALL, now=DAY0 + timedelta(minutes=61)).hours_rolled == 0
    assert maintenance(KEEP_ALL, now=DAY0 + timedelta(hours=1) + storage.SETTLE).hours_rolled == 1


def test_a_late_reading_makes_its_hour_dirty_and_aggregates_count_it_before_and_after_the_roll_up(
        db, store, maintenance, postgres):
    write(store, day_of_readings())
    maintenance(KEEP_ALL)
    late = Reading(10_000, T0 + 3 * 3600 + 1, "air", "temperature", -5.0, "°C")
    assert write(store, [late]).readings_new == 1
    assert db.execute("SELECT dirty FROM gateway_hours WHERE hour = %s",
                              (DAY0 + timedelta(hours=3),)).fetchone() == (True,)
    fresh = export(postgres, queries.AGGREGATES["1h"], every="1h")
    assert b"2025-07-01T03:00:00.000Z,gh-store,air,temperature,\xc2\xb0C,7,-5," in fresh  # read from the rows
    assert maintenance(KEEP_ALL).hours_rolled == 1
    assert export(postgres, queries.AGGREGATES["1h"], every="1h") == fresh  # now from the recomputed roll-up


def test_aggregates_from_the_roll_ups_equal_those_from_the_rows(store, maintenance, postgres):
    write(store, day_of_readings())
    before = exports(postgres)  # every hour is dirty: all of it read from the rows
    maintenance(KEEP_ALL)
    after = exports(postgres)
    for name in before:
        assert after[name] == before[name], name


def test_only_one_collector_maintains_at_a_time(store, postgres):
    write(store, day_of_readings(rounds=12))
    holder = psycopg.connect(postgres.url, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (storage.MAINTENANCE_LOCK,))
        with psycopg.connect(postgres.url) as conn:
            assert storage.maintain(conn, KEEP_ALL, now=NOW).busy
        holder.execute("SELECT pg_advisory_unlock(%s)", (storage.MAINTENANCE_LOCK,))
        with psycopg.connect(postgres.url) as conn:
            done = storage.maintain(conn, KEEP_ALL, now=NOW)
        assert not done.busy and done.hours_rolled == 2
    finally:
        holder.close()


def test_two_maintenances_started_together_do_the_work_once(db, store, postgres):
    write(store, day_of_readings())
    results = []

    def run():
        with psycopg.connect(postgres.url) as conn:
            results.append(storage.maintain(conn, COMPACT, now=NOW))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.days_compacted for r in results) == 2
    assert db.execute("SELECT sum(n) FROM readings_compact").fetchone()[0] == 2 * 24 * 6 * 3


# ---------------------------------------------------------------------------------------------------- compaction


def test_compaction_moves_old_days_out_of_the_hot_table_and_every_export_reads_the_same(db, store, maintenance,
                                                                                         postgres):
    readings = day_of_readings()
    write(store, readings[:400])
    write(store, readings[400:], epoch=2)  # a restart: a second epoch within the day
    before = exports(postgres)
    done = maintenance()
    assert (done.days_compacted, done.readings_compacted) == (2, len(readings))
    assert hot_rows(db) == 0
    chunks = db.execute("SELECT count(*), sum(n) FROM readings_compact").fetchone()
    assert chunks == (3 + 4, len(readings))  # a series per day, and the unit that changed on day 2
    assert db.execute("SELECT epoch, first_seq, last_seq FROM readings_compacted ORDER BY 1").fetchall() == [
        (1, 1, 400), (2, 401, len(readings))]
    after = exports(postgres)
    for name in before:
        assert after[name] == before[name], name
    assert not db.execute("SELECT count(*) FROM rollup_1m").fetchone()[0]  # minutes come from the chunks


def test_a_day_is_compacted_only_once_it_is_older_than_raw_days(db, store, maintenance):
    write(store, day_of_readings())
    assert maintenance(now=DAY0 + timedelta(days=31)).days_compacted == 1  # the 1st is 30 days old, the 2nd not
    assert maintenance(now=DAY0 + timedelta(days=31)).days_compacted == 0
    assert hot_rows(db) == 24 * 6 * 3
    assert maintenance(now=DAY0 + timedelta(days=32)).days_compacted == 1
    assert hot_rows(db) == 0


def test_a_late_resend_of_a_compacted_key_is_not_stored_twice(db, store, maintenance, postgres):
    readings = day_of_readings()
    write(store, readings)
    maintenance()
    before = exports(postgres)
    again = write(store, readings[100:300])
    assert (again.readings_new, again.readings_duplicate) == (0, 200)
    assert not again.conflicts
    assert hot_rows(db) == 0
    assert exports(postgres) == before
    assert not db.execute("SELECT count(*) FROM gateway_hours WHERE dirty OR raw").fetchone()[0]
    unsynced = next(r for r in readings if r.clock == 0)  # sent again with the time corrected once the clock synced
    corrected = Reading(unsynced.seq, NOW.timestamp(), unsynced.sensor, unsynced.quantity, unsynced.value,
                        unsynced.unit, clock=2, boot_id=unsynced.boot_id, mono=unsynced.mono)
    assert write(store, [corrected]).readings_duplicate == 1
    assert hot_rows(db) == 0


def test_a_new_late_reading_for_a_compacted_day_is_stored_merged_and_counted(db, store, maintenance, postgres):
    readings = day_of_readings()
    missing = readings.pop(150)  # lost on the way, sent again weeks later
    write(store, readings)
    maintenance()
    assert db.execute("SELECT epoch, first_seq, last_seq FROM readings_compacted ORDER BY 2").fetchall() == [
        (1, 1, 150), (1, 152, len(readings) + 1)]
    late = write(store, [missing])
    assert late.readings_new == 1 and hot_rows(db) == 1
    raw = export(postgres, queries.RAW)
    assert raw.count(b"\n") == len(readings) + 2  # the header, every reading, the late one
    done = maintenance()
    assert (done.hours_rolled, done.days_compacted, done.readings_compacted) == (1, 1, 1)
    assert hot_rows(db) == 0
    assert db.execute("SELECT epoch, first_seq, last_seq FROM readings_compacted").fetchall() == [
        (1, 1, len(readings) + 1)]
    assert export(postgres, queries.RAW) == raw
    assert write(store, [missing]).readings_duplicate == 1  # and it is a duplicate from now on
    write(store, [*readings[:150], missing, *readings[150:]], gateway="gh-other")
    with postgres.connect() as conn:  # the same readings never compacted: the same roll-ups
        for table in storage.ROLLUP_TABLES:
            maintenance()
            assert conn.execute(f"SELECT sensor, quantity, unit, bucket, readings, good, min, max FROM {table} "
                                "WHERE gateway_id = %s ORDER BY 1, 2, 3, 4", (GATEWAY,)).fetchall() == \
                conn.execute(f"SELECT sensor, quantity, unit, bucket, readings, good, min, max FROM {table} "
                             "WHERE gateway_id = 'gh-other' ORDER BY 1, 2, 3, 4").fetchall()


def test_a_resend_that_raced_a_compaction_is_dropped_at_the_next_one(db, store, maintenance, postgres):
    readings = day_of_readings()
    write(store, readings)
    maintenance()
    raw = export(postgres, queries.RAW)
    # what a re-send committed by a collector that had not yet seen the new key ranges leaves behind
    db.execute("INSERT INTO readings (gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, "
                       "clock) SELECT gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, clock "
                       "FROM readings_cold(%s, NULL, NULL, %s, %s) WHERE seq <= 30", (GATEWAY, DAY0, DAY0))
    db.execute("UPDATE gateway_hours SET raw = true, dirty = true WHERE hour = %s", (DAY0,))
    maintenance()
    assert hot_rows(db) == 0
    assert export(postgres, queries.RAW) == raw
    assert db.execute("SELECT readings, good FROM rollup_1h WHERE bucket = %s AND sensor = 'air' AND "
                              "quantity = 'temperature'", (DAY0,)).fetchone() == (6, 6)


def test_compacted_readings_take_a_few_bytes_each(db, store, maintenance):
    write(store, day_of_readings(rounds=6 * 24 * 60, every=60.0))  # 6 days of three series every minute
    maintenance(now=DAY0 + timedelta(days=37))
    size = db.execute("SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('readings_compact') "
                              "WHERE isleaf").fetchone()[0]
    compacted = db.execute("SELECT sum(n) FROM readings_compact").fetchone()[0]
    assert compacted == 6 * 24 * 60 * 3
    assert size / compacted < 10


def test_old_partitions_of_compacted_readings_are_dropped_whole(db, store, maintenance):
    write(store, day_of_readings())
    maintenance()
    rolled = db.execute("SELECT count(*) FROM rollup_1h").fetchone()[0]
    assert maintenance(storage.Settings(raw_days=30, compacted_days=60), now=DAY0 + timedelta(days=50)) \
        .partitions_dropped == []
    done = maintenance(storage.Settings(raw_days=30, compacted_days=60), now=DAY0 + timedelta(days=92))
    assert done.partitions_dropped == ["readings_compact_202507"]
    assert not db.execute("SELECT count(*) FROM readings_compact").fetchone()[0]
    assert not db.execute("SELECT count(*) FROM compacted_series").fetchone()[0]
    assert db.execute("SELECT count(*) FROM rollup_1h").fetchone()[0] == rolled  # roll-ups stay


def test_series_span_hot_and_compacted_days(store, maintenance, postgres):
    readings = day_of_readings()
    write(store, readings)
    maintenance(now=DAY0 + timedelta(days=31))  # the first day compacted, the second hot
    with postgres.connect() as conn:
        found = {(s.sensor, s.quantity): s for s in queries.series(conn, GATEWAY)}
    soil = found[("soil", "soil_moisture")]
    assert soil.unit == "m3/m3"
    assert soil.first == datetime.fromtimestamp(readings[2].ts, UTC)
    assert soil.last == datetime.fromtimestamp(readings[-1].ts, UTC)


# --------------------------------------------------------------------------------------------- in the collector


def test_the_collector_rolls_up_and_compacts_what_it_stored(db, postgres):
    """A running collector (one writer, no broker) does the maintenance on its own: readings 40 days old that it
    stores are rolled up and compacted; a collector configured not to maintain leaves them alone."""
    from conftest import wait_until

    from edge.contract.protocol import encode_readings, topic, UP_READINGS
    from edge.datacenter.collector import Collector
    from edge.datacenter.config import DataCenterConfig
    from edge.datacenter.source import MemorySource

    old = datetime.now(UTC).timestamp() - 40 * 86400
    readings = day_of_readings(start=old - old % 86400, rounds=6)

    def collector(maintain: bool) -> tuple[Collector, MemorySource]:
        config = DataCenterConfig(mqtt={"url": "mqtt://127.0.0.1:1"}, database={"url": postgres.url},
                                  collector={"writers": 1},
                                  storage={"maintain": maintain, "maintain_every": "0.1s"})
        source = MemorySource()
        return Collector(config, client_id="memory", source=source), source

    idle, source = collector(maintain=False)
    assert idle.maintenance is None
    idle.start()
    try:
        source.put(topic(GATEWAY, UP_READINGS), encode_readings(GATEWAY, 1, readings))
        wait_until(lambda: len(source.settled) == 1, timeout=20, what="the batch stored")
    finally:
        idle.stop()
    assert hot_rows(db) == len(readings)
    running, _ = collector(maintain=True)
    running.start()
    try:
        wait_until(lambda: hot_rows(db) == 0, timeout=30, what="the readings compacted")
    finally:
        running.stop()
    assert db.execute("SELECT sum(n) FROM readings_compact").fetchone()[0] == len(readings)
    assert db.execute("SELECT sum(readings) FROM rollup_1h").fetchone()[0] == len(readings)


def test_the_hot_table_reuses_the_space_compacted_rows_leave(db, store, maintenance):
    """Day after day, rows come in and rows older than raw_days leave: once the window is full the hot table's files
    stop growing (the maintenance vacuums what it deleted from), instead of growing with every day stored."""
    def partition_size() -> int:
        return db.execute("SELECT pg_total_relation_size(tableoid) FROM readings LIMIT 1").fetchone()[0]

    sizes, seq = [], 1
    for day in range(6):
        start = T0 + day * 86400
        readings = day_of_readings(start=start, rounds=24 * 20, every=180.0, epoch_seq=seq)
        seq += len(readings)
        write(store, readings)
        maintenance(storage.Settings(raw_days=2), now=DAY0 + timedelta(days=day + 1, hours=1))
        sizes.append(partition_size())
    assert hot_rows(db) == 2 * 24 * 20 * 3  # two days hot
    assert sizes[-1] <= sizes[3] * 1.1, sizes  # steady, not growing by a day's rows each day


def test_whatever_an_older_collector_stored_the_maintenance_rolls_up_compacts_or_leaves_alone(db, store,
                                                                                               maintenance, postgres):
    """Rows stored by hand or by an older collector (times in 32 BC and AD 33658, values of 1e308, NaN, infinity)
    neither stop the maintenance nor come back changed: what a Python datetime holds is compacted (values kept as
    their text), the rest stays in the hot table."""
    write(store, day_of_readings(rounds=12))
    lies = [("0032-07-01 00:00:00+00 BC", 1.0), ("33658-07-01 00:00:00+00", 2.0), ("2025-07-01 05:00:00+00", 1e308),
            ("2025-07-01 05:01:00+00", float("nan")), ("2025-07-01 05:02:00+00", float("-inf")),
            ("2025-07-01 05:03:00+00", 5e-324)]
    for seq, (ts, value) in enumerate(lies, 10_000):
        db.execute("INSERT INTO readings (gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, clock) "
                   "VALUES (%s, 1, %s, %s, 'liar', 'temperature', %s, '°C', 'good', 1)", (GATEWAY, seq, ts, value))
        db.execute("INSERT INTO gateway_hours (gateway_id, hour, readings, good) VALUES (%s, date_bin('1 hour', "
                   "%s::timestamptz, '2000-01-01 00:00:00+00'), 1, 1) ON CONFLICT (gateway_id, hour) DO UPDATE "
                   "SET dirty = true, raw = true", (GATEWAY, ts))
    before = export(postgres, queries.RAW, DAY0, DAY0 + timedelta(days=1))
    done = maintenance()
    assert done.days_compacted == 1 and not done.failed
    assert hot_rows(db) == 2  # 32 BC and AD 33658
    assert export(postgres, queries.RAW, DAY0, DAY0 + timedelta(days=1)) == before
    assert b"1e+308" in before and b"NaN" in before and b"-Infinity" in before and b"5e-324" in before


def test_the_fleet_shows_the_last_reading_of_a_gateway_whose_readings_are_all_compacted(db, store, maintenance):
    write(store, day_of_readings())
    before = [row for row in queries.fleet(db) if row[0] == GATEWAY]
    maintenance()
    assert hot_rows(db) == 0
    after = [row for row in queries.fleet(db) if row[0] == GATEWAY]
    assert after == before and after[0][queries.FLEET_FIELDS.index("last_reading")].startswith("2025-07-02T23:50")


@pytest.mark.parametrize("seed", range(4))
def test_any_readings_come_back_from_compaction_exactly(db, store, maintenance, postgres, seed):
    """Random days (seeded): values of any scale or none, runs of missing values (a chunk may start or be made of
    them), microsecond times, several epochs, gaps in the seqs, units that change, qualities, clocks and reasons:
    the raw export is the same before and after the compaction."""
    import random

    rng = random.Random(seed)
    readings, seq, epoch, batches = [], 1, 1, []
    t = T0 + rng.uniform(0, 3600)
    while t < T0 + 2 * 86400:
        for sensor, quantity, unit in SENSORS[:rng.randint(1, 3)]:
            kind = rng.random()
            value = (None if kind < 0.15 else round(rng.uniform(-50, 50), rng.randint(0, 7)) if kind < 0.85
                     else rng.choice([1 / 3, -0.0, 1e15 + 0.5, 2.5e-7, 123456789.123, 0.0]))
            quality = "error" if value is None else rng.choice(["good"] * 8 + ["implausible"])
            clock = rng.choice([1] * 6 + [0, 2])
            readings.append(Reading(seq, round(t, rng.choice([3, 3, 6])), sensor, quantity, value,
                                    unit if rng.random() < 0.95 else "other", quality,
                                    None if quality == "good" else rng.choice(["a, \"quoted\" reason", "x"]),
                                    clock, "boot" if clock != 1 else None, rng.uniform(0, 1e6) if clock else None))
            seq += rng.choice([1] * 20 + [2, 50])
        t += rng.choice([60.0, 60.0, 0.5, 3600.0])
        if rng.random() < 0.002:
            batches.append((epoch, readings))
            readings, epoch, seq = [], epoch + 1, 1
    batches.append((epoch, readings))
    for epoch, chunk in batches:
        for first in range(0, len(chunk), 500):
            write(store, chunk[first:first + 500], epoch=epoch)
    before = export(postgres, queries.RAW)
    done = maintenance()
    assert done.days_compacted == 2 and hot_rows(db) == 0
    assert export(postgres, queries.RAW) == before


def test_a_reading_re_timed_after_the_clock_synced_moves_between_hours_in_the_roll_ups(db, store, maintenance):
    unsynced = Reading(1, T0 + 60, "air", "temperature", 21.0, "°C", clock=0, boot_id="boot-1", mono=100.0)
    write(store, [unsynced, Reading(2, T0 + 5 * 3600, "air", "temperature", 22.0, "°C")])
    maintenance(KEEP_ALL)
    corrected = Reading(1, T0 + 5 * 3600 + 60, "air", "temperature", 21.0, "°C", clock=2, boot_id="boot-1",
                        mono=100.0)
    write(store, [corrected])
    assert db.execute("SELECT hour FROM gateway_hours WHERE dirty ORDER BY hour").fetchall() == [
        (DAY0,), (DAY0 + timedelta(hours=5),)]
    maintenance(KEEP_ALL)
    assert db.execute("SELECT bucket, readings FROM rollup_1h ORDER BY bucket").fetchall() == [
        (DAY0 + timedelta(hours=5), 2)]


def test_the_maintenance_thread_outlives_a_run_that_raises_anything(postgres, monkeypatch, caplog):
    """Whatever a run meets (not only a database error), the thread logs it and runs again at its next turn: the
    roll-ups and the compaction must not stop for good while the collector goes on storing."""
    runs: list[int] = []
    second = threading.Event()

    def flaky(conn, settings, clock):
        runs.append(len(runs))
        if len(runs) == 1:
            raise ValueError("a value the maintenance did not expect")
        second.set()
        return real(conn, settings, clock=clock)

    real = storage.maintain
    monkeypatch.setattr(storage, "maintain", flaky)
    thread = storage.Maintenance(postgres.url, storage.Settings(), every=0.05).start()
    try:
        assert second.wait(30), "the maintenance did not run again after a run that raised"
    finally:
        thread.stop()
    assert "a value the maintenance did not expect" in caplog.text
