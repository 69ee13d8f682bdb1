"""Who runs what in the daemon (docs/architecture.md, "Threads and locks"): an output whose switching blocks delays
neither sampling nor the watchdog, and the watchdog still sees control wedged.

The slow output is a relay whose ``apply`` blocks on a threading.Event the test holds (as a relay board on a hung
I2C expander would); nothing here sleeps for a fixed time, and every wait is generous, so load cannot make it flaky.
"""

from __future__ import annotations

import threading
import time

import pytest

from conftest import wait_until
from edge.gateway.clock import FakeClock
from edge.gateway.config import load_config
from edge.gateway.daemon import ControlWorker, Daemon
from edge.gateway.hardware.gpio import Relay

CONFIG = """\
gateway: {{id: gh-threads}}
hardware: {{backend: simulated}}
buffer: {{path: {dir}/buffer.db}}
clock: {{trust: synced}}
control: {{socket: {dir}/control.sock, interval: 1m}}
sensors:
  - {{id: air, type: simulated, measures: [temperature], interval: 1s}}
actuators:
  - {{id: fan, type: relay, kind: fan, pin: 17}}
schedules:
  - {{id: always, type: cron, actuator: fan, cron: "* * * * *", duration: 10m}}
"""


@pytest.fixture
def slow_relay(monkeypatch):
    """Relay.apply(on) blocks until ``release`` is set; ``entered`` says it is blocked."""
    entered, release = threading.Event(), threading.Event()
    original = Relay.apply

    def apply(self, value: float) -> None:
        if value > 0:
            entered.set()
            release.wait(30)
        original(self, value)

    monkeypatch.setattr(Relay, "apply", apply)
    yield entered, release
    release.set()


def stored_readings(daemon: Daemon) -> int:
    return daemon.buffer.counts("readings")["pending"]


def test_a_slow_output_delays_neither_sampling_nor_health_and_a_wedged_control_is_seen(tmp_path, slow_relay):
    entered, release = slow_relay
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.format(dir=tmp_path))
    clock = FakeClock(start=time.time())  # the scheduler runs on real time; rounds start at the clock's
    daemon = Daemon(load_config(path, env={}), clock=clock)
    daemon.start()
    try:
        # The first round wakes control, which starts switching the fan on and blocks inside the relay.
        assert entered.wait(20), "control never tried to switch the fan on"
        blocked_at = stored_readings(daemon)
        wait_until(lambda: stored_readings(daemon) >= blocked_at + 2, timeout=20,
                   what="two more sampling rounds while the fan's switch is blocked")
        assert not release.is_set() and daemon.control_worker._thread.is_alive()

        clock.advance(200)  # control has not finished an evaluation for 200 s of the daemon's clock
        wait_until(lambda: any(p.startswith("control") for p in daemon.health()), timeout=10,
                   what="the health check to name the wedged control")
        wait_until(lambda: daemon.health() == ["control (schedules, rules, safety limits): last evaluated 200s ago"],
                   timeout=20, what="sampling fresh again after the clock jump, control still wedged")

        release.set()
        wait_until(lambda: daemon.health() == [], timeout=20, what="control to finish and health to clear")
        assert daemon.hardware.actuators["fan"].value == 1.0
    finally:
        release.set()
        daemon.stop("test")


def test_wakes_during_an_evaluation_fold_into_one_more():
    running, release = threading.Event(), threading.Event()
    runs = []

    def evaluate():
        runs.append(len(runs))
        if len(runs) == 1:
            running.set()
            release.wait(20)

    worker = ControlWorker(evaluate, interval=3600)
    worker.start()
    try:
        worker.wake()
        assert running.wait(10)
        for _ in range(5):  # five rounds finish while the first evaluation is still switching
            worker.wake()
        release.set()
        wait_until(lambda: len(runs) == 2, timeout=10, what="the second evaluation")
        assert not worker._wake.wait(0.3) and len(runs) == 2  # one more, not five
    finally:
        worker.stop(5)
    assert not worker._thread.is_alive()


def test_a_busy_alert_engine_does_not_hold_up_a_round_and_misses_no_reading():
    """The sampling round hands its readings to the alert feed and returns; what comes while the engine is busy is
    handed over together, in order."""
    from edge.gateway.daemon import AlertFeed

    busy, release = threading.Event(), threading.Event()
    seen: list[list[int]] = []

    def engine(readings):
        seen.append(list(readings))
        if len(seen) == 1:
            busy.set()
            release.wait(20)

    feed = AlertFeed(engine)
    feed.start()
    try:
        feed([1, 2])
        assert busy.wait(10)
        began = time.monotonic()
        for n in range(3, 9):  # six rounds while the engine is stuck on the first
            feed([n])
        assert time.monotonic() - began < 1.0  # handed over, not waited for
        release.set()
        wait_until(lambda: sum(map(len, seen)) == 8, timeout=10, what="every reading observed")
        assert seen == [[1, 2], [3, 4, 5, 6, 7, 8]]
    finally:
        release.set()
        feed.stop()


SWITCH_CONFIG = """\
gateway: {{id: gh-switch, timezone: UTC}}
hardware: {{backend: simulated}}
buffer: {{path: {dir}/buffer.db}}
clock: {{trust: synced}}
control: {{socket: {dir}/control.sock, interval: 1m}}
sensors:
  - {{id: air, type: simulated, measures: [temperature], interval: 1s}}
actuators:
  - {{id: fan, type: relay, kind: fan, pin: 17}}
schedules:
  - {{id: on-the-hour, type: cron, actuator: fan, cron: "0 {hour} * * *", duration: 10m}}
"""


def test_a_busy_alert_engine_does_not_hold_up_control_and_still_learns_of_the_switch(tmp_path):
    """The supervisor hands each switch to the alerts' thread: with the alert engine's lock held (an SMS round), the
    control thread's evaluation that switches the fan on completes; the engine learns of it once released."""
    hour = int(time.time() // 3600 + 1) * 3600  # the next full hour, on the daemon's clock two minutes from now
    path = tmp_path / "gateway.yaml"
    path.write_text(SWITCH_CONFIG.format(dir=tmp_path, hour=time.gmtime(hour).tm_hour))
    clock = FakeClock(start=hour - 120)
    daemon = Daemon(load_config(path, env={}), clock=clock)
    daemon.start()
    fan, engine = daemon.hardware.actuators["fan"], daemon.alerts.engine
    switched_and_done = threading.Event()
    evaluate = daemon.control_worker.run

    def evaluation():  # what the control thread runs; done once it returns with the fan on
        evaluate()
        if fan.value == 1.0:
            switched_and_done.set()

    daemon.control_worker.run = evaluation
    try:
        with engine._lock:  # the alert engine is busy (an SMS round holds it)
            clock.advance(150)  # the schedule's hour has come
            daemon.control_worker.wake()
            assert switched_and_done.wait(20), "the control thread waited for the alert engine"
            assert "fan" not in engine.world.outputs  # not yet told: the engine is still busy
        wait_until(lambda: engine.world.outputs.get("fan", (0.0, ""))[0] == 1.0, timeout=20,
                   what="the alert engine to learn of the fan's switch")
        assert engine.world.outputs["fan"][1] == "schedule:on-the-hour"
    finally:
        daemon.stop("test")


def test_the_alert_feed_hands_switches_over_in_order_with_the_readings():
    from edge.gateway.daemon import AlertFeed

    busy, release = threading.Event(), threading.Event()
    seen: list = []

    def readings(batch):
        seen.append(list(batch))
        if len(seen) == 1:
            busy.set()
            release.wait(20)

    feed = AlertFeed(readings, lambda actuator, change, ts: seen.append((actuator, change, ts)))
    feed.start()
    try:
        feed([1])
        assert busy.wait(10)
        feed([2, 3])
        feed.switch("fan", "on", 10.0)
        feed([4])
        feed([5])
        feed.switch("fan", "off", 20.0)
        release.set()
        wait_until(lambda: len(seen) == 5, timeout=10, what="everything handed over")
        assert seen == [[1], [2, 3], ("fan", "on", 10.0), [4, 5], ("fan", "off", 20.0)]
    finally:
        release.set()
        feed.stop()
    feed.switch("pump", "off", 30.0)  # once stopped (the outputs' switches of a stop): at once, on this thread
    assert seen[-1] == ("pump", "off", 30.0)
