"""The composition root of the gateway: build every part from the config, wire them, run, stop safely.

No logic lives here: each part is built and handed what it needs. The order matters and is the point of this file:
the buffer's new epoch is on disk before any reading; actuators are off before anything can switch them; on stop the
scheduler finishes its running jobs, outputs go to their safe state and the buffer records a clean stop.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from datetime import datetime, timezone

from edge import __version__
from edge.config import GatewayConfig
from edge.gateway.alerts import build as build_alerts
from edge.gateway.buffer import Buffer
from edge.gateway.clock import Clock
from edge.gateway.control.supervisor import LatestReadings, Refused, Supervisor, socket_handler
from edge.gateway.control_socket import ControlServer
from edge.gateway.hardware import Hardware, open_hardware
from edge.gateway.notify import sd_notify, watchdog_interval
from edge.gateway.sampler import Sampler, SensorSlot
from edge.gateway.sync import Sync

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 3600.0
BUDGET_INTERVAL = 60.0
#: Seconds a job may be late, beyond twice its interval, before the watchdog calls the daemon unhealthy.
WATCHDOG_GRACE = 1.0
#: Seconds the watchdog's buffer check waits for SQLite's write lock (writes in progress take milliseconds).
BUFFER_WRITE_TIMEOUT = 2.0


class StopRequest(threading.Event):
    """Set by SIGTERM/SIGINT; ``reason`` names the signal. May be created before the daemon, so that a signal that
    arrives while it is still loading stops it cleanly instead of killing it half-started."""

    reason = "duration elapsed"

    def request(self, signum: int, _frame=None) -> None:
        self.reason = signal.Signals(signum).name
        self.set()

    def install(self) -> dict:
        """Handle SIGTERM and SIGINT; return the previous handlers."""
        return {sig: signal.signal(sig, self.request) for sig in (signal.SIGTERM, signal.SIGINT)}


class Daemon:
    def __init__(self, config: GatewayConfig, clock: Clock | None = None, stopping: StopRequest | None = None):
        self.config = config
        self.clock = clock or Clock(config.clock.trust)
        self.stopping = stopping or StopRequest()  # may already be set by a signal that came during start-up
        self.buffer: Buffer | None = None
        self.hardware: Hardware | None = None
        self.sampler: Sampler | None = None
        self.supervisor: Supervisor | None = None
        self.control_server: ControlServer | None = None
        self.sync: Sync | None = None
        self.alerts = None  # edge.gateway.alerts.service.AlertService
        self.scheduler = None
        self._control_ran = 0.0  # monotonic time the control job last finished
        self._status = "starting"  # systemd's STATUS= line while healthy
        self._unhealthy = False

    # ----------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        cfg = self.config
        now = self.clock.time()
        self.buffer, report = Buffer.open(cfg.buffer.path, now=now, boot_id=self.clock.boot_id)
        previous = {None: "none", True: "clean", False: "unclean"}[report.previous_epoch_clean]
        self.buffer.append_event("daemon.start", "daemon", {
            "version": __version__, "epoch": report.epoch, "previous_stop": previous,
            "clock_synced": self.clock.is_synced(),
            "intervals": {s.id: s.interval for s in cfg.sensors},  # the data center's coverage counts from these
        }, ts=now)
        if previous == "unclean":
            log.warning("the previous run (epoch %d) did not stop cleanly", report.epoch - 1)
        self.alerts = build_alerts(cfg, self.buffer, self.clock)

        self.hardware = open_hardware(cfg, self.clock)
        self.hardware.safe_state()
        latest = LatestReadings()
        self.supervisor = Supervisor(cfg, self.hardware.actuators, self.buffer, self.clock, latest)
        slots = [SensorSlot(self.hardware.sensors[s.id], s.interval, dict(s.plausible)) for s in cfg.sensors]
        self.sampler = Sampler(slots, self.buffer, self.clock,
                               listeners=[latest, self._after_round, self.alerts.listener])

        self.scheduler = BackgroundScheduler(timezone=timezone.utc, executors={
            "default": {"type": "threadpool", "max_workers": 4}})
        self.sampler.schedule(self.scheduler)
        self.scheduler.add_job(self.maintain, "interval", seconds=MAINTENANCE_INTERVAL, id="maintenance",
                               next_run_time=datetime.now(timezone.utc), coalesce=True, max_instances=1)
        self._control_ran = self.clock.monotonic()
        self.scheduler.add_job(self.control, "interval", seconds=cfg.control.interval, id="control",
                               coalesce=True, max_instances=1)
        ping = watchdog_interval()
        if ping:  # late rather than skipped when every worker is busy; a hung scheduler sends nothing at all
            self.scheduler.add_job(self.watchdog, "interval", seconds=ping, id="watchdog", coalesce=True,
                                   max_instances=1, misfire_grace_time=max(1, int(ping)))
        self.scheduler.add_job(self.enforce_budget, "interval", seconds=BUDGET_INTERVAL, id="budget",
                               coalesce=True, max_instances=1)
        for job, seconds, job_id in self.alerts.jobs():
            self.scheduler.add_job(job, "interval", seconds=seconds, id=job_id, coalesce=True, max_instances=1)
        self.sync = Sync(cfg.sync, cfg.gateway.id, self.buffer, self.clock, on_command=self._remote_command,
                         on_link=self.alerts.observe_link)
        self.scheduler.start()
        self.sync.start()
        self.control_server = ControlServer(cfg.control.socket, self._control_handler(), cfg.control.socket_group)
        self.control_server.start()
        log.info("gateway %s started: epoch %d, %d sensors, %d actuators, %s backend, buffer %s",
                 cfg.gateway.id, report.epoch, len(cfg.sensors), len(cfg.actuators), cfg.hardware.backend,
                 cfg.buffer.path)
        self._status = f"epoch {report.epoch}, sampling {len(cfg.sensors)} sensors"
        sd_notify(f"READY=1\nSTATUS={self._status}")

    def stop(self, reason: str) -> None:
        if self.scheduler is not None and self.scheduler.get_job("watchdog"):
            self.scheduler.remove_job("watchdog")  # no WATCHDOG=1 after STOPPING=1
        sd_notify("STOPPING=1")
        log.info("stopping (%s)", reason)
        if self.control_server is not None:
            self.control_server.stop()
        if self.sync is not None:
            self.sync.stop()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=True)  # running rounds finish and commit
        if self.supervisor is not None:
            self.supervisor.shutdown()
        if self.alerts is not None:
            self.alerts.close()
        if self.hardware is not None:
            self.hardware.safe_state()
            self.hardware.close()
        if self.buffer is not None:
            now = self.clock.time()
            self.buffer.append_event("daemon.stop", "daemon", {"reason": reason}, ts=now)
            self.buffer.mark_clean_stop(now)
            self.buffer.close()
        log.info("stopped cleanly")

    def run(self, duration: float | None = None) -> int:
        """Run in the foreground until SIGTERM/SIGINT or until ``duration`` seconds have passed."""
        previous = self.stopping.install()
        try:
            try:
                self.start()
            except Exception as exc:
                self.stop(f"start failed: {exc}")
                raise
            stopped = self.stopping.wait(duration)
            self.stop(self.stopping.reason if stopped else "duration elapsed")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    # --------------------------------------------------------------------------------------------------- jobs

    def _control_handler(self):
        """Control-socket requests: actuators to the supervisor, alert acknowledgements to the alert engine."""
        from edge.gateway.control_socket import RequestError

        actuators = socket_handler(self.supervisor)

        def handle(request: dict, who: str) -> dict:
            if request.get("op") != "ack_alert":
                return actuators(request, who)
            code = request.get("code")
            if not isinstance(code, str) or not code.strip():
                raise RequestError('ack_alert needs a "code" string')
            if not self.alerts.engine.acknowledge(code.strip(), f"cli:{who}"):
                raise RequestError(f"no open, unacknowledged alert has code {code.strip()!r}")
            return {"acked": code.strip()}

        return handle

    def _after_round(self, _readings) -> None:
        """Rules act on fresh readings at once, not at the next control tick."""
        self.supervisor.evaluate()

    def maintain(self) -> None:
        """Hourly: drop acknowledged rows past the retention."""
        cutoff = self.clock.time() - self.config.buffer.retention
        deleted = self.buffer.prune(cutoff)
        if deleted:
            log.info("pruned %d acknowledged rows older than the retention", deleted)

    def enforce_budget(self) -> None:
        """Every minute: keep the buffer within its disk budget (gaps are recorded as events)."""
        self.buffer.enforce_budget(self.config.buffer.max_size, self.clock.time())

    def _remote_command(self, command) -> dict:
        """An actuate command from the data center (its fields already strictly typed by the protocol), to the
        supervisor like any manual command: the same bounds and limits, the same refusals."""
        if command.op != "actuate":
            raise ValueError(f"unknown op {command.op!r}")
        args = command.args
        try:
            return self.supervisor.command(args["actuator"], args["action"], args.get("for"), f"remote:{command.id}")
        except Refused as exc:
            raise Refused(f"refused: {exc}") from None

    def control(self) -> None:
        """Every control.interval: schedules, rules and safety limits (max_on needs this to keep running)."""
        self.supervisor.evaluate()
        self._control_ran = self.clock.monotonic()

    def health(self) -> list[str]:
        """What keeps the daemon from being healthy; empty while it is: sampling, control, a writable buffer, and an
        uplink thread that is alive and making progress. The scheduler's liveness needs no check here: this runs in
        a scheduler job, so a dead or wedged scheduler sends no ping at all."""
        problems = [f"sampling every {interval:g}s: " + ("no round completed yet" if age == math.inf
                                                         else f"last round completed {age:.0f}s ago")
                    for interval, age in self.sampler.stale(WATCHDOG_GRACE).items()]
        control_age = self.clock.monotonic() - self._control_ran
        if control_age > 2 * self.config.control.interval + WATCHDOG_GRACE:
            problems.append(f"control (schedules, rules, safety limits): last evaluated {control_age:.0f}s ago")
        problem = self.buffer.write_problem(BUFFER_WRITE_TIMEOUT)
        if problem:
            problems.append(f"the buffer does not accept writes ({problem})")
        problem = self.sync.problem() if self.sync is not None else None
        if problem:  # a dead or wedged uplink: the backlog would grow until someone noticed
            problems.append(problem)
        return problems

    def watchdog(self) -> None:
        """Ping systemd's watchdog only while healthy, so that a hung daemon is restarted (and its outputs made safe
        by the unit's ExecStopPost) instead of sitting there."""
        problems = self.health()
        if not problems:
            if self._unhealthy:
                log.warning("healthy again; the watchdog is fed")
                self._unhealthy = False
                sd_notify(f"STATUS={self._status}")
            sd_notify("WATCHDOG=1")
            return
        log.error("unhealthy, withholding the watchdog ping so systemd restarts the daemon: %s", "; ".join(problems))
        if not self._unhealthy:
            self._unhealthy = True
            sd_notify(f"STATUS=unhealthy: {'; '.join(problems)}")
