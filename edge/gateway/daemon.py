"""The composition root of the gateway: build every part from the config, wire them, run, stop safely.

No logic lives here: each part is built and handed what it needs. The order matters and is the point of this file:
the buffer's new epoch is on disk before any reading; actuators are off before anything can switch them; on stop the
scheduler finishes its running jobs, outputs go to their safe state and the buffer records a clean stop.

A full disk degrades the daemon, it never stops it: without room for the new epoch it starts anyway, controls the
outputs, stores no reading, and the ``storage`` job finishes the start (epoch, then alerts and uplink if they could
not read the buffer either) once there is room. Stopping tries every step whatever the others do.
"""

from __future__ import annotations

import functools
import logging
import math
import signal
import threading
import time
from collections import deque

from edge import __version__
from edge.contract.events import DaemonStart, DaemonStop
from edge.durations import counted
from edge.gateway.config import GatewayConfig
from edge.errors import BufferUnavailable, BufferWriteError
from edge.gateway.alerts import build as build_alerts
from edge.gateway.buffer import Buffer
from edge.gateway.clock import Clock
from edge.gateway.control import commands
from edge.gateway.control.supervisor import LatestReadings, Supervisor
from edge.gateway.control_socket import ControlServer
from edge.gateway.derived import derivers
from edge.gateway.hardware import Hardware, open_hardware
from edge.gateway.notify import sd_notify, watchdog_interval
from edge.gateway.sampler import Sampler, SensorSlot
from edge.gateway.scheduler import Scheduler
from edge.gateway.sync.uplink import Sync

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 3600.0
BUDGET_INTERVAL = 60.0
#: Seconds a job may be late, beyond twice its interval, before the watchdog calls the daemon unhealthy.
WATCHDOG_GRACE = 1.0
#: Seconds the watchdog's buffer check waits for SQLite's write lock (writes in progress take milliseconds).
BUFFER_WRITE_TIMEOUT = 2.0
#: Seconds between attempts to finish a start that had no room, and to store what waits for room.
STORAGE_INTERVAL = 5.0
#: The scheduler's pools: sampling (a worker per interval group), the watchdog (its own worker), and housekeeping
#: and alert jobs (sharing HOUSEKEEPING_WORKERS).
SAMPLING = "sampling"
WATCHDOG = "watchdog"
HOUSEKEEPING = "housekeeping"
HOUSEKEEPING_WORKERS = 3
#: Seconds a stop waits for the control thread's evaluation in hand before making the outputs safe anyway.
CONTROL_STOP_WAIT = 5.0
#: Seconds the main thread waits at most before it runs the handler of a signal another thread received.
SIGNAL_POLL = 0.5
#: Readings waiting for the alert engine at most (a wedged engine must not grow the daemon without bound).
MAX_ALERT_WAITING = 100_000


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

    def wait(self, timeout: float | None = None) -> bool:
        """As Event.wait, in waits of at most SIGNAL_POLL. A signal's Python handler runs only on the main thread,
        between two steps of Python code: when the kernel hands the signal to another thread (any thread may take
        it; under load one often does), a wait without a timeout on the main thread never wakes, and a SIGTERM went
        unheard until systemd's SIGKILL."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = SIGNAL_POLL if deadline is None else min(SIGNAL_POLL, deadline - time.monotonic())
            if left <= 0:
                return self.is_set()
            if super().wait(left):
                return True


class ControlWorker:
    """The control thread: the one place outputs are switched from (schedules, rules, safety limits), so their
    hardware I/O (a relay driver, a vent motor's run) holds up nothing else.

    ``wake()`` asks for an evaluation as soon as possible (each stored sampling round does: rules act on fresh
    readings at once); without wakes one runs every ``interval``. Evaluations never overlap, and wakes that come
    while one runs fold into one more evaluation after it, never a queue. ``run`` is expected to record its own
    success: a wedged evaluation is seen by the daemon's health check (control "last evaluated N s ago")."""

    def __init__(self, run, interval: float):
        self.run = run
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to end and wait for the evaluation in hand (bounded: a wedged output must not keep the
        other outputs from their safe state, which the daemon drives next)."""
        timeout = CONTROL_STOP_WAIT if timeout is None else timeout
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("stopping: the control thread is still inside an evaluation after %gs; going on", timeout)

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                self.run()
            except Exception:  # never the end of control: the next wake or interval tries again
                log.exception("control: an evaluation failed; trying again")


class AlertFeed:
    """What the alert engine observes, on a thread of its own (``alerts``): a sampling round hands its readings over
    and returns, and so does the supervisor with each switch (``switch``, one of its ``on_switch`` listeners), so the
    engine (its lock, its transactions, the SMS it queues) never holds up a round nor the control thread. What comes
    while the engine is busy is handed over at its next turn, in the order it came (readings of consecutive rounds
    together). At most ``MAX_ALERT_WAITING`` readings and switches wait; past that the oldest are dropped (said once
    in the log): the engine is wedged or far behind. Once stopped, the feed hands what comes (the outputs' switches
    of a stop) over at once, on the caller's thread."""

    def __init__(self, listener, on_switch=None):
        self.listener = listener  # a batch of readings
        self.on_switch = on_switch  # (actuator_id, change, ts) of one switch
        self._waiting: deque = deque()  # ("readings", reading) or ("switch", (actuator_id, change, ts))
        self._lock = threading.Lock()  # guards _waiting and _stopped only; nothing is called while it is held
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._stopped = False  # the thread has ended: hand over on the caller's thread
        self._dropped = 0
        self._thread = threading.Thread(target=self._loop, name="alerts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def __call__(self, readings) -> None:
        """A sampler listener: a round's readings."""
        self._hand([("readings", r) for r in readings])

    def switch(self, actuator_id: str, change, ts: float) -> None:
        """A ``Supervisor.on_switch`` listener: an output was switched."""
        self._hand([("switch", (actuator_id, change, ts))])

    def _hand(self, items: list) -> None:
        with self._lock:
            stopped = self._stopped
            if not stopped:
                self._waiting.extend(items)
                excess = len(self._waiting) - MAX_ALERT_WAITING
                for _ in range(max(0, excess)):
                    self._waiting.popleft()
        if stopped:
            self._deliver(items)
            return
        if excess > 0:
            if not self._dropped:
                log.warning("alerts: the engine is behind by more than %d readings and switches; the oldest are "
                            "skipped", MAX_ALERT_WAITING)
            self._dropped += excess
        self._ready.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Hand over what waits, then end (bounded: a wedged engine must not hold up the stop)."""
        self._stop.set()
        self._ready.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            return  # wedged: what comes next waits (and is dropped past the limit), it never blocks the stop
        with self._lock:
            self._stopped = True
            left = list(self._waiting)
            self._waiting.clear()
        self._deliver(left)

    def _loop(self) -> None:
        while True:
            self._ready.wait()
            self._ready.clear()
            with self._lock:
                batch = list(self._waiting)
                self._waiting.clear()
            self._deliver(batch)
            if self._stop.is_set():
                return

    def _deliver(self, batch: list) -> None:
        """Each switch on its own, the readings between two switches together, in order."""
        readings: list = []
        for kind, item in batch:
            if kind == "readings":
                readings.append(item)
                continue
            if readings:
                self._call(self.listener, (readings,), "a round's readings")
                readings = []
            if self.on_switch is not None:
                self._call(self.on_switch, item, f"{item[0]}'s switch")
        if readings:
            self._call(self.listener, (readings,), "a round's readings")

    @staticmethod
    def _call(listener, args: tuple, what: str) -> None:
        try:
            listener(*args)
        except BufferWriteError as exc:
            log.debug("alerts: %s observed, state not stored (%s)", what, exc)
        except Exception:  # never the end of the feed: the next round tries again
            log.exception("alerts: the engine failed on %s", what)


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
        self.control_worker: ControlWorker | None = None
        self.alert_feed: AlertFeed | None = None
        self._control_ran = 0.0  # monotonic time the control job last finished
        self._status = "starting"  # systemd's STATUS= line while healthy
        self._shown_status = None  # the STATUS= line last sent
        self._unhealthy = False
        self._notify_lock = threading.Lock()  # READY=1, the watchdog's lines and STOPPING=1 go out in that order
        self._ready = False
        self._stopping = False
        self._waiting_for: set[str] = set()  # parts not started yet for want of a readable buffer (no room)

    # ----------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        cfg = self.config
        now = self.clock.time()
        self.buffer, report = Buffer.open(cfg.buffer.path, now=now, boot_id=self.clock.boot_id,
                                          commit_every=cfg.buffer.commit_every)
        previous = "unknown" if report.epoch is None else \
            {None: "none", True: "clean", False: "unclean"}[report.previous_epoch_clean]
        self.buffer.append_event(DaemonStart.KIND, "daemon", DaemonStart(  # waits in memory until the epoch is on disk
            __version__, report.epoch, previous, self.clock.is_synced(),
            intervals={s.id: s.interval for s in cfg.sources()},  # the data center's coverage counts from these
            name=cfg.gateway.name,  # display names, for the data center's lists and charts
            names={d.id: d.name for d in (*cfg.sources(), *cfg.actuators) if d.name},
        ).to_data(), ts=now)
        if previous == "unclean":
            log.warning("the previous run (epoch %d) did not stop cleanly", report.epoch - 1)
        self.alerts = self._build("alerts", lambda: build_alerts(cfg, self.buffer, self.clock))

        self.hardware = open_hardware(cfg, self.clock)
        self.hardware.safe_state()
        latest = LatestReadings()
        self.supervisor = Supervisor(cfg, self.hardware.actuators, self.buffer, self.clock, latest)
        # The alerts learn of switches as they happen, on the alerts' thread (in order with the readings): the
        # thread that switched (control, a command's) never waits for the alert engine.
        self.alert_feed = AlertFeed(self._alert_readings, self._alert_switch)
        self.supervisor.on_switch.append(self.alert_feed.switch)
        slots = [SensorSlot(self.hardware.sensors[s.id], s.interval, dict(s.plausible)) for s in cfg.sensors]
        derive = derivers(cfg)
        for deriver in derive:  # the local day's sums go on from the last derived readings stored
            try:
                deriver.restore(self.buffer.latest([deriver.id]).get(deriver.id, ()))
            except Exception as exc:
                log.warning("%s: the day's sums start afresh (%s)", deriver.id, exc)
        self.sampler = Sampler(slots, self.buffer, self.clock,
                               listeners=[latest, self._after_round, self.alert_feed], derive=derive)

        # Who runs what (docs/architecture.md, "Threads and locks"): sampling rounds have pool workers of their
        # own, one per interval group, so nothing else ever waits for a sensor and no sensor waits for anything
        # else; the watchdog has one worker, so a slow housekeeping job never delays its ping; housekeeping (the
        # disk budget and its WAL checkpoint, pruning, storage) and the alert and SMS jobs share the rest. Control
        # runs on its own thread (ControlWorker), so an output's hardware I/O never holds up a sampling round.
        self.scheduler = Scheduler({SAMPLING: max(1, len(self.sampler.groups)), WATCHDOG: 1,
                                    HOUSEKEEPING: HOUSEKEEPING_WORKERS})
        self.sampler.schedule(self.scheduler, SAMPLING)
        self.scheduler.add(self._tolerant(self.maintain), MAINTENANCE_INTERVAL, id="maintenance", first=0,
                           pool=HOUSEKEEPING)
        self._control_ran = self.clock.monotonic()
        self.control_worker = ControlWorker(self.control, cfg.control.interval)
        self.alert_feed.start()
        ping = watchdog_interval()
        if ping:  # late rather than skipped when its worker is busy; a hung scheduler sends nothing at all
            self.scheduler.add(self.watchdog, ping, id="watchdog", grace=max(1, int(ping)), pool=WATCHDOG)
        self.scheduler.add(self._tolerant(self.enforce_budget), BUDGET_INTERVAL, id="budget", pool=HOUSEKEEPING)
        self.scheduler.add(self.storage, STORAGE_INTERVAL, id="storage", pool=HOUSEKEEPING)
        self._add_alert_jobs()
        self.sync = self._build("uplink", self._make_sync)
        self.control_worker.start()
        self.scheduler.start()
        if self.sync is not None:
            self.sync.start()
        self.control_server = ControlServer(cfg.control.socket, self._local_command, cfg.control.socket_group)
        self.control_server.start()
        log.info("gateway %s started: epoch %s, %d sensors, %d actuators, %s backend, buffer %s",
                 cfg.gateway.id, report.epoch or "not started yet", len(cfg.sensors),
                 len(cfg.actuators), cfg.hardware.backend, cfg.buffer.path)
        self._status = (f"epoch {report.epoch or 'not started yet'}, "
                        f"sampling {counted(len(cfg.sensors), 'sensor')}")
        shown = self.degraded() or self._status
        with self._notify_lock:  # nothing of the watchdog's before READY=1 (its first run may come first)
            self._shown_status = shown
            sd_notify(f"READY=1\nSTATUS={shown}")
            self._ready = True

    def _build(self, what: str, make):
        """A part that reads the buffer as it is built (alerts, uplink): None, and built later by the ``storage``
        job, while the buffer cannot be read for lack of room, or has no tables yet (a fresh file whose start the
        file system refused: no room, read-only, a lock)."""
        try:
            part = make()
        except BufferUnavailable as exc:
            if what not in self._waiting_for:
                log.warning("%s not started: the buffer cannot be read (%s); starting it once it can be",
                            what, exc)
            self._waiting_for.add(what)
            return None
        if what in self._waiting_for:
            log.warning("%s started", what)
            self._waiting_for.discard(what)
        return part

    def _make_sync(self) -> Sync:
        return Sync(self.config.sync, self.config.gateway.id, self.buffer, self.clock,
                    on_command=self._remote_command, on_link=self._observe_link)

    def _add_alert_jobs(self) -> None:
        for job, seconds, job_id in self.alerts.jobs() if self.alerts is not None else ():
            self.scheduler.add(self._tolerant(job), seconds, id=job_id, pool=HOUSEKEEPING)

    def _alert_readings(self, readings) -> None:
        if self.alerts is not None:
            self.alerts.listener(readings)

    def _alert_switch(self, actuator_id: str, change, ts: float) -> None:
        if self.alerts is not None:
            self.alerts.observe_switch(actuator_id, change, ts)

    def _observe_link(self, up: bool, now: float | None = None) -> None:
        if self.alerts is not None:
            self.alerts.observe_link(up, now)

    @staticmethod
    def _tolerant(job):
        """A scheduler job whose buffer writes may be refused (a full disk: the buffer logs that once) without a
        traceback at every run; it simply tries again at its next run."""
        @functools.wraps(job)
        def run() -> None:
            try:
                job()
            except BufferWriteError as exc:
                log.debug("%s: not stored (%s)", getattr(job, "__name__", job), exc)
        return run

    def stop(self, reason: str) -> bool:
        """Stop every part, each tried whatever the others did; True when every output reached its safe state."""
        if self.scheduler is not None:
            self.scheduler.remove("watchdog")  # no more runs of it; one in hand sends nothing now (below)
        with self._notify_lock:  # no WATCHDOG=1 nor STATUS= after STOPPING=1
            self._stopping = True
            sd_notify("STOPPING=1")
        log.info("stopping (%s)", reason)
        if self.control_server is not None:
            self._step("control socket", self.control_server.stop)
        if self.sync is not None:
            self._step("uplink", self.sync.stop)
        if self.scheduler is not None and self.scheduler.running:
            self._step("scheduler", lambda: self.scheduler.shutdown(wait=True))  # running rounds finish and commit
        if self.control_worker is not None:  # after the rounds that wake it; before the outputs go safe
            self._step("control", self.control_worker.stop)
        if self.alert_feed is not None:  # after the rounds that feed it; before the alerts close
            self._step("alert feed", self.alert_feed.stop)
        failed: list[str] = []
        if self.supervisor is not None:
            failed = self._step("outputs (supervisor)", self.supervisor.shutdown) or []
        if self.alerts is not None:
            self._step("alerts", self.alerts.close)
        if self.hardware is not None:  # every output again, the last word on which ones are safe
            last_word = self._step("outputs", self.hardware.safe_state)
            failed = failed if last_word is None else last_word
            self._step("hardware", self.hardware.close)
        if self.buffer is not None:
            now = self.clock.time()
            self._step("stop event", lambda: self.buffer.append_event(
                DaemonStop.KIND, "daemon", DaemonStop(reason, tuple(failed)).to_data(), ts=now))
            self._step("clean-stop mark", lambda: self.buffer.mark_clean_stop(now))
            self._step("buffer", self.buffer.close)
        if failed:
            log.error("stopped, but outputs %s are NOT in their safe state: check them now", ", ".join(failed))
        else:
            log.info("stopped cleanly")
        return not failed

    @staticmethod
    def _step(what: str, step):
        try:
            return step()
        except BufferWriteError as exc:
            log.warning("stopping: %s not stored (%s)", what, exc)
        except Exception:
            log.exception("stopping: %s failed; going on", what)
        return None

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
            safe = self.stop(self.stopping.reason if stopped else "duration elapsed")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0 if safe else 1  # an output left unsafe shows as a failed stop (systemd: the unit failed)

    # --------------------------------------------------------------------------------------------------- jobs

    def _local_command(self, request: dict, user: str) -> dict:
        """A control-socket request: read by the commands' parser, carried out by the supervisor or the alerts."""
        command = self.supervisor.commands.parse(request, user)
        if isinstance(command, commands.Held):
            return {"held": self.buffer.held_readings(command.sensors, command.since)}
        answer = commands.serve(command, self.supervisor, self.alerts)
        if isinstance(command, commands.Status):  # readings held for the commit window: not in the file yet
            answer["held"] = self.buffer.held_latest()
        return answer

    def _after_round(self, _readings) -> None:
        """Rules act on fresh readings at once, not at the next control tick: the round wakes the control thread
        (and returns at once; the evaluation and any switching happen there)."""
        self.control_worker.wake()

    def maintain(self) -> None:
        """Hourly: drop acknowledged rows past the retention (none to drop before the epoch is on disk: a fresh
        file may not even have its tables)."""
        if not self.buffer.started:
            return
        cutoff = self.clock.time() - self.config.buffer.retention
        deleted = self.buffer.prune(cutoff)
        if deleted:
            log.info("pruned %d acknowledged rows older than the retention", deleted)

    def enforce_budget(self) -> None:
        """Every minute: keep the buffer within its disk budget (gaps are recorded as events)."""
        self.buffer.enforce_budget(self.config.buffer.max_size, self.clock.time())

    def _remote_command(self, command) -> dict:
        """A downlink command (its wire form already strictly typed by the protocol), read by the same parser as a
        local one and carried out alike: the same bounds and limits, the same refusals."""
        return self.supervisor.execute(self.supervisor.commands.remote(command))

    def control(self) -> None:
        """On the control thread, after each sampling round and at least every control.interval: schedules, rules
        and safety limits (max_on needs this to keep running)."""
        try:
            self.supervisor.evaluate()
        except BufferWriteError as exc:  # outputs were switched; only a record is missing (the buffer logged why)
            log.debug("control: not stored (%s)", exc)
        self._control_ran = self.clock.monotonic()

    def storage(self) -> None:
        """Every STORAGE_INTERVAL: finish a start that had no room (the new epoch, then the parts that read the
        buffer as they start), store what waits for room (gap records, events kept in memory), and commit the
        readings held for the commit window once it is over."""
        if not self.buffer.started:
            report = self.buffer.resume(self.clock.time())
            if report.epoch is None:
                return
            log.warning("buffer: epoch %d started; readings are stored again", report.epoch)
            self._status = f"epoch {report.epoch}, sampling {counted(len(self.config.sensors), 'sensor')}"
            if report.previous_epoch_clean is False:
                log.warning("the previous run (epoch %d) did not stop cleanly", report.epoch - 1)
        if self.alerts is None:
            self.alerts = self._build("alerts", lambda: build_alerts(self.config, self.buffer, self.clock))
            self._add_alert_jobs()
        if self.sync is None:
            self.sync = self._build("uplink", self._make_sync)
            if self.sync is not None:
                self.sync.start()
        self.buffer.flush()
        try:
            self.buffer.commit_due()  # the commit window is kept when no round comes to commit it
        except BufferWriteError as exc:  # the held readings are counted for their gap record
            log.debug("held readings not committed: %s", exc)

    def degraded(self) -> str | None:
        """Why the daemon runs degraded (a full disk: readings not stored), for systemd's STATUS= line; else None."""
        buffer = self.buffer
        if buffer is None or (buffer.refused_since is None and buffer.started):
            return None
        waiting = buffer.waiting()
        since = buffer.refused_since or time.time()
        why = "disk full" if buffer.out_of_room() else f"buffer refuses writes ({buffer.refusal})"
        return (f"degraded: {why} since {time.strftime('%H:%M:%S', time.gmtime(since))} UTC; "
                f"{counted(waiting['unstored_readings'], 'reading')} not stored, "
                f"{counted(waiting['deferred_events'], 'event')} waiting; "
                f"outputs under control")

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
        if problem and not self.buffer.out_of_room():  # a full disk is degraded, not hung: a restart cures nothing
            problems.append(f"the buffer does not accept writes ({problem})")
        problem = self.sync.problem() if self.sync is not None else None
        if problem:  # a dead or wedged uplink: the backlog would grow until someone noticed
            problems.append(problem)
        return problems

    def watchdog(self) -> None:
        """Ping systemd's watchdog only while healthy, so that a hung daemon is restarted (and its outputs made safe
        by the unit's ExecStopPost) instead of sitting there."""
        problems = self.health()
        status = None if problems else self.degraded() or self._status  # the buffer's lock: not under ours
        with self._notify_lock:  # held only to send: a stop waits for no check
            if not self._ready or self._stopping:
                return  # systemd hears READY=1 first and STOPPING=1 last
            self._notify_health(problems, status)

    def _notify_health(self, problems: list[str], status: str | None) -> None:
        if not problems:
            if self._unhealthy:
                log.warning("healthy again; the watchdog is fed")
                self._unhealthy = False
            if status != self._shown_status:
                sd_notify(f"STATUS={status}")
                self._shown_status = status
            sd_notify("WATCHDOG=1")
            return
        log.error("unhealthy, withholding the watchdog ping so systemd restarts the daemon: %s", "; ".join(problems))
        if not self._unhealthy:
            self._unhealthy = True
            self._shown_status = f"unhealthy: {'; '.join(problems)}"
            sd_notify(f"STATUS={self._shown_status}")
