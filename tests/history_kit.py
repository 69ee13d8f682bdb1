"""Helpers for the history API tests: a gateway's synthetic day in its real buffer, a cutting/throttling TCP proxy,
and the truth (the gateway's buffer rows) in the form the API exports them."""

from __future__ import annotations

import math
import socket
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edge.gateway.buffer import NewReading

UTC = timezone.utc
T0 = datetime(2025, 7, 14, 21, 0, tzinfo=UTC)  # six hours across UTC midnight: exports span two daily windows
HOURS = 6
#: The air sensor sends nothing in this half hour (2025-07-15 01:10 to 01:40): coverage must show it.
GAP = (T0 + timedelta(hours=4, minutes=10), T0 + timedelta(hours=4, minutes=40))
#: The air sensor fails once (quality error, no value) and reads one impossible humidity.
ERROR_AT = T0 + timedelta(hours=2, minutes=3)
IMPLAUSIBLE_AT = T0 + timedelta(hours=2, minutes=5)


def _seconds(ts: datetime) -> float:
    return ts.timestamp()


def greenhouse_readings() -> list[NewReading]:
    """Six hours of a small greenhouse: air (temperature, humidity) every 10 s, soil moisture every minute."""
    readings = []
    for i in range(HOURS * 360):
        at = T0 + timedelta(seconds=10 * i, milliseconds=250)
        if i % 6 == 0:
            readings.append(NewReading(_seconds(at) + 0.5, "soil", "soil_moisture",
                                       round(38 - i / 400 + (i % 11) / 20, 2), "%"))
        if GAP[0] <= at < GAP[1]:
            continue
        phase = 2 * math.pi * i / 2160
        temperature = round(24 + 6 * math.sin(phase) + (i % 7) / 10, 2)
        humidity = round(55 - 15 * math.sin(phase) + (i % 5) / 10, 1)
        if abs(at - ERROR_AT) < timedelta(seconds=5):
            readings += [NewReading(_seconds(at), "air", q, None, u, "error", "no answer (CRC)")
                         for q, u in (("temperature", "°C"), ("humidity", "%"))]
            continue
        readings.append(NewReading(_seconds(at), "air", "temperature", temperature, "°C"))
        quality, reason = ("implausible", "above 100") if abs(at - IMPLAUSIBLE_AT) < timedelta(seconds=5) \
            else ("good", None)
        readings.append(NewReading(_seconds(at), "air", "humidity", 104.0 if reason else humidity, "%", quality,
                                   reason))
    return readings


def greenhouse_events() -> list[tuple[datetime, str, str, dict]]:
    """What the daemon, supervisor and alerts would record: the pump and fan switching, with their reasons."""
    return [
        (T0, "daemon.start", "daemon", {"version": "test", "epoch": 1, "previous_stop": "clean",
                                        "clock_synced": True, "intervals": {"air": 10.0}}),  # soil: not reported
        (T0 + timedelta(hours=1), "actuator.change", "pump",
         {"value": 1.0, "previous": 0.0, "reason": "schedule:irrigation-morning"}),
        (T0 + timedelta(hours=1, minutes=15), "actuator.change", "pump",
         {"value": 0.0, "previous": 1.0, "reason": "schedule:irrigation-morning"}),
        (T0 + timedelta(hours=3), "actuator.change", "fan", {"value": 0.6, "previous": 0.0, "reason": "rule:cooling"}),
        (T0 + timedelta(hours=3, minutes=40), "alert.fired", "high-temp:air",
         {"code": "A7", "rule": "high-temp", "value": 30.1}),
        (T0 + timedelta(hours=5), "actuator.change", "fan", {"value": 0.0, "previous": 0.6, "reason": "rule:cooling"}),
    ]


# ------------------------------------------------------------------------------------------- the truth (buffer)


@dataclass(frozen=True, order=True)
class Row:
    """A reading as the API exports it, ordered as the API orders them."""

    ts: str
    sensor: str
    quantity: str
    epoch: int
    seq: int
    value: float | None = field(compare=False)
    unit: str = field(compare=False)
    quality: str = field(compare=False)


def iso(seconds: float) -> str:
    """UTC ISO-8601 with milliseconds (the protocol carries milliseconds)."""
    ms = round(seconds * 1000)
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def buffer_rows(buffer_path: Path) -> list[Row]:
    """Every reading the gateway's buffer holds, in export order."""
    with sqlite3.connect(f"file:{buffer_path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT ts, sensor, quantity, epoch, seq, value, unit, quality FROM readings")
        return sorted(Row(iso(ts), sensor, quantity, epoch, seq, value, unit, quality)
                      for ts, sensor, quantity, epoch, seq, value, unit, quality in rows)


def hourly_aggregates(rows: list[Row]) -> dict[tuple[str, str, str, str], tuple[int, float, float, float]]:
    """(hour, sensor, quantity, unit) -> (count, min, mean, max) of the good readings, computed here in Python."""
    groups: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for row in rows:
        if row.quality == "good" and row.value is not None:
            groups[(row.ts[:13] + ":00:00.000Z", row.sensor, row.quantity, row.unit)].append(row.value)
    return {key: (len(v), min(v), math.fsum(v) / len(v), max(v)) for key, v in groups.items()}


# ---------------------------------------------------------------------------------------------------- the proxy


class Proxy:
    """A TCP proxy in front of the API. ``cut_after[n]`` bytes of the n-th connection's response are passed on,
    then both sides are closed (None: all of it); ``rate`` limits response bytes per second."""

    def __init__(self, target_port: int, cut_after: list[int | None] | None = None, rate: float | None = None):
        self.target_port = target_port
        self.cut_after = list(cut_after or [])
        self.rate = rate
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            limit = self.cut_after[self.connections] if self.connections < len(self.cut_after) else None
            self.connections += 1
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, limit), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        passed = 0
        try:
            while data := source.recv(4096 if self.rate else 65536):
                if limit is not None and passed + len(data) >= limit:
                    sink.sendall(data[:limit - passed])
                    break
                sink.sendall(data)
                passed += len(data)
                if self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._stopped = True
        self.listener.close()
