"""The history API for agronomists (FastAPI, served by ``edge dc api``): gateways, series, readings, events and
coverage, read from the collector's PostgreSQL and streamed (``edge/datacenter/queries.py``).

Every request carries a token (``Authorization: Bearer edge_...``, from ``edge dc token create``) that sees only
the gateways matching its patterns; any other gateway is a 404 exactly like one that does not exist. Every error is
an RFC 9457 problem (``application/problem+json``: type, title, status, detail), and the OpenAPI document at
``/openapi.json`` describes each one. ``docs/history.md`` is the user's guide.

No request can tie it up (``api:`` in the config): a range longer than ``max_range`` is a 400, a coverage larger than
``max_rows`` a 413; every query stops at ``statement_timeout``; an export reads the database on one of
``max_exports`` threads (the others wait, so short requests always find a thread), stops after ``max_rows`` rows or
``max_duration`` (the client resumes it), and its query is cancelled as soon as its client goes away. Whatever the
database holds, the answer is never a 500 (``queries``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
import psycopg
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge import __version__
from edge.contract import history as contract
from edge.datacenter import queries, tokens
from edge.datacenter.config import ApiConfig, DataCenterConfig
from edge.datacenter.queries import Export, ExportCut, Series, Shape

log = logging.getLogger(__name__)

UTC = timezone.utc
PROBLEM_BASE = "https://example.invalid/edge/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
MEDIA_TYPES = contract.MEDIA_TYPES
#: Query parameters that may be given more than once; every other one at most once.
REPEATABLE = {"sensor", "quantity", "kind"}
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")  # a gateway, sensor or quantity name as it may be stored
_KIND = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


# ------------------------------------------------------------------------------------------------------ problems


class Problem(Exception):
    """An error answered as an RFC 9457 problem."""

    def __init__(self, status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"type": PROBLEM_BASE + self.slug, "title": self.title, "status": self.status, "detail": self.detail}
        return JSONResponse(body, status_code=self.status, headers=self.headers, media_type=PROBLEM_MEDIA_TYPE)


def bad_parameter(detail: str) -> Problem:
    return Problem(400, "invalid-parameter", "Invalid parameter", detail)


def not_found(detail: str) -> Problem:
    return Problem(404, "not-found", "Not found", detail)


def unauthorized(detail: str, invalid: bool = False) -> Problem:
    challenge = 'Bearer realm="edge-history"' + (', error="invalid_token"' if invalid else "")
    return Problem(401, "unauthorized", "Unauthorized", detail, {"WWW-Authenticate": challenge})


class ProblemDocument(BaseModel):
    """An RFC 9457 problem."""

    type: str = Field(description="URI naming the kind of problem", examples=[PROBLEM_BASE + "bad-range"])
    title: str = Field(examples=["Bad range"])
    status: int = Field(examples=[400])
    detail: str = Field(examples=["from (2025-07-16T00:00:00.000Z) must be before to (2025-07-15T00:00:00.000Z)"])


# ------------------------------------------------------------------------------------------------ database, auth


class Database:
    """Connections for requests: read-only, UTC, one per request (a stream holds its own until it ends), every
    query stopped at ``statement_timeout``. JIT is off: an export runs one short query per day, and compiling each
    would cost more than it saves."""

    def __init__(self, url: str, statement_timeout: float = 30.0):
        self.url = url
        self.statement_timeout = statement_timeout

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, connect_timeout=10, application_name="edge-history",
                               options="-c TimeZone=UTC -c default_transaction_read_only=on -c jit=off "
                                       f"-c statement_timeout={round(self.statement_timeout * 1000)}")


class Exports:
    """How exports run: their database work on at most ``max_exports`` threads at once (each export on its own
    connection), within ``max_rows`` and ``max_duration``."""

    def __init__(self, api: ApiConfig):
        self.api = api
        self.limiter = anyio.CapacityLimiter(api.max_exports)
        self.limits = queries.Limits(rows=api.max_rows, seconds=api.max_duration)


def _database(request: Request) -> Database:
    return request.app.state.database


def _exports(request: Request) -> Exports:
    return request.app.state.exports


_bearer = HTTPBearer(auto_error=False, bearerFormat="edge_...",
                     description="A token from `edge dc token create` (docs/history.md).")


def authenticate(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                 database: Annotated[Database, Depends(_database)]) -> tokens.Token:
    if credentials is None:
        raise unauthorized("this API needs a token: send the header Authorization: Bearer <token>")
    with database.connect() as conn:
        token = tokens.lookup(conn, credentials.credentials)
    if token is None:
        raise unauthorized("the token is not known to this data center (mistyped, or from another one?)",
                           invalid=True)
    state = token.state()
    if state == "revoked":
        raise Problem(403, "token-revoked", "Token revoked",
                      f"token {token.name!r} was revoked on {queries.iso(token.revoked_at)}; ask for a new one")
    if state == "expired":
        raise Problem(403, "token-expired", "Token expired",
                      f"token {token.name!r} expired on {queries.iso(token.expires_at)}; ask for a new one")
    return token


def known_parameters(request: Request) -> None:
    """Refuse query parameters the endpoint does not take, and single-valued ones given twice."""
    declared = {field.alias for field in request.scope["route"].dependant.query_params}
    unknown = sorted(set(request.query_params) - declared)
    if unknown:
        takes = ", ".join(sorted(declared)) or "no parameters"
        raise Problem(400, "unknown-parameter", "Unknown parameter",
                      f"unknown parameter {unknown[0]!r}: this endpoint takes {takes}")
    for name in sorted(declared - REPEATABLE):
        if len(request.query_params.getlist(name)) > 1:
            raise bad_parameter(f"{name}: given more than once")


Token = Annotated[tokens.Token, Depends(authenticate)]
Db = Annotated[Database, Depends(_database)]


# ---------------------------------------------------------------------------------------------- parameter parsing


def parse_time(name: str, text: str) -> datetime:
    """An ISO-8601 date or date-time (``edge.contract.history.parse_iso``); without an offset it is UTC."""
    try:
        return contract.parse_iso(text)
    except ValueError:
        raise bad_parameter(f"{name}: {text!r} is not an ISO-8601 date or time "
                            "(e.g. 2025-07-15, 2025-07-15T06:00:00Z or 2025-07-15T09:30:00+03:30)") from None


def parse_range(start: str, end: str, max_range: float | None = None) -> tuple[datetime, datetime]:
    first, last = parse_time("from", start), parse_time("to", end)
    if first >= last:
        raise Problem(400, "bad-range", "Bad range",
                      f"from ({queries.iso(first)}) must be before to ({queries.iso(last)}); to is exclusive")
    if max_range is not None and (last - first).total_seconds() > max_range:
        raise Problem(400, "range-too-long", "Range too long",
                      f"from {queries.iso(first)} to {queries.iso(last)} spans {_days(last - first)} days; one "
                      f"request may span at most {_days(timedelta(seconds=max_range))} days (api.max_range): "
                      "split the range")
    return first, last


def _days(span: timedelta) -> str:
    return f"{span.total_seconds() / 86400:,.6g}"


def parse_names(name: str, values: list[str] | None) -> list[str]:
    for value in values or ():
        if not _NAME.match(value):
            raise bad_parameter(f"{name}: {value!r} is not a valid name (1-128 characters, no control characters)")
    return list(dict.fromkeys(values or ()))


def parse_zone(text: str | None) -> str | None:
    """An IANA time zone name (``Asia/Tehran``, ``UTC``), or a 400 naming what was given."""
    if text is None:
        return None
    try:
        ZoneInfo(text)
    except (ValueError, OSError, ZoneInfoNotFoundError):  # not a name, a path outside the database, unknown
        raise bad_parameter(f"tz: {text!r} is not a time zone this server knows (an IANA name such as Asia/Tehran, "
                            "Europe/Berlin or UTC)") from None
    return text


def known_zone(conn: psycopg.Connection, zone: str | None) -> None:
    """The zone is one PostgreSQL knows too (its own copy of the IANA database may be older), else a 400."""
    if zone is not None and not conn.execute("SELECT EXISTS (SELECT FROM pg_timezone_names WHERE name = %s)",
                                             (zone,)).fetchone()[0]:
        raise bad_parameter(f"tz: {zone!r} is not a time zone the database knows (an IANA name such as "
                            "Asia/Tehran or UTC)")


def parse_after(text: str | None, shape: Shape) -> tuple[Any, ...] | None:
    """The resume cursor: the key of the last row received (``edge.contract.history.Table.parse_cursor``)."""
    if text is None:
        return None
    try:
        return shape.table.parse_cursor(text)
    except contract.BadCursor as exc:
        raise Problem(400, "bad-cursor", "Bad cursor", str(exc)) from None


def choose_series(gateway_id: str, available: list[Series], sensors: list[str],
                  quantities: list[str]) -> list[Series]:
    """The series a request selects; an unknown sensor or quantity is a 404 naming it."""
    known = sorted({s.sensor for s in available})
    for sensor in sensors:
        if sensor not in known:
            raise not_found(f"gateway {gateway_id!r} has no readings of sensor {sensor!r} "
                            f"(it has: {', '.join(known) or 'none'})")
    chosen = [s for s in available if (not sensors or s.sensor in sensors)
              and (not quantities or s.quantity in quantities)]
    if quantities and not chosen:
        kinds = sorted({s.quantity for s in available if not sensors or s.sensor in sensors})
        raise not_found(f"gateway {gateway_id!r} has no readings of quantity {', '.join(map(repr, quantities))} "
                        f"{'from ' + ', '.join(sensors) + ' ' if sensors else ''}(it has: {', '.join(kinds)})")
    return chosen


def safe_names(chosen: list[Series]) -> bool:
    """True when no sensor or quantity name of the export needs the CSV guard (so none is checked per row)."""
    return not any(contract.needs_guard(s.sensor) or contract.needs_guard(s.quantity) for s in chosen)


def series_params(chosen: list[Series]) -> dict[str, Any]:
    return {"sensors": sorted({s.sensor for s in chosen}), "quantities": sorted({s.quantity for s in chosen})}


# ------------------------------------------------------------------------------------------------------ streaming


class _ClientGone(Exception):
    """The client disconnected before the response started."""


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _while_connected(request: Request | None, limiter: anyio.CapacityLimiter, work: Callable[..., Any],
                           *args: Any, on_gone: Callable[[], None] | None = None) -> Any:
    """``work(*args)`` on one of the export threads. With ``request``, a client that goes away first stops the wait:
    ``on_gone()`` runs (to cancel the query in the database) and :class:`_ClientGone` is raised."""
    outcome: dict[str, Any] = {}
    async with anyio.create_task_group() as group:
        async def run() -> None:
            try:
                outcome["value"] = await anyio.to_thread.run_sync(work, *args, limiter=limiter,
                                                                  abandon_on_cancel=True)
            except Exception as exc:  # noqa: BLE001 - raised below, outside the task group
                outcome["error"] = exc
            group.cancel_scope.cancel()

        async def watch() -> None:
            await _until_disconnected(request)
            outcome["gone"] = True
            if on_gone is not None:
                on_gone()
            group.cancel_scope.cancel()

        group.start_soon(run)
        if request is not None:
            group.start_soon(watch)
    if outcome.get("gone"):
        raise _ClientGone()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


async def _next_block(stream: queries.Stream, exports: Exports, request: Request | None = None) -> bytes | None:
    """The export's next block, read on one of the export threads. With ``request``, a client that goes away
    meanwhile (before the response started) stops the wait and raises :class:`_ClientGone`; the caller then closes
    the stream, which cancels the query."""
    return await _while_connected(request, exports.limiter, stream.next_block)


async def _close(stream: queries.Stream) -> None:
    """Cancel the query running (if any), wait for it, close the connection: whatever cancelled us meanwhile."""
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(stream.close)


async def _relay(first: bytes | None, stream: queries.Stream, exports: Exports,
                 request: Request) -> AsyncIterator[bytes]:
    """Hand the blocks of an export to the server; close it (and its database session) however the response ends:
    a client that goes away stops this (we listen for the disconnect, and so does Starlette) and the query with it.
    An error or a limit mid-stream aborts the response, so a client sees an incomplete transfer, never a silently
    short one (``edge history pull`` resumes after its last complete row)."""
    try:
        if first:
            yield first
        while (block := await _next_block(stream, exports, request)) is not None:
            yield block
    except _ClientGone:
        log.info("%s %s: the client went away mid-export; its query was cancelled", request.method,
                 request.url.path)
    finally:
        await _close(stream)


async def streamed(request: Request, export: Export, fmt: str, filename: str) -> StreamingResponse:
    database, exports = _database(request), _exports(request)
    stream = queries.Stream(database.connect, export, fmt, exports.limits)
    try:
        first = await _next_block(stream, exports, request)  # errors before the first byte get a problem response
    except BaseException:
        await _close(stream)
        raise
    return StreamingResponse(_relay(first, stream, exports, request), media_type=MEDIA_TYPES[fmt],
                             headers={"Content-Disposition": f'attachment; filename="{filename}.{fmt}"'})


def _file_name(gateway_id: str, what: str, start: datetime, end: datetime) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", gateway_id)
    return f"{safe}_{what}_{start:%Y%m%dT%H%MZ}_{end:%Y%m%dT%H%MZ}"


# ------------------------------------------------------------------------------------------------------- routes

GatewayId = Annotated[str, Path(description="gateway id, as in its config (gateway.id)", examples=["gh-north-01"])]
From = Annotated[str, Query(alias="from", description="start of the range, inclusive: an ISO-8601 date or "
                            "date-time, UTC unless it has an offset", examples=["2025-07-15T00:00:00Z"])]
To = Annotated[str, Query(alias="to", description="end of the range, exclusive (same forms as from)",
                          examples=["2025-07-16"])]
Format = Annotated[Literal[contract.FORMATS], Query(description="csv (a header row, UTC ISO-8601 timestamps), "
                                                  "ndjson (one JSON object a line) or json")]
Sensors = Annotated[list[str] | None, Query(alias="sensor", description="only this sensor (repeatable)")]
Quantities = Annotated[list[str] | None, Query(alias="quantity", description="only this quantity (repeatable), "
                                               "e.g. temperature, humidity, soil_moisture")]
After = Annotated[str | None, Query(description="resume after this row: its key fields, comma-separated and "
                                    f"percent-encoded (readings: {','.join(contract.READINGS.key)}; with every: "
                                    f"{','.join(contract.AGGREGATES.key)}; events: {','.join(contract.EVENTS.key)})",
                                    examples=["2025-07-15T06:00:10.000Z,air,temperature,3,1042"])]

router = APIRouter(prefix="/v1", dependencies=[Depends(authenticate), Depends(known_parameters)])


def visible_gateway(conn: psycopg.Connection, token: tokens.Token, gateway_id: str) -> dict[str, Any]:
    """The gateway's status, or a 404 that reads the same whether it does not exist or is outside the token's
    scope (the database is asked either way, so timing tells nothing either)."""
    found = queries.gateway(conn, gateway_id) if _NAME.match(gateway_id) else None
    if found is None or not token.sees(gateway_id):
        raise not_found(f"no gateway {gateway_id!r}")
    return found


@router.get("/gateways", summary="Gateways this token sees, with their status")
def list_gateways(token: Token, database: Db) -> list[dict[str, Any]]:
    with database.connect() as conn:
        return [g for g in queries.gateways(conn) if token.sees(g["id"])]


@router.get("/gateways/{gateway_id}", summary="One gateway's status")
def get_gateway(gateway_id: GatewayId, token: Token, database: Db) -> dict[str, Any]:
    with database.connect() as conn:
        return visible_gateway(conn, token, gateway_id)


@router.get("/gateways/{gateway_id}/sensors", summary="The sensors and quantities of a gateway")
async def list_series(request: Request, gateway_id: GatewayId, token: Token) -> list[dict[str, Any]]:
    def read(conn: psycopg.Connection) -> list[dict[str, Any]]:
        visible_gateway(conn, token, gateway_id)
        return [s.as_dict() for s in queries.series(conn, gateway_id)]

    return await _prepare(request, read)


class _Query:
    """A connection made in a worker thread whose query the event loop can cancel (the client went away)."""

    def __init__(self, database: Database):
        self.database = database
        self.conn: psycopg.Connection | None = None
        self.cancelled = False

    def run(self, work: Callable[[psycopg.Connection], Any]) -> Any:
        if self.cancelled:
            raise _ClientGone()
        with self.database.connect() as conn:
            self.conn = conn
            if self.cancelled:
                raise _ClientGone()
            return work(conn)

    def cancel(self) -> None:
        self.cancelled = True
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.cancel_safe(timeout=5.0)
            except psycopg.Error:
                pass


async def _prepare(request: Request, work: Callable[[psycopg.Connection], Any]) -> Any:
    """A request's preparation (its gateway, series, intervals): on one of the export threads, so that requests
    waiting on the database never take the threads every other request needs; cancelled in the database if the
    client goes away meanwhile."""
    query = _Query(_database(request))
    return await _while_connected(request, _exports(request).limiter, query.run, work, on_gone=query.cancel)


def _max_range(request: Request) -> float:
    return _exports(request).api.max_range


@router.get("/gateways/{gateway_id}/readings", summary="Readings in a range, raw or downsampled, streamed")
async def get_readings(request: Request, gateway_id: GatewayId, token: Token, start: From, end: To,
                       sensor: Sensors = None, quantity: Quantities = None,
                       every: Annotated[Literal["1m", "1h", "1d"] | None, Query(
                           description="downsample: per bucket (UTC, or tz) and series, count, min, mean (6 "
                                       "significant digits) and max of the good readings within the physical range "
                                       "of their quantity; absent: every reading")] = None,
                       tz: Annotated[str | None, Query(
                           description="an IANA time zone: buckets are its minutes, hours and days, and every time "
                                       "is written in it with its offset; absent: UTC",
                           examples=["Asia/Tehran"])] = None,
                       format: Format = "csv", after: After = None):
    first, last = parse_range(start, end, _max_range(request))
    zone = parse_zone(tz)
    shape = (queries.LOCAL_AGGREGATE if zone else queries.AGGREGATES[every]) if every else queries.RAW
    cursor = parse_after(after, shape)
    sensors, quantities = parse_names("sensor", sensor), parse_names("quantity", quantity)

    def prepare(conn: psycopg.Connection) -> list[Series]:
        visible_gateway(conn, token, gateway_id)
        known_zone(conn, zone)
        return choose_series(gateway_id, queries.series(conn, gateway_id), sensors, quantities)

    chosen = await _prepare(request, prepare)
    params = {"gateway": gateway_id, **series_params(chosen), "bucket": queries.BUCKETS.get(every or "1m"),
              "unit": queries.LOCAL_BUCKETS.get(every or "1m")}
    export = Export(shape, first, last, params, after=cursor,
                    guard_names=not safe_names(chosen) or contract.needs_guard(gateway_id), tz=zone)
    export = export.clipped(min(s.first for s in chosen), max(s.last for s in chosen)) if chosen \
        else export.emptied()
    return await streamed(request, export, format, _file_name(gateway_id, "readings", first, last))


@router.get("/gateways/{gateway_id}/events", summary="Events in a range: actuator changes, alerts, gaps, ...")
async def get_events(request: Request, gateway_id: GatewayId, token: Token, start: From, end: To,
                     kind: Annotated[list[str] | None, Query(
                         description="only this kind (repeatable); a family matches all its kinds: actuator, alert, "
                                     "buffer.gap, daemon, command, sms")] = None,
                     format: Format = "csv", after: After = None):
    first, last = parse_range(start, end, _max_range(request))
    cursor = parse_after(after, queries.EVENTS)
    for value in kind or ():
        if not _KIND.match(value):
            raise bad_parameter(f"kind: {value!r} is not an event kind (e.g. actuator.change, alert, buffer.gap)")

    def prepare(conn: psycopg.Connection) -> tuple[datetime, datetime] | None:
        visible_gateway(conn, token, gateway_id)
        return queries.event_extent(conn, gateway_id)

    extent = await _prepare(request, prepare)
    filters = (queries.EVENT_KINDS,) if kind else ()
    export = Export(queries.EVENTS, first, last, {"gateway": gateway_id, "kinds": kind or []}, filters, cursor)
    export = export.clipped(*extent) if extent else export.emptied()
    return await streamed(request, export, format, _file_name(gateway_id, "events", first, last))


@router.get("/gateways/{gateway_id}/coverage", summary="Readings expected against received, per sensor and hour")
async def get_coverage(request: Request, gateway_id: GatewayId, token: Token, start: From, end: To,
                       sensor: Sensors = None, quantity: Quantities = None, format: Format = "csv"):
    first, last = parse_range(start, end, _max_range(request))
    sensors, quantities = parse_names("sensor", sensor), parse_names("quantity", quantity)

    def prepare(conn: psycopg.Connection) -> tuple[list[Series], dict[tuple[str, str], queries.Interval]]:
        visible_gateway(conn, token, gateway_id)
        chosen = choose_series(gateway_id, queries.series(conn, gateway_id), sensors, quantities)
        return chosen, queries.intervals(conn, gateway_id, chosen, last)

    chosen, found = await _prepare(request, prepare)
    now = datetime.now(UTC)
    params = {"gateway": gateway_id, "sensors": [s.sensor for s in chosen], "quantities": [s.quantity for s in chosen],
              "intervals": [found[s.sensor, s.quantity].seconds for s in chosen],
              "sources": [found[s.sensor, s.quantity].source for s in chosen], "firsts": [s.first for s in chosen]}
    export = Export(queries.COVERAGE, first, last, params, guard_names=not safe_names(chosen))
    # hours before the first reading of any chosen series, or in the future, expect nothing
    export = export.clipped(min(s.first for s in chosen), max(now, max(s.last for s in chosen))) if chosen \
        else export.emptied()
    planned = max(0.0, (export.end - export.start).total_seconds()) / 3600 * len(chosen)
    max_rows = _exports(request).api.max_rows
    if planned > max_rows:
        raise Problem(413, "too-many-rows", "Too many rows",
                      f"this coverage would be about {planned:,.0f} rows (hours x series); one response carries at "
                      f"most {max_rows:,} rows (api.max_rows): ask for a shorter range or fewer series")
    return await streamed(request, export, format, _file_name(gateway_id, "coverage", first, last))


# ------------------------------------------------------------------------------------------- fleet and commands


@router.get("/token", summary="The token's own name, scope and gateway patterns (what the console may offer)")
def get_token(token: Token) -> dict[str, Any]:
    return {"name": token.name, "scope": token.scope, "gateways": list(token.gateways),
            "expires": queries.iso(token.expires_at)}


@router.get("/fleet", summary="Every gateway this token sees, with what the console's fleet view shows")
async def get_fleet(request: Request, token: Token) -> JSONResponse:
    """One query for the whole fleet (``queries.fleet``), rows as arrays in the order of ``fields``."""
    def read(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
        return [row for row in queries.fleet(conn) if token.sees(row[0])]

    rows = await _prepare(request, read)
    # answered as it is (plain JSON values from the query): FastAPI's own encoding of 5,000 rows took longer than
    # the query
    return JSONResponse({"now": queries.iso(datetime.now(UTC)), "fields": list(queries.FLEET_FIELDS),
                         "gateways": rows})


class CommandRequest(BaseModel):
    """A command to a gateway: ``actuate`` an output (``on``/``off`` for a while, or back to ``auto``), or ``ping``."""

    model_config = {"extra": "forbid"}
    op: Literal["actuate", "ping"]
    actuator: str | None = Field(default=None, max_length=64, description="the output's id (actuate)",
                                 examples=["heater-1"])
    action: Literal["on", "off", "auto"] | None = Field(default=None, description="actuate: on, off or auto")
    duration: str | float | None = Field(default=None, alias="for", description="actuate on/off: for how long "
                                         "(10m, 2h or seconds); absent: the output's max_manual on the gateway",
                                         examples=["10m"])
    expires: str | float | None = Field(default=None, description="not answered within this long: expired "
                                        "(default commands.expiry)", examples=["5m"])


def _seconds(name: str, value: str | float | None) -> float | None:
    from edge.durations import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except (ValueError, TypeError) as exc:
        raise bad_parameter(f"{name}: {exc}") from None


def _controlling(token: tokens.Token) -> None:
    if not token.controls:
        raise Problem(403, "read-only-token", "Read-only token",
                      f"token {token.name!r} is read-only (scope read): commands need a token made with "
                      "edge dc token create ... --scope control")


@router.post("/gateways/{gateway_id}/commands", summary="Send a command to a gateway (tokens scoped to control)")
async def post_command(request: Request, gateway_id: GatewayId, token: Token, body: CommandRequest) -> dict[str, Any]:
    """Recorded pending, then published through the broker account meant for commands; the gateway's answer settles
    it (``GET .../commands/{command_id}``)."""
    from edge.datacenter import commands

    _controlling(token)
    config: DataCenterConfig = request.app.state.config
    try:
        args, expiry = commands.build(body.op, body.actuator, body.action, _seconds("for", body.duration),
                                      _seconds("expires", body.expires), config.commands)
    except commands.CommandError as exc:
        raise bad_parameter(str(exc)) from None

    def send(conn: psycopg.Connection) -> dict[str, Any]:
        visible_gateway(conn, token, gateway_id)
        try:
            sent = commands.send(conn, config.mqtt, config.commands, gateway_id, body.op, args,
                                 f"token:{token.name}", expiry)
        except commands.CommandError as exc:
            log.warning("command to %s from token %s not sent: %s", gateway_id, token.name, exc)
            raise Problem(503, "broker-unavailable", "Broker unavailable", str(exc), {"Retry-After": "10"}) from None
        return sent.as_dict()

    return await _prepare(request, send)


@router.get("/gateways/{gateway_id}/commands", summary="A gateway's latest commands and their answers")
async def list_commands(request: Request, gateway_id: GatewayId, token: Token) -> list[dict[str, Any]]:
    from edge.datacenter import commands

    def read(conn: psycopg.Connection) -> list[dict[str, Any]]:
        visible_gateway(conn, token, gateway_id)
        return [c.as_dict() for c in commands.recent(conn, gateway_id)]

    return await _prepare(request, read)


@router.get("/gateways/{gateway_id}/commands/{command_id}", summary="One command and its answer")
async def get_command(request: Request, gateway_id: GatewayId, token: Token,
                      command_id: Annotated[str, Path(description="the id the command was given when sent",
                                                      examples=["dc-5f2c9a0b1d3e4f60"])]) -> dict[str, Any]:
    from edge.datacenter import commands

    def read(conn: psycopg.Connection) -> dict[str, Any]:
        visible_gateway(conn, token, gateway_id)
        found = commands.get(conn, command_id) if len(command_id) <= 64 else None
        if found is None or found.gateway_id != gateway_id:
            raise not_found(f"gateway {gateway_id!r} has no command {command_id!r}")
        return found.as_dict()

    return await _prepare(request, read)


# --------------------------------------------------------------------------------------------------- the app


def create_app(config: DataCenterConfig) -> FastAPI:
    """The history API over the config's database (which must be migrated: ``edge dc api`` does it at start)."""
    app = FastAPI(title="Greenhouse history API", version=__version__, docs_url=None, redoc_url=None,
                  description="Readings, events and coverage of the greenhouse gateways a token sees. "
                              "Errors are RFC 9457 problems (application/problem+json). See docs/history.md.")
    app.state.database = Database(config.database.url, config.api.statement_timeout)
    app.state.exports = Exports(config.api)
    app.state.config = config
    app.include_router(router)
    from edge.datacenter import console

    console.install(app)
    _install_error_handlers(app)
    app.openapi = lambda: _openapi(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, lambda _request, exc: exc.response())
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(psycopg.errors.QueryCanceled, _query_timeout)
    app.add_exception_handler(ExportCut, _export_cut)
    app.add_exception_handler(_ClientGone, _client_gone)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    app.add_exception_handler(Exception, _internal_error)


def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    where = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "header")]
    name = ".".join(where[:1]) or "request"
    if first.get("type") == "missing":
        return bad_parameter(f"{name}: required").response()
    return bad_parameter(f"{name}: {first.get('msg', 'invalid value')}").response()


_HTTP_TITLES = {404: ("not-found", "Not found"), 405: ("method-not-allowed", "Method not allowed")}


def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    slug, title = _HTTP_TITLES.get(exc.status_code, ("http-error", "HTTP error"))
    detail = "no such endpoint (see /openapi.json)" if exc.status_code == 404 else str(exc.detail)
    return Problem(exc.status_code, slug, title, detail, dict(exc.headers or {})).response()


def _database_unavailable(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
    log.warning("%s %s: database unavailable: %s", request.method, request.url.path, str(exc).strip()[:200])
    return Problem(503, "unavailable", "Service unavailable", "the database is unavailable; retry later",
                   {"Retry-After": "10"}).response()


def _query_timeout(request: Request, _exc: Exception) -> JSONResponse:
    limit = request.app.state.database.statement_timeout
    log.warning("%s %s: a query ran longer than %gs (api.statement_timeout)", request.method, request.url.path, limit)
    return Problem(503, "query-timeout", "Query timeout",
                   f"a database query ran longer than {limit:g}s (api.statement_timeout): ask for a shorter range, "
                   "fewer series or a coarser every, or retry later", {"Retry-After": "30"}).response()


def _export_cut(request: Request, exc: ExportCut) -> JSONResponse:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return Problem(503, "export-limit", "Export limit", f"the export was {exc}", {"Retry-After": "30"}).response()


def _client_gone(request: Request, _exc: Exception) -> JSONResponse:
    log.info("%s %s: the client went away; its query was cancelled", request.method, request.url.path)
    return Problem(499, "client-closed-request", "Client closed request", "the client went away").response()


def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return Problem(500, "internal-error", "Internal error", "the server failed; this is logged").response()


# ---------------------------------------------------------------------------------------------------- OpenAPI

_ERRORS = {
    400: "A parameter is unknown, given twice or malformed; the range is empty (`from` must be before `to`) or "
         "longer than `api.max_range`, or the `after` cursor is malformed.",
    401: "No token, or one this data center does not know (`WWW-Authenticate: Bearer`).",
    403: "The token was revoked or has expired, or (commands) it is read-only.",
    404: "No such gateway, sensor or quantity, or a gateway outside the token's scope: the two read the same.",
    413: "The coverage asked for would be more rows than `api.max_rows`: ask for a shorter range or fewer series.",
    503: "The database is unavailable, a query ran longer than `api.statement_timeout`, the export reached a "
         "limit before its first row, or (commands) the broker could not be reached; retry later (`Retry-After`).",
}
#: Problems only some endpoints answer.
_ONLY = {413: ("/coverage",)}
def _keys(table: contract.Table) -> str:
    return ", ".join(table.key)


def _table(rows: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {
        "text/csv": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "array", "items": rows}}}}


def _ok_responses() -> dict[str, dict[str, Any]]:
    gateway = contract.GATEWAYS.row_schema()
    return {
        "/v1/gateways": {"description": "The gateways, by id.",
                         "content": {"application/json": {"schema": {"type": "array", "items": gateway}}}},
        "/v1/gateways/{gateway_id}": {"description": "The gateway.",
                                      "content": {"application/json": {"schema": gateway}}},
        "/v1/gateways/{gateway_id}/sensors": {"description": "Its series, by sensor and quantity.", "content": {
            "application/json": {"schema": {"type": "array", "items": contract.SERIES.row_schema()}}}},
        "/v1/gateways/{gateway_id}/readings": _table(
            {"oneOf": [contract.READINGS.row_schema(), contract.AGGREGATES.row_schema()]},
            f"Readings ordered by {_keys(contract.READINGS)} (with `every`: {_keys(contract.AGGREGATES)})."),
        "/v1/gateways/{gateway_id}/events": _table(contract.EVENTS.row_schema(),
                                                   f"Events ordered by {_keys(contract.EVENTS)}."),
        "/v1/gateways/{gateway_id}/coverage": _table(contract.COVERAGE.row_schema(),
                                                     f"Per hour and series, ordered by {_keys(contract.COVERAGE)}."),
    }


_TIME = {"type": ["string", "null"], "format": "date-time"}
_COMMAND = {"type": "object", "required": ["id", "gateway", "op", "args", "by", "sent", "expires", "state"],
            "properties": {
                "id": {"type": "string"}, "gateway": {"type": "string"},
                "op": {"type": "string", "enum": ["actuate", "ping"]}, "args": {"type": "object"},
                "by": {"type": "string", "description": "who sent it: token:NAME, or cli:USER for edge dc command"},
                "sent": _TIME, "expires": _TIME,
                "state": {"type": "string", "enum": ["pending", "done", "refused", "expired"]},
                "answered": _TIME,
                "result": {"type": ["object", "null"], "description": "the gateway's command.result event: ok, "
                           "result or error"}}}
_FLEET_ROW = {"type": "array", "description": "the values of `fields`, in that order",
              "items": {"type": ["string", "number", "integer", "null"]}}


def _method_responses() -> dict[tuple[str, str], dict[str, Any]]:
    """The 200 of endpoints whose path alone does not say it (two methods, or a document of its own)."""
    one = {"application/json": {"schema": _COMMAND}}
    return {
        ("/v1/gateways/{gateway_id}/commands", "post"): {"description": "The command as recorded and sent "
                                                                        "(pending).", "content": one},
        ("/v1/gateways/{gateway_id}/commands", "get"): {"description": "Its latest 20 commands, newest first.",
                                                       "content": {"application/json": {"schema": {
                                                           "type": "array", "items": _COMMAND}}}},
        ("/v1/gateways/{gateway_id}/commands/{command_id}", "get"): {"description": "The command.",
                                                                      "content": one},
        ("/v1/token", "get"): {"description": "The token.", "content": {"application/json": {"schema": {
            "type": "object", "required": ["name", "scope", "gateways"], "properties": {
                "name": {"type": "string"}, "scope": {"type": "string", "enum": ["read", "control"]},
                "gateways": {"type": "array", "items": {"type": "string"}}, "expires": _TIME}}}}},
        ("/v1/fleet", "get"): {"description": "Every gateway the token sees.", "content": {"application/json": {
            "schema": {"type": "object", "required": ["now", "fields", "gateways"], "properties": {
                "now": {"type": "string", "format": "date-time"},
                "fields": {"type": "array", "items": {"type": "string", "enum": list(queries.FLEET_FIELDS)}},
                "gateways": {"type": "array", "items": _FLEET_ROW}}}}}},
    }


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with the real responses: what each endpoint streams, and every problem it answers
    (FastAPI's own 422 is never sent: invalid input is a 400 problem)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = ProblemDocument.model_json_schema()
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            responses.pop("422", None)
            responses["200"] = _method_responses().get((path, method)) or _ok_responses()[path]
            for status, description in _ERRORS.items():
                if (status != 404 or "{gateway_id}" in path) and \
                        (status not in _ONLY or path.endswith(_ONLY[status])):
                    responses[str(status)] = {"description": description, "content": problem}
    for unused in ("HTTPValidationError", "ValidationError"):
        doc["components"]["schemas"].pop(unused, None)
    app.openapi_schema = doc
    return doc


def serve(config: DataCenterConfig, host: str, port: int) -> None:
    """Migrate the schema (the tokens table included), then serve until SIGTERM/SIGINT."""
    import uvicorn

    from edge.datacenter.store import migrate

    with psycopg.connect(config.database.url, connect_timeout=10) as conn:
        migrate(conn)
    # on SIGTERM, exports still running get 10 s, then are cut off (their clients resume them later)
    uvicorn.run(create_app(config), host=host, port=port, log_config=None, server_header=False,
                timeout_graceful_shutdown=10, http=_problem_protocol())


def _problem_protocol() -> type:
    """uvicorn's HTTP/1.1 protocol (h11), answering a request it cannot even parse (a malformed header, say: the
    request never reaches the app) as the API answers every error, with a problem, not uvicorn's plain text."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class ProblemH11Protocol(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"type": PROBLEM_BASE + "malformed-request", "title": "Malformed request",
                               "status": 400, "detail": msg}).encode()
            headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return ProblemH11Protocol
