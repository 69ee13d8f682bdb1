"""The pure parts of the history API and client: cutting a stream into complete rows, resume cursors, token
scopes, export windows, parameter parsing, and the shading of actuator-on periods. No services needed."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.datacenter import queries, tokens
from edge.datacenter.api import Problem, parse_after, parse_time
from edge.history import (HistoryError, Progress, Records, Request, bucket_grid, cursor, on_periods, pull,
                          with_gaps)

UTC = timezone.utc
T = datetime(2025, 7, 15, tzinfo=UTC)

cells = st.text(alphabet=st.sampled_from('ab,"\n\r-=é '), max_size=6)


def csv_document(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


@given(st.lists(st.lists(cells, min_size=1, max_size=4), min_size=1, max_size=8), st.data())
def test_records_cut_any_chunking_of_a_csv_stream_at_row_ends_only(rows, data):
    document = csv_document(rows)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(document)), max_size=6)))
    records = Records(csv_quoting=True)
    passed = b"".join(records.feed(document[a:b]) for a, b in zip([0, *cuts], [*cuts, len(document)]))
    assert passed == document and not records.pending
    assert records.last == csv_document(rows[-1:])


def test_a_partial_row_is_held_back_until_its_newline_arrives():
    records = Records(csv_quoting=True)
    assert records.feed(b'ts,sensor\n2025,"a\nb') == b"ts,sensor\n"
    assert records.feed(b'"\n2026,c') == b'2025,"a\nb"\n'
    assert records.last == b'2025,"a\nb"\n' and records.pending == b"2026,c"


def test_the_resume_cursor_is_the_last_rows_key_with_commas_and_percents_escaped():
    request = Request("http://dc", "t", "gh-1", "2025-07-15", "2025-07-16")
    header = b"ts,sensor,quantity,value,unit,quality,epoch,seq\n"
    row = b'2025-07-15T06:00:10.000Z,"air,north",temperature,21.5,\xc2\xb0C,good,3,1042\n'
    assert cursor(request, header, row) == "2025-07-15T06:00:10.000Z,air%2Cnorth,temperature,3,1042"
    hourly = Request("http://dc", "t", "gh-1", "2025-07-15", "2025-07-16", every="1h", fmt="ndjson")
    line = b'{"ts":"2025-07-15T06:00:00.000Z","sensor":"50%","quantity":"humidity","unit":"%","count":360}\n'
    assert cursor(hourly, None, line) == "2025-07-15T06:00:00.000Z,50%25,humidity,%25"


def test_the_api_parses_back_the_cursor_the_client_writes():
    assert parse_after("2025-07-15T06:00:10.000Z,air%2Cnorth,temperature,3,1042", queries.RAW) == (
        datetime(2025, 7, 15, 6, 0, 10, tzinfo=UTC), "air,north", "temperature", 3, 1042)
    for bad in ("2025-07-15,air,temperature,3", "soon,air,temperature,3,1", "2025-07-15,air,t,-3,1",
                "2025-07-15,a%00,t,3,1", "2025-07-15,%ff,t,3,1", f"2025-07-15,air,t,3,{2**63}"):
        with pytest.raises(Problem) as caught:
            parse_after(bad, queries.RAW)
        assert caught.value.status == 400 and caught.value.slug == "bad-cursor"


@pytest.mark.parametrize("text, expected", [
    ("2025-07-15", T),
    ("2025-07-15T06:30", T + timedelta(hours=6, minutes=30)),
    ("2025-07-15T06:30:00Z", T + timedelta(hours=6, minutes=30)),
    ("2025-07-15T10:00:00+03:30", T + timedelta(hours=6, minutes=30)),
    ("2025-07-15T10:00:00 03:30", T + timedelta(hours=6, minutes=30)),  # the + a URL turned into a space
])
def test_times_are_iso_8601_and_utc_unless_they_carry_an_offset(text, expected):
    assert parse_time("from", text) == expected


@pytest.mark.parametrize("text", ["yesterday", "", "0001-01-01T00:00+14:00", "2025-13-01", "1760000000"])
def test_a_time_that_is_not_iso_8601_or_out_of_range_is_a_400(text):
    with pytest.raises(Problem) as caught:
        parse_time("from", text)
    assert caught.value.status == 400


def test_a_token_sees_only_gateways_matching_its_globs():
    token = tokens.Token("alice", ("gh-lorestan-*", "gh-0[1-3]"), T)
    assert [g for g in ("gh-lorestan-042", "gh-02", "gh-04", "gh-tehran-001", "GH-LORESTAN-1") if token.sees(g)] \
        == ["gh-lorestan-042", "gh-02"]


def test_token_patterns_and_names_are_checked():
    assert tokens.check_patterns(["gh-*", "gh-*", "gh-0[1-5]"]) == ("gh-*", "gh-0[1-5]")
    for bad in ([], ["gh/*"], ["gh-*; drop table"], [""]):
        with pytest.raises(tokens.TokenError):
            tokens.check_patterns(bad)
    with pytest.raises(tokens.TokenError):
        tokens.check_name("-alice")


def test_a_token_is_random_prefixed_and_stored_as_its_sha256():
    first, second = tokens.new_secret(), tokens.new_secret()
    assert first != second and first.startswith("edge_") and len(first) == 48
    assert tokens.digest(first) != first and len(tokens.digest(first)) == 64


def test_a_revoked_or_expired_token_says_so():
    assert tokens.Token("a", ("*",), T, revoked_at=T).state() == "revoked"
    assert tokens.Token("a", ("*",), T, expires_at=T).state(now=T + timedelta(seconds=1)) == "expired"
    assert tokens.Token("a", ("*",), T, expires_at=T + timedelta(days=1)).state(now=T) == "active"


def test_an_export_runs_one_query_per_utc_day_and_resumes_at_the_cursor_time():
    export = queries.Export(queries.RAW, T - timedelta(hours=3), T + timedelta(days=1, hours=2))
    day = timedelta(days=1)
    assert [(w["start"], w["end"]) for w in export.windows()] == [
        (T - timedelta(hours=3), T), (T, T + day), (T + day, T + day + timedelta(hours=2))]
    resumed = queries.Export(queries.RAW, export.start, export.end, after=(T + timedelta(hours=5), "air", "t", 1, 9))
    assert next(resumed.windows())["start"] == T + timedelta(hours=5)


def test_a_local_export_runs_one_query_per_local_day_of_23_24_or_25_hours():
    berlin = "Europe/Berlin"  # summer time from 2025-03-30 02:00 local: that day has 23 hours
    start, end = datetime(2025, 3, 29, 12, tzinfo=UTC), datetime(2025, 3, 31, 12, tzinfo=UTC)
    windows = [(w["start"], w["end"], w["tz"]) for w in queries.Export(queries.RAW, start, end, tz=berlin).windows()]
    assert windows == [(start, datetime(2025, 3, 29, 23, tzinfo=UTC), berlin),
                       (datetime(2025, 3, 29, 23, tzinfo=UTC), datetime(2025, 3, 30, 22, tzinfo=UTC), berlin),
                       (datetime(2025, 3, 30, 22, tzinfo=UTC), end, berlin)]
    tehran = queries.Export(queries.RAW, T, T + timedelta(days=1), tz="Asia/Tehran").windows()
    assert [w["end"] for w in tehran] == [T + timedelta(hours=20, minutes=30), T + timedelta(days=1)]


@pytest.mark.parametrize("every, tz, expected", [
    ("1h", "Asia/Tehran", ["2025-07-14T23:30:00+00:00", "2025-07-15T00:30:00+00:00", "2025-07-15T01:30:00+00:00"]),
    ("1d", "Europe/Berlin", ["2025-03-28T23:00:00+00:00", "2025-03-29T23:00:00+00:00", "2025-03-30T22:00:00+00:00"]),
    ("1d", None, ["2025-03-29T00:00:00+00:00", "2025-03-30T00:00:00+00:00", "2025-03-31T00:00:00+00:00"]),
])
def test_the_wide_grid_is_every_bucket_start_in_the_zone(every, tz, expected):
    start, end = ("2025-07-15T00:00Z", "2025-07-15T02:00Z") if every == "1h" else \
        ("2025-03-29T12:00Z", "2025-03-31T12:00Z")
    grid = bucket_grid(Request("http://x", "t", "gh", start, end, every=every, tz=tz))
    assert [at.isoformat() for at in grid] == expected


def test_export_sql_is_built_from_constants_only():
    sql = queries.Export(queries.RAW, T, T + timedelta(days=1), after=(T, "air", "t", 1, 1)).sql("csv")
    assert sql.startswith("COPY (SELECT to_char(") and "%(gateway)s" in sql and "%(after4)s" in sql
    assert "air" not in sql


def test_on_periods_start_from_the_first_events_previous_state():
    end = T + timedelta(hours=6)
    events = [{"ts": "2025-07-15T01:00:00.000Z", "source": "pump",
               "data": {"value": 0.0, "previous": 1.0, "reason": "schedule:night"}},
              {"ts": "2025-07-15T02:00:00.000Z", "source": "fan",
               "data": {"value": 0.6, "previous": 0.0, "reason": "rule:cooling"}},
              {"ts": "2025-07-15T03:00:00.000Z", "source": "pump",
               "data": {"value": 1.0, "previous": 0.0, "reason": "manual:cli"}}]
    assert on_periods(events, T, end) == {
        "pump": [(T, T + timedelta(hours=1)), (T + timedelta(hours=3), end)],
        "fan": [(T + timedelta(hours=2), end)]}


def test_chart_lines_break_at_gaps_instead_of_bridging_them():
    times = [T + timedelta(seconds=s) for s in (0, 10, 20, 300, 310)]
    xs, ys = with_gaps(times, [1, 2, None, 4, 5])
    assert len(xs) == 6 and ys[2] != ys[2] and ys[3] != ys[3]  # the missing value, then the inserted break


def failing_client(statuses: list[int | None]) -> tuple[httpx.Client, list[str]]:
    """A client whose n-th request gets statuses[n] (None: the connection is refused); records the URLs."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        status = statuses[min(len(seen), len(statuses)) - 1]
        if status is None:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(status, json={"type": "x", "title": "t", "status": status, "detail": f"said {status}"})

    return httpx.Client(transport=httpx.MockTransport(answer)), seen


def test_a_pull_retries_network_errors_with_backoff_then_gives_up(tmp_path):
    client, seen = failing_client([None, 503, None])
    waits: list[float] = []
    request = Request("http://dc", "edge_t", "gh-1", "2025-07-15", "2025-07-16")
    with pytest.raises(HistoryError) as caught, (tmp_path / "out.csv").open("wb") as out:
        pull(request, out, client=client, retries=3, sleep=waits.append, progress=Progress(request, io.StringIO()))
    assert len(seen) == 4 and waits == [1.0, 2.0, 4.0]
    assert "giving up after 4 attempts in a row: ConnectError: connection refused" in str(caught.value)


def test_a_refusal_is_not_retried_and_carries_the_servers_detail(tmp_path):
    client, seen = failing_client([404])
    request = Request("http://dc", "edge_t", "gh-1", "2025-07-15", "2025-07-16")
    with pytest.raises(HistoryError) as caught, (tmp_path / "out.csv").open("wb") as out:
        pull(request, out, client=client, sleep=lambda _: None)
    assert len(seen) == 1 and str(caught.value) == "the server refused the request: 404 said 404"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal_only():
    request = Request("http://dc", "edge_t", "gh-1", "2025-07-15", "2025-07-16")
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(request, stream, every=0)
        progress.add(b"2025-07-15T12:00:00.000Z,air,temperature,21.5,C,good,1,1\n", b"2025-07-15T12:00:00.000Z,a\n")
    assert "gh-1: 2025-07-15T12:00:00.000Z (50%) 1 rows" in terminal.getvalue() and pipe.getvalue() == ""
