"""Fast-forward a config on the simulated greenhouse: the daemon's sampler, rules, schedules and supervisor, driven
by a fake clock, so a day of control runs in seconds. For trying rules before a season, and for the docs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from edge.errors import ConfigError
from edge.gateway.buffer import Buffer
from edge.gateway.clock import FakeClock
from edge.gateway.control.supervisor import LatestReadings, Supervisor
from edge.gateway.derived import derivers
from edge.gateway.hardware import open_hardware
from edge.gateway.sampler import Sampler, SensorSlot


class SimulatedClock(FakeClock):
    """A fake clock whose timers (a motor vent's stop after its travel time, its reverse delay) fire at their moment
    of simulated time as :meth:`advance` passes it: a real ``threading.Timer`` would fire hours of simulated time
    late, leaving a vent moving (or waiting to reverse) for all that time."""

    def __init__(self, start: float):
        super().__init__(start=start)
        self._timers: list[_Timer] = []

    def timer(self, delay: float, action: Callable[[], object]) -> "_Timer":
        return _Timer(self, self.monotonic() + delay, action)

    def advance(self, seconds: float) -> None:
        end = self.monotonic() + seconds
        while due := [t for t in self._timers if t.at <= end]:
            timer = min(due, key=lambda t: t.at)
            super().advance(max(0.0, timer.at - self.monotonic()))
            self._timers.remove(timer)
            timer.action()
        super().advance(end - self.monotonic())


class _Timer:
    """What ``threading.Timer`` offers that the drivers use: ``daemon``, ``start()``, ``cancel()``."""

    def __init__(self, clock: SimulatedClock, at: float, action: Callable[[], object]):
        self.clock, self.at, self.action, self.daemon = clock, at, action, True

    def start(self) -> None:
        self.clock._timers.append(self)

    def cancel(self) -> None:
        if self in self.clock._timers:
            self.clock._timers.remove(self)


@dataclass
class Hour:
    """One simulated hour: the climate the model had and how long each output was on."""

    start: datetime
    outside: list[float] = field(default_factory=list)
    inside: list[float] = field(default_factory=list)
    humidity: list[float] = field(default_factory=list)
    soil: dict[str, float] = field(default_factory=dict)
    on_minutes: dict[str, float] = field(default_factory=dict)


def simulate(config, start: float, hours: float, step: float = 10.0) -> Iterator[Hour]:
    """Run ``config`` (simulated backend) from ``start`` (UTC seconds) for ``hours``; yield each hour's summary."""
    if config.hardware.backend != "simulated":
        raise ConfigError([f"{config.source}: hardware.backend must be simulated to simulate"])
    clock = SimulatedClock(start)
    tz = ZoneInfo(config.gateway.timezone)
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        buffer, _ = Buffer.open(Path(tmp) / "simulate.db", now=start, boot_id="simulate")
        hardware = open_hardware(config, clock)
        try:
            latest = LatestReadings()
            supervisor = Supervisor(config, hardware.actuators, buffer, clock, latest)
            slots = [SensorSlot(hardware.sensors[s.id], s.interval, dict(s.plausible)) for s in config.sensors]
            sampler = Sampler(slots, buffer, clock, listeners=[latest], derive=derivers(config))
            model = hardware.simulation
            hour: Hour | None = None
            for i in range(int(hours * 3600 / step)):
                elapsed = i * step
                for interval in sampler.groups:
                    if elapsed % interval < step:
                        sampler.run_round(interval)
                supervisor.evaluate()
                state = model.state()
                if elapsed % 3600 == 0:
                    if hour is not None:
                        yield hour
                    hour = Hour(datetime.fromtimestamp(clock.time(), tz),
                                on_minutes=dict.fromkeys(hardware.actuators, 0.0))
                hour.outside.append(state.outside_temperature)
                hour.inside.append(state.air_temperature)
                hour.humidity.append(state.humidity)
                hour.soil = dict(state.soil_moisture)
                for actuator_id, actuator in hardware.actuators.items():
                    hour.on_minutes[actuator_id] += actuator.value * step / 60
                clock.advance(step)
            if hour is not None:
                yield hour
        finally:
            hardware.close()
            buffer.close()


def table(hours: Iterator[Hour], actuators: list[str]) -> Iterator[str]:
    """The summary as a Markdown table, one row per hour."""
    heads = ["local time", "outside °C", "inside °C min/mean/max", "RH %", "soil %"] + [f"{a} min" for a in actuators]
    yield "| " + " | ".join(heads) + " |"
    yield "|" + "---|" * len(heads)
    for h in hours:
        mean = sum(h.inside) / len(h.inside)
        cells = [h.start.strftime("%m-%d %H:%M"), f"{sum(h.outside) / len(h.outside):.1f}",
                 f"{min(h.inside):.1f} / {mean:.1f} / {max(h.inside):.1f}",
                 f"{sum(h.humidity) / len(h.humidity):.0f}", " ".join(f"{v:.0f}" for v in h.soil.values())]
        cells += [f"{h.on_minutes[a]:.0f}" for a in actuators]
        yield "| " + " | ".join(cells) + " |"
