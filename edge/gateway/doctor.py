"""``edge doctor``: one screen an installer can read. Each line is a check, ``OK``, ``WARN``, ``FAIL`` or ``SKIP`` (not
configured here), and every WARN or FAIL carries a short hint: what to look at, or the command that shows more.

The checks: the config is valid; the clock is synced; the buffer passes SQLite's quick_check and fits its budget; the
buffer's file system has room; the broker accepts the configured credentials (TCP, then an MQTT CONNECT that leaves
the daemon's broker session as it was; while the daemon runs, its own link state instead of a second login); each SMS
transport's host or device is there; the sensors answer (``edge probe`` when the daemon is stopped, else the daemon's
latest readings, so no bus is shared); and the state of the systemd unit. Secrets are read to use them, never printed.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.durations import counted, format_age as _age
from edge.errors import BufferFull, ConfigError, EdgeError

UNIT = "edge-gateway.service"
#: Share of ``buffer.max_size`` from which the buffer is reported as nearly full.
BUDGET_WARN = 0.8
#: Below this much free space SQLite may fail to write at all.
DISK_FAIL_BYTES = 64 * 10**6
DAMAGED_HINT = ("the daemon moves a damaged buffer aside at its next start (kept, never deleted) and starts a fresh "
                "one: sudo systemctl restart edge-gateway")
FULL_HINT = ("the disk is full: the daemon keeps controlling the outputs but stores no reading. Free space "
             "(journalctl --vacuum-size=50M, apt-get clean); sampling resumes by itself, with a gap record of what "
             "was lost")
#: A sensor whose latest reading is older than this many of its intervals is reported stale.
STALE_INTERVALS = 3


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK | WARN | FAIL | SKIP
    summary: str
    hint: str | None = None
    lines: tuple[str, ...] = ()  # details under the summary (one per failing sensor, ...)


@dataclass(frozen=True)
class Report:
    source: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Nothing failed (warnings allowed)."""
        return not any(check.status == "FAIL" for check in self.checks)


def diagnose(config_path: str | os.PathLike[str] | None, *, env: Mapping[str, str] | None = None,
             timeout: float = 5.0, now: float | None = None,
             systemctl: Callable[[str, str], str] | None = None, http: Any = None) -> Report:
    """Run every check on a gateway config. ``systemctl(verb, unit)`` answers ``is-active``/``is-enabled``, ``http``
    (an httpx transport) stands in for the SMS providers (tests)."""
    from edge.gateway.config import DEMO_CONFIG, load_config

    source = str(config_path if config_path is not None else DEMO_CONFIG)
    try:
        config = load_config(config_path, env)
    except ConfigError as exc:
        return Report(source, (Check("config", "FAIL", counted(len(exc.problems), "problem"),
                                     f"fix them, then: edge check -c {source}", tuple(exc.problems)),))
    checks = [Check("config", "OK", f"gateway {config.gateway.id}: {counted(len(config.sensors), 'sensor')}, "
                                    f"{counted(len(config.actuators), 'actuator')}, {config.hardware.backend} backend")]
    checks.append(check_clock(config))
    buffer_check, daemon_running = check_buffer(config, now)
    checks += [buffer_check, check_disk(config), check_broker(config, timeout, daemon_running)]
    checks += check_sms(config, timeout, http)
    checks.append(check_sensors(config, daemon_running, now))
    checks.append(check_service(systemctl))
    return Report(source, tuple(checks))


#: Columns a report line may take: a terminal of 100 columns shows every line whole.
WIDTH = 100
INDENT = " " * 15  # under the summary, past "FAIL  sensors  "
#: ANSI colours of the statuses that need a look, when the report goes to a terminal.
COLOURS = {"FAIL": "\x1b[1;31m", "WARN": "\x1b[33m"}


def format_report(report: Report, colour: bool = False) -> list[str]:
    """The report as lines of at most :data:`WIDTH` columns (a longer line is wrapped onto indented lines; only a
    single word longer than that, such as a long path, runs past). ``colour``: FAIL and WARN in colour."""
    lines = [f"edge doctor: {report.source}"]
    for check in report.checks:
        status = f"{COLOURS[check.status]}{check.status}\x1b[0m" if colour and check.status in COLOURS else check.status
        # The status, the name and the summary's first word share the first line, even when that word is a path too
        # long for it: a line that reads "WARN  buffer" and nothing else would be cut from what it is about.
        first, *rest = _wrap(check.summary, INDENT, first=f"{check.status:<5} {check.name:<8} ")
        lines.append(status + first[len(check.status):])
        lines.extend(rest)
        for line in check.lines:
            lines.extend(_wrap(line, INDENT + "  ", first=INDENT))
        if check.hint and check.status in ("WARN", "FAIL"):
            lines.extend(_wrap(f"-> {check.hint}", INDENT + "   ", first=INDENT))
    failed = sum(check.status == "FAIL" for check in report.checks)
    warned = sum(check.status == "WARN" for check in report.checks)
    lines.append(f"{failed} failed, {counted(warned, 'warning')}" if failed or warned else "all good")
    return lines


def _wrap(text: str, indent: str, first: str = "") -> list[str]:
    """``text`` in lines of WIDTH columns, the first indented by ``first`` and the others by ``indent``; a word longer
    than a line (a deep path) stays whole on its own line, indented like the others."""
    return textwrap.wrap(text, WIDTH, initial_indent=first, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False) or [first + text]


# ------------------------------------------------------------------------------------------------------- checks


def check_clock(config: Any) -> Check:
    from edge.gateway.clock import Clock

    trust = config.clock.trust
    if trust != "auto":
        return Check("clock", "OK" if trust == "synced" else "WARN", f"clock.trust: {trust} (set in the config)",
                     "readings are flagged unsynced until clock.trust is auto or synced")
    if Clock(trust).is_synced():
        return Check("clock", "OK", "synced")
    return Check("clock", "WARN", "not synced yet: readings are flagged and re-timed once it is",
                 "timedatectl shows it; NTP needs UDP port 123 to a time server (NTP= in "
                 "/etc/systemd/timesyncd.conf)")


def check_buffer(config: Any, now: float | None = None) -> tuple[Check, bool]:
    """The buffer's integrity and size against its budget; also whether a daemon owns it right now. Ages are
    measured from ``now``, by default the time once the buffer was read (never before: a reading the daemon commits
    meanwhile would look younger than zero)."""
    from edge.gateway.buffer import Buffer

    path = Path(config.buffer.path).absolute()
    budget = config.buffer.max_size
    if not path.exists():
        return Check("buffer", "WARN", f"{path}: no buffer yet", "the daemon creates it at its first start"), False
    # Not root: a failure is most likely permissions (the buffer and its -shm file belong to edge, mode 0640).
    hint = DAMAGED_HINT if os.geteuid() == 0 else _access_hint(path)
    try:
        buffer = Buffer.reader(path)
    except BufferFull as exc:
        return Check("buffer", "FAIL", str(exc), FULL_HINT), False
    except EdgeError as exc:
        return Check("buffer", "FAIL", str(exc), hint), False
    try:
        running = buffer.owned_by_a_running_daemon()
        try:
            rows = buffer.quick_check()
            used = buffer.used_bytes()
            counts = buffer.counts("readings")
        except Exception as exc:  # sqlite3.DatabaseError, OSError: report, whatever it is
            return Check("buffer", "FAIL", f"{path}: {exc}", hint), running
    finally:
        buffer.close()
    now = time.time() if now is None else now
    if rows != ["ok"]:
        return Check("buffer", "FAIL", f"{path}: damaged ({'; '.join(rows[:3])})", DAMAGED_HINT), running
    share = used / budget
    oldest = counts["oldest_pending_ts"]
    summary = (f"{path}: intact, {_human(used)} of its {_human(budget)} budget ({share:.0%}); "
               f"{counted(counts['pending'], 'reading')} not yet acknowledged"
               + (f", oldest {_age(now - oldest)} old" if oldest is not None else ""))
    if share >= BUDGET_WARN:
        return Check("buffer", "WARN", summary,
                     "past the budget the oldest unacknowledged readings are dropped (gap records): restore the "
                     "uplink (see the broker line) or raise buffer.max_size if the card has room"), running
    return Check("buffer", "OK", summary), running


def check_disk(config: Any) -> Check:
    from edge.gateway.buffer import LOW_SPACE

    path = Path(config.buffer.path).absolute().parent
    while not path.exists():
        path = path.parent
    stats = os.statvfs(path)
    free, total = stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize
    buffer_file = Path(config.buffer.path).absolute()
    used = sum(p.stat().st_size for p in (buffer_file, Path(f"{buffer_file}-wal")) if p.exists())
    room = max(0, config.buffer.max_size - used)
    summary = f"{path}: {_human(free)} free of {_human(total)}"
    if free < LOW_SPACE:
        return Check("disk", "FAIL", summary, FULL_HINT)
    if free < DISK_FAIL_BYTES:
        return Check("disk", "FAIL", summary, "the buffer cannot grow: free space (journalctl --vacuum-size=50M, "
                                              "apt-get clean) or move the buffer")
    if free < room:
        return Check("disk", "WARN", summary + f"; the buffer may still grow by {_human(room)}",
                     "lower buffer.max_size below the free space, or free space")
    return Check("disk", "OK", summary)


def check_broker(config: Any, timeout: float, daemon_running: bool = False) -> Check:
    """TCP and an MQTT CONNECT with the configured credentials; the password is read, sent, and never shown.

    The broker binds each session to its account (``use_username_as_clientid``), so a second login as the gateway
    would take over the daemon's connection. While the daemon runs, the doctor therefore only checks that the broker
    answers on TCP and reports the daemon's own link state; when it is stopped, it logs in without disturbing the
    session the daemon will resume (see :func:`_mqtt_connect`)."""
    sync = config.sync
    if not sync.url:
        return Check("broker", "SKIP", "no sync.url: the gateway only buffers")
    checks = [_check_one_broker(config, url, timeout, daemon_running) for url in sync.urls]
    failed = [check for check in checks if check.status != "OK"]
    if len(checks) == 1 or failed:
        return failed[0] if failed else checks[0]  # a list of brokers: the first that is not OK
    return Check("broker", "OK", f"all {len(checks)} brokers answer", lines=tuple(c.summary for c in checks))


def _check_one_broker(config: Any, url: str, timeout: float, daemon_running: bool) -> Check:
    sync = config.sync
    username = sync.username or config.gateway.id
    try:
        login = _login(sync, url, username)
    except ValueError as exc:
        return Check("broker", "FAIL", str(exc), "check sync.url, sync.cert_file and sync.key_file")
    where, host, port = login.where, login.host, login.port
    try:
        login.password()  # read here first, so that a file that cannot be read is named
    except OSError as exc:
        return Check("broker", "FAIL", f"cannot read sync.password_file {sync.password_file}: {exc.strerror}",
                     _access_hint(sync.password_file))
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return Check("broker", "FAIL", f"{where}: cannot resolve {host} ({exc.strerror})",
                     "check the name in sync.url and DNS (resolvectl status), or use the broker's IP address")
    try:
        if daemon_running:
            with socket.create_connection((host, port), timeout=timeout):
                pass
            refused = None
        else:
            refused = _mqtt_connect(login, timeout)
    except ssl.SSLError as exc:
        return Check("broker", "FAIL", f"{where}: TLS failed ({exc.reason or exc})",
                     "check sync.ca_file and the broker's certificate; a clock that is not synced also fails TLS")
    except ConnectionRefusedError:
        return Check("broker", "FAIL", f"{where}: connection refused",
                     f"is the broker running and listening on port {port}? try: nc -vz {host} {port}")
    except (TimeoutError, socket.timeout):
        return Check("broker", "FAIL", f"{where}: no answer within {timeout:g}s",
                     "a firewall or the uplink: ping the data center; check the fiber router")
    except OSError as exc:
        return Check("broker", "FAIL", f"{where}: {exc.strerror or exc}", "check the network and sync.url")
    if refused:
        return Check("broker", "FAIL", f"{where}: the broker refused {username!r}: {refused}", _LOGIN_HINT)
    if daemon_running:
        return _daemon_link(config, where, username)
    return Check("broker", "OK", f"{where}: connected as {username!r} ({sync.mqtt_version})")


_LOGIN_HINT = ("check sync.username (default: the gateway id) and the password in sync.password_file against the "
               "broker's password file (mosquitto_passwd)")


def _daemon_link(config: Any, where: str, username: str) -> Check:
    """The running daemon's own view of its link (it logs in; the doctor does not log in a second time)."""
    from edge.gateway.buffer import Buffer
    from edge.gateway.sync.state import SyncState

    try:
        buffer = Buffer.reader(config.buffer.path)
        try:
            state = SyncState(buffer, migrate=False).link()
        finally:
            buffer.close()
    except Exception as exc:  # sqlite3.DatabaseError, EdgeError, OSError: the buffer line reports the cause
        return Check("broker", "WARN", f"{where}: answers; cannot read the daemon's link state ({exc})",
                     "edge status shows the link")
    error = state.error
    if state.link == "up":
        return Check("broker", "OK", f"{where}: the running daemon is connected as {username!r} "
                                     "(not logged in a second time)")
    if error and "refused" in error:
        return Check("broker", "FAIL", f"{where}: the running daemon is refused: {error}", _LOGIN_HINT)
    return Check("broker", "WARN", f"{where}: answers, but the running daemon is not connected"
                 + (f" ({error})" if error else ""), "journalctl -u edge-gateway -n 50 says why; edge status")


#: As the daemon's uplink (edge.gateway.sync) asks for its session, so a doctor login never shortens it.
GATEWAY_SESSION_EXPIRY = 86400


def _login(sync: Any, url: str, username: str) -> Any:
    from edge import mqtt

    return mqtt.BrokerLogin(url, sync.mqtt_version, username, sync.password_file, sync.ca_file, sync.cert_file,
                            sync.key_file)


def _mqtt_connect(login: Any, timeout: float) -> str | None:
    """None when the broker accepts the login, else its reason. Raises OSError for network failures.

    The broker names the session after the account, so this login resumes the (stopped) daemon's session. It
    leaves that session as it found it: no clean start, the daemon's session expiry, no subscription, and manual
    acknowledgement that never acknowledges, so a command queued for the gateway is not consumed: the broker sends
    it again when the daemon resumes the session."""
    from edge import mqtt

    session = mqtt.Session(f"edge-doctor-{os.getpid()}", max(5, int(timeout) * 2), clean_start=False,
                           session_expiry=GATEWAY_SESSION_EXPIRY, manual_ack=True,
                           receive_maximum=1)  # at most one queued message comes our way (and stays unacknowledged)
    client = mqtt.build_client(login, session)
    client.connect_timeout = timeout
    answer: dict[str, Any] = {}
    client.on_connect = lambda _c, _u, _f, reason_code, _p=None: answer.setdefault("reason", reason_code)
    try:
        client.connect(login.host, login.port, **mqtt.connect_args(login, session))
        deadline = time.monotonic() + timeout
        while "reason" not in answer:
            if time.monotonic() > deadline:
                raise TimeoutError
            rc = client.loop(timeout=0.1)
            if rc != 0 and "reason" not in answer:
                return f"connection closed ({mqtt.error_string(rc)})"
        reason = answer["reason"]
        return str(reason) if reason.is_failure else None
    finally:
        try:
            client.disconnect()
            client.loop(timeout=0.1)  # sends the DISCONNECT and closes the socket
        except (OSError, ValueError):
            pass


def check_sms(config: Any, timeout: float, http: Any = None) -> list[Check]:
    """Each transport: key files, the device or host; Kavenegar's key is tried (``account/info``, sends nothing);
    and what the daemon's outbox found about each account. ``http``: an httpx transport (tests)."""
    transports = config.sms.transports
    if not transports:
        has_recipients = bool(config.alerts.recipients)
        return [Check("sms", "WARN" if has_recipients else "SKIP", "no SMS transport configured"
                      + (": alerts are recorded but not sent" if has_recipients else ""),
                      "add sms.transports (config/gateway.example.yaml shows each kind)")]
    known = _transport_health(config)
    return [_with_daemons_view(_check_transport(transport, timeout, http), known.get(transport.name))
            for transport in transports]


def _transport_health(config: Any) -> dict[str, dict[str, Any]]:
    """What the daemon's outbox last found about each transport's account (empty without a buffer)."""
    from edge.gateway.alerts.outbox import transport_health
    from edge.gateway.buffer import Buffer

    if not Path(config.buffer.path).exists():
        return {}
    try:
        buffer = Buffer.reader(config.buffer.path)
    except EdgeError:
        return {}  # the buffer line says why
    try:
        return transport_health(buffer)
    except Exception:  # sqlite3.DatabaseError: the buffer line reports a damaged file
        return {}
    finally:
        buffer.close()


def _with_daemons_view(check: Check, known: dict[str, Any] | None) -> Check:
    """A transport the daemon found refusing its account FAILs even when the doctor's own check passes (an invalid
    sender line shows only when sending; a key fixed in the file is used only after a restart)."""
    if check.status == "FAIL" or not known or known["state"] == "ok":
        return check
    label = check.summary.split(":", 1)[0]
    since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(known["since_ts"]))
    what = "has no credit" if known["state"] == "no_credit" else "is refused"
    hint = ("top up the account; alerts go through the other transports meanwhile" if known["state"] == "no_credit"
            else "check the API key and sms.transports[].sender (alerts need a service line); the daemon reads "
                 "keys at start: sudo systemctl restart edge-gateway once fixed")
    return Check("sms", "FAIL", f"{label}: the daemon's sending {what} since {since}: {known['detail']}", hint,
                 (f"doctor's own check: {check.summary.split(': ', 1)[-1]}",))


def _check_transport(transport: Any, timeout: float, http: Any = None) -> Check:
    kind = transport.type
    label = f"{transport.name} ({kind})" if transport.name != kind else kind
    secret_file = getattr(transport, "api_key_file", None) or getattr(transport, "secret_file", None)
    if secret_file is not None and not Path(secret_file).exists():
        return Check("sms", "FAIL", f"{label}: no key file {secret_file}",
                     "put the provider's API key in it: one line, owner root, group edge, mode 0640")
    if secret_file is not None and not os.access(secret_file, os.R_OK):
        return Check("sms", "FAIL", f"{label}: cannot read the key file {secret_file}", _access_hint(secret_file))
    if secret_file is not None and not Path(secret_file).read_text().strip():
        return Check("sms", "FAIL", f"{label}: the key file {secret_file} is empty",
                     "put the provider's API key in it (the daemon refuses to start without it)")
    if kind == "console":
        return Check("sms", "OK", f"{label}: messages go to the log only")
    if kind == "modem":
        port = Path(transport.port)
        if not port.exists():
            return Check("sms", "FAIL", f"{label}: no device {port}",
                         "is the modem plugged in and powered? ls -l /dev/serial/by-id/ shows what is there")
        if not os.access(port, os.R_OK | os.W_OK):
            return Check("sms", "WARN", f"{label}: {port} present, not writable by this user",
                         "the service user edge is in group dialout; run edge doctor with sudo")
        return Check("sms", "OK", f"{label}: {port} present (not opened: the daemon may be using it)")
    if kind == "kavenegar":
        return _check_kavenegar(transport, label, timeout, http)
    parts = urlsplit(transport.url)
    host = parts.hostname
    if not host or "{" in host:
        return Check("sms", "SKIP", f"{label}: the host is a template; not checked")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror as exc:
        return Check("sms", "FAIL", f"{label}: cannot resolve {host} ({exc.strerror})",
                     "DNS or the uplink: resolvectl status; alerts fall back to the GSM modem if one is configured")
    except OSError as exc:
        return Check("sms", "FAIL", f"{label}: {host}:{port} unreachable ({exc.strerror or exc})",
                     "the uplink or a firewall; alerts fall back to the GSM modem if one is configured")
    return Check("sms", "OK", f"{label}: {host}:{port} reachable")


_FALLBACK = "alerts fall back to the other transports (the GSM modem) if one is configured"


def _check_kavenegar(transport: Any, label: str, timeout: float, http: Any) -> Check:
    """The key tried with ``account/info.json``: authenticated, sends nothing, says the credit left."""
    from edge.gateway.alerts.service import read_secret
    from edge.gateway.alerts.transports.kavenegar import KavenegarTransport

    try:
        key = read_secret(transport.api_key, transport.api_key_file, "api_key")
    except ConfigError as exc:
        return Check("sms", "FAIL", f"{label}: {exc.problems[0]}", "put the provider's API key there")
    if not key:
        return Check("sms", "FAIL", f"{label}: no API key", "set api_key: ${KAVENEGAR_API_KEY} or api_key_file")
    client = KavenegarTransport.from_config(transport.model_copy(update={"timeout": timeout}), key, http=http)
    try:
        answer = client.account()
    finally:
        client.close()
    host = urlsplit(transport.base_url).hostname
    if answer.outcome == "accepted":
        credit = "" if answer.credit is None else f", {answer.credit:,.0f} rials of credit"
        return Check("sms", "OK", f"{label}: {host} accepts the API key{credit} (nothing sent)")
    if answer.outcome == "refused":
        where = transport.api_key_file or "KAVENEGAR_API_KEY"
        return Check("sms", "FAIL", f"{label}: {host} refuses the API key: {answer.detail}",
                     f"copy the API key from the Kavenegar panel into {where}, then sudo systemctl restart "
                     f"edge-gateway; {_FALLBACK}")
    if answer.outcome == "no_credit":
        return Check("sms", "FAIL", f"{label}: {answer.detail}", f"top up the Kavenegar account; {_FALLBACK}")
    return Check("sms", "FAIL", f"{label}: {host} did not answer as expected ({answer.detail})",
                 f"the uplink or a firewall (edge sms test tries a real message); {_FALLBACK}")


def check_sensors(config: Any, daemon_running: bool, now: float | None = None) -> Check:
    if not config.sensors:
        return Check("sensors", "SKIP", "no sensors configured")
    if daemon_running:
        return _sensors_from_buffer(config, now)
    from edge.gateway.probe import describe_sample, probe

    report = probe(config)
    silent = [s for s in report.sensors if not s.answered]
    lines = [f"{s.id} ({s.type}): {describe_sample(s.samples[0])}" for s in silent]
    lines += [f"{bus.name}: {bus.problem}" for bus in report.buses if bus.problem]
    lines += [f"{bus.name}: present but not configured: {', '.join(bus.unconfigured)}"
              for bus in report.buses if not bus.problem and bus.unconfigured]
    summary = f"{len(report.sensors) - len(silent)} of {len(report.sensors)} answer (probed: the daemon is stopped)"
    if silent:
        return Check("sensors", "FAIL", summary, "edge probe shows every reading; docs/operations.md, Wiring",
                     tuple(lines))
    return Check("sensors", "OK", summary, lines=tuple(lines))


def _sensors_from_buffer(config: Any, now: float | None) -> Check:
    from edge.gateway.buffer import Buffer

    buffer = Buffer.reader(config.buffer.path)
    try:
        latest = buffer.latest(s.id for s in config.sensors)
    finally:
        buffer.close()
    now = time.time() if now is None else now  # after the query (see check_buffer)
    lines = []
    for sensor in config.sensors:
        rows = latest.get(sensor.id) or []
        if not rows:
            lines.append(f"{sensor.id}: no reading yet")
        elif now - rows[0]["ts"] > STALE_INTERVALS * sensor.interval:
            lines.append(f"{sensor.id}: last reading {_age(now - rows[0]['ts'])} old")
        elif all(row["quality"] == "error" for row in rows):
            lines.append(f"{sensor.id}: error ({rows[0]['reason']})")
    summary = (f"{len(config.sensors) - len(lines)} of {len(config.sensors)} report fresh readings (read by the "
               "running daemon)")
    if lines:
        return Check("sensors", "FAIL", summary, "edge status shows every reading; stop the daemon and run edge "
                                                 "probe to test the wiring", tuple(lines))
    return Check("sensors", "OK", summary)


def check_service(systemctl: Callable[[str, str], str] | None = None) -> Check:
    if systemctl is None:
        if not Path("/run/systemd/system").is_dir():
            return Check("service", "SKIP", "not managed by systemd (systemd is not running here)")
        systemctl = _systemctl
    active, enabled = systemctl("is-active", UNIT), systemctl("is-enabled", UNIT)
    if enabled in ("not-found", ""):
        return Check("service", "WARN", f"{UNIT} is not installed", "sudo bash scripts/install-gateway.sh")
    summary = f"{UNIT}: {active}, {enabled}"
    if active == "failed":
        return Check("service", "FAIL", summary, "journalctl -u edge-gateway -b -n 50 says why")
    if active != "active":
        return Check("service", "WARN", summary, "sudo systemctl start edge-gateway")
    if enabled != "enabled":
        return Check("service", "WARN", summary, "it will not start at boot: sudo systemctl enable edge-gateway")
    return Check("service", "OK", summary)


def _systemctl(verb: str, unit: str) -> str:
    try:
        done = subprocess.run(["systemctl", verb, unit], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() or ("not-found" if "not found" in done.stderr else "")


# ------------------------------------------------------------------------------------------------------ helpers


def _access_hint(path: Any) -> str:
    return f"run edge doctor with sudo (the file {path} is readable by root and group edge only)"


def _human(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"
