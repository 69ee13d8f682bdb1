"""The history export as both sides see it: tables, columns, the spreadsheet guard, resume keys and formats.

The history API (``edge/datacenter/queries.py`` writes the rows, ``api.py`` describes them in its OpenAPI document)
and the agronomist's client (``edge/history.py`` resumes a pull) read the same definitions here, so they cannot
disagree on a column, a key or a guard:

- A :class:`Table` is what one exported row is: its columns in order (the CSV header, the JSON object's keys) and
  the key that orders the rows and resumes an export (``after``). :data:`READINGS`, :data:`AGGREGATES`,
  :data:`EVENTS` and :data:`COVERAGE` are the exports (:data:`TABLES`), :data:`GATEWAYS` and :data:`SERIES` the
  API's JSON lists; :meth:`Table.row_schema` is a row's JSON schema.
- In CSV, a text or name cell that a spreadsheet would run as a formula (one starting with ``=``, ``+``, ``-``,
  ``@``, tab or CR), or that starts with the guard ``'`` itself, gets one leading ``'``: :func:`unguarded` undoes
  exactly that. JSON rows are never guarded.
- ``after`` is the key fields of the last row received, comma-separated, each with ``%`` and ``,`` written ``%25``
  and ``%2C`` (:meth:`Table.cursor`); :meth:`Table.parse_cursor` reads it back, refusing (:class:`BadCursor`) what
  is not a key of the table.

``docs/history.md`` is the same in prose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from edge.errors import EdgeError

UTC = timezone.utc

#: The export formats, and their media types.
FORMATS = ("csv", "ndjson", "json")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8; header=present", "ndjson": "application/x-ndjson",
               "json": "application/json"}

#: The spreadsheet guard: a CSV text cell starting with one of ``FORMULA_STARTS``, or with ``GUARD`` itself, gets a
#: leading ``GUARD``.
GUARD = "'"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
GUARDED_STARTS = (*FORMULA_STARTS, GUARD)

#: Column kinds: how a value is written (``time``: UTC ISO-8601 with milliseconds and ``Z``; ``text``, ``name``
#: and ``word`` are strings: free text, a sensor or quantity name, one of a fixed set the protocol defines;
#: ``integer``, ``number``; ``json``: an object, in CSV its JSON text) and what a row's JSON schema says.
KINDS = ("time", "text", "name", "word", "integer", "number", "json")
_JSON_TYPES = {"time": "string", "text": "string", "name": "string", "word": "string", "integer": "integer",
               "number": "number", "json": "object"}
#: A name or a word as a key field: 1-128 characters, no control characters (what the protocol allows).
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
#: A text key field (a unit): the same, or empty.
_TEXT = re.compile(r"[^\x00-\x1f\x7f]{0,128}")
_PLUS_AS_SPACE = re.compile(r"(T\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$")
_MAX_KEY = 2**63


class BadCursor(EdgeError, ValueError):
    """An ``after`` value that is not a key of the table; the message names the field."""


def guarded(text: str) -> str:
    """A text cell as the API writes it in CSV (PostgreSQL does the same in SQL, from the same characters)."""
    return GUARD + text if text.startswith(GUARDED_STARTS) else text


def unguarded(text: str) -> str:
    """The value of a guarded CSV text cell: one leading guard removed, if there is one."""
    return text[1:] if text.startswith(GUARD) else text


def needs_guard(name: str) -> bool:
    """True for a name the CSV guard would change (an export whose names all pass can skip guarding them)."""
    return name.startswith(GUARDED_STARTS)


def parse_iso(text: str) -> datetime:
    """An ISO-8601 date or date-time as an aware UTC time; without an offset it is UTC. ``T09:30 03:30`` is a
    ``+03:30`` whose ``+`` a URL turned into a space. ValueError when it is not one (or outside the years 1..9999)."""
    try:
        ts = datetime.fromisoformat(_PLUS_AS_SPACE.sub(r"\1+\2", text))
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is outside the years 1..9999") from None


@dataclass(frozen=True)
class Column:
    """One exported column: its name (in the CSV header and the JSON object), its kind (:data:`KINDS`), and
    whether it may be null (an empty CSV cell)."""

    name: str
    kind: str = "number"
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name}: unknown kind {self.kind!r}")

    @property
    def guarded(self) -> bool:
        """Whether its CSV cells carry the spreadsheet guard (text always; names unless known safe)."""
        return self.kind in ("text", "name")

    def schema(self) -> dict[str, Any]:
        kind = _JSON_TYPES[self.kind]
        return {"type": [kind, "null"] if self.nullable else kind}


@dataclass(frozen=True)
class Table:
    """What one exported row is: its columns in order and the key (column names) that orders and resumes it."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        unknown = [k for k in self.key if k not in names]
        if unknown or len(set(names)) != len(names):
            raise ValueError(f"table {self.name}: key {unknown} not among its columns, or a column twice")
        if any(self.column(k).kind in ("json", "number") or self.column(k).nullable for k in self.key):
            raise ValueError(f"table {self.name}: a key field must be a time, text, name, word or integer, not null")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def header(self) -> str:
        """The CSV header row."""
        return ",".join(self.names) + "\n"

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def key_columns(self) -> tuple[Column, ...]:
        return tuple(self.column(name) for name in self.key)

    def row_schema(self) -> dict[str, Any]:
        """The JSON schema of one row (NDJSON line, JSON array item): exactly these fields, each of its type."""
        return {"type": "object", "required": list(self.names), "additionalProperties": False,
                "properties": {c.name: c.schema() for c in self.columns}}

    def cursor(self, row: Mapping[str, Any], *, csv: bool = False) -> str:
        """The ``after`` value that resumes right after ``row``: an NDJSON/JSON row as parsed, or (``csv``) a CSV
        row's cells by column name, whose guard is undone."""
        values = []
        for column in self.key_columns():
            value = row[column.name]
            text = unguarded(value) if csv and column.guarded else str(value)
            values.append(text.replace("%", "%25").replace(",", "%2C"))
        return ",".join(values)

    def parse_cursor(self, text: str) -> tuple[Any, ...]:
        """The key an ``after`` value names (times as aware datetimes, integers as ints, the rest as strings), or
        :class:`BadCursor` naming what is wrong."""
        parts = text.split(",")
        if len(parts) != len(self.key):
            raise BadCursor(f"after: expected {len(self.key)} comma-separated fields ({','.join(self.key)}), "
                            f"got {len(parts)}")
        return tuple(_key_field(column, part) for column, part in zip(self.key_columns(), parts))


def _key_field(column: Column, part: str) -> Any:
    bad = BadCursor(f"after: field {column.name} ({part!r}) is not valid")
    try:
        value = unquote(part, errors="strict")
    except UnicodeDecodeError:
        raise bad from None
    if column.kind == "time":
        try:
            return parse_iso(value)
        except ValueError:
            raise bad from None
    if column.kind == "integer":
        if not value.isascii() or not value.isdigit() or int(value) >= _MAX_KEY:
            raise bad
        return int(value)
    if not (_TEXT if column.kind == "text" else _NAME).fullmatch(value):
        raise bad
    return value


_T, _X, _N, _W, _I, _R, _J = KINDS

#: A reading's ``clock`` as the data center stores it (0, 1, 2), in words: taken before the gateway's clock synced
#: (its time may be anything), with a synced clock, or taken before and re-timed by the gateway once it synced.
CLOCKS = ("unsynced", "synced", "corrected")
#: Significant digits of an aggregate's ``mean`` (min and max are readings, exported as stored).
MEAN_DIGITS = 6

#: Every reading of one gateway (the ``gateway`` column tells the gateways of one file apart).
READINGS = Table("readings", (
    Column("ts", _T), Column("gateway", _N), Column("sensor", _N), Column("quantity", _N),
    Column("value", _R, nullable=True), Column("unit", _X), Column("quality", _W), Column("clock", _W),
    Column("epoch", _I), Column("seq", _I),
), key=("ts", "sensor", "quantity", "epoch", "seq"))

#: Readings downsampled (``every``): per bucket and series, the good readings within their physical range; the mean
#: rounded to :data:`MEAN_DIGITS` significant digits.
AGGREGATES = Table("aggregates", (
    Column("ts", _T), Column("gateway", _N), Column("sensor", _N), Column("quantity", _N), Column("unit", _X),
    Column("count", _I), Column("min", _R), Column("mean", _R), Column("max", _R),
), key=("ts", "sensor", "quantity", "unit"))

EVENTS = Table("events", (
    Column("ts", _T), Column("kind", _X), Column("source", _X), Column("data", _J), Column("epoch", _I),
    Column("seq", _I),
), key=("ts", "epoch", "seq"))

#: Per hour and series, readings expected from the sampling interval against received (not resumable: it is
#: bounded by ``api.max_rows`` before it starts).
COVERAGE = Table("coverage", (
    Column("hour", _T), Column("sensor", _N), Column("quantity", _N), Column("interval", _R, nullable=True),
    Column("interval_source", _W), Column("expected", _I, nullable=True), Column("received", _I),
    Column("good", _I), Column("missing", _I, nullable=True),
), key=("hour", "sensor", "quantity"))

#: The JSON lists of the API (no CSV, not resumable): the gateways a token sees, and a gateway's series. ``name`` and
#: ``names`` (``{sensor or actuator id: name}``) are the display names the gateway's latest start gave (null before).
GATEWAYS = Table("gateways", (
    Column("id", _N), Column("name", _X, nullable=True), Column("names", _J, nullable=True), Column("state", _W),
    Column("state_since", _T), Column("last_seen", _T), Column("version", _X, nullable=True),
    Column("epoch", _I, nullable=True), Column("backlog", _I, nullable=True),
))
SERIES = Table("series", (
    Column("sensor", _N), Column("name", _X, nullable=True), Column("quantity", _N), Column("unit", _X),
    Column("first", _T), Column("last", _T),
))

TABLES = {t.name: t for t in (READINGS, AGGREGATES, EVENTS, COVERAGE)}
