"""Polls every sensor on its own interval, judges what it read, and stores each round in one transaction.

Sensors with the same interval form one group, read by one scheduler job: a *sampling round*. Every reading is
timestamped right after its sensor answered (UTC), flagged when the wall clock is not yet synced, and checked against
the physically possible range of its quantity. A failed read becomes ``quality="error"`` with no value: never a copy
of the last good value.

Every reading is the contract's :class:`~edge.contract.protocol.Reading`, built without a ``seq``; the buffer numbers
a round in the transaction that stores it, and the listeners get the round's readings with those numbers (still
without, when the round could not be stored).

A round whose readings the buffer cannot store (a full disk) still reaches the listeners, so rules and alerts go on
seeing fresh values; the buffer counts what it could not store and records the gap once there is room.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from edge.contract.events import ClockSynced
from edge.contract.protocol import Reading
from edge.errors import BufferWriteError
from edge.gateway.buffer import CLOCK_SYNCED, CLOCK_UNSYNCED, Buffer
from edge.gateway.clock import Clock
from edge.gateway.hardware.base import PLAUSIBLE, Sample, Sensor

log = logging.getLogger(__name__)

Listener = Callable[[Sequence[Reading]], None]
#: Gives derived readings (VPD, dew point, ...) of a round's readings, stored in the round (``edge.gateway.derived``).
Derive = Callable[[Sequence[Reading]], list[Reading]]


def judge(sample: Sample, limits: tuple[float, float] | None) -> Sample:
    """Flag a sample whose value is missing, not a number, or outside ``limits``. Pure."""
    if sample.quality == "error":
        return sample if sample.value is None else Sample.error(sample.quantity, sample.reason or "read failed")
    if sample.value is None or not math.isfinite(sample.value):
        return Sample.error(sample.quantity, sample.reason or f"sensor returned no usable value ({sample.value})")
    if limits is not None and not limits[0] <= sample.value <= limits[1]:
        reason = f"{sample.value:g} {sample.unit} outside the possible range {limits[0]:g}..{limits[1]:g}"
        return Sample(sample.quantity, sample.value, sample.unit, "implausible", sample.reason or reason)
    return sample


def describe(reading: Reading) -> str:
    """``air temperature 24.1 °C`` or ``air temperature error (reason)``, for logs."""
    if reading.quality == "error":
        return f"{reading.sensor} {reading.quantity} error ({reading.reason})"
    flag = "" if reading.quality == "good" else f" [{reading.quality}]"
    return f"{reading.sensor} {reading.quantity} {reading.value:g} {reading.unit}{flag}"


@dataclass
class SensorSlot:
    """A configured sensor and what the sampler needs to know about it."""

    sensor: Sensor
    interval: float
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)

    def limit(self, quantity: str) -> tuple[float, float] | None:
        return self.limits.get(quantity, PLAUSIBLE.get(quantity))


class Sampler:
    def __init__(self, slots: Iterable[SensorSlot], buffer: Buffer, clock: Clock, listeners: Iterable[Listener] = (),
                 derive: Iterable[Derive] = ()):
        self.buffer = buffer
        self.clock = clock
        self.listeners = list(listeners)
        self.derive = list(derive)
        self.groups: dict[float, list[SensorSlot]] = {}
        for slot in slots:
            self.groups.setdefault(slot.interval, []).append(slot)
        self.last_round: dict[float, float] = {}  # interval -> monotonic time the last round finished
        self._clock_synced = clock.is_synced()

    def schedule(self, scheduler, pool: str) -> None:
        """Add one job per interval group to ``scheduler`` (``edge.gateway.scheduler``) on ``pool``; the first
        rounds run at once. A round may start up to its interval late (waiting for a worker) before it is skipped."""
        for interval in sorted(self.groups):
            scheduler.add(self.run_round, interval, args=(interval,), id=f"sample-{interval:g}s", pool=pool, first=0,
                          grace=max(1, int(interval)))

    def read_slot(self, slot: SensorSlot) -> list[Reading]:
        """Read one sensor; whatever it does, return one reading per quantity."""
        try:
            samples = slot.sensor.read()
        except Exception as exc:  # a driver must not raise; if one does, the round goes on
            log.warning("sensor %s raised %s: %s", slot.sensor.id, type(exc).__name__, exc)
            samples = [Sample.error(q, f"driver raised {type(exc).__name__}: {exc}") for q in slot.sensor.quantities()]
        ts, mono = self.clock.time(), self.clock.monotonic()
        synced = self._clock_synced
        readings = []
        for sample in samples:
            sample = judge(sample, slot.limit(sample.quantity))
            readings.append(Reading.taken(
                ts=round(ts, 3), sensor=slot.sensor.id, quantity=sample.quantity, value=sample.value,
                unit=sample.unit, quality=sample.quality, reason=sample.reason,
                clock=CLOCK_SYNCED if synced else CLOCK_UNSYNCED,
                boot_id=None if synced else self.clock.boot_id, mono=None if synced else round(mono, 3),
            ))
        return readings

    def run_round(self, interval: float) -> list[Reading]:
        """Read every sensor of one interval group and store them all in one transaction. A round is complete once
        its sensors answered, stored or not (the watchdog looks for hung reads, not for a full disk)."""
        self._check_clock()
        readings: list[Reading] = []
        for slot in self.groups[interval]:
            readings.extend(self.read_slot(slot))
        readings.extend(self._derived(readings))
        try:
            seqs = self.buffer.append_readings(readings)
        except BufferWriteError as exc:  # logged once by the buffer, which counts them for the gap record
            seqs = None
            log.debug("round %gs not stored: %s", interval, exc)
        if seqs is not None:
            readings = [r._replace(seq=seq) for seq, r in enumerate(readings, seqs[0])]
        self.last_round[interval] = self.clock.monotonic()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("round %gs stored seq %s: %s", interval, seqs, "; ".join(map(describe, readings)))
        for listener in self.listeners:
            try:
                listener(readings)
            except BufferWriteError as exc:
                log.debug("reading listener %r could not store its state: %s", listener, exc)
            except Exception:
                log.exception("reading listener %r failed", listener)
        return readings

    def _derived(self, readings: Sequence[Reading]) -> list[Reading]:
        """The derived readings of a round, stored with it; one that fails is logged and the round goes on."""
        derived: list[Reading] = []
        for derive in self.derive:
            try:
                derived.extend(derive(readings))
            except Exception:
                log.exception("derived quantities %r failed", derive)
        return derived

    def _check_clock(self) -> None:
        """When the wall clock syncs, re-time this boot's readings that were taken before."""
        if self._clock_synced or not self.clock.is_synced():
            return
        boot_wall = self.clock.time() - self.clock.monotonic()
        try:
            fixed = self.buffer.correct_clock(self.clock.boot_id, boot_wall)
        except BufferWriteError as exc:  # tried again at the next round; readings stay flagged meanwhile
            log.debug("readings not re-timed yet: %s", exc)
            return
        self._clock_synced = True
        self.buffer.append_event(ClockSynced.KIND, "clock", ClockSynced(fixed).to_data(), ts=self.clock.time())
        log.info("wall clock synced; corrected the timestamps of %d readings taken before", fixed)

    def stale(self, grace: float = 1.0) -> dict[float, float]:
        """The groups that have not completed a round within twice their interval: interval -> seconds since their
        last round (``inf`` before the first). For the systemd watchdog."""
        now = self.clock.monotonic()
        ages = {interval: now - self.last_round.get(interval, -math.inf) for interval in sorted(self.groups)}
        return {interval: age for interval, age in ages.items() if age > 2 * interval + grace}

    def healthy(self, grace: float = 1.0) -> bool:
        """True while every group has completed a round within twice its interval (for the systemd watchdog)."""
        return not self.stale(grace)
