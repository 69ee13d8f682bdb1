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
from edge.gateway import agronomy
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
    vpd: list[float] = field(default_factory=list)  # kPa of the air, as the model has it
    dew_margin: list[float] = field(default_factory=list)  # K: the cover's inner surface above the air's dew point


def simulate(config, start: float, hours: float, step: float = 10.0,
             observe: Callable[[float, object, dict], None] | None = None) -> Iterator[Hour]:
    """Run ``config`` (simulated backend) from ``start`` (UTC seconds) for ``hours``; yield each hour's summary.
    ``observe(time, state, actuators)``, if given, sees every step (the model's state and the outputs)."""
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
                if observe is not None:
                    observe(clock.time(), state, hardware.actuators)
                if elapsed % 3600 == 0:
                    if hour is not None:
                        yield hour
                    hour = Hour(datetime.fromtimestamp(clock.time(), tz),
                                on_minutes=dict.fromkeys(hardware.actuators, 0.0))
                hour.outside.append(state.outside_temperature)
                hour.inside.append(state.air_temperature)
                hour.humidity.append(state.humidity)
                hour.soil = dict(state.soil_moisture)
                hour.vpd.append(agronomy.vpd(state.air_temperature, state.humidity))
                hour.dew_margin.append(agronomy.dew_margin(state.cover_temperature, state.air_temperature,
                                                           max(state.humidity, 0.1)))
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


#: The VPD band a greenhouse crop is comfortable in, kPa (0.45-1.25: Prenger and Ling 2001, Ohio State University
#: Extension fact sheet AEX-804, "Greenhouse condensation control: understanding and using vapor pressure deficit").
VPD_BAND = (0.45, 1.25)


@dataclass(frozen=True)
class Summary:
    """What a grower judges a day of climate control by."""

    hours: float
    in_band: float  # hours with the air's VPD in VPD_BAND
    condensation: float  # hours with the cover's inner surface at or below the air's dew point
    water: float  # litres: irrigation and fog
    heating: float  # hours of heating at full power (a heater half on for an hour counts half)


def summarize(hours: list[Hour], config) -> Summary:
    """Totals of an ``edge simulate`` run: hours in the VPD band, condensation hours, water used, heating hours."""
    from edge.gateway.hardware.sim import MIST_RATE

    sim = config.hardware.simulation
    kinds = {a.id: a for a in config.actuators}
    zones = max(1, len({a.zone for a in config.actuators if a.kind == "pump"} | {
        getattr(s, "zone", None) for s in config.sensors if getattr(s, "zone", None)}))
    in_band = condensation = water = heating = 0.0
    for h in hours:
        share = 1.0 / len(h.vpd) if h.vpd else 0.0
        in_band += share * sum(VPD_BAND[0] <= v <= VPD_BAND[1] for v in h.vpd)
        condensation += share * sum(m <= 0.0 for m in h.dew_margin)
        for actuator_id, minutes in h.on_minutes.items():
            kind = kinds[actuator_id].kind
            if kind == "pump":  # mm/h over the zone's share of the floor: litres
                water += minutes / 60.0 * sim.irrigation_rate * sim.floor_area / zones
            elif kind == "mister":
                water += minutes * 60.0 * MIST_RATE * sim.floor_area
            elif kind == "heater":
                heating += minutes / 60.0
    return Summary(float(len(hours)), in_band, condensation, water, heating)


def summary_table(rows: list[tuple[str, Summary]]) -> Iterator[str]:
    """Summaries as a Markdown table, one row per run."""
    low, high = VPD_BAND
    yield (f"| run | hours | VPD {low:g}-{high:g} kPa, h | condensation on the cover, h | water, l | "
           "heating, h |")
    yield "|---|---|---|---|---|---|"
    for label, s in rows:
        yield (f"| {label} | {s.hours:.0f} | {s.in_band:.1f} | {s.condensation:.1f} | {s.water:.0f} | "
               f"{s.heating:.1f} |")
