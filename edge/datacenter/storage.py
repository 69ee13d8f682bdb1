"""Storage that fits a province: roll-ups kept for ever, old raw readings compacted (``docs/datacenter.md``).

The collector's insert marks each gateway-hour it adds readings to ``dirty`` (its roll-ups are stale) and ``raw`` (it
has rows in the hot ``readings`` table), in the ``gateway_hours`` upsert it already makes. :func:`maintain`, run by
one collector at a time (a session advisory lock) every ``storage.maintain_every``:

1. **Roll-ups.** Every dirty hour that ended ``SETTLE`` ago is recomputed from its rows (hot and compacted), per
   series: ``rollup_1m`` and ``rollup_1h`` from the rows, ``rollup_1d`` from the day's hours. A recomputation is
   idempotent, so a late reading (which marks its hour dirty again) is simply counted at the next run. The flag is
   cleared only if no collector touched the hour meanwhile (its row version, ``xmin``, is the one read).
2. **Compaction.** Every gateway-day with raw hours older than ``storage.raw_days`` becomes one row per series in
   ``readings_compact`` (monthly range partitions, made here): delta-encoded lists and arrays that PostgreSQL
   compresses. A day compacted before is decoded and merged with its late rows. The keys move to
   ``readings_compacted`` as seq ranges per gateway and epoch (the collector stores no such key again), the hot rows
   are deleted in the same transaction, and the touched partitions of the hot table are vacuumed afterwards.
3. **Retention.** With ``storage.compacted_days``, monthly partitions of compacted readings older than that are
   dropped (a partition drop, no delete); roll-ups stay.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import psycopg

from edge.datacenter.queries import physical_sql

log = logging.getLogger(__name__)

UTC = timezone.utc
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: An hour's roll-ups are computed once it ended this long ago (readings of its last seconds are still arriving).
SETTLE = timedelta(minutes=2)
#: pg_try_advisory_lock key ("roll"): one maintenance at a time among the collectors.
MAINTENANCE_LOCK = 0x726F6C6C
#: Gateway-hours recomputed in one transaction.
ROLLUP_BATCH = 200
ROLLUP_TABLES = ("rollup_1m", "rollup_1h", "rollup_1d")
COMPACT_TABLES = ("readings_compact", "readings_compacted", "compacted_series", "compaction_horizon")


@dataclass(frozen=True)
class Settings:
    """What :func:`maintain` keeps (``storage:`` of the data-center config)."""

    raw_days: float = 30.0
    compacted_days: float | None = None
    #: stop taking new work after this many seconds (what was started is finished)
    budget: float = 50.0


@dataclass
class Done:
    hours_rolled: int = 0
    days_compacted: int = 0
    readings_compacted: int = 0
    partitions_dropped: list[str] = field(default_factory=list)
    failed: list[tuple[str, datetime]] = field(default_factory=list)  # gateway-days that could not be compacted
    busy: bool = False  # another collector holds the maintenance

    def __str__(self) -> str:
        if self.busy:
            return "another collector is maintaining the storage"
        dropped = f", dropped {', '.join(self.partitions_dropped)}" if self.partitions_dropped else ""
        return (f"{self.hours_rolled} gateway-hours rolled up, {self.days_compacted} gateway-days compacted "
                f"({self.readings_compacted} readings){dropped}")


#: A reading that counts in the roll-ups, as in the history API's aggregates: good, with a value within the physical
#: range of its quantity.
GOOD = f"(quality = 'good' AND value IS NOT NULL AND {physical_sql()})"


def maintain(conn: psycopg.Connection, settings: Settings, now: datetime | None = None,
             clock: Callable[[], float] = time.monotonic) -> Done:
    """One maintenance run (roll-ups, compaction, retention) on ``conn``, unless another collector runs one."""
    now = now or datetime.now(UTC)
    done = Done()
    conn.autocommit = False
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (MAINTENANCE_LOCK,)).fetchone()[0]:
        conn.rollback()
        done.busy = True
        return done
    conn.commit()
    try:
        deadline = clock() + settings.budget
        cutoff = _floor(now - timedelta(days=settings.raw_days), DAY)
        touched: set[str] = set()
        while clock() < deadline and (rolled := roll_up(conn, now)):
            done.hours_rolled += rolled
        failed: list[tuple[str, datetime]] = []
        while clock() < deadline and (day := _next_raw_day(conn, cutoff, failed)) is not None:
            try:
                done.readings_compacted += compact_day(conn, *day, touched)
                done.days_compacted += 1
            except psycopg.DataError as exc:  # one day's data PostgreSQL refuses: the others go on
                failed.append(day)
                done.failed.append(day)
                log.error("storage: gateway %s's readings of %s stay in the hot table, they cannot be compacted: "
                          "%s", day[0], day[1].date().isoformat(), str(exc).strip().splitlines()[0])
        while clock() < deadline and (rolled := roll_up(conn, now)):  # days a compaction found re-sends in
            done.hours_rolled += rolled
        if settings.compacted_days is not None:
            done.partitions_dropped = drop_old_partitions(conn, now - timedelta(days=settings.compacted_days))
        _vacuum(conn, touched)
    finally:
        conn.rollback()
        conn.execute("SELECT pg_advisory_unlock(%s)", (MAINTENANCE_LOCK,))
        conn.commit()
    return done


def _floor(ts: datetime, size: timedelta) -> datetime:
    return ts - (ts - ORIGIN) % size


# ----------------------------------------------------------------------------------------------------- roll-ups

#: Hours a Python datetime holds (rows an older collector stored in 32 BC or AD 33658 stay as they are).
HANDLED = "hour >= '0001-01-02 00:00:00+00' AND hour < '9999-12-30 00:00:00+00'"
_DIRTY = f"""
    SELECT gateway_id, hour, xmin::text FROM gateway_hours
    WHERE dirty AND hour <= %(settled)s AND {HANDLED} ORDER BY hour, gateway_id LIMIT %(limit)s"""
_ROWS = f"""
    CREATE TEMPORARY TABLE rollup_rows ON COMMIT DROP AS
    WITH d AS (SELECT * FROM unnest(%(gateways)s::text[], %(hours)s::timestamptz[]) AS d(gateway_id, hour)),
    days AS (SELECT gateway_id, date_bin('1 day', hour, %(origin)s) AS day, array_agg(hour) AS hours
             FROM d GROUP BY 1, 2)
    SELECT d.gateway_id, r.sensor, r.quantity, r.unit, r.ts, r.value, {GOOD} AS good
    FROM d CROSS JOIN LATERAL readings_hot(d.gateway_id, d.hour, d.hour + interval '1 hour') AS r
    UNION ALL
    SELECT days.gateway_id, r.sensor, r.quantity, r.unit, r.ts, r.value, {GOOD}
    FROM days CROSS JOIN LATERAL readings_cold(days.gateway_id, NULL, NULL, days.day, days.day) AS r
    WHERE date_bin('1 hour', r.ts, %(origin)s) = ANY(days.hours)"""
_UNROLL = """
    DELETE FROM {table} AS t USING unnest(%s::text[], %s::timestamptz[]) AS d(gateway_id, hour)
    WHERE t.gateway_id = d.gateway_id AND t.bucket >= d.hour AND t.bucket < d.hour + interval '{span}'"""
_ROLL = """
    INSERT INTO {table} (gateway_id, sensor, quantity, unit, bucket, readings, good, min, max, sum)
    SELECT gateway_id, sensor, quantity, unit, date_bin(interval '{width}', ts, %s), count(*),
           count(*) FILTER (WHERE good), min(value) FILTER (WHERE good), max(value) FILTER (WHERE good),
           sum(value) FILTER (WHERE good)
    FROM rollup_rows GROUP BY 1, 2, 3, 4, 5"""
#: Minutes are kept while a day's rows are hot: a compacted day's minutes are computed from its chunks.
_UNROLL_COMPACTED = """
    DELETE FROM rollup_1m AS t USING (SELECT DISTINCT gateway_id, (ts AT TIME ZONE 'UTC')::date AS day
                                      FROM rollup_rows) AS d
    WHERE t.gateway_id = d.gateway_id AND t.bucket >= d.day::timestamp AT TIME ZONE 'UTC'
      AND t.bucket < (d.day + 1)::timestamp AT TIME ZONE 'UTC'
      AND EXISTS (SELECT FROM readings_compact AS c WHERE c.gateway_id = d.gateway_id AND c.day = d.day)"""
_ROLL_DAYS = """
    INSERT INTO rollup_1d (gateway_id, sensor, quantity, unit, bucket, readings, good, min, max, sum)
    SELECT h.gateway_id, h.sensor, h.quantity, h.unit, d.day, sum(h.readings), sum(h.good), min(h.min), max(h.max),
           sum(h.sum)
    FROM unnest(%s::text[], %s::timestamptz[]) AS d(gateway_id, day)
    JOIN rollup_1h AS h ON h.gateway_id = d.gateway_id AND h.bucket >= d.day AND h.bucket < d.day + interval '1 day'
    GROUP BY 1, 2, 3, 4, 5"""
#: Cleared only where the row is still the version read: a collector that added readings to the hour meanwhile made
#: a new version (its update waits for ours, or ours re-reads its), and the hour stays dirty for the next run.
#: Rows are locked in key order, as the collector's upsert locks them, so that the two never deadlock.
_CLEAN = """
    UPDATE gateway_hours AS h SET dirty = false FROM (
        SELECT g.gateway_id, g.hour FROM gateway_hours AS g
        JOIN unnest(%s::text[], %s::timestamptz[], %s::text[]) AS d(gateway_id, hour, version)
        ON g.gateway_id = d.gateway_id AND g.hour = d.hour AND g.xmin::text = d.version
        ORDER BY g.gateway_id, g.hour FOR UPDATE OF g) AS l
    WHERE h.gateway_id = l.gateway_id AND h.hour = l.hour"""


def roll_up(conn: psycopg.Connection, now: datetime, limit: int = ROLLUP_BATCH) -> int:
    """Recompute the roll-ups of up to ``limit`` dirty gateway-hours that ended ``SETTLE`` ago, in one
    transaction; return how many."""
    with conn.transaction():
        dirty = conn.execute(_DIRTY, {"settled": now - SETTLE - HOUR, "limit": limit}).fetchall()
        if not dirty:
            return 0
        gateways = [g for g, _, _ in dirty]
        hours = [h for _, h, _ in dirty]
        conn.execute(_ROWS, {"gateways": gateways, "hours": hours, "origin": ORIGIN})
        for table, width, span in (("rollup_1m", "1 minute", "1 hour"), ("rollup_1h", "1 hour", "1 hour")):
            conn.execute(_UNROLL.format(table=table, span=span), (gateways, hours))
            conn.execute(_ROLL.format(table=table, width=width), (ORIGIN,))
        conn.execute(_UNROLL_COMPACTED)
        days = sorted({(g, _floor(h, DAY)) for g, h in zip(gateways, hours)})
        day_gateways, day_starts = [g for g, _ in days], [d for _, d in days]
        conn.execute(_UNROLL.format(table="rollup_1d", span="1 day"), (day_gateways, day_starts))
        conn.execute(_ROLL_DAYS, (day_gateways, day_starts))
        conn.execute(_CLEAN, (gateways, hours, [v for _, _, v in dirty]))
    return len(dirty)


# --------------------------------------------------------------------------------------------------- compaction

_RAW_DAY = f"""
    SELECT gateway_id, date_bin('1 day', hour, %(origin)s) FROM gateway_hours
    WHERE raw AND hour < %(cutoff)s AND {HANDLED} AND (gateway_id, date_bin('1 day', hour, %(origin)s))
          NOT IN (SELECT * FROM unnest(%(failed_gateways)s::text[], %(failed_days)s::timestamptz[]))
    ORDER BY hour, gateway_id LIMIT 1"""
_RAW_HOURS = """
    SELECT hour, xmin::text FROM gateway_hours
    WHERE gateway_id = %(gateway)s AND raw AND hour >= %(day)s AND hour < %(day)s + interval '1 day'"""
#: The day's readings, hot and already compacted; a hot row whose key is compacted already (a re-send that raced
#: an earlier compaction) gives way to the compacted one.
_DAY_ROWS = """
    CREATE TEMPORARY TABLE compact_rows ON COMMIT DROP AS
    SELECT DISTINCT ON (epoch, seq) * FROM (
        SELECT epoch, seq, ts, sensor, quantity, value, unit, quality, reason, clock, boot_id, mono, true AS hot
        FROM readings_hot(%(gateway)s, %(day)s, %(day)s + interval '1 day')
        UNION ALL
        SELECT epoch, seq, ts, sensor, quantity, value, unit, quality, reason, clock, boot_id, mono, false
        FROM readings_cold(%(gateway)s, NULL, NULL, %(day)s, %(day)s)
    ) AS t ORDER BY epoch, seq, hot"""
#: One chunk per series of the day, in key order: epochs as an array, seqs and times (in microseconds, or
#: milliseconds when every time is a whole one) as deltas of deltas, values as deltas of value x 10^scale with the
#: smallest scale (0..6) that gives every value back exactly, or as their text when none does; '' is NULL.
_ENCODE = """
    WITH r AS (
        SELECT *, (extract(epoch FROM ts) * 1000000)::bigint AS us,
               CASE WHEN value IS NULL THEN 0
                    WHEN value <> 0 AND abs(value) >= 1e9 THEN 99
                    WHEN value = 0 AND value::text <> '0' THEN 99
                    WHEN round(value) = value THEN 0
                    WHEN round(value * 1e1) / 1e1 = value THEN 1 WHEN round(value * 1e2) / 1e2 = value THEN 2
                    WHEN round(value * 1e3) / 1e3 = value THEN 3 WHEN round(value * 1e4) / 1e4 = value THEN 4
                    WHEN round(value * 1e5) / 1e5 = value THEN 5 WHEN round(value * 1e6) / 1e6 = value THEN 6
                    ELSE 99 END AS digits
        FROM compact_rows
    ), c AS (
        SELECT sensor, quantity, unit, max(digits) AS scale, bool_and(us %% 1000 = 0) AS whole_ms
        FROM r GROUP BY 1, 2, 3
    ), m AS (
        SELECT r.*, c.scale, CASE WHEN c.whole_ms THEN 1000 ELSE 1 END AS unit_us,
               CASE WHEN c.scale <= 6 THEN round(r.value * 10::float8 ^ c.scale)::bigint END AS mantissa,
               row_number() OVER (PARTITION BY r.sensor, r.quantity, r.unit ORDER BY r.epoch, r.seq) AS i
        FROM r JOIN c USING (sensor, quantity, unit)
    ), f AS (  -- the last mantissa at or before each row (a NULL value keeps the one before it)
        SELECT m.*, first_value(mantissa) OVER (PARTITION BY sensor, quantity, unit, filled ORDER BY i) AS carried
        FROM (SELECT m.*, count(mantissa) OVER (PARTITION BY sensor, quantity, unit ORDER BY i) AS filled FROM m) m
    ), d1 AS (
        SELECT f.*, seq - lag(seq, 1, 0::bigint) OVER w AS seq_d,
               us / unit_us - lag(us / unit_us, 1, 0::bigint) OVER w AS t_d,
               mantissa - coalesce(lag(carried) OVER w, 0) AS v_d
        FROM f WINDOW w AS (PARTITION BY sensor, quantity, unit ORDER BY i)
    ), d2 AS (
        SELECT d1.*, seq_d - lag(seq_d, 1, 0::bigint) OVER w AS seq_dd, t_d - lag(t_d, 1, 0::bigint) OVER w AS t_dd
        FROM d1 WINDOW w AS (PARTITION BY sensor, quantity, unit ORDER BY i)
    )
    INSERT INTO readings_compact (gateway_id, sensor, quantity, day, unit, n, first_ts, last_ts, epochs, seqs, times,
                                  time_unit, vals, value_scale, qualities, reasons, clocks, boot_ids, monos)
    SELECT %(gateway)s, sensor, quantity, %(date)s, unit, count(*), min(ts), max(ts),
           array_agg(epoch ORDER BY i), string_agg(seq_dd::text, ',' ORDER BY i),
           string_agg(t_dd::text, ',' ORDER BY i), min(unit_us),
           CASE WHEN min(scale) <= 6 THEN string_agg(coalesce(v_d::text, ''), ',' ORDER BY i)
                ELSE string_agg(coalesce(value::text, ''), ',' ORDER BY i) END,
           CASE WHEN min(scale) <= 6 THEN min(scale) END,
           array_agg(quality ORDER BY i),
           CASE WHEN bool_or(reason IS NOT NULL) THEN array_agg(reason ORDER BY i) END,
           array_agg(clock ORDER BY i),
           CASE WHEN bool_or(boot_id IS NOT NULL) THEN array_agg(boot_id ORDER BY i) END,
           CASE WHEN bool_or(mono IS NOT NULL) THEN array_agg(mono ORDER BY i) END
    FROM d2 GROUP BY sensor, quantity, unit"""
_PARTITION = """
    SELECT r.tableoid::regclass::text FROM readings AS r
    JOIN (SELECT epoch, seq FROM compact_rows WHERE hot LIMIT 1) AS c
    ON r.gateway_id = %(gateway)s AND r.epoch = c.epoch AND r.seq = c.seq"""
#: Every hot row of the day's keys: those compacted now, and re-sends of keys compacted before.
_SERIES = """
    INSERT INTO compacted_series AS s (gateway_id, sensor, quantity, unit, first_ts, last_ts)
    SELECT gateway_id, sensor, quantity, unit, first_ts, last_ts FROM readings_compact
    WHERE gateway_id = %(gateway)s AND day = %(date)s ORDER BY sensor, quantity, unit
    ON CONFLICT (gateway_id, sensor, quantity, unit) DO UPDATE
    SET first_ts = least(s.first_ts, excluded.first_ts), last_ts = greatest(s.last_ts, excluded.last_ts)"""
_DELETE_HOT = """
    DELETE FROM readings AS r USING compact_rows AS c
    WHERE r.gateway_id = %(gateway)s AND r.epoch = c.epoch AND r.seq = c.seq"""
#: The day's keys as runs of consecutive seqs per epoch.
_RUNS = """
    SELECT epoch, min(seq), max(seq) FROM (SELECT epoch, seq, seq - row_number() OVER (PARTITION BY epoch ORDER BY seq)
                                           AS run FROM compact_rows) AS t
    GROUP BY epoch, run"""
_CLEAR_RAW = """
    UPDATE gateway_hours AS h SET raw = false FROM (
        SELECT g.gateway_id, g.hour FROM gateway_hours AS g
        JOIN unnest(%s::timestamptz[], %s::text[]) AS d(hour, version)
        ON g.gateway_id = %s AND g.hour = d.hour AND g.xmin::text = d.version
        ORDER BY g.hour FOR UPDATE OF g) AS l
    WHERE h.gateway_id = l.gateway_id AND h.hour = l.hour"""


def _next_raw_day(conn: psycopg.Connection, cutoff: datetime, failed: list[tuple[str, datetime]]
                  ) -> tuple[str, datetime] | None:
    with conn.transaction():
        row = conn.execute(_RAW_DAY, {"cutoff": cutoff, "origin": ORIGIN, "failed_gateways": [g for g, _ in failed],
                                      "failed_days": [d for _, d in failed]}).fetchone()
    return (row[0], row[1]) if row else None


def compact_day(conn: psycopg.Connection, gateway_id: str, day: datetime, touched: set[str] | None = None) -> int:
    """Compact one gateway's readings of one UTC day (merging a day compacted before); return how many rows left
    the hot table. One transaction: the chunks, the key ranges, the hot rows deleted, the hours' raw flag cleared."""
    values = {"gateway": gateway_id, "day": day, "date": day.date()}
    with conn.transaction():
        hours = conn.execute(_RAW_HOURS, values).fetchall()
        conn.execute("SET LOCAL extra_float_digits = 3")  # values kept as text are written back exactly
        ensure_partition(conn, day.date())
        conn.execute(_DAY_ROWS, values)
        conn.execute("DELETE FROM readings_compact WHERE gateway_id = %(gateway)s AND day = %(date)s", values)
        conn.execute("DELETE FROM rollup_1m WHERE gateway_id = %(gateway)s AND bucket >= %(day)s "
                     "AND bucket < %(day)s + interval '1 day'", values)
        conn.execute(_ENCODE, values)
        conn.execute(_SERIES, values)
        runs = conn.execute(_RUNS).fetchall()
        _add_ranges(conn, gateway_id, runs)
        conn.execute("UPDATE compaction_horizon SET before = greatest(before, %s)",
                     ((day + DAY).timestamp(),))
        kept = conn.execute("SELECT count(*) FROM compact_rows WHERE hot").fetchone()[0]
        if touched is not None and kept:
            touched.add(conn.execute(_PARTITION, values).fetchone()[0])
        moved = conn.execute(_DELETE_HOT, values).rowcount
        conn.execute(_CLEAR_RAW, ([h for h, _ in hours], [v for _, v in hours], gateway_id))
        if moved > kept:  # re-sends that raced an earlier compaction were counted twice: count the day again
            conn.execute("UPDATE gateway_hours SET dirty = true WHERE gateway_id = %(gateway)s AND hour >= %(day)s "
                         "AND hour < %(day)s + interval '1 day'", values)
    return moved


def _add_ranges(conn: psycopg.Connection, gateway_id: str, runs: list[tuple[int, int, int]]) -> None:
    """Merge the day's runs of keys into the gateway's compacted ranges (overlapping or adjacent ones join)."""
    epochs = sorted({epoch for epoch, _, _ in runs})
    if not epochs:
        return
    held = conn.execute("DELETE FROM readings_compacted WHERE gateway_id = %s AND epoch = ANY(%s) "
                        "RETURNING epoch, first_seq, last_seq", (gateway_id, epochs)).fetchall()
    merged: list[list[int]] = []
    for epoch, first, last in sorted([*held, *runs]):
        if merged and merged[-1][0] == epoch and first <= merged[-1][2] + 1:
            merged[-1][2] = max(merged[-1][2], last)
        else:
            merged.append([epoch, first, last])
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO readings_compacted (gateway_id, epoch, first_seq, last_seq) "
                        "VALUES (%s, %s, %s, %s)",
                        [(gateway_id, *m) for m in merged])


def partition_name(day: date) -> str:
    return f"readings_compact_{day.year:04d}{day.month:02d}"


def ensure_partition(conn: psycopg.Connection, day: date) -> None:
    """The month's partition of readings_compact (made when missing; rows small enough stay compressed)."""
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF readings_compact "
                 f"FOR VALUES FROM ('{first.isoformat()}') TO ('{following.isoformat()}') "
                 "WITH (toast_tuple_target = 128)")


def drop_old_partitions(conn: psycopg.Connection, before: datetime) -> list[str]:
    """Drop every monthly partition of compacted readings that ends on or before ``before``."""
    dropped = []
    with conn.transaction():
        names = [row[0] for row in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'readings_compact'::regclass ORDER BY 1")]
        for name in names:
            year, month = int(name[-6:-2]), int(name[-2:])
            end = (date(year, month, 1) + timedelta(days=32)).replace(day=1)
            if datetime(end.year, end.month, end.day, tzinfo=UTC) <= before:
                conn.execute(f"DROP TABLE {name}")
                dropped.append(name)
                log.info("storage: dropped %s (compacted readings older than storage.compacted_days)", name)
        if dropped:  # the series' first times are later now, or gone
            conn.execute("DELETE FROM compacted_series")
            conn.execute("INSERT INTO compacted_series SELECT gateway_id, sensor, quantity, unit, min(first_ts), "
                         "max(last_ts) FROM readings_compact GROUP BY 1, 2, 3, 4")
    return dropped


def _vacuum(conn: psycopg.Connection, tables: set[str]) -> None:
    """Vacuum the hot table's partitions rows were deleted from, so new rows reuse their space."""
    if not tables:
        return
    conn.commit()
    conn.autocommit = True
    try:
        for table in sorted(tables):
            conn.execute(f"VACUUM (ANALYZE) {table}")
    finally:
        conn.autocommit = False


# ------------------------------------------------------------------------------------------ in the collector


class Maintenance:
    """The collector's maintenance thread: :func:`maintain` every ``every`` seconds on a connection of its own
    (one collector at a time does the work; the others find the lock taken and wait for the next turn)."""

    def __init__(self, url: str, settings: Settings, every: float):
        self.url, self.settings, self.every = url, settings, every
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="storage-maintenance", daemon=True)

    def start(self) -> Maintenance:
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def _clock(self) -> float:
        """The maintenance's clock: past every deadline once the collector stops (it ends after the step in hand)."""
        return math.inf if self._stop.is_set() else time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                with psycopg.connect(self.url, connect_timeout=10, application_name="edge-maintenance") as conn:
                    done = maintain(conn, self.settings, clock=self._clock)
                if not done.busy and (done.hours_rolled or done.days_compacted or done.partitions_dropped):
                    log.info("storage: %s", done)
            except psycopg.Error as exc:
                log.warning("storage: maintenance failed, tried again in %gs: %s", self.every,
                            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            except Exception:  # noqa: BLE001 - whatever the data holds, the maintenance goes on at its next turn
                log.exception("storage: maintenance failed, tried again in %gs", self.every)
