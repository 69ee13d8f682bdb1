"""The alert service as the daemon sees it: built from the config, a sampler listener, scheduler jobs, close().

    service = build(config, buffer, clock)
    feed = AlertFeed(service.listener, service.observe_switch)   # edge.gateway.daemon: the alerts' own thread
    Sampler(..., listeners=[feed]); supervisor.on_switch.append(feed.switch)
    for job, seconds, job_id in service.jobs(): scheduler.add_job(job, "interval", seconds=seconds, id=job_id)
    Sync(..., on_link=service.observe_link)
    service.close()

The supervisor tells the service of every switch as it makes it (``observe_switch``, after its lock is released;
the daemon hands each switch to the alerts' own thread, in order with the readings, so the thread that switched never
waits for the engine); nothing polls the buffer's events. Jobs, each short: ``alerts-tick`` (1 s: time-based
conditions, repeats, escalation, dispatch), ``sms-outbox`` (5 s:
retries), ``sms-replies`` (read replies), ``alerts-prune`` (forget old rows). A freshly queued SMS does not wait for
the outbox job: it wakes a one-thread sender, so sending (the only thing that waits on a network) never holds up the
sampler or the tick, and a slow gateway delays only other SMS.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge.contract.events import ActuatorChange
from edge.errors import ConfigError
from edge.gateway.alerts.conditions import ActuatorInfo, SensorInfo, Watch, compile_watches
from edge.gateway.alerts.engine import Engine, Person, Settings
from edge.gateway.alerts.messages import Style, compose_test
from edge.gateway.alerts.names import names_of
from edge.gateway.alerts.numbers import canonical
from edge.gateway.alerts.outbox import Outbox, new_local_id
from edge.gateway.alerts.store import Store
from edge.gateway.alerts.transports import transport_class
from edge.gateway.alerts.transports.base import Transport
from edge.gateway.hardware.base import UNITS

log = logging.getLogger(__name__)

TICK_INTERVAL = 1.0  # time-based conditions: a for-duration ends at most this late
FLUSH_INTERVAL = 5.0  # retries; a freshly queued SMS is sent at once by the sender thread
PRUNE_INTERVAL = 3600.0
KEEP = 30 * 86400.0  # resolved incidents and sent messages are kept this long


class AlertService:
    """``send_at_once``: a queued SMS wakes a one-thread sender right away (the daemon); without it, only the
    ``sms-outbox`` job sends (tests that drive the jobs by hand on a fake clock)."""

    def __init__(self, engine: Engine, outbox: Outbox, clock: Any, receive_every: float = 30.0,
                 send_at_once: bool = True):
        self.engine = engine
        self.outbox = outbox
        self.clock = clock
        self.receive_every = receive_every
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sms-sender") if send_at_once else None
        self._kicked = threading.Event()
        if self._sender is not None:
            outbox.on_wake = self._kick

    def _kick(self) -> None:
        """Something was queued: have the sender thread flush (once, however many kicks arrive meanwhile)."""
        if not self._kicked.is_set():
            self._kicked.set()
            self._sender.submit(self._send_now)

    def _send_now(self) -> None:
        self._kicked.clear()
        self.flush()

    @property
    def listener(self) -> Callable[[Sequence[Any]], None]:
        """For ``Sampler(listeners=[...])``."""
        return self.engine.observe_readings

    def observe_link(self, up: bool, now: float | None = None) -> None:
        self.outbox.set_link(up)
        self.engine.observe_link(up, now)

    def observe_switch(self, actuator_id: str, change: ActuatorChange, ts: float) -> None:
        """For ``Supervisor.on_switch``: an output was switched at ``ts``."""
        self.engine.observe_event(ActuatorChange.KIND, actuator_id, change.to_data(), ts)

    def observe_event(self, kind: str, source: str, data: dict[str, Any] | None = None,
                      now: float | None = None) -> None:
        self.engine.observe_event(kind, source, data, now)

    def handle_reply(self, number: str, text: str) -> str:
        return self.engine.handle_reply(number, text)

    # ---------------------------------------------------------------------------------------------------- jobs

    def tick(self) -> None:
        self.engine.tick()

    def flush(self) -> None:
        for attempt in self.outbox.flush(self.clock.time()):
            if attempt.outcome == "no_credit":
                self.engine.observe_event("sms.no_credit", attempt.transport)
            elif attempt.outcome == "refused":
                self.engine.observe_event("sms.refused", attempt.transport)
            elif attempt.outcome == "accepted":
                self.engine.observe_event("sms.sent", attempt.transport)

    def receive(self) -> None:
        for transport in self.outbox.transports:
            if transport.needs_uplink and not self.outbox.link_up:
                continue  # no use asking an HTTP inbox while the uplink is down
            for sms in transport.receive():
                self.engine.handle_reply(sms.number, sms.text)

    def prune(self) -> None:
        self.engine.store.prune(self.clock.time() - KEEP)

    def jobs(self) -> list[tuple[Callable[[], None], float, str]]:
        """``(callable, interval_seconds, job_id)`` for the daemon's scheduler; none when alerts are off."""
        if not self.engine.people:
            return []
        return [(self.tick, TICK_INTERVAL, "alerts-tick"), (self.flush, FLUSH_INTERVAL, "sms-outbox"),
                (self.receive, self.receive_every, "sms-replies"), (self.prune, PRUNE_INTERVAL, "alerts-prune")]

    def close(self) -> None:
        if self._sender is not None:  # waits for a send in flight (bounded by its transport's timeout)
            self._sender.shutdown(wait=True, cancel_futures=True)
        self.outbox.close()


# ----------------------------------------------------------------------------------------------------- building


def read_secret(value: Any, file: Path | None, where: str) -> str | None:
    """A secret from the config (``${VAR}`` already substituted) or from its file; never logged."""
    if value is not None:
        secret = value.get_secret_value().strip()
    elif file is not None:
        try:
            secret = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError([f"{where}_file: cannot read {file}: {exc.strerror or exc}"]) from None
    else:
        return None
    if not secret:
        raise ConfigError([f"{where}: is empty"])
    return secret


def open_transports(sms: Any, source: str, **extra: Any) -> list[Transport]:
    transports = []
    for index, cfg in enumerate(sms.transports):
        where = f"{source}: sms.transports[{index}]"
        if cfg.type == "kavenegar":
            secret = read_secret(cfg.api_key, cfg.api_key_file, f"{where}.api_key")
        elif cfg.type == "http":
            secret = read_secret(cfg.secret, cfg.secret_file, f"{where}.secret")
        else:
            secret = None
        cls = transport_class(cfg.type)
        kwargs = {"country": sms.country_code} if cfg.type != "console" else {}
        if cfg.type in ("kavenegar", "http") and "http" in extra:
            kwargs["http"] = extra["http"]
        transports.append(cls.from_config(cfg, secret, **kwargs))
    return transports


def buffer_size(path: Path) -> Callable[[], float | None]:
    def size() -> float | None:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(f"{path}{suffix}")
            except OSError:
                pass
        return float(total)

    return size


def test_text(config: Any, now: float) -> str:
    """What ``edge sms test`` sends: the greenhouse by its name, in the alerts' language."""
    names = names_of(config)
    language = config.alerts.language
    return compose_test(Style(language, names.of_greenhouse(language), config.gateway.timezone, now, names=names))


def _unclean_start(buffer: Any) -> bool:
    epochs = buffer.epochs()
    return len(epochs) >= 2 and epochs[-2]["stopped_ts"] is None


def build_service(config: Any, buffer: Any, clock: Any, *, transports: Sequence[Transport] | None = None,
                  http: Any = None, local_ids: Callable[[], str] = new_local_id,
                  send_at_once: bool = True) -> AlertService:
    """Assemble the alert service of ``config``; ``transports`` (or ``http``, an httpx transport) replace the
    configured ones in tests. Raises :class:`ConfigError` for what only the whole config can tell."""
    alerts, sms = config.alerts, config.sms
    if alerts.recipients and not sms.transports and transports is None:
        raise ConfigError([f"{config.source}: alerts.recipients: there are recipients but no sms.transports"])
    sensors = {s.id: SensorInfo(s.interval, s.quantities, s.name) for s in config.sources()}
    actuators = {a.id: ActuatorInfo(a.kind, (a.feedback.sensor, a.feedback.quantity) if a.feedback else None, a.name)
                 for a in config.actuators}
    try:
        watches = compile_watches(alerts.rules, sensors, actuators, UNITS, restart_key=str(buffer.epoch),
                                  buffer_budget=getattr(config.buffer, "max_size", None))
    except ValueError as exc:
        raise ConfigError([f"{config.source}: {exc}"]) from None
    extra = {"http": http} if http is not None else {}
    chosen = list(transports) if transports is not None else open_transports(sms, config.source, **extra)
    watches += [Watch(f"~credit:{t.name}", "~credit", "sms_credit", "warning", subject=t.name)
                for t in chosen if t.needs_uplink]
    watches += [Watch(f"~account:{t.name}", "~account", "sms_refused", "warning", subject=t.name)
                for t in chosen if t.needs_uplink]
    people = [Person(canonical(r.number, sms.country_code), r.name, r.role, r.language or alerts.language)
              for r in alerts.recipients]
    quiet = alerts.quiet_hours
    settings = Settings(
        greenhouse=config.gateway.name or config.gateway.id, timezone=config.gateway.timezone,
        group_window=alerts.group_window, repeat=tuple(alerts.repeat), escalate_after=alerts.escalate_after,
        quiet_start=quiet.start if quiet else None, quiet_end=quiet.end if quiet else None,
        per_hour=alerts.caps.per_hour, per_day=alerts.caps.per_day, max_segments=alerts.max_segments,
        country=sms.country_code, names=names_of(config), help_every=alerts.replies.help_every,
        replies_per_hour=alerts.replies.per_hour)
    outbox = Outbox(buffer, chosen, retry_initial=sms.retry_initial, retry_max=sms.retry_max,
                    same_provider_for=sms.same_provider_for, expire_after=sms.expire_after, local_ids=local_ids)
    engine = Engine(watches=watches, people=people, store=Store(buffer), outbox=outbox, clock=clock,
                    settings=settings, sensors=sensors, units=UNITS, buffer_size=buffer_size(Path(buffer.path)),
                    unclean_start=_unclean_start(buffer))
    if people:
        log.info("alerts: %d watches, %d recipients, transports %s", len(watches), len(people),
                 ", ".join(t.name for t in chosen) or "none")
    return AlertService(engine, outbox, clock, sms.receive_every, send_at_once)
