"""The gateway's state as ``edge status`` and the greenhouse page (``edge web``) show it: read from the buffer,
beside a running daemon, through each part's own state (:mod:`.buffer`, :mod:`.control.state`, :mod:`.sync.state`,
:mod:`.alerts.outbox`).

    report = read_status(config)
    report.to_json()       # what `edge status --json` prints: a contract for scripts and monitoring
    render_text(report)    # the lines `edge status` prints

Heavy modules (SQLite, the parts' states) are imported when a report is read, so that importing this one is cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.durations import counted, format_age

if TYPE_CHECKING:
    from edge.gateway.control.types import ActuatorView
    from edge.gateway.sync.state import LinkRecord


@dataclass(frozen=True)
class GatewayInfo:
    id: str
    name: str | None


@dataclass(frozen=True)
class ClockStatus:
    synced: bool
    trust: str


@dataclass(frozen=True)
class BufferStatus:
    path: str
    total: int
    pending: int
    acknowledged: int
    oldest_pending: str | None
    oldest_pending_age_s: float | None
    events_pending: int


@dataclass(frozen=True)
class DiskStatus:
    path: str
    free_bytes: int
    full: bool


@dataclass(frozen=True)
class LinkStatus:
    link: str  # up | down | connecting | stalled | daemon not running | offline (no broker configured) | unknown
    since: str | None
    last_ack: str | None
    error: str | None


@dataclass(frozen=True)
class TransportStatus:
    state: str  # ok | refused | no_credit
    detail: str | None
    since: str | None


@dataclass(frozen=True)
class SmsStatus:
    queued: int
    oldest_queued: str | None
    oldest_queued_age_s: float | None
    transports: dict[str, TransportStatus]


@dataclass(frozen=True)
class QuantityStatus:
    value: float | None
    unit: str
    quality: str
    reason: str | None


@dataclass(frozen=True)
class SensorStatus:
    last_ts: str | None
    age_s: float | None
    quantities: dict[str, QuantityStatus]


@dataclass(frozen=True)
class StatusReport:
    """The gateway's state. Times are ISO 8601 UTC strings, ages seconds (0.1 s)."""

    gateway: GatewayInfo
    epoch: int | None
    epoch_started: str | None
    daemon: str  # running | stopped | stopped uncleanly
    clock: ClockStatus
    buffer: BufferStatus
    disk: DiskStatus
    sync: LinkStatus
    sms: SmsStatus
    sensors: dict[str, SensorStatus]
    actuators: dict[str, ActuatorView]

    def to_json(self) -> dict[str, Any]:
        """What ``edge status --json`` prints (keys in this order)."""
        return asdict(self)


def read_status(config: Any, now: float | None = None, wall: Callable[[], float] = time.time) -> StatusReport:
    """Read the gateway's state from its buffer (a reader opening: safe while the daemon runs). ``now``: the time
    ages are measured against; by default ``wall()`` read after the queries."""
    from edge.gateway.alerts.outbox import queue_summary, transport_health
    from edge.gateway.buffer import LOW_SPACE, Buffer, free_bytes
    from edge.gateway.clock import Clock
    from edge.gateway.control.state import ControlState
    from edge.gateway.control.types import describe_state
    from edge.gateway.sync.state import SyncState

    buffer = Buffer.reader(config.buffer.path)
    try:
        readings = buffer.counts("readings")
        events = buffer.counts("events")
        latest = buffer.latest(s.id for s in config.sources())
        epochs = buffer.epochs()
        running = buffer.owned_by_a_running_daemon()
        recorded = ControlState(buffer, migrate=False).actuators()
        link = SyncState(buffer, migrate=False).link()
        sms_queue, sms_health = queue_summary(buffer), transport_health(buffer)
    finally:
        buffer.close()
    # Ages are measured against a clock read after the queries: a reading the daemon commits while they run is
    # never "in the future" (a clock read before them gave negative ages). One still can be when the wall clock
    # stepped back since it was stamped (NTP correcting a Pi's clock): such an age shows as 0 (age_of).
    now = wall() if now is None else now
    oldest = readings["oldest_pending_ts"]
    sensors = {}
    for sensor in config.sources():  # sensors, then derived sets (climate)
        rows = latest.get(sensor.id, [])
        last_ts = rows[0]["ts"] if rows else None
        sensors[sensor.id] = SensorStatus(
            iso(last_ts), age_of(last_ts, now),
            {r["quantity"]: QuantityStatus(r["value"], r["unit"], r["quality"], r["reason"]) for r in rows})
    current = epochs[-1] if epochs else {}
    free = free_bytes(Path(config.buffer.path))
    return StatusReport(
        gateway=GatewayInfo(config.gateway.id, config.gateway.name),
        epoch=current.get("epoch"),
        epoch_started=iso(current.get("started_ts")),
        daemon="running" if running else ("stopped" if current.get("stopped_ts") else "stopped uncleanly"),
        clock=ClockStatus(Clock(config.clock.trust).is_synced(), config.clock.trust),
        buffer=BufferStatus(str(config.buffer.path), readings["total"], readings["pending"],
                            readings["acknowledged"], iso(oldest), age_of(oldest, now), events["pending"]),
        disk=DiskStatus(str(Path(config.buffer.path).absolute().parent), free, free < LOW_SPACE),
        sync=_link_status(config, link, running, now),
        sms=_sms_status(config, sms_queue, sms_health, now),
        sensors=sensors,
        actuators={a.id: describe_state(a.id, recorded.get(a.id), now) for a in config.actuators},
    )


def _link_status(config: Any, link: LinkRecord, running: bool, now: float) -> LinkStatus:
    """The uplink as its thread last recorded it. The thread records a heartbeat (``beat``) at least every minute
    (twice within ``sync.stall_after``) while it makes progress; an older one means it is wedged or failing at every turn: ``stalled``, whatever the
    link was. A thread that ended records ``down`` and why (and no heartbeat)."""
    state = link.link if running else "daemon not running"
    error = link.error
    if running and config.sync.url and link.beat is not None and now - link.beat > config.sync.stall_after:
        state = "stalled"
        error = (f"the uplink thread has made no progress since {iso(link.beat)} ({now - link.beat:.0f}s)"
                 + (f"; last error: {error}" if error else ""))
    if not config.sync.url:
        state = "offline (no broker configured)"
    return LinkStatus(state or "unknown", iso(link.since), iso(link.last_ack), error)


def _sms_status(config: Any, queue: dict[str, Any], health: dict[str, dict[str, Any]], now: float) -> SmsStatus:
    """The SMS queue, and each configured transport's account state (``ok`` until an attempt found otherwise)."""
    oldest = queue["oldest_queued_ts"]
    transports = {}
    for transport in config.sms.transports:
        known = health.get(transport.name)
        transports[transport.name] = TransportStatus(known["state"] if known else "ok",
                                                     known["detail"] if known else None,
                                                     iso(known["since_ts"]) if known else None)
    return SmsStatus(queue["queued"], iso(oldest), age_of(oldest, now), transports)


# ------------------------------------------------------------------------------------------------------- text


def render_text(report: StatusReport) -> list[str]:
    """The lines ``edge status`` prints."""
    gw, buf, clock = report.gateway, report.buffer, report.clock
    lines = [f"gateway  {gw.id}" + (f" ({gw.name})" if gw.name else ""),
             f"epoch    {report.epoch} since {report.epoch_started}, daemon {report.daemon}",
             f"clock    {'synced' if clock.synced else UNSYNCED_CLOCK[clock.trust == 'unsynced']}",
             f"buffer   {buf.path}: {counted(buf.total, 'reading')}, {buf.pending} pending, "
             f"{buf.acknowledged} acknowledged; "
             + (f"oldest pending {age_text(buf.oldest_pending_age_s)}; " if buf.pending else "")
             + f"{counted(buf.events_pending, 'event')} pending"]
    disk = report.disk
    if disk.full:
        lines.append(f"disk     FULL ({size_text(disk.free_bytes)} free in {disk.path}): readings are not being "
                     f"stored; outputs stay under control; free space and sampling resumes")
    else:
        lines.append(f"disk     {size_text(disk.free_bytes)} free in {disk.path}")
    sync = report.sync
    lines.append(f"link     {sync.link}" + (f" since {sync.since}" if sync.since else "")
                 + (f"; last ack {sync.last_ack}" if sync.last_ack else "")
                 + (f"; last error: {sync.error}" if sync.error else ""))
    sms = report.sms
    if sms.transports or sms.queued:
        troubles = [f"{name} {info.state.upper()} since {info.since} ({info.detail})"
                    for name, info in sms.transports.items() if info.state != "ok"]
        lines.append(f"sms      {sms.queued} queued" + (f", oldest {age_text(sms.oldest_queued_age_s)}"
                                                          if sms.queued else "")
                     + "; " + ("; ".join(troubles) if troubles else "transports ok"))
    lines.append("sensors")
    for sensor_id, info in report.sensors.items():
        values = ", ".join(f"{q} {value_text(v)}" for q, v in info.quantities.items()) or "no readings yet"
        lines.append(f"  {sensor_id:<16} {values}  ({age_text(info.age_s)})")
    lines.append("actuators")
    for actuator_id, view in report.actuators.items():
        lines.append(f"  {actuator_id:<16} {actuator_text(view)}")
    return lines


def value_text(q: QuantityStatus) -> str:
    if q.quality == "error":
        return f"error ({q.reason})"
    text = f"{q.value:g} {q.unit}"
    return text if q.quality == "good" else f"{text} [{q.quality}]"


def actuator_text(info: ActuatorView) -> str:
    text = f"{info['state']:<3}" + (f" {info['value']:.0%}" if 0 < info["value"] < 1 else "")
    text += f"  {info['reason']}"
    if info["remaining_s"] is not None:
        text += f", {left_text(info['remaining_s'])} left"
    return text


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def age_of(ts: float | None, now: float) -> float | None:
    """Seconds since ``ts`` (0.1 s), never below 0 (a time ahead of ``now`` means the clock stepped back)."""
    return None if ts is None else max(0.0, round(now - ts, 1))


def age_text(seconds: float | None) -> str:
    return "never" if seconds is None else f"{format_age(seconds)} ago"


def left_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def size_text(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


#: `edge status` when the wall clock is not synced: what it means for the data, and what to do (a Pi has no RTC).
UNSYNCED_CLOCK = (
    "NOT synced: readings are flagged now and re-timed once it syncs (a Pi has no battery clock)\n"
    "         fix: reach an NTP server, UDP port 123 (timedatectl; NTP= in /etc/systemd/timesyncd.conf)",
    "NOT synced: clock.trust is unsynced in the config, so every reading is flagged",
)
