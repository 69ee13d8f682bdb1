"""The read side of the data center, for the history API: gateways, their series, and exports streamed from
PostgreSQL.

Every SQL text here is assembled from constants of this module only; whatever a caller supplies (gateway ids,
sensors, times, cursors) is a bound parameter. An export never holds more than one block (64 KiB) in memory:

- **CSV** is written by PostgreSQL itself (``COPY (SELECT ...) TO STDOUT (FORMAT csv)``): correct quoting by
  construction, and no per-row work in Python (``bench/history.py``: two thirds of the rate of the same ``COPY``
  run alone).
- **NDJSON and JSON** lines are built by PostgreSQL (``row_to_json``) and read through a server-side (named)
  cursor, ``FETCH_ROWS`` rows at a time.

Both walk the requested range one UTC day at a time (``WINDOW``). Rows are ordered by a key (for raw readings
``ts, sensor, quantity, epoch, seq``), so a day's rows are sorted on their own and the first bytes leave at once,
however long the range; PostgreSQL never sorts a year. The same key is the resume cursor (``after``): an export
restarted after the last row it delivered continues exactly there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

UTC = timezone.utc
#: date_bin's origin: buckets and coverage hours start on UTC boundaries.
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
#: An export runs one query per window of this size; buckets (1m, 1h, 1d) never straddle two windows.
WINDOW = timedelta(days=1)
BLOCK = 64 * 1024
FETCH_ROWS = 2000
BUCKETS = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
ONE_MS = timedelta(milliseconds=1)

Connect = Callable[[], psycopg.Connection]

# ---------------------------------------------------------------------------------------------------- gateways

_GATEWAY = """SELECT gateway_id, state, state_since, last_seen, version, epoch, backlog FROM gateway_status"""


def _gateway_dict(row) -> dict[str, Any]:
    gateway_id, state, state_since, last_seen, version, epoch, backlog = row
    return {"id": gateway_id, "state": state, "state_since": iso(state_since), "last_seen": iso(last_seen),
            "version": version, "epoch": epoch, "backlog": backlog}


def gateways(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every gateway the data center has heard from, with its status, by id."""
    return [_gateway_dict(row) for row in conn.execute(_GATEWAY + " ORDER BY gateway_id")]


def gateway(conn: psycopg.Connection, gateway_id: str) -> dict[str, Any] | None:
    row = conn.execute(_GATEWAY + " WHERE gateway_id = %s", (gateway_id,)).fetchone()
    return _gateway_dict(row) if row else None


def iso(ts: datetime | None) -> str | None:
    """UTC ISO-8601 with milliseconds and ``Z``: the form every timestamp of the API takes."""
    if ts is None:
        return None
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


# ------------------------------------------------------------------------------------------------------ series


@dataclass(frozen=True)
class Series:
    """One (sensor, quantity) of a gateway, with its latest unit and the times of its first and last reading."""

    sensor: str
    quantity: str
    unit: str
    first: datetime
    last: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"sensor": self.sensor, "quantity": self.quantity, "unit": self.unit, "first": iso(self.first),
                "last": iso(self.last)}


#: A loose index scan over (gateway_id, sensor, quantity, ts): one index probe per series, however many readings.
_SERIES = """
WITH RECURSIVE s AS (
    (SELECT sensor, quantity FROM readings WHERE gateway_id = %(gateway)s ORDER BY sensor, quantity LIMIT 1)
    UNION ALL
    SELECT n.sensor, n.quantity FROM s CROSS JOIN LATERAL (
        SELECT r.sensor, r.quantity FROM readings r
        WHERE r.gateway_id = %(gateway)s AND (r.sensor, r.quantity) > (s.sensor, s.quantity)
        ORDER BY r.sensor, r.quantity LIMIT 1) n
)
SELECT s.sensor, s.quantity, l.unit, f.ts, l.ts FROM s
CROSS JOIN LATERAL (SELECT ts FROM readings r WHERE r.gateway_id = %(gateway)s AND r.sensor = s.sensor
                    AND r.quantity = s.quantity ORDER BY ts LIMIT 1) f
CROSS JOIN LATERAL (SELECT ts, unit FROM readings r WHERE r.gateway_id = %(gateway)s AND r.sensor = s.sensor
                    AND r.quantity = s.quantity ORDER BY ts DESC LIMIT 1) l
ORDER BY s.sensor, s.quantity"""


def series(conn: psycopg.Connection, gateway_id: str) -> list[Series]:
    return [Series(*row) for row in conn.execute(_SERIES, {"gateway": gateway_id})]


def event_extent(conn: psycopg.Connection, gateway_id: str) -> tuple[datetime, datetime] | None:
    row = conn.execute("SELECT min(ts), max(ts) FROM events WHERE gateway_id = %s", (gateway_id,)).fetchone()
    return None if row[0] is None else (row[0], row[1])


# ------------------------------------------------------------------------------------------- sensor intervals

#: The sensor intervals the gateway reported at its last start before the end of the range (``daemon.start``
#: events carry ``intervals: {sensor: seconds}`` since the history API exists).
_CONFIGURED_INTERVALS = """
SELECT data->'intervals' FROM events
WHERE gateway_id = %(gateway)s AND kind = 'daemon.start' AND data ? 'intervals' AND ts < %(end)s
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
    """The sampling interval of each series: as configured on the gateway, else the median spacing."""
    row = conn.execute(_CONFIGURED_INTERVALS, {"gateway": gateway_id, "end": end}).fetchone()
    configured = row[0] if row and isinstance(row[0], dict) else {}
    found = {}
    for s in chosen:
        seconds = configured.get(s.sensor)
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and 0 < seconds < 10**9:
            found[(s.sensor, s.quantity)] = Interval(float(seconds), "config")
        else:
            median = conn.execute(_MEDIAN_SPACING, {"gateway": gateway_id, "sensor": s.sensor,
                                                    "quantity": s.quantity, "end": end}).fetchone()[0]
            found[(s.sensor, s.quantity)] = Interval(median, "median")
    return found


# ------------------------------------------------------------------------------------------------- row shapes


@dataclass(frozen=True)
class Column:
    """An output column of an export, named as in the inner query's row ``r``. ``kind`` decides its text form:
    ``time`` (UTC ISO-8601, milliseconds), ``text`` (free text), ``name`` (a sensor or quantity name), ``word``
    (one of a fixed set the protocol defines), ``number`` or ``json``."""

    name: str
    kind: str = "number"

    def csv_sql(self, guard_names: bool = True) -> str:
        if self.kind == "time":
            return f"""to_char(r.{self.name} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""
        if self.kind == "text" or (self.kind == "name" and guard_names):
            # a cell starting with = + - @ tab or CR would be run as a formula by a spreadsheet
            return f"CASE WHEN ascii(r.{self.name}) IN (9, 13, 43, 45, 61, 64) THEN '''' || r.{self.name} " \
                   f"ELSE r.{self.name} END"
        if self.kind == "json":
            return f"r.{self.name}::text"
        return f"r.{self.name}"

    def json_sql(self) -> str:
        return self.csv_sql() if self.kind == "time" else f"r.{self.name}"

    def key_sql(self) -> str:
        """In the ordering key: text compares byte-wise (``C``), whatever the database's locale."""
        return f'r.{self.name} COLLATE "C"' if self.kind in ("text", "name", "word") else f"r.{self.name}"


def safe_name(name: str) -> bool:
    """True for a name a spreadsheet shows as text (it does not start like a formula)."""
    return not name.startswith(("\t", "\r", "+", "-", "=", "@"))


@dataclass(frozen=True)
class Shape:
    """What one exported row is: an inner query (``{where}`` is filled with constant fragments), its output
    columns, and the key that orders the rows and resumes an export."""

    source: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    where: tuple[str, ...] = ()

    @property
    def header(self) -> bytes:
        return (",".join(c.name for c in self.columns) + "\n").encode()

    def key_kinds(self) -> tuple[str, ...]:
        kinds = {c.name: c.kind for c in self.columns}
        return tuple(kinds[name] for name in self.key)


_T, _X, _NAME, _WORD, _J = "time", "text", "name", "word", "json"
_IN_WINDOW = "ts >= %(start)s AND ts < %(end)s"
_OF_SERIES = "gateway_id = %(gateway)s AND sensor = ANY(%(sensors)s) AND quantity = ANY(%(quantities)s)"

RAW = Shape(
    source="SELECT date_trunc('milliseconds', ts) AS ts, sensor, quantity, value, unit, quality, epoch, seq "
           "FROM readings WHERE {where}",
    columns=(Column("ts", _T), Column("sensor", _NAME), Column("quantity", _NAME), Column("value"),
             Column("unit", _X), Column("quality", _WORD), Column("epoch"), Column("seq")),
    key=("ts", "sensor", "quantity", "epoch", "seq"),
    where=(_OF_SERIES, _IN_WINDOW),
)

AGGREGATE = Shape(
    source="SELECT date_bin(%(bucket)s, ts, %(origin)s) AS ts, sensor, quantity, unit, count(*) AS count, "
           "min(value) AS min, avg(value) AS mean, max(value) AS max "
           "FROM readings WHERE {where} GROUP BY 1, 2, 3, 4",
    columns=(Column("ts", _T), Column("sensor", _NAME), Column("quantity", _NAME), Column("unit", _X),
             Column("count"), Column("min"), Column("mean"), Column("max")),
    key=("ts", "sensor", "quantity", "unit"),
    where=(_OF_SERIES, _IN_WINDOW, "quality = 'good' AND value IS NOT NULL"),
)

EVENTS = Shape(
    source="SELECT date_trunc('milliseconds', ts) AS ts, kind, source, data, epoch, seq FROM events WHERE {where}",
    columns=(Column("ts", _T), Column("kind", _X), Column("source", _X), Column("data", _J), Column("epoch"),
             Column("seq")),
    key=("ts", "epoch", "seq"),
    where=("gateway_id = %(gateway)s", _IN_WINDOW),
)
#: ``kind=actuator`` matches ``actuator.change``, ``actuator.refused``...; ``kind=alert.fired`` only that kind.
EVENT_KINDS = "(kind = ANY(%(kinds)s) OR split_part(kind, '.', 1) = ANY(%(kinds)s))"

#: Per hour and series: readings expected from the sampling interval (counted from the series' first reading
#: ever, within the range) against readings received, and how many of those were good.
COVERAGE = Shape(
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
           FROM readings WHERE {where} GROUP BY 1, 2, 3) AS g USING (hour, sensor, quantity)""",
    columns=(Column("hour", _T), Column("sensor", _NAME), Column("quantity", _NAME), Column("interval"),
             Column("interval_source", _WORD), Column("expected"), Column("received"), Column("good"),
             Column("missing")),
    key=("hour", "sensor", "quantity"),
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
    guard_names: bool = True  # False when every sensor and quantity name exported is known to be safe_name()

    def sql(self, fmt: str) -> str:
        """One window's query: COPY ... (FORMAT csv) for ``csv``, one JSON text per row for the others."""
        inner = self.shape.source.format(where=" AND ".join(self.shape.where + self.filters))
        columns = {c.name: c for c in self.shape.columns}
        to_sql = (lambda c: c.csv_sql(self.guard_names)) if fmt == "csv" else Column.json_sql
        select = ", ".join(f"{to_sql(c)} AS {c.name}" for c in self.shape.columns)
        key = ", ".join(columns[name].key_sql() for name in self.shape.key)
        after = f" WHERE ({key}) > ({', '.join(f'%(after{i})s' for i in range(len(self.shape.key)))})" \
            if self.after else ""
        query = f"SELECT {select} FROM ({inner}) AS r{after} ORDER BY {key}"
        if fmt == "csv":
            return f"COPY ({query}) TO STDOUT (FORMAT csv)"
        return f"SELECT row_to_json(j)::text FROM ({query}) AS j"  # compact, in column order, rows kept in order

    def windows(self) -> Iterator[dict[str, Any]]:
        """The bound values of each day's query, in order (an export resumed after a row starts at its time)."""
        start = max(self.start, self.after[0]) if self.after else self.start
        values = {**self.params, "origin": ORIGIN}
        values.update({f"after{i}": v for i, v in enumerate(self.after or ())})
        while start < self.end:
            end = min(_floor(start, WINDOW) + WINDOW, self.end)
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


def stream(connect: Connect, export: Export, fmt: str) -> Iterator[bytes]:
    """The export as blocks of at most about ``BLOCK`` bytes, read from one consistent snapshot."""
    conn = connect()
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        pieces = {"csv": _csv_pieces, "ndjson": _ndjson_pieces, "json": _json_pieces}[fmt](conn, export)
        yield from _blocks(pieces)
    finally:
        conn.close()


def _csv_pieces(conn: psycopg.Connection, export: Export) -> Iterator[bytes | memoryview]:
    yield export.shape.header
    sql = export.sql("csv")
    with conn.cursor() as cur:
        for values in export.windows():
            with cur.copy(sql, values) as copy:
                yield from copy  # one CSV row per item, formatted by PostgreSQL


def _ndjson_pieces(conn: psycopg.Connection, export: Export) -> Iterator[bytes]:
    sql = export.sql("json")
    for values in export.windows():
        with conn.cursor(name="history_export") as cur:
            cur.execute(sql, values)
            while rows := cur.fetchmany(FETCH_ROWS):
                yield ("\n".join(row[0] for row in rows) + "\n").encode()


def _json_pieces(conn: psycopg.Connection, export: Export) -> Iterator[bytes]:
    """One JSON array, written as NDJSON lines with separators."""
    opened = False
    for lines in _ndjson_pieces(conn, export):
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
