"""The agronomist's client of the history API (``edge history pull`` / ``edge history plot``).

``pull`` streams a gateway's readings to a file (httpx, 64 KiB at a time, never the whole export in memory) and
writes only complete rows. A dropped connection is retried with exponential backoff and continues after the last
complete row, using the API's ``after`` cursor (the row's key: ``ts,sensor,quantity,epoch,seq``, or
``ts,sensor,quantity,unit`` for downsampled rows; the tables, keys and CSV guard are the contract's,
``edge.contract.history``, which the API uses too), so nothing is duplicated or skipped; ``resume=True`` does the
same for a file left by a pull that was killed. ``pull_all`` pulls several gateways into one file (their rows
carry a ``gateway`` column; a resume continues at the gateway of the file's last row); ``pull_wide`` writes their
buckets as one row per time of a regular grid. ``plot`` draws the readings with a band per actuator where it was on
(up to what is known), gaps left open (matplotlib, the optional ``plot`` extra).
"""

from __future__ import annotations

import csv
import heapq
import io
import itertools
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from edge.contract.events import ActuatorChange
from edge.contract.history import AGGREGATES, READINGS, Table, unguarded
from edge.durations import counted
from edge.errors import EdgeError

UTC = timezone.utc
RETRY_STATUS = {429, 502, 503, 504}
TIMEOUT = httpx.Timeout(30.0, read=300.0)  # a day's rows are sorted before the first of them leaves the server
_QUOTE_OR_NEWLINE = re.compile(rb'["\n]')


class HistoryError(EdgeError):
    """A pull or plot failed; the message says why (the API's problem detail when it answered one)."""


class _Retry(Exception):
    """A failure worth another attempt: a dropped connection, a truncated stream, a busy server."""


@dataclass(frozen=True)
class Request:
    """What to pull: one gateway's readings in [start, end), optionally filtered and downsampled."""

    server: str
    token: str = field(repr=False)
    gateway: str
    start: str
    end: str
    sensors: tuple[str, ...] = ()
    quantities: tuple[str, ...] = ()
    every: str | None = None
    fmt: str = "csv"
    tz: str | None = None  # an IANA zone: the server's buckets and times in it (from/to given without offset too)

    @property
    def table(self) -> Table:
        """What a row of this pull is (the contract's table: columns and resume key)."""
        return AGGREGATES if self.every else READINGS

    def url(self, what: str = "readings") -> str:
        return f"{self.server.rstrip('/')}/v1/gateways/{quote(self.gateway, safe='')}/{what}"

    def params(self, after: str | None = None) -> list[tuple[str, str]]:
        params = [("from", self.start), ("to", self.end), ("format", self.fmt)]
        params += [("sensor", s) for s in self.sensors] + [("quantity", q) for q in self.quantities]
        params += [("every", self.every)] if self.every else []
        params += [("tz", self.tz)] if self.tz else []
        return params + ([("after", after)] if after else [])

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def zone(name: str | None) -> ZoneInfo | None:
    """The time zone ``--tz`` names (None: UTC), or a HistoryError saying it is not one."""
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, ZoneInfoNotFoundError):
        raise HistoryError(f"--tz: {name!r} is not a time zone (an IANA name such as Asia/Tehran or UTC; "
                           "on Windows: pip install tzdata)") from None


def in_zone(text: str, tz: str | None) -> str:
    """A ``--from``/``--to`` value as sent: with ``tz``, one without an offset is that zone's time
    (``2025-07-15`` -> ``2025-07-15T00:00:00+03:30``); anything else as given (the server explains what is wrong)."""
    where = zone(tz)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return text
    return at.replace(tzinfo=where).isoformat() if where is not None and at.tzinfo is None else text


def read_token(path: str | os.PathLike[str]) -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise HistoryError(f"cannot read the token file: {exc.strerror} ({path})") from None
    if not token:
        raise HistoryError(f"the token file {path} is empty")
    return token


# ----------------------------------------------------------------------------------------------- complete rows


class Records:
    """Cuts a byte stream into complete records: lines, where in CSV a newline inside quotes does not end one.

    ``feed`` returns the complete records the new data finishes (as one bytes, possibly empty) and keeps the rest;
    ``last`` is the last complete record so far.
    """

    def __init__(self, csv_quoting: bool):
        self.csv_quoting = csv_quoting
        self.pending = bytearray()
        self.last: bytes | None = None

    def feed(self, data: bytes) -> bytes:
        self.pending += data
        if not self.csv_quoting or b'"' not in self.pending:
            end = self.pending.rfind(b"\n") + 1
            start = self.pending.rfind(b"\n", 0, end - 1) + 1 if end else 0
        else:
            start, end = self._quoted_bounds()
        if not end:
            return b""
        self.last = bytes(self.pending[start:end])
        complete = bytes(self.pending[:end])
        del self.pending[:end]
        return complete

    def _quoted_bounds(self) -> tuple[int, int]:
        """Start and end of the last complete record, counting quotes (a doubled quote toggles twice)."""
        start = end = 0
        inside = False
        for match in _QUOTE_OR_NEWLINE.finditer(self.pending):
            if match.group() == b'"':
                inside = not inside
            elif not inside:
                start, end = end, match.end()
        return start, end


def cursor(request: Request, header: bytes | None, record: bytes) -> str:
    """The ``after`` value resuming right after this record of the request's table."""
    return row_cursor(request.table, request.fmt, header, record)


def row_cursor(table: Table, fmt: str, header: bytes | None, record: bytes) -> str:
    """The ``after`` value resuming right after ``record``, a complete row of ``table`` in ``fmt`` (CSV: read by
    the ``header`` row's names): its key fields, unguarded, with ``%`` and ``,`` escaped (``Table.cursor``)."""
    if fmt == "csv":
        return table.cursor(_csv_row(header, record), csv=True)
    return table.cursor(json.loads(record))


def row_gateway(fmt: str, header: bytes | None, record: bytes) -> tuple[str | None, str]:
    """The gateway of a complete row (None in a file pulled before rows carried it), and its time as written."""
    row = _csv_row(header, record) if fmt == "csv" else json.loads(record)
    gateway = row.get("gateway")
    return (unguarded(gateway) if fmt == "csv" and gateway is not None else gateway), str(row.get("ts", ""))


def _csv_row(header: bytes | None, record: bytes) -> dict[str, str]:
    names = header.decode().rstrip("\n").split(",")
    return dict(zip(names, next(csv.reader([record.decode().rstrip("\n")]))))


# -------------------------------------------------------------------------------------------------------- pull


@dataclass
class Progress:
    """A one-line progress display on stderr, only when stderr is a terminal."""

    request: Request
    stream: Any = None
    every: float = 0.25
    rows: int = 0
    size: int = 0
    _shown: float = 0.0
    _began: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.stream = self.stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def add(self, data: bytes, last: bytes | None) -> None:
        self.rows += data.count(b"\n")
        self.size += len(data)
        now = time.monotonic()
        if self.enabled and now - self._shown >= self.every:
            self._shown = now
            self.stream.write(f"\r{self._line(last, now)}\x1b[K")
            self.stream.flush()

    def note(self, message: str) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
        self.stream.write(f"{message}\n")
        self.stream.flush()

    def done(self, where: str) -> None:
        if self.enabled:
            self.stream.write(f"\r\x1b[K{self.rows:,} rows, {self.size / 1e6:.1f} MB written to {where}\n")
            self.stream.flush()

    def _line(self, last: bytes | None, now: float) -> str:
        rate = self.size / max(now - self._began, 1e-3) / 1e6
        at = _row_time(self.request, last)
        return f"{self.request.gateway}: {at or '...'} {_share(self.request, at)}{self.rows:,} rows " \
               f"{self.size / 1e6:.1f} MB {rate:.1f} MB/s"


def _row_time(request: Request, record: bytes | None) -> str | None:
    if not record:
        return None
    if request.fmt == "csv":
        return record.split(b",", 1)[0].decode(errors="replace")
    return json.loads(record).get("ts")


def _share(request: Request, at: str | None) -> str:
    try:
        start, end = (_utc(datetime.fromisoformat(t)) for t in (request.start, request.end))
        done = (_utc(datetime.fromisoformat(at)) - start) / (end - start)
    except (TypeError, ValueError, ZeroDivisionError):
        return ""
    return f"({min(max(done, 0.0), 1.0):.0%}) "


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


class Sink:
    """Writes complete records to a binary file: the CSV header once, then rows; remembers the last row."""

    def __init__(self, out: BinaryIO, request: Request, header: bytes | None = None, last: bytes | None = None):
        self.out, self.request = out, request
        self.header, self.last = header, last
        self._awaiting_header = False

    def after(self) -> str | None:
        return cursor(self.request, self.header, self.last) if self.last else None

    def response(self) -> Records:
        """A new response starts (a CSV one with its header row)."""
        self._awaiting_header = self.request.fmt == "csv"
        return Records(csv_quoting=self.request.fmt == "csv")

    def write(self, complete: bytes, last: bytes | None) -> bytes:
        """Write the rows; return what was written (without a repeated header)."""
        if self._awaiting_header and complete:
            cut = complete.index(b"\n") + 1
            header, complete = complete[:cut], complete[cut:]
            self._take_header(header)
            self._awaiting_header = False
        if complete:
            self.out.write(complete)
            self.last = last
        return complete

    def _take_header(self, header: bytes) -> None:
        if self.header is None:
            self.out.write(header)
            self.header = header
        elif header != self.header:
            raise HistoryError("the file's header row differs from the server's: was it pulled with other options?")


def pull(request: Request, out: BinaryIO, *, sink: Sink | None = None, retries: int = 5,
         client: httpx.Client | None = None, progress: Progress | None = None,
         sleep: Callable[[float], None] = time.sleep, backoff: tuple[float, float] = (1.0, 30.0)) -> Sink:
    """Stream the request's rows into ``out``; retry (continuing after the last complete row) on network errors.
    ``retries`` counts consecutive failures: an attempt that wrote rows starts the count (and the backoff) again."""
    sink = sink or Sink(out, request)
    progress = progress or Progress(request)
    own = client is None
    client = client or httpx.Client(timeout=TIMEOUT)
    failures = 0
    try:
        while True:
            before = sink.last
            try:
                _attempt(client, request, sink, progress)
                progress.done(getattr(out, "name", "standard output"))
                return sink
            except _Retry as exc:
                failures = 1 if sink.last != before else failures + 1
                if failures > retries:
                    raise HistoryError(f"giving up after {counted(failures, 'attempt')} in a row: {exc}") from None
                delay = min(backoff[1], backoff[0] * 2 ** (failures - 1))
                progress.note(f"{exc}; continuing after the last complete row in {delay:g}s")
                sleep(delay)
    finally:
        if own:
            client.close()


def _attempt(client: httpx.Client, request: Request, sink: Sink, progress: Progress) -> None:
    try:
        with client.stream("GET", request.url(), params=request.params(sink.after()),
                           headers=request.headers()) as response:
            _check(response)
            records = sink.response()
            for data in response.iter_bytes():
                written = sink.write(records.feed(data), records.last)
                progress.add(written, sink.last)
            if records.pending:
                raise _Retry("the stream ended in the middle of a row")
    except httpx.TransportError as exc:
        raise _Retry(_describe(exc)) from None


def _check(response: httpx.Response) -> None:
    if response.status_code == 200:
        return
    response.read()
    detail = _problem_detail(response)
    if response.status_code in RETRY_STATUS:
        raise _Retry(f"the server answered {response.status_code} ({detail})")
    raise HistoryError(f"the server refused the request: {response.status_code} {detail}")


def _problem_detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail") or response.reason_phrase)
    except (ValueError, AttributeError):
        return response.reason_phrase or "no detail"


def _describe(exc: httpx.TransportError) -> str:
    kind = type(exc).__name__
    return f"{kind}: {exc}" if str(exc) else kind


def pull_all(requests: list[Request], out: BinaryIO, *, sink: Sink | None = None, **options: Any) -> Sink:
    """Pull several gateways' rows (the same request for each, in this order) into one file, one after the other:
    their ``gateway`` column tells them apart. With a ``sink`` of a resumed file, the gateways before its last
    row's are done, and that one continues after it."""
    sink = sink or Sink(out, requests[0])
    for request in requests[_resume_at(requests, sink):]:
        sink.request = request
        pull(request, out, sink=sink, **options)
        sink.last = None  # the next gateway starts at its beginning
    return sink


def _resume_at(requests: list[Request], sink: Sink) -> int:
    if sink.last is None:
        return 0
    gateway, at = row_gateway(requests[0].fmt, sink.header, sink.last)
    names = [r.gateway for r in requests]
    if at.endswith("Z") != (requests[0].tz is None):
        raise HistoryError(f"the file's times are {'UTC' if at.endswith('Z') else 'local'} ({at}) and --tz is "
                           f"{requests[0].tz or 'not given'}: resume with the --tz the file was pulled with")
    if gateway not in names:
        raise HistoryError(f"the file's last row is of gateway {gateway!r}, not of {', '.join(names)}: "
                           "was it pulled with other options?")
    return names.index(gateway)


def pull_to_file(request: Request | list[Request], path: str | os.PathLike[str], *, resume: bool = False,
                 **options: Any) -> Sink:
    """Pull one request (or several gateways', :func:`pull_all`) into a file; with ``resume``, first keep only the
    complete rows a previous pull left and continue after the last of them."""
    path = Path(path)
    requests = request if isinstance(request, list) else [request]
    if resume and path.exists():
        header, last = _keep_complete_rows(path, requests[0])
        with path.open("ab") as out:
            return pull_all(requests, out, sink=Sink(out, requests[0], header, last), **options)
    with path.open("wb") as out:
        return pull_all(requests, out, **options)


# -------------------------------------------------------------------------------------------------------- wide


def pull_wide(requests: list[Request], out: BinaryIO, **options: Any) -> int:
    """Pull the gateways' downsampled rows (each request has ``every``) and write them as one CSV row per bucket
    of a regular grid over the range (in the requests' time zone): ``ts``, then a column per series,
    ``sensor.quantity`` (``gateway/sensor.quantity`` for several gateways, `` [unit]`` added where one series has
    several units); a cell is the bucket's mean, empty where the series has no good reading in it. Each gateway's
    rows are pulled (retried like any pull) into a temporary file first, so memory stays small whatever the range.
    Returns the number of rows written."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edge-wide-") as tmp:
        files = []
        for i, request in enumerate(requests):
            path = Path(tmp) / f"{i}.ndjson"
            with path.open("wb") as part:
                pull(replace(request, fmt="ndjson"), part, **options)
            files.append(path)
        series = sorted({key for path in files for key, _, _ in _aggregates(path)})
        names = _wide_names(series, several=len(requests) > 1)
        first = requests[0]
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        try:
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(["ts", *(names[key] for key in series)])
            column = {key: i for i, key in enumerate(series)}
            grid = ((at, None, None) for at in bucket_grid(first))
            rows = heapq.merge(grid, *(((at, key, mean) for key, at, mean in _aggregates(path)) for path in files),
                               key=lambda item: item[0])
            count = 0
            for at, group in itertools.groupby(rows, key=lambda item: item[0]):
                cells = [""] * len(series)
                for _, key, mean in group:
                    if key is not None:
                        cells[column[key]] = repr(float(mean))
                writer.writerow([_grid_time(at, first.tz), *cells])
                count += 1
        finally:
            text.detach()
    return count


def _aggregates(path: Path) -> Iterator[tuple[tuple[str, str, str, str], datetime, float]]:
    """A pulled NDJSON file of downsampled rows, in order: ((gateway, sensor, quantity, unit), bucket, mean)."""
    with path.open("rb") as rows:
        for line in rows:
            row = json.loads(line)
            yield (row["gateway"], row["sensor"], row["quantity"], row["unit"]), \
                _utc(datetime.fromisoformat(row["ts"])), row["mean"]


def _wide_names(series: list[tuple[str, str, str, str]], several: bool) -> dict[tuple, str]:
    units: dict[tuple, int] = {}
    for gateway, sensor, quantity, _ in series:
        units[(gateway, sensor, quantity)] = units.get((gateway, sensor, quantity), 0) + 1
    names = {}
    for gateway, sensor, quantity, unit in series:
        name = f"{gateway}/{sensor}.{quantity}" if several else f"{sensor}.{quantity}"
        names[(gateway, sensor, quantity, unit)] = f"{name} [{unit}]" if units[(gateway, sensor, quantity)] > 1 \
            else name
    return names


def bucket_grid(request: Request) -> Iterator[datetime]:
    """The start of every bucket (``request.every``, in ``request.tz``) that overlaps the range, in order."""
    where = zone(request.tz) or UTC
    start, end = (_utc(datetime.fromisoformat(t)) for t in (request.start, request.end))
    local = start.astimezone(where)
    if request.every == "1d":
        day = local.date()
        while (at := datetime(day.year, day.month, day.day, tzinfo=where).astimezone(UTC)) < end:
            yield at
            day += timedelta(days=1)
        return
    size = BUCKET_SIZES[request.every]
    at = local.replace(second=0, microsecond=0, **({"minute": 0} if request.every == "1h" else {})).astimezone(UTC)
    while at < end:
        yield at
        at += size


def _grid_time(at: datetime, tz: str | None) -> str:
    """A bucket's time as the API writes it: UTC with ``Z``, or in the zone with its offset."""
    if tz is None:
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    local = at.astimezone(zone(tz))
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}" + local.isoformat()[-6:]


def _keep_complete_rows(path: Path, request: Request) -> tuple[bytes | None, bytes | None]:
    """Truncate the file after its last complete row; return its header (CSV) and that row."""
    records = Records(csv_quoting=request.fmt == "csv")
    header = last = None
    complete = 0
    with path.open("rb") as src:
        while data := src.read(1 << 20):
            done = records.feed(data)
            if request.fmt == "csv" and header is None and done:
                header = done[:done.index(b"\n") + 1]
            complete += len(done)
            last = records.last
    if last == header:
        last = None
    os.truncate(path, complete)
    return header, last


# -------------------------------------------------------------------------------------------------------- plot


def fetch_json_lines(client: httpx.Client, request: Request, url: str,
                     params: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """The NDJSON rows of one request as dicts, for charts: one attempt; a problem becomes a HistoryError."""
    try:
        with client.stream("GET", url, params=params, headers=request.headers()) as response:
            _check(response)
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)
    except (httpx.TransportError, _Retry) as exc:
        raise HistoryError(f"cannot fetch {url}: {exc}") from None


def auto_every(start: str, end: str) -> str | None:
    """Raw readings up to 2 days, hourly up to 90 days, daily beyond: what a chart can show."""
    try:
        span = _utc(datetime.fromisoformat(end)) - _utc(datetime.fromisoformat(start))
    except ValueError:
        return None  # the server explains what is wrong with the dates
    return None if span <= timedelta(days=2) else "1h" if span <= timedelta(days=90) else "1d"


def on_periods(events: list[dict[str, Any]], start: datetime, end: datetime) -> dict[str, list[tuple]]:
    """Per actuator, the (from, to) periods it was on, from ``actuator.change`` events in time order (their data
    read through the contract: one that is malformed is left out). The state before the first event is that
    event's ``previous`` value; one still on after the last event is on until ``end`` (what is known)."""
    periods: dict[str, list[tuple]] = {}
    since: dict[str, datetime | None] = {}
    for event in events:
        change = ActuatorChange.from_data(event.get("data"))
        if change is None:
            continue
        actuator, at = event["source"], _utc(datetime.fromisoformat(event["ts"]))
        if actuator not in since:
            since[actuator] = start if change.previous > 0 else None
            periods.setdefault(actuator, [])
        if change.on and since[actuator] is None:
            since[actuator] = at
        elif not change.on and since[actuator] is not None:
            periods[actuator].append((since[actuator], at))
            since[actuator] = None
    for actuator, began in since.items():
        if began is not None:
            periods[actuator].append((began, max(began, end)))
    return periods


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise HistoryError("edge history plot needs matplotlib: pip install 'edge[plot]' "
                           "(or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: The width of a downsampling bucket (a local day may be 23 or 25 hours: near enough for drawing).
BUCKET_SIZES = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
#: A bucket missing at least this many of the readings expected in one of its hours (coverage) is drawn as a point
#: on its own, its line broken on both sides: a raw line breaks where three readings in a row are missing.
MISSING_BREAK = 3
_SENSOR_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                   "tab:olive", "tab:cyan", "tab:gray")
_ACTUATOR_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")
_BAND = 0.045  # the height of an actuator's band, as a share of its panel


@dataclass
class ChartData:
    """What one chart shows: the rows (raw or downsampled), the periods each actuator was on up to what is known,
    and per series the hours with readings missing (downsampled charts only)."""

    rows: list[dict[str, Any]]
    periods: dict[str, list[tuple[datetime, datetime]]]
    missing_hours: dict[tuple[str, str], list[datetime]]
    known_until: datetime
    #: display names as the gateway's config gives them (``name:``), by sensor or actuator id, and the greenhouse's
    names: dict[str, str] = field(default_factory=dict)
    gateway_name: str | None = None

    def label(self, device: str) -> str:
        """A sensor's or actuator's label: its id with its display name, or its id alone. The id comes first, so the
        label reads left to right and a Persian name stays whole inside it."""
        name = self.names.get(device)
        return f"{device} ({name})" if name else device


def chart_data(request: Request, client: httpx.Client) -> ChartData:
    """Fetch what a chart of the request shows: readings, actuator changes, the series' extents and (downsampled)
    the coverage."""
    readings = replace(request, fmt="ndjson")
    rows = list(fetch_json_lines(client, request, readings.url(), readings.params()))
    if not rows:
        raise HistoryError(f"no readings of {request.gateway} between {request.start} and {request.end}")
    events = list(fetch_json_lines(client, request, request.url("events"), [
        ("from", request.start), ("to", request.end), ("format", "ndjson"), ("kind", "actuator.change")]))
    start, end = (_utc(datetime.fromisoformat(t)) for t in (request.start, request.end))
    # an actuator is known to be on up to the last thing heard of the gateway: its last reading (any sensor) or
    # actuator change, not to the end of the range asked for
    sensors = _get_json(client, request, request.url("sensors"))
    heard = [_utc(datetime.fromisoformat(s["last"])) for s in sensors]
    heard += [_utc(datetime.fromisoformat(e["ts"])) for e in events]
    known_until = min(end, max(heard, default=start))
    missing: dict[tuple[str, str], list[datetime]] = {}
    if request.every:
        coverage = replace(request, fmt="ndjson", every=None, tz=None)
        params = [p for p in coverage.params() if p[0] in ("from", "to", "format", "sensor", "quantity")]
        for hour in fetch_json_lines(client, request, request.url("coverage"), params):
            if (hour["missing"] or 0) >= MISSING_BREAK:
                missing.setdefault((hour["sensor"], hour["quantity"]), []).append(
                    _utc(datetime.fromisoformat(hour["hour"])))
    gateway = _get_json(client, request, request.url("")[:-1])
    names = {k: v for k, v in (gateway.get("names") or {}).items() if isinstance(v, str)}
    return ChartData(rows, on_periods(events, start, known_until), missing, known_until, names, gateway.get("name"))


def _get_json(client: httpx.Client, request: Request, url: str) -> Any:
    try:
        response = client.get(url, headers=request.headers())
        _check(response)
    except (httpx.TransportError, _Retry) as exc:
        raise HistoryError(f"cannot fetch {url}: {exc}") from None
    return response.json()


def figure(request: Request, *, client: httpx.Client | None = None):
    """The chart of the request as a matplotlib figure, and the number of readings (or buckets) it draws."""
    plt = _pyplot()
    own = client is None
    client = client or httpx.Client(timeout=TIMEOUT)
    try:
        data = chart_data(request, client)
    finally:
        if own:
            client.close()
    return _draw(plt, request, data), len(data.rows)


def plot(request: Request, out_path: str | os.PathLike[str], *, client: httpx.Client | None = None) -> int:
    """Draw the readings (one panel per quantity, a line per sensor; mean with a min-max band when downsampled)
    with a band per actuator where it was on; return the number of readings (or buckets) drawn."""
    plt = _pyplot()
    drawn, count = figure(request, client=client)
    drawn.savefig(out_path, dpi=110)
    plt.close(drawn)
    return count


def _draw(plt, request: Request, data: ChartData):
    import matplotlib.dates as mdates
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    where = zone(request.tz) or UTC
    start, end = (_utc(datetime.fromisoformat(t)) for t in (request.start, request.end))
    rows = data.rows
    panels = sorted({(r["quantity"], r["unit"]) for r in rows})
    sensors = sorted({r["sensor"] for r in rows})
    colours = {s: _SENSOR_COLOURS[i % len(_SENSOR_COLOURS)] for i, s in enumerate(sensors)}
    actuators = sorted(a for a, spans in data.periods.items() if spans)
    figure, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False, layout="constrained",
                                figsize=(12, 2.6 * len(panels) + 0.9))
    incomplete = False
    for ax, (quantity, unit) in zip(axes[:, 0], panels):
        for sensor in sorted({r["sensor"] for r in rows if r["quantity"] == quantity}):
            series = [r for r in rows if r["quantity"] == quantity and r["sensor"] == sensor]
            incomplete |= _draw_series(ax, series, colours[sensor], request.every,
                                       data.missing_hours.get((sensor, quantity), []), (start, end))
        _bands(ax, data.periods, actuators)
        ax.set_ylabel(f"{quantity} ({unit})" if unit else quantity)
        ax.grid(True, alpha=0.3)
    bottom = axes[-1, 0]
    locator = mdates.AutoDateLocator(tz=where)
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=where))
    bottom.set_xlim(start, end)
    handles = [Line2D([], [], color=colours[s], label=data.label(s)) for s in sensors]
    if request.every:
        handles.append(Patch(color="gray", alpha=0.25, label=f"min-max per {request.every}"))
    if any(r.get("clock") == "unsynced" for r in rows):
        handles.append(Line2D([], [], color="gray", marker="x", linestyle="none",
                              label="time unsure (clock not synced)"))
    if incomplete:
        handles.append(Line2D([], [], color="gray", marker="o", markerfacecolor="none", linestyle="none",
                              label="bucket with readings missing"))
    handles += [Patch(color=_ACTUATOR_COLOURS[i % len(_ACTUATOR_COLOURS)], alpha=0.8, label=f"{data.label(a)} on")
                for i, a in enumerate(actuators)]
    figure.legend(handles=handles, loc="outside right upper", fontsize="small")
    local = getattr(where, "key", "UTC")
    every = f"{request.every} means, " if request.every else ""
    shown = f"{start.astimezone(where):%Y-%m-%d %H:%M} to {end.astimezone(where):%Y-%m-%d %H:%M} {local}"
    known = f"; known until {data.known_until.astimezone(where):%Y-%m-%d %H:%M}" if data.known_until < end else ""
    name = f" · {data.gateway_name}" if data.gateway_name else ""  # last: a Persian name then pulls in no date
    axes[0, 0].set_title(f"{request.gateway}: {shown} ({every}bands: actuators on{known}){name}", fontsize="medium")
    return figure


def _draw_series(ax, rows: list[dict[str, Any]], colour: str, every: str | None, missing_hours: list[datetime],
                 bounds: tuple[datetime, datetime]) -> bool:
    """One sensor's line in a panel (a bucket's mean at the middle of its part inside the range); True when a
    bucket was drawn on its own for readings missing."""
    times = [_utc(datetime.fromisoformat(r["ts"])) for r in rows]
    if every is None:
        xs, ys = with_gaps(times, [r["value"] if r.get("quality", "good") == "good" else None for r in rows])
        ax.plot(xs, ys, linewidth=1, color=colour)
        _lone_points(ax, xs, ys, colour)
        unsure = [(at, r["value"]) for at, r in zip(times, rows) if r.get("clock") == "unsynced"
                  and r["value"] is not None and r.get("quality", "good") == "good"]
        if unsure:  # taken before the gateway's clock synced: the time may be anything
            ax.plot(*zip(*unsure), linestyle="none", marker="x", markersize=4, color=colour, gid="unsynced")
        return False
    size = BUCKET_SIZES[every]
    short = [any(h < at + size and h + timedelta(hours=1) > at for h in missing_hours) for at in times]
    # a bucket missing breaks the line; where the sensor samples less often than the buckets (10 min in 1m
    # buckets), three usual spacings do, as in a raw line
    steps = sorted(b - a for a, b in zip(times, times[1:]))
    usual = steps[len(steps) // 2] if steps else size
    too_far = size * 1.5 if usual <= size * 1.5 else usual * 3
    xs, means, lows, highs = [], [], [], []
    alone = []
    for i, (at, row) in enumerate(zip(times, rows)):
        if i and (at - times[i - 1] > too_far or short[i] or short[i - 1]):
            xs.append(at - size / 2)
            means.append(float("nan"))
            lows.append(float("nan"))
            highs.append(float("nan"))
        first, last = max(at, bounds[0]), min(at + size, bounds[1])
        middle = first + (last - first) / 2
        xs.append(middle)
        means.append(float(row["mean"]))
        lows.append(float(row["min"]))
        highs.append(float(row["max"]))
        if short[i]:
            alone.append((middle, float(row["mean"]), float(row["min"]), float(row["max"])))
    ax.plot(xs, means, linewidth=1, color=colour)
    ax.fill_between(xs, lows, highs, color=colour, alpha=0.2, linewidth=0)
    _lone_points(ax, xs, means, colour, skip={x for x, *_ in alone}, lows=lows, highs=highs)
    if alone:
        x, mean, low, high = zip(*alone)
        ax.errorbar(x, mean, yerr=_spread(mean, low, high),
                    fmt="o", color=colour, markerfacecolor="none", markersize=4, linewidth=0.8)
    return bool(alone)


def _lone_points(ax, xs: list[datetime], ys: list[float], colour: str, skip: set[datetime] = frozenset(),
                 lows: list[float] | None = None, highs: list[float] | None = None) -> None:
    """A marker (with its min-max, downsampled) for each point with no line to a neighbour (between two gaps),
    which a line alone does not show."""
    def gap(i: int) -> bool:
        return i < 0 or i >= len(ys) or math.isnan(ys[i])

    lone = [i for i, (x, y) in enumerate(zip(xs, ys)) if not gap(i) and gap(i - 1) and gap(i + 1) and x not in skip]
    if not lone:
        return
    x, y = [xs[i] for i in lone], [ys[i] for i in lone]
    if lows is None or highs is None:
        ax.plot(x, y, linestyle="none", marker="o", markersize=3, color=colour)
    else:
        ax.errorbar(x, y, yerr=_spread(y, [lows[i] for i in lone], [highs[i] for i in lone]), fmt="o",
                    markersize=3, color=colour, linewidth=0.8)


def _spread(means, lows, highs) -> list[list[float]]:
    """Error bars from a mean down to the min and up to the max (never negative: the mean is rounded)."""
    return [[max(m - lo, 0.0) for m, lo in zip(means, lows)], [max(hi - m, 0.0) for m, hi in zip(means, highs)]]


def with_gaps(times: list[datetime], values: list[Any]) -> tuple[list[datetime], list[float]]:
    """The points as floats (NaN for a missing value), with a NaN between two points more than three usual
    spacings apart, so that a line does not bridge a gap in the data."""
    steps = sorted((b - a).total_seconds() for a, b in zip(times, times[1:]))
    usual = steps[len(steps) // 2] if steps else 0.0
    xs: list[datetime] = []
    ys: list[float] = []
    for i, (at, value) in enumerate(zip(times, values)):
        if i and usual > 0 and (at - times[i - 1]).total_seconds() > 3 * usual:
            xs.append(times[i - 1] + (at - times[i - 1]) / 2)
            ys.append(float("nan"))
        xs.append(at)
        ys.append(float("nan") if value is None else float(value))
    return xs, ys


def _bands(ax, periods: dict[str, list[tuple]], actuators: list[str]) -> None:
    """A band per actuator along the bottom of the panel where it was on, each in its own row and colour (so that
    overlapping periods never mix), below the data (the y range is widened to make room)."""
    if not actuators:
        return
    low, high = ax.get_ylim()
    share = _BAND * len(actuators)
    ax.set_ylim(low - (high - low) * share / (1 - share), high)
    for i, actuator in enumerate(actuators):
        for a, b in periods[actuator]:
            ax.axvspan(a, b, ymin=i * _BAND, ymax=(i + 1) * _BAND, color=_ACTUATOR_COLOURS[i % len(
                _ACTUATOR_COLOURS)], alpha=0.8, linewidth=0, gid=f"actuator:{actuator}")


def gateways(server: str, token: str, *, client: httpx.Client | None = None) -> list[dict[str, Any]]:
    """The gateways the token sees, with their status."""
    request = Request(server, token, "", "", "")
    try:
        response = (client or httpx).get(f"{server.rstrip('/')}/v1/gateways", headers=request.headers(),
                                         timeout=TIMEOUT)
        _check(response)
    except (httpx.TransportError, _Retry) as exc:
        raise HistoryError(f"cannot list the gateways: {exc}") from None
    return response.json()
