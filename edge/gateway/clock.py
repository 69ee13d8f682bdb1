"""Time for the gateway: UTC wall time, monotonic time, the boot id, and whether the wall clock can be trusted.

A Raspberry Pi has no real-time clock: until NTP syncs, the wall clock is whatever fake-hwclock saved at the last
shutdown. Readings taken then are flagged (with boot id and monotonic time) so they can be corrected later.
"""

from __future__ import annotations

import functools
import time
import uuid
from pathlib import Path

TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


@functools.lru_cache(maxsize=1)
def _adjtimex():
    """``(adjtimex, Timex, byref)`` from the C library this process has loaded, or None; loaded at the first question
    only (a clock set to ``synced`` or ``unsynced`` never asks, and ctypes is 0.2 MB), and once: looking the library up
    by name (``ctypes.util.find_library``) would run ``ldconfig`` in a subprocess at every sampling round until the
    clock syncs, and import subprocess, shutil and tempfile into the daemon."""
    import ctypes

    class Timex(ctypes.Structure):
        # struct timex from <sys/timex.h>: we only read ``status`` and the return value, but the size must be right.
        _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                    ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                    ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                    ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
                    ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
                    ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                    ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                    ("_padding", ctypes.c_int * 11)]

    try:
        return ctypes.CDLL(None, use_errno=True).adjtimex, Timex, ctypes.byref
    except (OSError, AttributeError):
        return None


def kernel_clock_synced() -> bool | None:
    """Ask the kernel (adjtimex) whether NTP discipline says the clock is synced; ``None`` if it cannot be asked."""
    call = _adjtimex()
    if call is None:
        return None
    adjtimex, timex, byref = call
    tx = timex()
    try:
        state = adjtimex(byref(tx))
    except OSError:
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR and not (tx.status & _STA_UNSYNC)


def read_boot_id(path: Path = BOOT_ID_FILE) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return f"unknown-{uuid.uuid4()}"  # one per process: never equal to another boot's


class Clock:
    """The real clock. ``mode`` is ``auto`` (systemd-timesyncd flag, else the kernel), ``synced`` or ``unsynced``."""

    def __init__(self, mode: str = "auto", timesync_flag: Path = TIMESYNC_FLAG):
        self.mode = mode
        self.timesync_flag = timesync_flag
        self.boot_id = read_boot_id()
        self._synced_latch = False

    def time(self) -> float:
        """UTC wall time, seconds since the Unix epoch."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds since boot, never going back (CLOCK_BOOTTIME counts suspend too)."""
        return time.clock_gettime(time.CLOCK_BOOTTIME)

    def is_synced(self) -> bool:
        """True once the wall clock is known good. Latches: a clock that synced once stays trusted this boot."""
        if self.mode != "auto":
            return self.mode == "synced"
        if self._synced_latch:
            return True
        synced = self.timesync_flag.exists() or bool(kernel_clock_synced())
        self._synced_latch = synced
        return synced


class FakeClock(Clock):
    """A clock that only moves when told to: for tests and the fast-forward simulation."""

    def __init__(self, start: float = 1_752_562_800.0, synced: bool = True, boot_id: str = "fake-boot"):
        self._now = float(start)
        self._mono = 1000.0
        self.synced = synced
        self.boot_id = boot_id
        self.mode = "fake"

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def is_synced(self) -> bool:
        return self.synced

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds

    def set_wall(self, wall: float) -> None:
        """Step the wall clock (as NTP does at sync) without moving monotonic time."""
        self._now = float(wall)
