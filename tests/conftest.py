"""Shared fixtures: gateway config files in a temporary directory, and a running `edge run` daemon."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# private Mosquitto and PostgreSQL: tests/services.py; private NATS nodes and clusters: tests/nats_services.py;
# headless chromium: tests/browser.py; PostgreSQL with automated failover: tests/pg_failover.py; the data center's
# whole chain for the console and remote commands: tests/console_kit.py
pytest_plugins = ["services", "nats_services", "browser", "pg_failover", "console_kit"]

SMALL_GATEWAY = """\
gateway:
  id: gh-test
hardware:
  backend: simulated
buffer:
  path: {buffer}
clock:
  trust: synced
control:
  socket: {socket}
sensors:
  - id: air
    type: simulated
    measures: [temperature, humidity]
    interval: 1s
  - id: soil
    type: simulated
    measures: [soil_moisture]
    zone: bed-1
    interval: 2s
actuators:
  - id: fan
    type: pwm
    kind: fan
    pin: 18
  - id: pump
    type: relay
    kind: pump
    zone: bed-1
    pin: 27
"""


@pytest.fixture
def clock():
    """A FakeClock (a module that needs another start overrides this fixture)."""
    from edge.gateway.clock import FakeClock

    return FakeClock()


@pytest.fixture
def buffer(tmp_path, clock):
    """A fresh buffer under tmp_path, opened at the clock's time."""
    from edge.gateway.buffer import Buffer

    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=clock.time(), boot_id=clock.boot_id)
    yield buffer
    buffer.close()


@pytest.fixture
def gateway_config(tmp_path) -> Path:
    """A small simulated gateway sampling every second, buffering under tmp_path."""
    path = tmp_path / "gateway.yaml"
    path.write_text(SMALL_GATEWAY.format(buffer=tmp_path / "buffer.db", socket=tmp_path / "control.sock"))
    return path


def wait_until(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value (the wait is bounded, not a guess at speed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class DaemonProcess:
    """`edge run` as a child process. Its log goes to a file, not a pipe: a pipe nobody reads until the end would
    stop a daemon that logs more than the pipe holds (64 KiB), and the file can be read while the daemon runs."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None):
        fd, name = tempfile.mkstemp(prefix="edge-run-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        with open(self.log_path, "ab") as log:  # O_APPEND: the child's writes always land at the end
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge", "run", "-c", str(config), *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env={**os.environ, **(env or {})},
            )

    def log(self) -> str:
        """What the daemon has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait(self, timeout: float = 30.0) -> tuple[int, str]:
        """Its exit code and whole log, once it has exited by itself."""
        self.proc.wait(timeout=timeout)
        err = self.log()
        self.log_path.unlink(missing_ok=True)
        return self.proc.returncode, err

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)


@pytest.fixture
def start_daemon():
    started: list[DaemonProcess] = []

    def start(config: Path, *args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        daemon = DaemonProcess(config, *args, env=env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
        daemon.stop()
