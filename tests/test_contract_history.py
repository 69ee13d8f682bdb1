"""The history export's contract: the client (edge/history.py) and the API (queries.py, api.py) agree on columns,
keys and the spreadsheet guard by construction, for any names a database may hold."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.contract import history as contract
from edge.contract.history import AGGREGATES, COVERAGE, EVENTS, GATEWAYS, READINGS, SERIES, TABLES, BadCursor
from edge.datacenter import queries
from edge.datacenter.api import Problem, parse_after
from edge.history import row_cursor

UTC = timezone.utc
T = datetime(2025, 7, 15, tzinfo=UTC)
SHAPES = {"readings": queries.RAW, "aggregates": queries.AGGREGATE, "events": queries.EVENTS,
          "coverage": queries.COVERAGE}

#: What a stored name may be (the protocol's names: 1-128 characters, no control characters), biased towards
#: what is hard: commas, percents, quotes, and the characters that start a spreadsheet formula or the guard.
_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters=[chr(c) for c in range(32)] + ["\x7f"])
NAMES = st.text(_CHARS | st.sampled_from(["=", "+", "-", "@", "'", ",", "%", '"', " "]), min_size=1, max_size=20) \
    | st.sampled_from(["'=x", "''", "%2C", "a,b", "50%"])
TIMES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000, tzinfo=UTC))
KEYS = st.integers(0, 2**63 - 1)


def _value(column: contract.Column, draw) -> object:
    """A value of the column as a JSON row holds it."""
    if column.kind == "time":
        ts = draw(TIMES)
        return f"{ts.year:04d}-" + ts.strftime("%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    if column.kind == "integer":
        return draw(KEYS)
    if column.kind == "text":
        return draw(NAMES | st.just(""))
    if column.kind in ("name", "word"):
        return draw(NAMES)
    if column.kind == "json":
        return draw(st.dictionaries(NAMES, NAMES, max_size=2))
    return draw(st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def rows(draw, table):
    return {c.name: _value(c, draw) for c in table.columns}


def csv_line(table: contract.Table, row: dict) -> bytes:
    """The row as the API writes it in CSV: text cells guarded, quoted where needed (as PostgreSQL's COPY)."""
    cells = []
    for column in table.columns:
        value = row[column.name]
        if column.kind == "json":
            value = json.dumps(value)
        elif column.guarded:
            value = contract.guarded(value)
        cells.append(value)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue().encode()


def key_of(table: contract.Table, row: dict) -> tuple:
    return tuple(contract.parse_iso(row[name]) if table.column(name).kind == "time" else row[name]
                 for name in table.key)


@pytest.mark.parametrize("name", ["readings", "aggregates", "events"])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_cursor_the_client_writes_after_any_row_is_the_key_the_server_reads(name, data):
    table, shape = TABLES[name], SHAPES[name]
    row = data.draw(rows(table))
    header = table.header.encode()
    assert parse_after(row_cursor(table, "csv", header, csv_line(table, row)), shape) == key_of(table, row)
    assert parse_after(row_cursor(table, "ndjson", None, json.dumps(row).encode() + b"\n"), shape) == \
        key_of(table, row)


@given(text=NAMES | st.just(""))
def test_the_guard_is_undone_exactly_and_only_names_that_need_it_change(text):
    assert contract.unguarded(contract.guarded(text)) == text
    assert (contract.guarded(text) != text) == contract.needs_guard(text)
    assert not contract.guarded(text).startswith(contract.FORMULA_STARTS)


def test_the_servers_sql_guards_the_characters_of_the_contract():
    guard = queries.csv_sql(READINGS.column("unit"))
    codes = guard.split(" IN (")[1].split(")")[0]
    assert sorted(int(c) for c in codes.split(", ")) == sorted(ord(c) for c in contract.GUARDED_STARTS)
    assert queries.csv_sql(READINGS.column("sensor"), guard_names=False) == "r.sensor"


def test_a_malformed_cursor_names_the_field_and_the_api_answers_400():
    with pytest.raises(BadCursor, match="expected 3 comma-separated fields"):
        EVENTS.parse_cursor("2025-07-15,1")
    with pytest.raises(BadCursor, match="field seq"):
        EVENTS.parse_cursor("2025-07-15,1,-1")
    with pytest.raises(Problem) as caught:
        parse_after("2025-07-15,1,x", queries.EVENTS)
    assert caught.value.status == 400 and caught.value.slug == "bad-cursor"
    assert AGGREGATES.parse_cursor("2025-07-15T00:00:00.000Z,door,level,") == (T, "door", "level", "")  # no unit


def test_every_shape_of_the_server_exports_a_table_of_the_contract():
    for name, table in TABLES.items():
        assert SHAPES[name].table is table and SHAPES[name].header == table.header.encode()


def test_the_openapi_row_schemas_are_the_contracts_tables():
    from test_history import openapi_document

    paths = openapi_document()["paths"]

    def rows_of(path: str) -> dict:
        return paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["items"]

    assert rows_of("/v1/gateways/{gateway_id}/readings") == {"oneOf": [READINGS.row_schema(),
                                                                        AGGREGATES.row_schema()]}
    assert rows_of("/v1/gateways/{gateway_id}/events") == EVENTS.row_schema()
    assert rows_of("/v1/gateways/{gateway_id}/coverage") == COVERAGE.row_schema()
    assert rows_of("/v1/gateways") == GATEWAYS.row_schema()
    assert rows_of("/v1/gateways/{gateway_id}/sensors") == SERIES.row_schema()
    assert paths["/v1/gateways/{gateway_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] \
        == GATEWAYS.row_schema()
    for table in [*TABLES.values(), GATEWAYS, SERIES]:
        assert list(table.row_schema()["properties"]) == list(table.names) == table.row_schema()["required"]


def test_the_gateway_and_series_lists_carry_the_contracts_fields():
    from edge.datacenter.queries import Series, _gateway_dict

    assert list(_gateway_dict(("gh", None, None, "online", T, T, None, 3, 0))) == list(GATEWAYS.names)
    assert list(Series("air", "temperature", "°C", T, T).as_dict()) == list(SERIES.names)


# ----------------------------------------------------------------------------------- through PostgreSQL itself

HOSTILE = ["air", "=cmd()", "'=x", "'quoted", "+98", "-1", "@sum", "a,b", "50%", 'say "hi"', "%2C", "سنسور"]


@pytest.fixture
def hostile_database(postgres):
    from edge.datacenter.store import migrate

    with postgres.connect() as conn:
        migrate(conn)
        seq = 0
        for i, sensor in enumerate(HOSTILE):
            for quantity, unit in (("temperature", "°C"), (HOSTILE[-i - 1], ""), ("level", "'=unit")):
                seq += 1
                conn.execute("INSERT INTO readings (gateway_id, epoch, seq, ts, sensor, quantity, value, unit, "
                             "quality, clock) VALUES ('gh', 1, %s, %s, %s, %s, %s, %s, 'good', 1)",
                             (seq, T + timedelta(seconds=seq // 4), sensor, quantity, float(seq), unit))
                conn.execute("INSERT INTO events (gateway_id, epoch, seq, ts, kind, source, data) VALUES "
                             "('gh', 1, %s, %s, %s, %s, '{}')", (seq, T + timedelta(seconds=seq // 4), sensor,
                                                                   quantity))
    return postgres


@pytest.mark.parametrize("name", ["readings", "aggregates", "events"])
@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_an_export_resumed_after_any_row_continues_exactly_there(hostile_database, name, fmt):
    """Every row of a real export (names that start like formulas or like the guard, commas, percents, quotes, an
    empty unit), resumed with the cursor the client writes for it, goes on with exactly the rows after it."""
    table, shape = TABLES[name], SHAPES[name]
    params = {"gateway": "gh", "sensors": HOSTILE, "quantities": [*HOSTILE, "temperature", "level"],
              "bucket": queries.BUCKETS["1m"]}

    def export(after=None) -> list[bytes]:
        blocks = b"".join(queries.stream(hostile_database.connect, queries.Export(
            shape, T, T + timedelta(hours=1), params, after=after), "csv" if fmt == "csv" else "json"))
        if fmt == "csv":
            records = list(csv.reader(io.StringIO(blocks.decode())))
            return [_csv_record(r) for r in records]
        return [json.dumps(r).encode() for r in json.loads(blocks)]

    everything = export()
    header, lines = (everything[0], everything[1:]) if fmt == "csv" else (None, everything)
    assert len(lines) >= 12
    for i, line in enumerate(lines):
        after = parse_after(row_cursor(table, fmt, header, line), shape)
        resumed = export(after)
        assert resumed[1 if fmt == "csv" else 0:] == lines[i + 1:], (i, line)


def _csv_record(cells: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue().encode()


def test_the_contract_imports_nothing_of_either_side():
    import subprocess
    import sys

    code = ("import sys, edge.contract.protocol, edge.contract.events, edge.contract.history; "
            "print(sorted(m for m in sys.modules if m.startswith(('edge.gateway', 'edge.datacenter', 'edge.history'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
