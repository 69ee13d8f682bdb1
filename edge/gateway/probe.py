"""What ``edge probe`` tells an installer: does each configured sensor answer, what does it read, and what else is
on the buses (I2C addresses and 1-Wire probes nobody configured: a typo in an address, a forgotten probe).

Only sensors are opened, never actuators, so probing cannot switch an output. With the simulated backend the
simulated sensors are read and no bus is scanned. The host interfaces (I2C buses, sysfs roots, sleep) are injectable,
so the tests probe the fakes of ``edge.gateway.hardware.fakes`` and ``tests/data``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from edge.gateway import hardware
from edge.gateway.hardware.base import HardwareContext, Sample
from edge.gateway.hardware.common import Host
from edge.gateway.hardware.i2c import NO_ANSWER, I2CConfig, i2c_hint, open_bus
from edge.gateway.hardware.onewire import Ds18b20Config
from edge.gateway.sampler import SensorSlot, judge

log = logging.getLogger(__name__)

#: The Pi's I2C bus on header pins 3 and 5, always scanned with the gpio backend.
DEFAULT_I2C_BUS = 1
#: The 7-bit addresses i2cdetect scans; 0x00-0x02 and 0x78-0x7F are reserved.
SCAN_RANGE = range(0x03, 0x78)
#: Like i2cdetect, read a byte here instead of a quick write, which some EEPROMs take as a write command.
READ_TO_SCAN = frozenset(range(0x30, 0x38)) | frozenset(range(0x50, 0x60))


@dataclass(frozen=True)
class SensorAnswer:
    """One configured sensor as probed: its samples (judged like the sampler does) and any raw details."""

    id: str
    type: str
    samples: tuple[Sample, ...]
    details: dict[str, str] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return any(sample.quality != "error" for sample in self.samples)


@dataclass(frozen=True)
class BusScan:
    """The devices found on one bus, and the ones of them no sensor is configured for."""

    name: str
    found: tuple[str, ...] = ()
    configured: frozenset[str] = frozenset()
    problem: str | None = None

    @property
    def unconfigured(self) -> tuple[str, ...]:
        return tuple(device for device in self.found if device not in self.configured)


@dataclass(frozen=True)
class ProbeReport:
    sensors: tuple[SensorAnswer, ...]
    buses: tuple[BusScan, ...]

    @property
    def ok(self) -> bool:
        """Every configured sensor answered."""
        return all(sensor.answered for sensor in self.sensors)


def probe(config: Any, clock: Any = None, host: Host | None = None) -> ProbeReport:
    """Open and read every configured sensor once, then (gpio backend) scan the I2C and 1-Wire buses.

    A bus that is not there is reported (with the overlay that enables it) only when a sensor is configured on it:
    a Pi without 1-Wire probes needs no ``dtoverlay=w1-gpio``. One that is there is always listed, so a device
    wired but not configured shows."""
    from edge.gateway.clock import Clock

    clock = clock if clock is not None else Clock(config.clock.trust)
    host = host if host is not None else Host()
    ctx = _context(config, clock, host)
    sensors = tuple(probe_sensor(cfg, ctx) for cfg in config.sensors)
    if config.hardware.backend == "simulated":
        return ProbeReport(sensors, ())
    buses = sorted({DEFAULT_I2C_BUS} | {cfg.bus for cfg in config.sensors if isinstance(cfg, I2CConfig)})
    scans = [scan_i2c_bus(host, number, {f"0x{cfg.address:02x}" for cfg in config.sensors
                                         if isinstance(cfg, I2CConfig) and cfg.bus == number})
             for number in buses]
    scans.append(scan_onewire(host, {cfg.device for cfg in config.sensors if isinstance(cfg, Ds18b20Config)}))
    return ProbeReport(sensors, tuple(scan for scan in scans if scan.configured or not scan.problem))


def _context(config: Any, clock: Any, host: Host) -> HardwareContext:
    simulation = None
    if config.hardware.backend == "simulated":
        from edge.gateway.hardware.sim import GreenhouseModel

        simulation = GreenhouseModel(config.hardware.simulation, clock, latitude=config.gateway.latitude,
                                     longitude=config.gateway.longitude)
    pin_factory = hardware.pin_factory_for(config.hardware.backend, config.hardware.pin_factory)
    return HardwareContext(clock=clock, pin_factory=pin_factory, simulation=simulation, extras={"host": host})


def probe_sensor(cfg: Any, ctx: HardwareContext) -> SensorAnswer:
    """Open one sensor, read it once, close it. A sensor that cannot even be opened answers with its error."""
    try:
        sensor = hardware.sensor_driver(cfg.type).from_config(cfg, ctx)
    except Exception as exc:  # an installer tool reports every failure and goes on to the next sensor
        log.debug("opening sensor %s failed", cfg.id, exc_info=True)
        return SensorAnswer(cfg.id, cfg.type, tuple(Sample.error(q, f"cannot open: {exc}") for q in cfg.quantities()))
    try:
        slot = SensorSlot(sensor, cfg.interval, dict(cfg.plausible))
        samples = tuple(judge(sample, slot.limit(sample.quantity)) for sample in sensor.read())
        return SensorAnswer(cfg.id, cfg.type, samples, dict(getattr(sensor, "details", {})))
    finally:
        sensor.close()


def scan_i2c(bus: Any) -> list[int]:
    """Addresses that acknowledge, found the way ``i2cdetect -y`` does (quick write, or a read in EEPROM ranges)."""
    found = []
    for address in SCAN_RANGE:
        try:
            if address in READ_TO_SCAN:
                bus.read(address, 1)
            else:
                bus.write(address, b"")
        except OSError as exc:
            if exc.errno in NO_ANSWER:
                continue
            raise
        found.append(address)
    return found


def scan_i2c_bus(host: Host, number: int, configured: set[str]) -> BusScan:
    name = f"I2C bus {number}"
    bus = open_bus(host, number)
    try:
        found = tuple(f"0x{address:02x}" for address in scan_i2c(bus))
    except OSError as exc:
        return BusScan(name, configured=frozenset(configured), problem=i2c_hint(exc, number))
    finally:
        bus.close()
    return BusScan(name, found, frozenset(configured))


def scan_onewire(host: Host, configured: set[str]) -> BusScan:
    """The slaves the kernel's w1 master lists (every directory but ``w1_bus_master*``)."""
    if not host.w1_root.is_dir():
        return BusScan("1-Wire", configured=frozenset(configured),
                       problem=f"no 1-Wire bus ({host.w1_root} does not exist): add dtoverlay=w1-gpio")
    found = sorted(p.name for p in host.w1_root.iterdir() if not p.name.startswith("w1_bus_master"))
    return BusScan("1-Wire", tuple(found), frozenset(configured))


def describe_sample(sample: Sample) -> str:
    """``temperature 23.1 °C``, ``humidity error (reason)`` or ``temperature 85 °C [implausible: reason]``."""
    if sample.quality == "error":
        return f"{sample.quantity} error ({sample.reason})"
    text = f"{sample.quantity} {round(sample.value, 2):g} {sample.unit}"
    return text if sample.quality == "good" else f"{text} [{sample.quality}: {sample.reason}]"


def format_report(report: ProbeReport) -> list[str]:
    """The report as lines for a terminal."""
    lines = []
    for sensor in report.sensors:
        lines.append(f"{sensor.id} ({sensor.type}): {'answers' if sensor.answered else 'NO ANSWER'}")
        lines.extend(f"    {describe_sample(sample)}" for sample in sensor.samples)
        lines.extend(f"    {name}: {value}" for name, value in sensor.details.items())
    for bus in report.buses:
        if bus.problem:
            lines.append(f"{bus.name}: {bus.problem}")
            continue
        lines.append(f"{bus.name}: {', '.join(bus.found) or 'nothing found'}")
        if bus.unconfigured:
            lines.append(f"    present but not configured: {', '.join(bus.unconfigured)}")
    return lines
