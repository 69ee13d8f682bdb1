"""The ``edge`` command: thin shells over the library.

Every failure a user can do something about is an ``EdgeError`` (the package's one error root); the root group turns
it into one clear line on stderr and an exit code, in one place (:class:`EdgeGroup`): 2 for a bad config (one line
per problem, ``FILE:LINE: key.path: message``), 1 for anything else (``error: ...``, or the daemon's refusal as it
answered). Commands raise; none of them prints an error and exits by itself.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edge import __version__
from edge.durations import counted, parse_duration
from edge.errors import ConfigError, EdgeError

if TYPE_CHECKING:
    from edge.gateway.control.types import ActuatorView

EXIT_CONFIG = 2
EXIT_FAILED = 1


class DaemonRefused(EdgeError):
    """The daemon did not carry out a request; the message is its answer (``refused: ...``), shown as it came."""


class EdgeGroup(click.Group):
    """The root group: an EdgeError raised by any command becomes one line on stderr and an exit code, here only."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeError as exc:
            for line in error_lines(exc):
                click.echo(line, err=True)
            ctx.exit(EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_FAILED)


def error_lines(exc: EdgeError) -> list[str]:
    """What the user reads of an error: a config's problems one per line; anything else on one line."""
    if isinstance(exc, ConfigError):
        return exc.problems
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    return [text if isinstance(exc, DaemonRefused) else f"error: {text}"]


_config_path_option = click.option(
    "-c", "--config", "config_path", envvar="EDGE_CONFIG", type=click.Path(dir_okay=False),
    help="Gateway config file (default: $EDGE_CONFIG, else the embedded simulated-greenhouse demo).",
)
ENV_FILE_KEY = "edge.env_file"


def _remember_env_file(ctx: click.Context, _param, value: str | None) -> None:
    if value is not None or ENV_FILE_KEY not in ctx.meta:  # `edge alerts --env-file F ack 7`: the group's stands
        ctx.meta[ENV_FILE_KEY] = value


_env_file_option = click.option(
    "--env-file", envvar="EDGE_ENV_FILE", type=click.Path(dir_okay=False), expose_value=False,
    callback=_remember_env_file,
    help="Variables for the config's ${VAR}, read as the unit's EnvironmentFile= gives them to the daemon; they win "
         "over the process environment, as in the unit (default: $EDGE_ENV_FILE, else /etc/edge/gateway.env when it "
         "exists; /dev/null for none).")


def config_option(command):
    """``-c/--config`` and ``--env-file``: what every command that reads the gateway config takes."""
    return _config_path_option(_env_file_option(command))


def _environment() -> dict[str, str]:
    """What the config's ${VAR}s see: the process environment, then the unit's environment file over it (systemd's
    EnvironmentFile= overrides Environment=, so the daemon sees the file's values: so does every command)."""
    import os

    from edge.envfile import ENV_FILE, read_env_file

    ctx = click.get_current_context(silent=True)
    chosen = ctx.meta.get(ENV_FILE_KEY) if ctx is not None else None
    path = Path(chosen) if chosen else (ENV_FILE if ENV_FILE.is_file() else None)
    env = dict(os.environ)
    if path is not None:
        try:
            env.update(read_env_file(path))
        except (OSError, UnicodeDecodeError) as exc:
            reason = (f"{exc.strerror} (run as root, or --env-file /dev/null to read none)"
                      if isinstance(exc, OSError) else "not valid UTF-8")
            raise EdgeError(f"cannot read {path}: {reason}") from None
    return env


def _load(config_path: str | None, files: bool = False):
    """The gateway config, its ${VAR}s from the environment and the unit's environment file (see ``_environment``);
    ``files``: also every ``*_file`` it names must be readable (check, run)."""
    from edge.gateway.config import load_config

    return load_config(config_path, _environment(), files=files)


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


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


@click.group(cls=EdgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge")
def main() -> None:
    """Smart-greenhouse edge service: gateway daemon and tools."""


@main.command()
@config_option
def check(config_path: str | None) -> None:
    """Validate a config file without touching hardware.

    Every problem is reported in one pass: values, references, the Pi's pins, buses and addresses (two users of one
    GPIO, an output on a bus pin, two chips at one address), and every *_file the config names (it must exist and
    be readable by this user). Exit 0 when valid; exit 2 with one line per problem (FILE:LINE: key.path: message).

    Example: edge check -c /etc/edge/gateway.yaml
    """
    config = _load(config_path, files=True)
    click.echo(f"{config.source}: ok (gateway {config.gateway.id}, {counted(len(config.sensors), 'sensor')}, "
               f"{counted(len(config.actuators), 'actuator')}, {config.hardware.backend} backend)")


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
    # Nothing of the daemon uses numpy, but a library that imports it whenever it is installed (Raspberry Pi OS ships
    # it, and the gateway's venv sees system packages) would cost 20 MB of RSS: keep it out of this process. And no
    # pydantic plugin is used: without this pydantic reads every installed package's metadata to look for one.
    sys.modules.setdefault("numpy", None)
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _no_pydantic_plugin_loader()
    from edge.gateway.daemon import StopRequest

    stopping = StopRequest()  # a SIGTERM while the daemon loads still stops it cleanly, not half-started
    stopping.install()
    from edge.gateway.daemon import Daemon

    config = _load(config_path, files=True)  # a missing key file stops it here, before an epoch is used
    _setup_logging(log_level or config.log.level)
    sys.exit(Daemon(config, stopping=stopping).run(duration))


#: The values of PYDANTIC_DISABLE_PLUGINS with which pydantic's plugin loader answers "no plugins" at once.
_PLUGINS_OFF = ("__all__", "1", "true")


def _no_pydantic_plugin_loader() -> None:
    """With plugins off, pydantic's plugin loader answers "none" to the one question pydantic asks it
    (``get_plugins()``), but importing the loader imports ``importlib.metadata`` (and email, zipfile, csv, shutil, bz2,
    lzma, tempfile with it): 2.7 MB of the daemon's memory for nothing. Give pydantic a loader that gives the same
    answer without them. Only when plugins are off, and only if pydantic has not loaded its own yet;
    ``tests/test_footprint.py`` checks that pydantic's loader still offers ``get_plugins`` and answers () when off."""
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") not in _PLUGINS_OFF or "pydantic.plugin._loader" in sys.modules:
        return
    import types

    loader = types.ModuleType("pydantic.plugin._loader", "pydantic's plugin loader with plugins off (edge run)")
    loader.get_plugins = lambda: ()
    sys.modules["pydantic.plugin._loader"] = loader


def _open_reader(config):
    from edge.gateway.buffer import Buffer

    return Buffer.reader(config.buffer.path)


def status_report(config, now: float | None = None) -> dict[str, Any]:
    """What ``edge status --json`` prints: a contract for scripts and monitoring (see edge.gateway.status)."""
    from edge.gateway.status import read_status

    return read_status(config, now, wall=lambda: time.time()).to_json()


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (keys: gateway, epoch, daemon, clock, "
              "buffer, sync, sms, sensors, actuators).")
def status(config_path: str | None, as_json: bool) -> None:
    """Show the gateway's state from its buffer; works while the daemon runs.

    Example: edge status -c /etc/edge/gateway.yaml --json
    """
    from edge.gateway.status import read_status, render_text

    report = read_status(_load(config_path), wall=lambda: time.time())
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
        return
    for line in render_text(report):
        click.echo(line)


def _format_actuator(info: ActuatorView) -> str:
    from edge.gateway.status import actuator_text

    return actuator_text(info)


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
    known = [s.id for s in config.sources()]  # sensors and derived sets (climate)
    unknown = [s for s in sensor_ids if s not in known]
    if unknown:
        raise click.BadParameter(f"unknown sensor {unknown[0]!r} (sensors: {', '.join(known)})",
                                 param_hint="--sensor")
    chosen, start = list(sensor_ids or known), time.time() - since
    buffer = _open_reader(config)
    try:
        held = _held_readings(config, buffer, chosen, start)  # first: what the daemon commits meanwhile is in the file
        rows = buffer.readings(chosen, start)
        if held:
            by_epoch: dict[int, list[int]] = {}
            for r in held:
                by_epoch.setdefault(r["epoch"], []).append(r["seq"])
            committed = {(epoch, seq) for epoch, seqs in by_epoch.items()
                         for seq in buffer.committed_keys(epoch, min(seqs), max(seqs))}
            rows = itertools.chain(rows, (r for r in held if (r["epoch"], r["seq"]) not in committed))
        _print_rows(({**r, "ts": _iso(r["ts"])} for r in rows), fmt)
    finally:
        buffer.close()


def _held_readings(config, buffer, sensors: list[str], since: float) -> list[dict]:
    """The readings the running daemon holds for its commit window (``buffer.commit_every``), asked over its
    control socket; none when there is no window, no daemon, or it does not answer (the file is then all there is)."""
    if not config.buffer.commit_every or not buffer.owned_by_a_running_daemon():
        return []
    from edge.gateway import control_socket

    try:
        answer = control_socket.call(config.control.socket, {"op": "held", "sensors": sensors, "since": since},
                                     timeout=5.0)
    except (OSError, ValueError):
        return []
    held = answer.get("held")
    return held if isinstance(held, list) else []


def _print_rows(rows, fmt: str) -> None:
    out = sys.stdout
    if fmt == "csv":
        import csv

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
              help="How long the override lasts (default control.manual_default); longer than the actuator's "
              "max_manual is refused.")
def actuate(config_path: str | None, actuator: str, action: str, duration: float | None) -> None:
    """Switch an actuator of the running daemon by hand, or hand it back to its schedules and rules (auto).

    The safety limits and safety rules (frost protection) still apply: the answer is the resulting state, or the
    refusal and its reason.

    Example: edge actuate -c /etc/edge/gateway.yaml pump-bed-1 on --for 10m
    """
    config = _load(config_path)
    answer = _ask_daemon(config, {"op": "actuate", "actuator": actuator, "action": action, "for": duration,
                                  "who": "cli"})
    click.echo(f"{actuator}: {_format_actuator(answer['result'])}")


def _ask_daemon(config, request: dict[str, Any]) -> dict[str, Any]:
    """One request over the control socket: its answer, else DaemonRefused (the daemon's words) or EdgeError."""
    from edge.gateway.control_socket import call

    try:
        answer = call(config.control.socket, request)
    except (OSError, ValueError) as exc:
        raise EdgeError(f"cannot reach the daemon at {config.control.socket} ({exc}); is `edge run` running?") \
            from None
    if not answer.get("ok"):
        raise DaemonRefused(answer.get("error", "refused"))
    return answer


@main.command()
@config_option
@click.option("--set-secret", is_flag=True, help="Ask for a new PIN or password (twice) and write its scrypt hash "
              "to web.pin_file or web.password_file, then exit.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="Override the config's log.level.")
def web(config_path: str | None, set_secret: bool, log_level: str | None) -> None:
    """Serve the greenhouse page (web.listen), a process of its own beside the daemon.

    It reads the buffer like edge status and switches outputs and acknowledges alerts through the daemon's control
    socket like edge actuate, after a login with the PIN or password in web.pin_file / web.password_file. Stopping
    it, or a failure of it, never touches sampling or control. Without -c it serves the simulated demo on
    127.0.0.1:8090 and prints the demo's PIN the first time.

    Example: edge web -c /etc/edge/gateway.yaml
    """
    sys.modules.setdefault("numpy", None)  # as in `edge run`: sqlite-utils would load 20 MB of it for nothing
    from edge.gateway.web.auth import create_pin, hash_secret, write_secret

    config = _load(config_path)
    path = config.web.secret_file
    if set_secret:
        if path is None:
            raise EdgeError(f"{config.source}: set web.pin_file or web.password_file first")
        secret = click.prompt("new PIN or password", hide_input=True, confirmation_prompt=True)
        if len(secret.strip()) < 4:
            raise click.BadParameter("at least 4 characters", param_hint="PIN")
        write_secret(Path(path), hash_secret(secret.strip()))
        click.echo(f"{path}: written (a scrypt hash); logins use it from now on, no restart needed")
        return
    if config.web.listen is None:
        raise EdgeError(f"web.listen is not set in {config.source}: the page is off (docs/operations.md, "
                        "\"The greenhouse page\")")
    _setup_logging(log_level or config.log.level)
    if config.web.create_pin and path is not None:
        pin = create_pin(Path(path))
        if pin is not None:
            click.echo(f"demo page PIN: {pin} (written to {path}; the simulated greenhouse only)")
    from edge.gateway.web.server import serve

    serve(config, on_ready=lambda url: click.echo(f"greenhouse page: {url}"))


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
    # every output is tried: one that cannot be opened or switched does not keep the others on
    hardware = open_hardware(config, Clock(config.clock.trust), sensors=False, skip_failed=True)
    failed = set(hardware.safe_state()) | set(hardware.failed)
    for actuator in config.actuators:
        click.echo(f"{actuator.id}: {'FAILED' if actuator.id in failed else 'off'}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if failed else 0)  # skip gpiozero's atexit close(), which would let the pins float


@main.command()
@config_option
@click.option("--start", metavar="DATETIME", help="Local start time (ISO, e.g. 2025-07-15T00:00); default: now.")
@click.option("--hours", type=click.FloatRange(min=1, max=24 * 31), default=24, show_default=True)
@click.option("--summary", is_flag=True, help="Print the run's totals (hours in the VPD band, condensation hours, "
              "water used, heating hours) instead of the hourly table.")
def simulate(config_path: str | None, start: str | None, hours: float, summary: bool) -> None:
    """Fast-forward the config's rules and schedules on the simulated greenhouse and print an hourly table.

    Nothing real is switched and the config's buffer is not touched: a day runs in seconds, in memory.

    Example: edge simulate -c config/demo.yaml --start 2025-07-15T00:00 --hours 24 --summary
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
    if summary:
        from edge.gateway.simulate import summarize, summary_table

        totals = summarize(list(run_simulation(config, begin.timestamp(), hours)), config)
        label = f"{Path(config.source).name}, {begin:%Y-%m-%d %H:%M}"
        for line in summary_table([(label, totals)]):
            click.echo(line)
        return
    for line in table(run_simulation(config, begin.timestamp(), hours), [a.id for a in config.actuators]):
        click.echo(line)


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


@main.command()
@config_option
@click.option("--timeout", default="5s", show_default=True, callback=_duration, metavar="DURATION",
              help="How long each network check (broker, SMS gateways) may take.")
def doctor(config_path: str | None, timeout: float) -> None:
    """Check an installed gateway, one line each: config, clock, buffer, disk, broker, SMS, sensors, service.

    Each line is OK, WARN, FAIL or SKIP, with a hint under every WARN and FAIL. Run it with sudo: it reads the
    buffer and the password files (and never prints a secret). Exit 0 when nothing failed, 1 otherwise.

    Example: edge doctor -c /etc/edge/gateway.yaml
    """
    import os

    from edge.gateway.doctor import diagnose, format_report

    _setup_logging("warning")
    report = diagnose(config_path, env=_environment(), timeout=timeout)
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")  # https://no-color.org
    for line in format_report(report, colour=colour):
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
@click.option("--username", default=None, help="Broker account of this instance (overrides mqtt.username, or "
              "nats.username with source: nats). "
              "config/mosquitto/ names each session by its account: every running collector needs its own.")
@click.option("--client-id", default=None, help="MQTT client id of this instance (overrides mqtt.client_id); "
              "keep it across restarts, and unique among running collectors (a broker that binds ids to "
              "accounts, as config/mosquitto/ does, uses the account name instead).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="Override the config's log.level.")
def collector(config_path: str, username: str | None, client_id: str | None, log_level: str | None) -> None:
    """Store gateway uplink (readings, events, status) in PostgreSQL; ack each batch after its commit.

    Runs in the foreground until SIGTERM/SIGINT, then finishes the round in hand. Run several (each with its own
    broker account, --username) to share the stream.

    Example: edge dc collector -c config/datacenter.yaml --username collector-2
    """
    import signal
    import threading

    config = _load_datacenter(config_path)
    if username is not None:
        section = config.source  # mqtt, or nats
        config = config.model_copy(update={section: getattr(config, section).model_copy(
            update={"username": username})})
    _setup_logging(log_level or config.log.level)
    try:
        from edge.datacenter.collector import Collector

        running = Collector(config, client_id=client_id).start()
    except (ImportError, OSError) as exc:
        raise EdgeError(str(exc)) from exc
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5) and running.running:
        pass
    running.stop()
    sys.exit(1 if running.failure else 0)


def _load_datacenter(config_path: str):
    from edge.datacenter.config import load_datacenter_config

    return load_datacenter_config(config_path)


def _database_error(exc: Exception) -> EdgeError:
    return EdgeError(f"cannot use the database: {str(exc).strip().splitlines()[0]}")


def _listen_address(_ctx, _param, value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r}: use HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


dc_config_option = click.option("-c", "--config", "config_path", required=True, envvar="EDGE_DC_CONFIG",
                                type=click.Path(dir_okay=False),
                                help="Data-center config file (default: $EDGE_DC_CONFIG).")


@dc.command()
@dc_config_option
@click.option("--listen", default="127.0.0.1:8080", show_default=True, callback=_listen_address,
              metavar="HOST:PORT", help="Address to serve on (put a TLS proxy in front of it).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="Override the config's log.level.")
def api(config_path: str, listen: tuple[str, int], log_level: str | None) -> None:
    """Serve the history API for agronomists (readings, events, coverage; tokens from edge dc token) and the console.

    Migrates the database schema first, then serves until SIGTERM/SIGINT. The OpenAPI document is at
    /openapi.json and its docs page at /docs (no CDN); the console at /console/ (docs/datacenter.md); see
    docs/history.md.

    Example: edge dc api -c config/datacenter.yaml --listen 127.0.0.1:8080
    """
    config = _load_datacenter(config_path)
    _setup_logging(log_level or config.log.level)
    try:
        import psycopg

        from edge.datacenter.api import serve
    except ImportError as exc:
        raise EdgeError(f"{exc} (install the data-center extra: pip install '.[datacenter]')") from None
    try:
        serve(config, *listen)
    except psycopg.Error as exc:
        raise _database_error(exc) from exc


@dc.command("status")
@dc_config_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def dc_status(config_path: str, as_json: bool) -> None:
    """The data center at a glance: each database node (primary or standby, how far behind, synchronous or not),
    the collectors and APIs connected, whether the broker answers, gateways online. Exit 1 when no single primary
    answers or the broker does not.

    Example: edge dc status -c config/datacenter.yaml
    """
    config = _load_datacenter(config_path)
    try:
        from edge.datacenter.health import read_cluster
    except ImportError as exc:
        raise EdgeError(f"{exc} (install the data-center extra: pip install '.[datacenter]')") from None
    report = read_cluster(config)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        for line in report.render_text():
            click.echo(line)
    sys.exit(0 if report.ok else 1)


@dc.command("command")
@dc_config_option
@click.argument("gateway")
@click.argument("op", type=click.Choice(["actuate", "ping"]))
@click.argument("words", nargs=-1, metavar="[OUTPUT on|off|auto]")
@click.option("--for", "duration", default=None, callback=_duration, metavar="DURATION",
              help="actuate on/off: for how long (10m, 2h); default: the output's max_manual on the gateway.")
@click.option("--expires", default=None, callback=_duration, metavar="DURATION",
              help="Expired if not answered within this long (default: commands.expiry, 5m).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for the gateway's answer (at most commands.wait, or the expiry if shorter).")
def dc_command(config_path: str, gateway: str, op: str, words: tuple[str, ...], duration: float | None,
               expires: float | None, wait: bool) -> None:
    """Send a command to a gateway through the broker account meant for commands, and print its answer.

    The command is recorded (edge dc api's console lists it), published with an expiry, and answered by the
    gateway's command.result event once the collector has stored it. A gateway that is offline gets it when it
    comes back within the expiry; otherwise it expires. Exit status: 0 done, 1 refused or expired, 2 still
    pending when the wait ended.

    Example: edge dc command -c config/datacenter.yaml gh-lorestan-042 actuate heater-1 on --for 10m

    Example: edge dc command -c config/datacenter.yaml gh-lorestan-042 ping
    """
    import getpass

    from edge.datacenter import commands

    config = _load_datacenter(config_path)
    _setup_logging("warning")
    if op == "actuate" and len(words) != 2:
        raise click.UsageError("actuate takes an output and an action: ... GATEWAY actuate heater-1 on --for 10m")
    if op == "ping" and words:
        raise click.UsageError("ping takes nothing more: ... GATEWAY ping")
    actuator, action = words if op == "actuate" else (None, None)
    try:
        args, expiry = commands.build(op, actuator, action, duration, expires, config.commands)
    except commands.CommandError as exc:
        raise click.UsageError(str(exc)) from None
    import psycopg

    with _token_store(config_path) as conn:
        try:
            known = conn.execute("SELECT 1 FROM gateway_status WHERE gateway_id = %s", (gateway,)).fetchone()
            if known is None:
                raise EdgeError(f"no gateway {gateway!r} is known to this data center (edge history gateways "
                                "lists them)")
            sent = commands.send(conn, config.mqtt, config.commands, gateway, op, args,
                                 f"cli:{getpass.getuser()}", expiry)
            click.echo(f"command {sent.id} to {gateway}: {sent.describe()} (expires in {expiry:g}s)", err=True)
            if not wait:
                return
            done = commands.wait(conn, sent.id, min(config.commands.wait, expiry + 1))
        except psycopg.Error as exc:
            raise _database_error(exc) from exc
    click.echo(f"{gateway} {done.id}: {done.answer()}")
    if done.state in ("refused", "expired"):
        raise SystemExit(1)
    if done.state == "pending":
        raise SystemExit(2)


@dc.command("nats-config")
@click.argument("cluster_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--node", "node_name", required=True, help="Which node of the cluster file to write the config of.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write here (mode 0640) instead of standard output.")
def nats_config(cluster_file: str, node_name: str, output: str | None) -> None:
    """Write one NATS node's server config: the cluster, JetStream, the MQTT listener and every account's permissions.

    The accounts (gateways, collectors, commanders) and their password hashes come from CLUSTER_FILE
    (config/nats/cluster.example.yaml); a gateway may publish only its own uplink and read only its own downlink.
    Regenerate and reload (nats-server --signal reload) after adding a gateway. docs/datacenter.md.

    Example: edge dc nats-config /etc/edge/nats-cluster.yaml --node dc-1 -o /etc/nats/nats-server.conf
    """
    from edge.datacenter.nats_config import render_from_file

    try:
        text = render_from_file(cluster_file, node_name)
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:
        raise EdgeError(str(exc)) from exc
    if output is None:
        click.echo(text, nl=False)
        return
    target = Path(output)
    target.touch(mode=0o640)
    target.write_text(text)


@dc.command("nats-status")
@dc_config_option
def nats_status(config_path: str) -> None:
    """Show the NATS cluster's state as a collector sees it: the uplink stream, its copies, the shared consumer.

    Uses the collector's own config and account (source: nats). A replica OFFLINE or behind, or no leader, says
    which node to look at; messages waiting grow while no collector takes them. docs/datacenter.md.

    Example: edge dc nats-status -c /etc/edge/datacenter.yaml
    """
    config = _load_datacenter(config_path)
    if config.nats is None:
        raise EdgeError(f"{config_path}: no nats: section (this data center reads from {config.source})")
    try:
        from edge.datacenter.nats_source import cluster_state

        lines = cluster_state(config.nats)
    except (ImportError, OSError, LookupError, TimeoutError) as exc:
        raise EdgeError(str(exc) or "no answer from the cluster in time") from exc
    for line in lines:
        click.echo(line)


@dc.group()
def token() -> None:
    """History API tokens: create (shown once), list, revoke.

    Example: edge dc token create -c config/datacenter.yaml --name alice --gateways 'gh-lorestan-*'
    """


def _token_store(config_path: str):
    """A migrated connection to the data-center database, or a clean exit."""
    import psycopg

    from edge.datacenter.store import migrate

    config = _load_datacenter(config_path)
    try:
        conn = psycopg.connect(config.database.url, connect_timeout=10, autocommit=True)
        migrate(conn)
    except psycopg.Error as exc:
        raise _database_error(exc) from exc
    return conn


def _patterns(values: tuple[str, ...]) -> list[str]:
    return [p for value in values for p in value.replace(",", " ").split()]


@token.command("create")
@dc_config_option
@click.option("--name", required=True, help="Who or what the token is for (e.g. alice, agri-lab).")
@click.option("--gateways", "patterns", required=True, multiple=True, metavar="PATTERN...",
              help="Gateway ids it may see: globs such as 'gh-lorestan-*' (repeatable, or comma-separated).")
@click.option("--expires", default=None, callback=_duration, metavar="DURATION",
              help="Stop working after this long (90d, 12h); default: until revoked.")
@click.option("--scope", type=click.Choice(["read", "control"]), default="read", show_default=True,
              help="read: history and console; control: also commands to the gateways it sees.")
def token_create(config_path: str, name: str, patterns: tuple[str, ...], expires: float | None, scope: str) -> None:
    """Create a token and print it once (only its hash is stored).

    Example: edge dc token create -c config/datacenter.yaml --name alice --gateways 'gh-lorestan-*' --expires 180d

    Example: edge dc token create -c config/datacenter.yaml --name ops --gateways 'gh-*' --scope control
    """
    from edge.datacenter import tokens

    with _token_store(config_path) as conn:
        secret = tokens.create(conn, name, _patterns(patterns), expires, scope)
    click.echo(secret)
    click.echo(f"token {name!r} ({scope}) created for {', '.join(_patterns(patterns))}: it is shown only this "
               "once; hand it over in a file (edge history pull --token-file FILE)", err=True)


@token.command("list")
@dc_config_option
def token_list(config_path: str) -> None:
    """List tokens: name, state, scope, gateway patterns, created, expires (never the tokens themselves).

    Example: edge dc token list -c config/datacenter.yaml
    """
    from edge.datacenter import tokens
    from edge.datacenter.queries import iso

    with _token_store(config_path) as conn:
        found = tokens.list_tokens(conn)
    rows = [(t.name, t.state(), t.scope, " ".join(t.gateways), iso(t.created_at)[:16], iso(t.expires_at)[:16]
             if t.expires_at else "-") for t in found]
    _print_table(("NAME", "STATE", "SCOPE", "GATEWAYS", "CREATED", "EXPIRES"), rows)


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


@token.command("revoke")
@dc_config_option
@click.argument("name")
def token_revoke(config_path: str, name: str) -> None:
    """Revoke the active token of that name: every request with it gets 403 from then on.

    Example: edge dc token revoke -c config/datacenter.yaml alice
    """
    from edge.datacenter import tokens

    with _token_store(config_path) as conn:
        tokens.revoke(conn, name)
    click.echo(f"token {name!r} revoked")


# ----------------------------------------------------------------------------------------- history (agronomists)


@main.group()
def history() -> None:
    """Pull a greenhouse's history from the data center's API, or chart it (tokens from the data center).

    Example: edge history pull --server https://dc.example --token-file ~/.edge-token --gateway gh-lorestan-042
    --from 2025-07-01 --to 2025-08-01 -o july.csv
    """


_server_options = [
    click.option("--server", required=True, envvar="EDGE_HISTORY_SERVER", metavar="URL",
                 help="The history API (default: $EDGE_HISTORY_SERVER), e.g. https://dc.example"),
    click.option("--token-file", required=True, envvar="EDGE_HISTORY_TOKEN_FILE", metavar="FILE",
                 type=click.Path(dir_okay=False), help="File holding your token (default: "
                 "$EDGE_HISTORY_TOKEN_FILE); keep it private (chmod 600)."),
]


def _server_options_of(command):
    for option in reversed(_server_options):
        command = option(command)
    return command


def _history_options(command):
    options = [
        *_server_options,
        click.option("--gateway", "gateways", required=True, multiple=True, metavar="ID",
                     help="Gateway id (edge history gateways lists them); pull takes several (repeat --gateway)."),
        click.option("--from", "start", required=True, metavar="DATE",
                     help="Start, inclusive: 2025-07-01 or 2025-07-01T06:00 (UTC unless an offset is given)."),
        click.option("--to", "end", required=True, metavar="DATE", help="End, exclusive (same forms)."),
        click.option("--sensor", "sensors", multiple=True, metavar="ID", help="Only this sensor (repeatable)."),
        click.option("--quantity", "quantities", multiple=True, metavar="NAME",
                     help="Only this quantity, e.g. temperature (repeatable)."),
        click.option("--tz", default=None, metavar="ZONE",
                     help="Time zone, e.g. Asia/Tehran: daily and hourly buckets are its days and hours, times are "
                          "written (and --from/--to without an offset read) in it; default: UTC."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _history_request(server, token_file, gateway, start, end, sensors, quantities, every=None, fmt="csv", tz=None):
    from edge.history import Request, in_zone, read_token

    return Request(server, read_token(token_file), gateway, in_zone(start, tz), in_zone(end, tz), tuple(sensors),
                   tuple(quantities), every, fmt, tz)


@history.command("gateways")
@_server_options_of
def history_gateways(server: str, token_file: str) -> None:
    """List the gateways your token sees: id, state, last seen (UTC), version, readings waiting, display name.

    Example: edge history gateways --server https://dc.example --token-file ~/.edge-token
    """
    from edge.history import gateways, read_token

    found = gateways(server, read_token(token_file))
    _print_table(("GATEWAY", "STATE", "LAST SEEN (UTC)", "VERSION", "BACKLOG", "NAME"),
                 [(g["id"], g["state"], g["last_seen"][:19].replace("T", " "), g["version"] or "-",
                   "-" if g["backlog"] is None else f"{g['backlog']:,}", g.get("name") or "-") for g in found])


@history.command()
@_history_options
@click.option("--every", type=click.Choice(["1m", "1h", "1d"]), default=None,
              help="Downsample: count, min, mean, max of the good readings per bucket; default: every reading.")
@click.option("--format", "fmt", type=click.Choice(["csv", "ndjson"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="File to write (default: standard output).")
@click.option("--resume", is_flag=True, help="Continue a pull into -o that was interrupted, after its last "
              "complete row.")
@click.option("--wide", is_flag=True, help="One CSV row per bucket of a regular grid (needs --every), a column per "
              "sensor.quantity; a cell is the bucket's mean, empty where the series has no good reading in it.")
@click.option("--retries", type=click.IntRange(min=0), default=5, show_default=True,
              help="Attempts after a network error, with exponential backoff, each continuing where it stopped.")
def pull(server, token_file, gateways, start, end, sensors, quantities, tz, every, fmt, output, resume, wide,
         retries):
    """Stream readings of one or more gateways to a CSV (header row, ISO-8601 times) or NDJSON file, resumably.

    Example: edge history pull --server https://dc.example --token-file ~/.edge-token --gateway gh-lorestan-042
    --from 2025-07-01 --to 2025-08-01 --every 1h -o july.csv
    """
    import contextlib

    from edge.history import pull_all, pull_to_file, pull_wide

    requests = [_history_request(server, token_file, gateway, start, end, sensors, quantities, every, fmt, tz)
                for gateway in dict.fromkeys(gateways)]
    if resume and not output:
        raise click.UsageError("--resume needs -o FILE")
    if wide:
        if not every or fmt != "csv" or resume:
            raise click.UsageError("--wide needs --every (a cell is a bucket's mean), writes CSV, and cannot "
                                   "--resume (it writes the file at the end; a dropped connection is still retried)")
        with (open(output, "wb") if output else contextlib.nullcontext(sys.stdout.buffer)) as out:
            pull_wide(requests, out, retries=retries)
        return
    if output:
        pull_to_file(requests, output, resume=resume, retries=retries)
    else:
        pull_all(requests, sys.stdout.buffer, retries=retries)


@history.command()
@_history_options
@click.option("--every", type=click.Choice(["auto", "raw", "1m", "1h", "1d"]), default="auto", show_default=True,
              help="Downsampling; auto: raw up to 2 days, hourly up to 90 days, daily beyond.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
def plot(server, token_file, gateways, start, end, sensors, quantities, tz, every, output):
    """Chart readings (a panel per quantity) with the periods actuators were on shaded (needs matplotlib).

    Example: edge history plot --server https://dc.example --token-file ~/.edge-token --gateway gh-lorestan-042
    --from 2025-07-14 --to 2025-07-16 -o chart.png
    """
    from edge.history import auto_every, plot as draw

    if len(set(gateways)) > 1:
        raise click.UsageError("plot draws one gateway: give --gateway once (pull takes several)")
    gateway = gateways[0]
    chosen = auto_every(start, end) if every == "auto" else None if every == "raw" else every
    request = _history_request(server, token_file, gateway, start, end, sensors, quantities, chosen, "ndjson", tz)
    count = draw(request, output)
    click.echo(f"{output}: {counted(count, 'point' if chosen else 'reading', grouped=True)} of {gateway}", err=True)


@main.group(invoke_without_command=True)
@config_option
@click.option("--active", is_flag=True, help="Only alerts not resolved yet.")
@click.pass_context
def alerts(ctx: click.Context, config_path: str | None, active: bool) -> None:
    """List the gateway's alerts (code, severity, state, times), newest first; works while the daemon runs.

    Example: edge alerts -c /etc/edge/gateway.yaml --active
    """
    ctx.obj = config_path
    if ctx.invoked_subcommand is not None:
        return
    config = _load(config_path)
    from edge.gateway.alerts.store import Store

    buffer = _open_reader(config)
    try:
        incidents = Store(buffer, migrate=False).incidents(active_only=active)
    finally:
        buffer.close()
    if not incidents:
        click.echo("no active alerts" if active else "no alerts")
    for row in incidents:
        state = "resolved" if row["resolved_ts"] else ("acknowledged" if row["acked_ts"] else "FIRING")
        by = f" by {row['acked_by']}" if row["acked_by"] else ""
        click.echo(f"{row['code']:>4}  {row['severity']:<8} {state:<12}{by}  {row['rule_id']}  "
                   f"fired {_iso(row['fired_ts'])}" + (f", resolved {_iso(row['resolved_ts'])}"
                                                        if row["resolved_ts"] else ""))


@alerts.command("ack")
@click.argument("code")
@config_option
@click.pass_context
def alerts_ack(ctx: click.Context, code: str, config_path: str | None) -> None:
    """Acknowledge an alert by its code, as a farmer's SMS reply would: its repeats and escalation stop.

    Example: edge alerts ack 17 -c /etc/edge/gateway.yaml
    """
    _ask_daemon(_load(config_path or ctx.obj), {"op": "ack_alert", "code": code})
    click.echo(f"alert {code} acknowledged")


@main.group()
def sms() -> None:
    """SMS transports.

    Example: edge sms test -c /etc/edge/gateway.yaml 09121234567
    """


@sms.command("test")
@config_option
@click.argument("number")
def sms_test(config_path: str | None, number: str) -> None:
    """Send one test message to NUMBER through each configured transport, in order, and report each outcome.

    Example: edge sms test -c /etc/edge/gateway.yaml 09121234567
    """
    from edge.gateway.alerts.numbers import canonical
    from edge.gateway.alerts.outbox import new_local_id
    from edge.gateway.alerts.service import open_transports, test_text
    from edge.gateway.alerts.transports.base import OutgoingSms

    config = _load(config_path)
    _setup_logging("warning")
    try:
        target = canonical(number, config.sms.country_code)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="NUMBER")
    transports = open_transports(config.sms, config.source)
    if not transports:
        raise EdgeError("no SMS transports are configured (sms.transports)")
    text = test_text(config, time.time())
    failed = False
    for transport in transports:
        try:
            result = transport.send(OutgoingSms(new_local_id(), target, text))
        except Exception as exc:  # a test reports every failure and goes on to the next transport
            result = None
            detail = f"{type(exc).__name__}: {exc}"
        finally:
            transport.close()
        outcome = result.outcome if result else "error"
        detail = result.detail if result else detail
        failed |= outcome != "accepted"
        click.echo(f"{transport.name}: {outcome}" + (f" ({detail})" if detail else ""))
    sys.exit(1 if failed else 0)
