"""The read side of the data center, for the history API: gateways, their series, and exports streamed from
PostgreSQL.

Every SQL text here is assembled from constants of this module only; whatever a caller supplies (gateway ids,
sensors, times, cursors) is a bound parameter. An export never holds more than one block (64 KiB) in memory:

- **CSV** is written by PostgreSQL itself (``COPY (SELECT ...) TO STDOUT (FORMAT csv)``): correct quoting by
  construction, and no per-row work in Python (``bench/history.py``: two thirds of the rate of the same ``COPY``
  run alone).
- **NDJSON and JSON** lines are built by PostgreSQL (``row_to_json``) and read through a server-side (named)
  cursor, ``FETCH_ROWS`` rows at a time.

Both walk the requested range one UTC day at a time (``WINDOW``; with a time zone, ``Export.tz``, one local day), and
only the days that hold data: before each
day an index probe finds the next row, so a gateway whose rows span 1970 to 2100 costs a few queries, not 47,000.
Rows are ordered by a key (for raw readings ``ts, sensor, quantity, epoch, seq``), so a day's rows are sorted on
their own and the first bytes leave at once, however long the range; PostgreSQL never sorts a year. The same key is
the resume cursor (``after``): an export restarted after the last row it delivered continues exactly there.

Whatever the database holds (rows an older collector stored in 32 BC or AD 33658, a value of 1e308), nothing here
fails on it: times read into Python are clamped to the years 1..9999 in SQL, aggregates use only good values within
the physical range of their quantity (``edge.contract.protocol.PHYSICAL``).
:class:`Stream` reads an export block by block
and can be cancelled from another thread (the client went away), and stops at its row and time limits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from edge.contract import history as contract
from edge.contract.events import DaemonStart
from edge.contract.history import Column, Table
from edge.contract.protocol import PHYSICAL, PHYSICAL_DEFAULT

UTC = timezone.utc
#: date_bin's origin: buckets and coverage hours start on UTC boundaries.
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
#: An export runs one query per window of this size; buckets (1m, 1h, 1d) never straddle two windows.
WINDOW = timedelta(days=1)
BLOCK = 64 * 1024
FETCH_ROWS = 2000
BUCKETS = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
#: The same buckets in a time zone (``date_trunc``'s fields): local minutes, hours (at :30 in Iran) and days.
LOCAL_BUCKETS = {"1m": "minute", "1h": "hour", "1d": "day"}
ONE_MS = timedelta(milliseconds=1)

Connect = Callable[[], psycopg.Connection]

# ---------------------------------------------------------------------------------------------------- gateways

_GATEWAY = """SELECT gateway_id, name, names, state, state_since, last_seen, version, epoch, backlog FROM gateway_status"""


def _gateway_dict(row) -> dict[str, Any]:
    gateway_id, name, names, state, state_since, last_seen, version, epoch, backlog = row
    return {"id": gateway_id, "name": name, "names": names, "state": state, "state_since": iso(state_since), "last_seen": iso(last_seen),
            "version": version, "epoch": epoch, "backlog": backlog}


def gateways(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every gateway the data center has heard from, with its status, by id."""
    return [_gateway_dict(row) for row in conn.execute(_GATEWAY + " ORDER BY gateway_id")]


def gateway(conn: psycopg.Connection, gateway_id: str) -> dict[str, Any] | None:
    row = conn.execute(_GATEWAY + " WHERE gateway_id = %s", (gateway_id,)).fetchone()
    return _gateway_dict(row) if row else None


def _iso_sql(column: str) -> str:
    """``column`` (a timestamptz) as :func:`iso` writes it, by PostgreSQL (for many rows at once)."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


def iso(ts: datetime | None) -> str | None:
    """UTC ISO-8601 with milliseconds and ``Z``: the form every timestamp of the API takes."""
    if ts is None:
        return None
    ts = ts.astimezone(UTC)
    return f"{ts.year:04d}-" + ts.strftime("%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


#: A time read into Python, clamped to the years Python (and the API) can represent, with a day to spare at the end
#: (an export's window arithmetic adds up to a day). NULL stays NULL.
def _clamped(column: str) -> str:
    return f"CASE WHEN {column} IS NOT NULL THEN greatest(least({column}, '9999-12-30 00:00:00+00'), " \
           f"'0001-01-01 00:00:00+00') END"


#: The fleet in one query (the console's fleet view, ``GET /v1/fleet``): each gateway's status; the clock flag and
#: time of its newest reading (one primary-key probe per gateway; for a gateway whose readings are all compacted, its
#: latest compacted day's); its alerts whose latest event is ``alert.fired`` (by alert key, the event's source); and its readings of the last 24 full hours (``gateway_hours``, kept by the
#: collector) against 24 times its fullest hour among them: a gateway that sent all day reads 1.0, one that was
#: silent for six hours 0.75, one never heard in those hours null.
_FLEET = f"""
WITH alerts AS (
    SELECT gateway_id, count(*) FILTER (WHERE kind = 'alert.fired') AS active FROM (
        SELECT DISTINCT ON (gateway_id, source) gateway_id, kind FROM events
        WHERE kind IN ('alert.fired', 'alert.resolved')
        ORDER BY gateway_id, source, ts DESC, epoch DESC, seq DESC) AS latest
    GROUP BY gateway_id
), hours AS (
    SELECT gateway_id, sum(readings) AS readings, max(readings) AS fullest FROM gateway_hours
    WHERE hour >= date_bin('1 hour', now(), %(origin)s) - interval '24 hours'
      AND hour < date_bin('1 hour', now(), %(origin)s)
    GROUP BY gateway_id
)
SELECT g.gateway_id, g.name, g.state, {_iso_sql("g.state_since")}, {_iso_sql("g.last_seen")}, g.version, g.backlog,
       coalesce(r.clock, c.clock), {_iso_sql(_clamped("coalesce(r.ts, c.ts)"))}, coalesce(a.active, 0),
       round((h.readings::float8 / nullif(24 * h.fullest, 0))::numeric, 3)::float8
FROM gateway_status AS g
LEFT JOIN alerts AS a USING (gateway_id)
LEFT JOIN hours AS h USING (gateway_id)
LEFT JOIN LATERAL (SELECT clock, ts FROM readings WHERE readings.gateway_id = g.gateway_id
                   ORDER BY epoch DESC, seq DESC LIMIT 1) AS r ON true
LEFT JOIN LATERAL (SELECT k.clocks[k.n] AS clock, k.last_ts AS ts FROM readings_compact AS k
                   WHERE r.ts IS NULL AND k.gateway_id = g.gateway_id
                   ORDER BY k.day DESC, k.last_ts DESC LIMIT 1) AS c ON true
ORDER BY g.gateway_id"""
FLEET_FIELDS = ("id", "name", "state", "state_since", "last_seen", "version", "backlog", "clock", "last_reading",
                "alerts", "coverage_24h")


def fleet(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    """Every gateway with what the fleet view shows, by id, as tuples in the order of :data:`FLEET_FIELDS` (times
    in ISO-8601 as :func:`iso` writes them, formatted by PostgreSQL; the clock as a word; coverage to 3 digits)."""
    clocks = dict(enumerate(contract.CLOCKS))
    return [(*row[:7], clocks.get(row[7]), *row[8:]) for row in conn.execute(_FLEET, {"origin": ORIGIN})]



# ------------------------------------------------------------------------------------------------------ series


@dataclass(frozen=True)
class Series:
    """One (sensor, quantity) of a gateway, with its latest unit and the times of its first and last reading."""

    sensor: str
    quantity: str
    unit: str
    first: datetime
    last: datetime
    name: str | None = None  # the sensor's display name, as the gateway's latest start gave it

    def as_dict(self) -> dict[str, Any]:
        return {"sensor": self.sensor, "name": self.name, "quantity": self.quantity, "unit": self.unit, "first": iso(self.first),
                "last": iso(self.last)}


#: A loose index scan over (gateway_id, sensor, quantity, ts): one index probe per series, however many readings.
_SERIES = f"""
WITH RECURSIVE s AS (
    (SELECT sensor, quantity FROM readings WHERE gateway_id = %(gateway)s ORDER BY sensor, quantity LIMIT 1)
    UNION ALL
    SELECT n.sensor, n.quantity FROM s CROSS JOIN LATERAL (
        SELECT r.sensor, r.quantity FROM readings r
        WHERE r.gateway_id = %(gateway)s AND (r.sensor, r.quantity) > (s.sensor, s.quantity)
        ORDER BY r.sensor, r.quantity LIMIT 1) n
)
SELECT s.sensor, s.quantity, l.unit, {_clamped("f.ts")}, {_clamped("l.ts")} FROM s
CROSS JOIN LATERAL (SELECT ts FROM readings r WHERE r.gateway_id = %(gateway)s AND r.sensor = s.sensor
                    AND r.quantity = s.quantity ORDER BY ts LIMIT 1) f
CROSS JOIN LATERAL (SELECT ts, unit FROM readings r WHERE r.gateway_id = %(gateway)s AND r.sensor = s.sensor
                    AND r.quantity = s.quantity ORDER BY ts DESC LIMIT 1) l
ORDER BY s.sensor, s.quantity"""


#: The series of the compacted days (``edge/datacenter/storage.py``): first and last time, and the unit of the
#: latest chunk.
_COLD_SERIES = f"""
SELECT sensor, quantity, (array_agg(unit ORDER BY last_ts DESC))[1], {_clamped("min(first_ts)")},
       {_clamped("max(last_ts)")}
FROM compacted_series WHERE gateway_id = %(gateway)s GROUP BY sensor, quantity"""


def series(conn: psycopg.Connection, gateway_id: str) -> list[Series]:
    """Every series of the gateway, hot and compacted, by sensor and quantity."""
    row = conn.execute("SELECT names FROM gateway_status WHERE gateway_id = %s", (gateway_id,)).fetchone()
    names = row[0] if row and isinstance(row[0], dict) else {}
    found: dict[tuple[str, str], tuple[str, datetime, datetime]] = {}
    for sensor, quantity, unit, first, last in [*conn.execute(_COLD_SERIES, {"gateway": gateway_id}),
                                                *conn.execute(_SERIES, {"gateway": gateway_id})]:
        held = found.get((sensor, quantity))
        if held is not None:  # compacted days come first: the hot table holds the later readings
            unit = unit if last >= held[2] else held[0]
            first, last = min(first, held[1]), max(last, held[2])
        found[(sensor, quantity)] = (unit, first, last)
    return [Series(sensor, quantity, *found[(sensor, quantity)], name=names.get(sensor))
            for sensor, quantity in sorted(found, key=lambda k: (k[0].encode(), k[1].encode()))]


def event_extent(conn: psycopg.Connection, gateway_id: str) -> tuple[datetime, datetime] | None:
    row = conn.execute(f"SELECT {_clamped('min(ts)')}, {_clamped('max(ts)')} FROM events WHERE gateway_id = %s",
                       (gateway_id,)).fetchone()
    return None if row[0] is None else (row[0], row[1])


# ------------------------------------------------------------------------------------------- sensor intervals

#: The gateway's last start before the end of the range that reported sensor intervals (``daemon.start`` events
#: carry ``intervals: {sensor: seconds}`` since the history API exists; ``edge.contract.events.DaemonStart``).
_CONFIGURED_INTERVALS = """
SELECT data FROM events
WHERE gateway_id = %(gateway)s AND kind = %(kind)s AND data ? 'intervals' AND ts < %(end)s
ORDER BY ts DESC LIMIT 1"""

#: For a gateway that did not report them: the median spacing of the series' last 1,000 readings before the end.
_MEDIAN_SPACING = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d) FROM (
    SELECT extract(epoch FROM ts - lag(ts) OVER (ORDER BY ts))::float8 AS d FROM (
        SELECT ts FROM readings WHERE gateway_id = %(gateway)s AND sensor = %(sensor)s AND quantity = %(quantity)s
        AND ts < %(end)s ORDER BY ts DESC LIMIT 1001) AS last_readings
) AS spacing WHERE d > 0"""


@dataclass(frozen=True)
class Interval:
    seconds: float | None
    source: str  # "config" (reported by the gateway) or "median" (median spacing of its readings)


def intervals(conn: psycopg.Connection, gateway_id: str, chosen: Sequence[Series],
              end: datetime) -> dict[tuple[str, str], Interval]:
    """The sampling interval of each series: as configured on the gateway (each believable interval its last start
    reported), else the median spacing."""
    row = conn.execute(_CONFIGURED_INTERVALS, {"gateway": gateway_id, "kind": DaemonStart.KIND, "end": end}).fetchone()
    start = DaemonStart.from_data(row[0]) if row else None
    configured = start.intervals if start is not None else {}
    found = {}
    for s in chosen:
        seconds = configured.get(s.sensor)
        if seconds is not None:
            found[(s.sensor, s.quantity)] = Interval(float(seconds), "config")
        else:
            median = conn.execute(_MEDIAN_SPACING, {"gateway": gateway_id, "sensor": s.sensor,
                                                    "quantity": s.quantity, "end": end}).fetchone()[0]
            found[(s.sensor, s.quantity)] = Interval(median, "median")
    return found


# ------------------------------------------------------------------------------------------------- row shapes


#: A CSV cell starting with one of these characters gets the guard (``edge.contract.history``), by code point.
_GUARDED_CODES = ", ".join(str(ord(c)) for c in sorted(contract.GUARDED_STARTS))
_GUARD_SQL = contract.GUARD.replace("'", "''")


def csv_sql(column: Column, guard_names: bool = True, local: bool = False) -> str:
    """A column's cell in CSV, from the inner query's row ``r``: times as UTC ISO-8601 with milliseconds (``local``:
    in the session's time zone, with its offset, ``+03:30``); text (and names, unless ``guard_names`` is off) with
    the spreadsheet guard; JSON as its text."""
    if column.kind == "time" and local:
        return f"""to_char(r.{column.name}, 'YYYY-MM-DD"T"HH24:MI:SS.MSTZH:TZM')"""
    if column.kind == "time":
        return f"""to_char(r.{column.name} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""
    if column.kind == "text" or (column.kind == "name" and guard_names):
        return f"CASE WHEN ascii(r.{column.name}) IN ({_GUARDED_CODES}) THEN '{_GUARD_SQL}' || r.{column.name} " \
               f"ELSE r.{column.name} END"
    if column.kind == "json":
        return f"r.{column.name}::text"
    return f"r.{column.name}"


def json_sql(column: Column, local: bool = False) -> str:
    """A column's value in a JSON row (times written as in CSV; nothing guarded)."""
    return csv_sql(column, local=local) if column.kind == "time" else f"r.{column.name}"


def key_sql(column: Column) -> str:
    """A column in the ordering key: text compares byte-wise (``C``), whatever the database's locale."""
    return f'r.{column.name} COLLATE "C"' if column.kind in ("text", "name", "word") else f"r.{column.name}"


@dataclass(frozen=True)
class Shape:
    """How the rows of a table of the contract (``edge.contract.history``: columns, key) are read: an inner query
    (``{where}`` is filled with constant fragments) whose row ``r`` has the table's columns. ``probe`` finds the
    time of the next row at or after ``%(start)s`` (and before ``%(end)s``), so days without data are skipped;
    None: every day is read (coverage reports the hours without data too)."""

    table: Table
    source: str
    where: tuple[str, ...] = ()
    probe: str | None = None

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.table.columns

    @property
    def key(self) -> tuple[str, ...]:
        return self.table.key

    @property
    def header(self) -> bytes:
        return self.table.header.encode()


_IN_WINDOW = "ts >= %(start)s AND ts < %(end)s"
_OF_SERIES = "gateway_id = %(gateway)s AND sensor = ANY(%(sensors)s) AND quantity = ANY(%(quantities)s)"

#: One index probe per chosen series (the sensors x quantities asked for): the earliest row in the window.
#: Compacted days count too (a chunk overlapping ``start`` gives ``start``).
_READINGS_PROBE = """
SELECT least(
    (SELECT min(x.ts) FROM unnest(%(sensors)s::text[]) AS s(sensor)
     CROSS JOIN unnest(%(quantities)s::text[]) AS q(quantity)
     CROSS JOIN LATERAL (SELECT ts FROM readings WHERE gateway_id = %(gateway)s AND sensor = s.sensor
                         AND quantity = q.quantity AND ts >= %(start)s AND ts < %(end)s ORDER BY ts LIMIT 1) AS x),
    (SELECT min(greatest(first_ts, %(start)s)) FROM readings_compact
     WHERE gateway_id = %(gateway)s AND day >= (%(start)s AT TIME ZONE 'UTC')::date
       AND day <= (%(end)s AT TIME ZONE 'UTC')::date AND sensor = ANY(%(sensors)s)
       AND quantity = ANY(%(quantities)s) AND last_ts >= %(start)s AND first_ts < %(end)s))"""

#: The readings of the chosen series in the window, hot and compacted, with ``columns``; ``{{where}}`` applies to
#: both (the compacted rows are decoded for the days the window touches only).
def _all_readings(columns: str) -> str:
    return f"""(SELECT {columns} FROM readings WHERE {{where}}
        UNION ALL
        SELECT {columns} FROM readings_cold(%(gateway)s, %(sensors)s, %(quantities)s, %(start)s, %(end)s)
        WHERE {{where}})"""
_EVENTS_PROBE = "SELECT min(ts) FROM events WHERE gateway_id = %(gateway)s AND ts >= %(start)s AND ts < %(end)s"

#: The stored clock flag (0, 1, 2) in the contract's words; another value (none is stored) as its number.
_CLOCK_SQL = "CASE clock " + " ".join(f"WHEN {i} THEN '{word}'" for i, word in enumerate(contract.CLOCKS)) + \
    " ELSE clock::text END"

RAW = Shape(
    contract.READINGS,
    source="SELECT date_trunc('milliseconds', ts) AS ts, gateway_id AS gateway, sensor, quantity, value, unit, "
           f"quality, {_CLOCK_SQL} AS clock, epoch, seq FROM "
           + _all_readings("gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, clock")
           + " AS readings",
    where=(_OF_SERIES, _IN_WINDOW),
    probe=_READINGS_PROBE,
)

def physical_sql() -> str:
    """``value`` within the physical range of its quantity (what the collector believes; older rows may not be)."""
    cases = " ".join(f"WHEN '{quantity}' THEN value BETWEEN {low!r} AND {high!r}"
                     for quantity, (low, high) in PHYSICAL.items())
    low, high = PHYSICAL_DEFAULT
    return f"CASE quantity {cases} ELSE value BETWEEN {low!r} AND {high!r} END"


def _significant_sql(expression: str, digits: int) -> str:
    """``expression`` (a float8) rounded to ``digits`` significant digits (``0.6999999999999998`` -> ``0.7``)."""
    return f"CASE WHEN {expression} = 0 THEN 0 ELSE round(({expression})::numeric, " \
           f"{digits - 1} - floor(log(abs({expression})))::int)::float8 END"


#: Aggregates are read from the roll-ups (``edge/datacenter/storage.py``), except in the hours that are read from
#: the rows (hot and compacted) instead, ``raw_hours``: those the window covers only in part, and every hour whose
#: roll-ups the maintenance has not marked up to date (``gateway_hours.dirty`` false): the current hour, late
#: readings, rows written by anything but the collector. Partial aggregates
#: (count, min, max and sum of the good readings within the physical range) per roll-up bucket, or per minute from
#: the rows, are then merged into the buckets asked for.
_RAW_HOURS = """raw_hours AS (
    SELECT hour FROM generate_series(date_bin('1 hour', %(start)s, %(origin)s), %(end)s - interval '1 microsecond',
                                     interval '1 hour') AS h(hour)
    WHERE hour < %(start)s OR hour + interval '1 hour' > %(end)s
       OR NOT EXISTS (SELECT FROM gateway_hours AS g WHERE g.gateway_id = %(gateway)s AND g.hour = h.hour
                      AND NOT g.dirty){more}
)"""
#: Minutes' roll-ups are kept while a day is hot: the hours of compacted days are read from their chunks.
_COMPACTED_HOURS = """
    UNION SELECT h FROM (SELECT DISTINCT day FROM readings_compact WHERE gateway_id = %(gateway)s
                         AND day >= (%(start)s AT TIME ZONE 'UTC')::date AND day <= (%(end)s AT TIME ZONE 'UTC')::date
                         AND sensor = ANY(%(sensors)s) AND quantity = ANY(%(quantities)s)) AS c
    CROSS JOIN LATERAL generate_series(c.day::timestamp AT TIME ZONE 'UTC',
                                       c.day::timestamp AT TIME ZONE 'UTC' + interval '23 hours',
                                       interval '1 hour') AS h
    WHERE h >= date_bin('1 hour', %(start)s, %(origin)s) AND h < %(end)s"""
#: Hot rows an hour at a time (an index range each), compacted ones a window at a time (decoded once).
_RAW_PARTIALS = """
    SELECT date_bin('1 minute', r.ts, %(origin)s) AS bucket, r.sensor, r.quantity, r.unit, count(*) AS good,
           min(r.value) AS min, max(r.value) AS max, sum(r.value) AS sum
    FROM (SELECT r.ts, r.sensor, r.quantity, r.unit, r.value FROM raw_hours AS h CROSS JOIN LATERAL (
              SELECT ts, sensor, quantity, unit, value FROM readings WHERE {where}
                  AND ts >= h.hour AND ts < h.hour + interval '1 hour') AS r
          UNION ALL
          SELECT ts, sensor, quantity, unit, value
          FROM readings_cold(%(gateway)s, %(sensors)s, %(quantities)s, %(start)s, %(end)s) WHERE {where}
              AND date_bin('1 hour', ts, %(origin)s) IN (SELECT hour FROM raw_hours)) AS r
    GROUP BY 1, 2, 3, 4"""
_OF_ROLLUP = ("gateway_id = %(gateway)s AND sensor = ANY(%(sensors)s) AND quantity = ANY(%(quantities)s) "
              "AND good > 0")
_ROLLUP_COLUMNS = "bucket, sensor, quantity, unit, good, min, max, sum"
#: Roll-up rows of the hours not read from the rows, by the width of the partials.
_ROLLUP_PARTIALS = {
    "1m": f"""SELECT {_ROLLUP_COLUMNS} FROM rollup_1m WHERE {_OF_ROLLUP} AND bucket >= %(start)s AND bucket < %(end)s
              AND date_bin('1 hour', bucket, %(origin)s) NOT IN (SELECT hour FROM raw_hours)""",
    "1h": f"""SELECT {_ROLLUP_COLUMNS} FROM rollup_1h WHERE {_OF_ROLLUP} AND bucket >= %(start)s AND bucket < %(end)s
              AND bucket NOT IN (SELECT hour FROM raw_hours)""",
    # whole days without a raw hour from rollup_1d; the other hours of the window from rollup_1h
    "1d": f"""SELECT {_ROLLUP_COLUMNS} FROM rollup_1d WHERE {_OF_ROLLUP} AND bucket >= %(start)s
              AND bucket + interval '1 day' <= %(end)s AND NOT EXISTS (SELECT FROM raw_hours
              WHERE hour >= bucket AND hour < bucket + interval '1 day')
              UNION ALL
              SELECT {_ROLLUP_COLUMNS} FROM rollup_1h WHERE {_OF_ROLLUP} AND bucket >= %(start)s AND bucket < %(end)s
              AND bucket NOT IN (SELECT hour FROM raw_hours) AND NOT (
                  date_bin('1 day', bucket, %(origin)s) >= %(start)s
                  AND date_bin('1 day', bucket, %(origin)s) + interval '1 day' <= %(end)s
                  AND NOT EXISTS (SELECT FROM raw_hours WHERE hour >= date_bin('1 day', bucket, %(origin)s)
                                  AND hour < date_bin('1 day', bucket, %(origin)s) + interval '1 day'))""",
}


def _aggregate_source(bucket_sql: str, partials: str) -> str:
    raw_hours = _RAW_HOURS.format(more=_COMPACTED_HOURS if partials == "1m" else "")
    return (f"WITH {raw_hours} SELECT {bucket_sql} AS ts, %(gateway)s::text AS gateway, sensor, quantity, unit, "
            f"sum(good)::bigint AS count, min(min) AS min, "
            f"{_significant_sql('sum(sum) / sum(good)::float8', contract.MEAN_DIGITS)} AS mean, max(max) AS max "
            f"FROM ({_RAW_PARTIALS} UNION ALL {_ROLLUP_PARTIALS[partials]}) AS p GROUP BY 1, 2, 3, 4, 5")


_AGGREGATE_WHERE = (_OF_SERIES, _IN_WINDOW, "quality = 'good' AND value IS NOT NULL", physical_sql())
#: Per width asked for (``every``), in UTC: from the roll-ups of that width.
AGGREGATES = {
    every: Shape(contract.AGGREGATES, source=_aggregate_source("date_bin(%(bucket)s, p.bucket, %(origin)s)", every),
                 where=_AGGREGATE_WHERE, probe=_READINGS_PROBE)
    for every in BUCKETS}
AGGREGATE = AGGREGATES["1m"]

#: The same in a time zone (``%(tz)s``): buckets are its minutes, hours and days (``LOCAL_BUCKETS``), merged from
#: the minutes' roll-ups (a zone's hours need not start on UTC hours: Iran's start at :30).
LOCAL_AGGREGATE = Shape(contract.AGGREGATES, source=_aggregate_source("date_trunc(%(unit)s, p.bucket, %(tz)s)", "1m"),
                        where=_AGGREGATE_WHERE, probe=_READINGS_PROBE)

EVENTS = Shape(
    contract.EVENTS,
    source="SELECT date_trunc('milliseconds', ts) AS ts, kind, source, data, epoch, seq FROM events WHERE {where}",
    where=("gateway_id = %(gateway)s", _IN_WINDOW),
    probe=_EVENTS_PROBE,
)
#: ``kind=actuator`` matches ``actuator.change``, ``actuator.refused``...; ``kind=alert.fired`` only that kind.
EVENT_KINDS = "(kind = ANY(%(kinds)s) OR split_part(kind, '.', 1) = ANY(%(kinds)s))"

#: Per hour and series: readings expected from the sampling interval (counted from the series' first reading
#: ever, within the range) against readings received, and how many of those were good.
COVERAGE = Shape(
    contract.COVERAGE,
    source="""
SELECT h.hour, s.sensor, s.quantity, s.interval, s.source AS interval_source, e.expected,
       coalesce(g.received, 0) AS received, coalesce(g.good, 0) AS good,
       greatest(e.expected - coalesce(g.received, 0), 0) AS missing
FROM generate_series(date_bin('1 hour', %(start)s, %(origin)s), %(end)s - interval '1 microsecond',
                     interval '1 hour') AS h(hour)
CROSS JOIN unnest(%(sensors)s::text[], %(quantities)s::text[], %(intervals)s::float8[], %(sources)s::text[],
                  %(firsts)s::timestamptz[]) AS s(sensor, quantity, interval, source, first_ts)
CROSS JOIN LATERAL (SELECT round(greatest(extract(epoch FROM least(h.hour + interval '1 hour', %(end)s)
                                 - greatest(h.hour, %(start)s, s.first_ts)), 0) / s.interval)::bigint) AS e(expected)
LEFT JOIN (SELECT date_bin('1 hour', ts, %(origin)s) AS hour, sensor, quantity, count(*) AS received,
                  count(*) FILTER (WHERE quality = 'good') AS good
           FROM """ + _all_readings("ts, sensor, quantity, quality") + """ AS r
           GROUP BY 1, 2, 3) AS g USING (hour, sensor, quantity)""",
    where=(_OF_SERIES, _IN_WINDOW),
)


# ------------------------------------------------------------------------------------------------------ exports


@dataclass(frozen=True)
class Export:
    """One export: a shape, the extra constant filters, the bound values, the range and where to resume."""

    shape: Shape
    start: datetime
    end: datetime
    params: dict[str, Any] = field(default_factory=dict)
    filters: tuple[str, ...] = ()
    after: tuple[Any, ...] | None = None
    guard_names: bool = True  # False when no sensor or quantity name exported needs the guard
    #: An IANA time zone: times are written in it (with their offset), the windows are its days, and its name is
    #: the bound value ``tz`` (which LOCAL_AGGREGATE buckets in). None: UTC.
    tz: str | None = None

    def sql(self, fmt: str) -> str:
        """One window's query: COPY ... (FORMAT csv) for ``csv``, one JSON text per row for the others."""
        inner = self.shape.source.format(where=" AND ".join(self.shape.where + self.filters))
        columns = {c.name: c for c in self.shape.columns}
        local = self.tz is not None
        to_sql = (lambda c: csv_sql(c, self.guard_names, local)) if fmt == "csv" else (lambda c: json_sql(c, local))
        select = ", ".join(f"{to_sql(c)} AS {c.name}" for c in self.shape.columns)
        key = ", ".join(key_sql(columns[name]) for name in self.shape.key)
        after = f" WHERE ({key}) > ({', '.join(f'%(after{i})s' for i in range(len(self.shape.key)))})" \
            if self.after else ""
        query = f"SELECT {select} FROM ({inner}) AS r{after} ORDER BY {key}"
        if fmt == "csv":
            return f"COPY ({query}) TO STDOUT (FORMAT csv)"
        return f"SELECT row_to_json(j)::text FROM ({query}) AS j"  # compact, in column order, rows kept in order

    def windows(self, next_row: Callable[[dict[str, Any]], datetime | None] | None = None
                ) -> Iterator[dict[str, Any]]:
        """The bound values of each day's query, in order (an export resumed after a row starts at its time).
        With ``next_row`` (the shape's probe: the time of the first row at or after ``start``, given the bound
        values), days without data are skipped."""
        start = max(self.start, self.after[0]) if self.after else self.start
        values = {**self.params, "origin": ORIGIN, "tz": self.tz}
        zone = ZoneInfo(self.tz) if self.tz else None
        values.update({f"after{i}": v for i, v in enumerate(self.after or ())})
        while start < self.end:
            if next_row is not None:
                found = next_row({**values, "start": start, "end": self.end})
                if found is None:
                    return
                start = max(start, _day(found, zone))
            day = _day(start, zone)
            following = _next_day(day, zone)
            end = self.end if following is None or self.end <= following else following  # never past year 9999
            yield {**values, "start": start, "end": end}
            start = end

    def clipped(self, first: datetime, last: datetime) -> Export:
        """The same export over only the part of its range that holds data (first..last inclusive)."""
        return replace(self, start=max(self.start, first), end=min(self.end, last + ONE_MS))

    def emptied(self) -> Export:
        """The same export with nothing to read (its header, or ``[]``, only)."""
        return replace(self, end=self.start)


def _floor(ts: datetime, size: timedelta) -> datetime:
    return ts - (ts - ORIGIN) % size


def _day(ts: datetime, zone: ZoneInfo | None) -> datetime:
    """The start of the (UTC, or ``zone``'s) day ``ts`` is in."""
    if zone is None:
        return _floor(ts, WINDOW)
    try:
        local = ts.astimezone(zone)
    except OverflowError:  # within a day of year 1 or 9999
        return _floor(ts, WINDOW)
    return min(ts, datetime(local.year, local.month, local.day, tzinfo=zone).astimezone(UTC))


def _next_day(day: datetime, zone: ZoneInfo | None) -> datetime | None:
    """The start of the day after ``day`` (None past the years Python can represent)."""
    try:
        if zone is None:
            return day + WINDOW
        local = (day.astimezone(zone) + timedelta(hours=36)).date()  # days of 23 to 25 hours
        return max(datetime(local.year, local.month, local.day, tzinfo=zone).astimezone(UTC), day + ONE_MS)
    except OverflowError:
        return None


class ExportCut(Exception):
    """An export stopped at one of its limits (rows, time) or because it was cancelled: the client resumes it."""


@dataclass(frozen=True)
class Limits:
    """How much one response may take: rows at most, and seconds of work from its first query."""

    rows: int = 10_000_000
    seconds: float = 600.0


class Stream:
    """One export read block by block (``next_block()``, at most about ``BLOCK`` bytes, None at the end) on its
    own connection, from one consistent snapshot. ``cancel()`` may be called from any thread: it cancels the query
    running (PostgreSQL stops it at once) and makes the export stop. ``close()`` waits until no query runs, then
    closes the connection. Past its row or time limit the export stops with :class:`ExportCut`."""

    def __init__(self, connect: Connect, export: Export, fmt: str, limits: Limits = Limits()):
        self.export, self.fmt, self.limits = export, fmt, limits
        self.rows = 0
        self.cancelled = False
        self._connect = connect
        self._conn: psycopg.Connection | None = None
        self._blocks: Iterator[bytes] | None = None
        self._deadline: float | None = None
        self._busy = threading.Lock()  # held while a query may run

    def next_block(self) -> bytes | None:
        with self._busy:
            self._check()
            if self._blocks is None:
                self._deadline = time.monotonic() + self.limits.seconds
                self._conn = self._connect()
                self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                self._conn.read_only = True
                pieces = {"csv": _csv_pieces, "ndjson": _ndjson_pieces, "json": _json_pieces}[self.fmt]
                self._blocks = _blocks(pieces(self._conn, self.export, self))
            try:
                return next(self._blocks, None)
            except psycopg.errors.QueryCanceled:
                if self.cancelled:
                    raise ExportCut("cancelled: the client went away") from None
                raise

    def check(self, rows: int = 0) -> None:
        """Called between queries and batches of rows: stop at a limit or once cancelled."""
        self.rows += rows
        self._check()

    def _check(self) -> None:
        if self.cancelled:
            raise ExportCut("cancelled: the client went away")
        if self.rows > self.limits.rows:
            raise ExportCut(f"cut after {self.limits.rows} rows (api.max_rows): resume after the last row")
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise ExportCut(f"cut after {self.limits.seconds:g}s (api.max_duration): resume after the last row")

    def cancel(self) -> None:
        self.cancelled = True
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                conn.cancel_safe(timeout=5.0)
            except psycopg.Error:
                pass  # the connection is gone already: nothing runs

    def close(self) -> None:
        """Stop what runs (if anything), wait for it, close the connection."""
        if self._busy.locked():
            self.cancel()
        with self._busy:
            if self._blocks is not None:
                self._blocks.close()
            if self._conn is not None:
                self._conn.close()


def stream(connect: Connect, export: Export, fmt: str) -> Iterator[bytes]:
    """The export as blocks of at most about ``BLOCK`` bytes (a :class:`Stream` without limits, as a generator)."""
    reader = Stream(connect, export, fmt, Limits(rows=2**62, seconds=float("inf")))
    try:
        while (block := reader.next_block()) is not None:
            yield block
    finally:
        reader.close()


def _probe(conn: psycopg.Connection, export: Export) -> Callable[[dict[str, Any]], datetime | None] | None:
    if export.shape.probe is None:
        return None
    return lambda values: conn.execute(export.shape.probe, values).fetchone()[0]


def _in_zone(conn: psycopg.Connection, export: Export) -> None:
    """Times of a local export are written in its zone: the session's time zone is it."""
    if export.tz is not None:
        conn.execute("SELECT set_config('TimeZone', %s, false)", (export.tz,))


def _csv_pieces(conn: psycopg.Connection, export: Export, stream: Stream) -> Iterator[bytes | memoryview]:
    _in_zone(conn, export)
    yield export.shape.header
    sql = export.sql("csv")
    with conn.cursor() as cur:
        for values in export.windows(_probe(conn, export)):
            stream.check()
            with cur.copy(sql, values) as copy:
                for row in copy:  # one CSV row per item, formatted by PostgreSQL
                    yield row
                    stream.rows += 1
                    if stream.rows % FETCH_ROWS == 0:
                        stream.check()


def _ndjson_pieces(conn: psycopg.Connection, export: Export, stream: Stream) -> Iterator[bytes]:
    _in_zone(conn, export)
    sql = export.sql("json")
    for values in export.windows(_probe(conn, export)):
        stream.check()
        with conn.cursor(name="history_export") as cur:
            cur.execute(sql, values)
            while rows := cur.fetchmany(FETCH_ROWS):
                yield ("\n".join(row[0] for row in rows) + "\n").encode()
                stream.check(len(rows))


def _json_pieces(conn: psycopg.Connection, export: Export, stream: Stream) -> Iterator[bytes]:
    """One JSON array, written as NDJSON lines with separators."""
    opened = False
    for lines in _ndjson_pieces(conn, export, stream):
        yield (b",\n" if opened else b"[\n") + lines[:-1].replace(b"\n", b",\n")
        opened = True
    yield b"\n]\n" if opened else b"[]\n"


def _blocks(pieces: Iterator[bytes | memoryview]) -> Iterator[bytes]:
    block = bytearray()
    for piece in pieces:
        block += piece
        if len(block) >= BLOCK:
            yield bytes(block)
            block.clear()
    if block:
        yield bytes(block)
