"""The motorized vent: never both directions at once, moved for the right share of its travel time, stopped by
its limit switches. Timers are driven by hand and the clock is injected: no sleeps."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory

from edge.gateway.clock import FakeClock
from edge.gateway.hardware.gpio import MotorVent

OPEN, CLOSE, OPEN_LIMIT, CLOSED_LIMIT = 5, 6, 13, 19


class ManualTimers:
    """A threading.Timer stand-in whose timers fire when the test says so."""

    def __init__(self):
        self.pending = []

    def __call__(self, delay, action):
        timers = self

        class Timer:
            daemon = False

            def start(self):
                timers.pending.append(self)

            def cancel(self):
                if self in timers.pending:
                    timers.pending.remove(self)

        timer = Timer()
        timer.delay, timer.action = delay, action
        return timer

    def fire(self, clock):
        timer = self.pending.pop(0)
        clock.advance(timer.delay)
        timer.action()


@pytest.fixture
def rig():
    factory, clock, timers = MockFactory(), FakeClock(), ManualTimers()
    vent = MotorVent("roof", OPEN, CLOSE, travel_time=60.0, open_limit_pin=OPEN_LIMIT,
                     closed_limit_pin=CLOSED_LIMIT, pin_factory=factory, clock=clock, timer=timers)
    yield factory, clock, timers, vent
    vent.close()


def levels(factory):
    return factory.pin(OPEN).state, factory.pin(CLOSE).state


def test_the_vent_starts_stopped(rig):
    factory, _, _, vent = rig
    assert levels(factory) == (0, 0) and vent.value == 0.0


def test_half_open_runs_half_the_travel_time(rig):
    factory, clock, timers, vent = rig
    vent.apply(0.5)
    assert levels(factory) == (1, 0)
    assert timers.pending[0].delay == 30.0
    clock.advance(15)
    assert vent.value == pytest.approx(0.25)  # the estimate moves with the clock
    clock.advance(-15)
    timers.fire(clock)
    assert levels(factory) == (0, 0) and vent.value == pytest.approx(0.5)


def test_reversing_stops_first_and_never_drives_both_directions(rig):
    factory, clock, timers, vent = rig
    seen = set()
    for pin in (OPEN, CLOSE):
        factory.pin(pin).when_changed = lambda *_: seen.add(levels(factory))
    vent.apply(1.0)
    clock.advance(30)
    vent.apply(0.0)  # reverse mid-travel
    assert levels(factory) == (0, 0)  # dead time first
    timers.fire(clock)  # the reverse delay elapses
    assert levels(factory) == (0, 1)
    assert (1, 1) not in seen


def test_a_limit_switch_stops_the_motor_and_re_homes_the_estimate(rig):
    factory, clock, timers, vent = rig
    vent.apply(1.0)
    clock.advance(40)  # the real vent is faster than configured
    factory.pin(OPEN_LIMIT).drive_low()  # switch closes to ground (pull-up)
    assert levels(factory) == (0, 0) and vent.value == 1.0
    vent.apply(1.0)  # already at the open limit: nothing to do
    assert levels(factory) == (0, 0)


def test_bad_values_are_refused(rig):
    _, _, _, vent = rig
    with pytest.raises(ValueError, match="actuator 'roof': value must be a number from 0 to 1"):
        vent.apply(1.5)


def test_safe_state_and_close_stop_the_motor(rig):
    factory, _, _, vent = rig
    vent.apply(1.0)
    vent.safe_state()
    assert levels(factory) == (0, 0)
    vent.apply(1.0)
    vent.close()
    assert vent.closed


def test_the_vent_config_refuses_shared_pins():
    from edge.gateway.config import parse_config
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match="open_pin, close_pin and the limit pins must all be different"):
        parse_config("gateway: {id: g}\nactuators:\n  - {id: v, type: motor_vent, kind: vent, open_pin: 5, "
                     "close_pin: 5, travel_time: 1m}\n")
