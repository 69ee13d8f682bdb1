"""The ``edge`` command: thin shells over the library that turn errors into one clear line each."""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
from datetime import datetime, timezone
from typing import Any

import click

from edge import __version__
from edge.durations import parse_duration
from edge.errors import ConfigError, EdgeError

EXIT_CONFIG = 2

config_option = click.option(
    "-c", "--config", "config_path", envvar="EDGE_CONFIG", type=click.Path(dir_okay=False),
    help="Gateway config file (default: $EDGE_CONFIG, else the embedded simulated-greenhouse demo).",
)


def _load(config_path: str | None):
    from edge.config import load_config

    try:
        return load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(EXIT_CONFIG)


def _duration(_ctx, _param, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _setup_logging(level: str) -> None:
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty():
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge")
def main() -> None:
    """Smart-greenhouse edge service: gateway daemon and tools."""


@main.command()
@config_option
def check(config_path: str | None) -> None:
    """Validate a config file without touching hardware.

    Exit 0 when valid; exit 2 with one line per problem (FILE:LINE: key.path: message).

    Example: edge check -c /etc/edge/gateway.yaml
    """
    config = _load(config_path)
    click.echo(f"{config.source}: ok (gateway {config.gateway.id}, {len(config.sensors)} sensors, "
               f"{len(config.actuators)} actuators, {config.hardware.backend} backend)")


@main.command()
@config_option
@click.option("--for", "duration", callback=_duration, metavar="DURATION",
              help="Stop cleanly after this long (10s, 5m, 2h); default: run until SIGTERM/SIGINT.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="Override the config's log.level.")
def run(config_path: str | None, duration: float | None, log_level: str | None) -> None:
    """Run the gateway daemon in the foreground (logs to stderr, for journald).

    Without -c it runs the embedded simulated greenhouse, buffering under ./var/.

    Example: edge run -c config/demo.yaml --for 1m
    """
    import signal
    import threading

    stopping = threading.Event()  # a SIGTERM while the daemon loads still stops it cleanly, not half-started

    def early_stop(signum, _frame):
        stopping.reason = signal.Signals(signum).name
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, early_stop)
    from edge.gateway.daemon import Daemon

    config = _load(config_path)
    _setup_logging(log_level or config.log.level)
    try:
        sys.exit(Daemon(config, stopping=stopping).run(duration))
    except EdgeError as exc:
        logging.getLogger("edge").error("%s", exc)
        sys.exit(1)


def _open_reader(config):
    from edge.gateway.buffer import Buffer

    try:
        return Buffer.reader(config.buffer.path)
    except EdgeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


_NEVER_SWITCHED = {"value": 0.0, "reason": "never switched", "since": None, "until": None}


def status_report(config, now: float | None = None) -> dict[str, Any]:
    """What ``edge status --json`` prints: a contract for scripts and monitoring."""
    from edge.gateway.clock import Clock
    from edge.gateway.control.supervisor import describe_state

    now = time.time() if now is None else now
    buffer = _open_reader(config)
    try:
        readings = buffer.counts("readings")
        events = buffer.counts("events")
        latest = buffer.latest(s.id for s in config.sensors)
        epochs = buffer.epochs()
        running = buffer.owned_by_a_running_daemon()
        actuator_rows = buffer.control_state()
        link = buffer.sync_state()
    finally:
        buffer.close()
    oldest = readings.pop("oldest_pending_ts")
    sensors = {}
    for sensor in config.sensors:
        rows = latest.get(sensor.id, [])
        last_ts = rows[0]["ts"] if rows else None
        sensors[sensor.id] = {
            "last_ts": _iso(last_ts),
            "age_s": None if last_ts is None else round(now - last_ts, 1),
            "quantities": {r["quantity"]: {"value": r["value"], "unit": r["unit"], "quality": r["quality"],
                                           "reason": r["reason"]} for r in rows},
        }
    current = epochs[-1] if epochs else {}
    return {
        "gateway": {"id": config.gateway.id, "name": config.gateway.name},
        "epoch": current.get("epoch"),
        "epoch_started": _iso(current.get("started_ts")),
        "daemon": "running" if running else ("stopped" if current.get("stopped_ts") else "stopped uncleanly"),
        "clock": {"synced": Clock(config.clock.trust).is_synced(), "trust": config.clock.trust},
        "buffer": {
            "path": str(config.buffer.path), **readings,
            "oldest_pending": _iso(oldest),
            "oldest_pending_age_s": None if oldest is None else round(now - oldest, 1),
            "events_pending": events["pending"],
        },
        "sync": _sync_report(config, link, running),
        "sensors": sensors,
        "actuators": {a.id: describe_state(a.id, actuator_rows.get(a.id, _NEVER_SWITCHED), now)
                      for a in config.actuators},
    }


def _sync_report(config, link: dict[str, str | None], running: bool) -> dict[str, Any]:
    def number(key: str) -> float | None:
        return None if link.get(key) in (None, "None") else float(link[key])

    state = link.get("link") if running else "daemon not running"
    if not config.sync.url:
        state = "offline (no broker configured)"
    return {"link": state or "unknown", "since": _iso(number("since")), "last_ack": _iso(number("last_ack")),
            "error": link.get("error") if link.get("error") not in (None, "None") else None}


def _format_value(q: dict[str, Any]) -> str:
    if q["quality"] == "error":
        return f"error ({q['reason']})"
    text = f"{q['value']:g} {q['unit']}"
    return text if q["quality"] == "good" else f"{text} [{q['quality']}]"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (keys: gateway, epoch, clock, buffer, "
              "sensors).")
def status(config_path: str | None, as_json: bool) -> None:
    """Show the gateway's state from its buffer; works while the daemon runs.

    Example: edge status -c /etc/edge/gateway.yaml --json
    """
    report = status_report(_load(config_path))
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    gw, buf, clock = report["gateway"], report["buffer"], report["clock"]
    click.echo(f"gateway  {gw['id']}" + (f" ({gw['name']})" if gw["name"] else ""))
    click.echo(f"epoch    {report['epoch']} since {report['epoch_started']}, daemon {report['daemon']}")
    click.echo(f"clock    {'synced' if clock['synced'] else 'NOT synced (readings are flagged)'}")
    click.echo(f"buffer   {buf['path']}: {buf['total']} readings, {buf['pending']} pending, "
               f"{buf['acknowledged']} acknowledged; oldest pending {_age(buf['oldest_pending_age_s'])}; "
               f"{buf['events_pending']} events pending")
    sync = report["sync"]
    click.echo(f"link     {sync['link']}" + (f" since {sync['since']}" if sync["since"] else "")
               + (f"; last ack {sync['last_ack']}" if sync["last_ack"] else "")
               + (f"; last error: {sync['error']}" if sync["error"] else ""))
    click.echo("sensors")
    for sensor_id, info in report["sensors"].items():
        values = ", ".join(f"{q} {_format_value(v)}" for q, v in info["quantities"].items()) or "no readings yet"
        click.echo(f"  {sensor_id:<16} {values}  ({_age(info['age_s'])})")
    click.echo("actuators")
    for actuator_id, info in report["actuators"].items():
        click.echo(f"  {actuator_id:<16} {_format_actuator(info)}")


def _format_actuator(info: dict[str, Any]) -> str:
    text = f"{info['state']:<3}" + (f" {info['value']:.0%}" if 0 < info["value"] < 1 else "")
    text += f"  {info['reason']}"
    if info["remaining_s"] is not None:
        text += f", {_left(info['remaining_s'])} left"
    return text


def _left(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


READING_COLUMNS = ["ts", "epoch", "seq", "sensor", "quantity", "value", "unit", "quality", "reason", "clock"]


@main.command()
@config_option
@click.option("--sensor", "sensor_ids", multiple=True, metavar="ID", help="Only this sensor (repeatable).")
@click.option("--since", default="1h", show_default=True, callback=_duration, metavar="DURATION",
              help="How far back to look (10m, 2h, 7d).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def readings(config_path: str | None, sensor_ids: tuple[str, ...], since: float, fmt: str) -> None:
    """Print buffered readings (UTC timestamps); works while the daemon runs.

    Example: edge readings -c /etc/edge/gateway.yaml --sensor air --since 2h --format csv > air.csv
    """
    config = _load(config_path)
    known = [s.id for s in config.sensors]
    unknown = [s for s in sensor_ids if s not in known]
    if unknown:
        raise click.BadParameter(f"unknown sensor {unknown[0]!r} (sensors: {', '.join(known)})",
                                 param_hint="--sensor")
    buffer = _open_reader(config)
    try:
        rows = ({**r, "ts": _iso(r["ts"])} for r in buffer.readings(sensor_ids or known, time.time() - since))
        _print_rows(rows, fmt)
    finally:
        buffer.close()


def _print_rows(rows, fmt: str) -> None:
    out = click.get_text_stream("stdout")
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(READING_COLUMNS)
        for row in rows:
            writer.writerow([row[c] for c in READING_COLUMNS])
    elif fmt == "json":
        click.echo(json.dumps([{c: row[c] for c in READING_COLUMNS} for row in rows], ensure_ascii=False, indent=1))
    else:
        click.echo(f"{'time (UTC)':<24} {'sensor':<16} {'quantity':<14} {'value':>10} {'unit':<5} quality")
        for row in rows:
            value = "" if row["value"] is None else f"{row['value']:g}"
            note = row["quality"] + (f" ({row['reason']})" if row["reason"] else "")
            click.echo(f"{row['ts']:<24} {row['sensor']:<16} {row['quantity']:<14} {value:>10} {row['unit']:<5} "
                       f"{note}")


@main.command()
@config_option
@click.argument("actuator")
@click.argument("action", type=click.Choice(["on", "off", "auto"]))
@click.option("--for", "duration", callback=_duration, metavar="DURATION",
              help="How long the override lasts (on: default control.manual_default; off: until auto).")
def actuate(config_path: str | None, actuator: str, action: str, duration: float | None) -> None:
    """Switch an actuator of the running daemon by hand, or hand it back to its schedules and rules (auto).

    The safety limits still apply: the answer is the resulting state, or the refusal and its reason.

    Example: edge actuate -c /etc/edge/gateway.yaml pump-bed-1 on --for 10m
    """
    from edge.gateway.control_socket import call

    config = _load(config_path)
    request = {"op": "actuate", "actuator": actuator, "action": action, "for": duration, "who": "cli"}
    try:
        answer = call(config.control.socket, request)
    except (OSError, ValueError) as exc:
        click.echo(f"error: cannot reach the daemon at {config.control.socket} ({exc}); is `edge run` running?",
                   err=True)
        sys.exit(1)
    if not answer.get("ok"):
        click.echo(answer.get("error", "refused"), err=True)
        sys.exit(1)
    click.echo(f"{actuator}: {_format_actuator(answer['result'])}")


@main.command("safe-state")
@config_option
def safe_state(config_path: str | None) -> None:
    """Drive every configured output to its safe state (off) without the daemon; for systemd's ExecStopPost.

    The outputs are left driven at their off level: gpiozero's clean-up at exit would release the pins to float,
    which an active-low relay board may read as on, so this command exits without it.

    Example: edge safe-state -c /etc/edge/gateway.yaml
    """
    import os

    from edge.gateway.clock import Clock
    from edge.gateway.hardware import open_hardware

    config = _load(config_path)
    _setup_logging("warning")
    try:
        hardware = open_hardware(config, Clock(config.clock.trust), sensors=False)
    except EdgeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    failed = hardware.safe_state()
    for actuator_id in hardware.actuators:
        click.echo(f"{actuator_id}: {'FAILED' if actuator_id in failed else 'off'}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if failed else 0)  # skip gpiozero's atexit close(), which would let the pins float


@main.command()
@config_option
@click.option("--start", metavar="DATETIME", help="Local start time (ISO, e.g. 2025-07-15T00:00); default: now.")
@click.option("--hours", type=click.FloatRange(min=1, max=24 * 31), default=24, show_default=True)
def simulate(config_path: str | None, start: str | None, hours: float) -> None:
    """Fast-forward the config's rules and schedules on the simulated greenhouse and print an hourly table.

    Nothing real is switched and the config's buffer is not touched: a day runs in seconds, in memory.

    Example: edge simulate -c config/demo.yaml --start 2025-07-15T00:00 --hours 24
    """
    from zoneinfo import ZoneInfo

    from edge.gateway.simulate import simulate as run_simulation
    from edge.gateway.simulate import table

    config = _load(config_path)
    tz = ZoneInfo(config.gateway.timezone)
    try:
        begin = datetime.fromisoformat(start).replace(tzinfo=tz) if start else datetime.now(tz)
    except ValueError:
        raise click.BadParameter(f"invalid date/time {start!r}: use e.g. 2025-07-15T00:00", param_hint="--start")
    try:
        for line in table(run_simulation(config, begin.timestamp(), hours), [a.id for a in config.actuators]):
            click.echo(line)
    except EdgeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@main.command()
@config_option
def probe(config_path: str | None) -> None:
    """Read every configured sensor once and list I2C and 1-Wire devices no sensor is configured for.

    Only sensors are opened, never outputs. Stop the daemon first (systemctl stop edge-gateway): both would use the
    same buses and pins. Exit 0 when every sensor answered, 1 otherwise.

    Example: edge probe -c /etc/edge/gateway.yaml
    """
    from edge.gateway.probe import format_report
    from edge.gateway.probe import probe as probe_hardware

    config = _load(config_path)
    _setup_logging("warning")
    report = probe_hardware(config)
    for line in format_report(report):
        click.echo(line)
    sys.exit(0 if report.ok else 1)


# ------------------------------------------------------------------------------------------------ the data center


@main.group()
def dc() -> None:
    """Data-center services (install with the extra: pip install .[datacenter]).

    Example: edge dc collector -c config/datacenter.yaml
    """


@dc.command()
@click.option("-c", "--config", "config_path", required=True, envvar="EDGE_DC_CONFIG",
              type=click.Path(dir_okay=False), help="Data-center config file (default: $EDGE_DC_CONFIG).")
@click.option("--client-id", default=None, help="MQTT client id of this instance (overrides mqtt.client_id); "
              "keep it across restarts, and unique among running collectors.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="Override the config's log.level.")
def collector(config_path: str, client_id: str | None, log_level: str | None) -> None:
    """Store gateway uplink (readings, events, status) in PostgreSQL; ack each batch after its commit.

    Runs in the foreground until SIGTERM/SIGINT, then finishes the round in hand. Run several (each with its own
    --client-id) to share the stream.

    Example: edge dc collector -c config/datacenter.yaml
    """
    import signal
    import threading

    from edge.datacenter.config import load_datacenter_config

    try:
        config = load_datacenter_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(EXIT_CONFIG)
    _setup_logging(log_level or config.log.level)
    try:
        from edge.datacenter.collector import Collector

        running = Collector(config, client_id=client_id).start()
    except (ImportError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5) and running.running:
        pass
    running.stop()
    sys.exit(1 if running.failure else 0)
