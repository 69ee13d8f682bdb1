"""The agronomist's client of the history API (``edge history pull`` / ``edge history plot``).

``pull`` streams a gateway's readings to a file (httpx, 64 KiB at a time, never the whole export in memory) and
writes only complete rows. A dropped connection is retried with exponential backoff and continues after the last
complete row, using the API's ``after`` cursor (the row's key: ``ts,sensor,quantity,epoch,seq``, or
``ts,sensor,quantity,unit`` for downsampled rows; the tables, keys and CSV guard are the contract's,
``edge.contract.history``, which the API uses too), so nothing is duplicated or skipped; ``resume=True`` does the
same for a file left by a pull that was killed. ``plot`` draws the readings with actuator-on periods shaded
(matplotlib, the optional ``plot`` extra).
"""

from __future__ import annotations

import csv
import json
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


def row_gateway(fmt: str, header: bytes | None, record: bytes) -> str | None:
    """The gateway of a complete row (None in a file pulled before rows carried it)."""
    row = _csv_row(header, record) if fmt == "csv" else json.loads(record)
    gateway = row.get("gateway")
    return unguarded(gateway) if fmt == "csv" and gateway is not None else gateway


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
    gateway = row_gateway(requests[0].fmt, sink.header, sink.last)
    names = [r.gateway for r in requests]
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
    event's ``previous`` value."""
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
            periods[actuator].append((began, end))
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


def plot(request: Request, out_path: str | os.PathLike[str], *, client: httpx.Client | None = None) -> int:
    """Draw the readings (one panel per quantity, a line per sensor; mean with a min-max band when downsampled)
    with actuator-on periods shaded; return the number of readings drawn."""
    plt = _pyplot()
    own = client is None
    client = client or httpx.Client(timeout=TIMEOUT)
    try:
        readings = replace(request, fmt="ndjson")
        rows = list(fetch_json_lines(client, request, readings.url(), readings.params()))
        events = list(fetch_json_lines(client, request, request.url("events"), [
            ("from", request.start), ("to", request.end), ("format", "ndjson"), ("kind", "actuator.change")]))
    finally:
        if own:
            client.close()
    if not rows:
        raise HistoryError(f"no readings of {request.gateway} between {request.start} and {request.end}")
    start, end = (_utc(datetime.fromisoformat(t)) for t in (request.start, request.end))
    figure = _draw(plt, request, rows, on_periods(events, start, end))
    figure.savefig(out_path, dpi=110)
    plt.close(figure)
    return len(rows)


def _draw(plt, request: Request, rows: list[dict[str, Any]], periods: dict[str, list[tuple]]):
    panels = sorted({(r["quantity"], r["unit"]) for r in rows})
    figure, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False, figsize=(11, 2.6 * len(panels) + 0.8))
    for ax, (quantity, unit) in zip(axes[:, 0], panels):
        for sensor in sorted({r["sensor"] for r in rows if r["quantity"] == quantity}):
            _draw_series(ax, [r for r in rows if r["quantity"] == quantity and r["sensor"] == sensor], sensor)
        _shade(ax, periods)
        ax.set_ylabel(f"{quantity} ({unit})" if unit else quantity)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    every = f", {request.every} mean with min-max" if request.every else ""
    axes[0, 0].set_title(f"{request.gateway}: {request.start} to {request.end} (UTC{every}; shaded: actuators on)")
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


def _draw_series(ax, rows: list[dict[str, Any]], sensor: str) -> None:
    times = [_utc(datetime.fromisoformat(r["ts"])) for r in rows]
    key = "mean" if "mean" in rows[0] else "value"  # downsampled rows hold good readings only
    xs, ys = with_gaps(times, [r[key] if r.get("quality", "good") == "good" else None for r in rows])
    line, = ax.plot(xs, ys, linewidth=1, label=sensor)
    if key == "mean":
        _, low = with_gaps(times, [r["min"] for r in rows])
        _, high = with_gaps(times, [r["max"] for r in rows])
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)


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


def _shade(ax, periods: dict[str, list[tuple]]) -> None:
    colours = ["tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
    for i, (actuator, spans) in enumerate(sorted(periods.items())):
        for j, (a, b) in enumerate(spans):
            ax.axvspan(a, b, color=colours[i % len(colours)], alpha=0.15, linewidth=0,
                       label=f"{actuator} on" if j == 0 else None)


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
