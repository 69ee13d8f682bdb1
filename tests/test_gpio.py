"""GPIO outputs: built off, switched within 0..1, off again on safe_state and close. Pins are gpiozero mock pins."""

import math

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin
from pydantic import ValidationError

from edge.errors import HardwareError
from edge.gateway.clock import FakeClock
from edge.gateway.hardware import actuator_driver
from edge.gateway.hardware.base import Actuator, HardwareContext
from edge.gateway.hardware.gpio import PwmOutput, PwmOutputConfig, Relay, RelayConfig


@pytest.fixture
def factory():
    return MockFactory(pin_class=MockPWMPin)


def test_relay_is_off_with_its_pin_low_from_construction(factory):
    relay = Relay("fan-1", 17, kind="fan", pin_factory=factory)
    assert relay.value == 0.0
    assert factory.pin(17).state == 0


def test_active_low_relay_is_off_with_its_pin_high_from_construction(factory):
    relay = Relay("pump-1", 17, kind="pump", zone="north", active_high=False, pin_factory=factory)
    assert relay.value == 0.0
    assert factory.pin(17).state == 1
    factory.pin(17).assert_states([0, 1])  # from undriven straight to high: never driven low, not for an instant


def test_relay_switches_on_from_half_and_off_below(factory):
    relay = Relay("fan-1", 17, kind="fan", pin_factory=factory)
    relay.apply(0.5)
    assert (relay.value, factory.pin(17).state) == (1.0, 1)
    relay.apply(0.49)
    assert (relay.value, factory.pin(17).state) == (0.0, 0)


def test_active_low_relay_pulls_its_pin_low_when_on(factory):
    relay = Relay("pump-1", 17, kind="pump", active_high=False, pin_factory=factory)
    relay.apply(1.0)
    assert (relay.value, factory.pin(17).state) == (1.0, 0)


def test_relay_accepts_gpiozero_pin_names(factory):
    by_board_number = Relay("fan-1", "BOARD11", kind="fan", pin_factory=factory)
    by_gpio_name = Relay("fan-2", "GPIO27", kind="fan", pin_factory=factory)
    by_board_number.apply(1)
    by_gpio_name.apply(1)
    assert factory.pin(17).state == 1
    assert factory.pin(27).state == 1


@pytest.mark.parametrize("bad", [-0.1, 1.01, math.nan, "on", "0.5", None])
def test_relay_refuses_values_outside_0_to_1_naming_the_actuator(factory, bad):
    relay = Relay("fan-1", 17, kind="fan", pin_factory=factory)
    with pytest.raises(ValueError, match="fan-1"):
        relay.apply(bad)
    assert factory.pin(17).state == 0


def test_safe_state_turns_a_relay_off_and_can_be_repeated(factory):
    relay = Relay("heater-1", 17, kind="heater", active_high=False, pin_factory=factory)
    relay.apply(1)
    relay.safe_state()
    relay.safe_state()
    assert (relay.value, factory.pin(17).state) == (0.0, 1)


def test_close_turns_a_relay_off_and_releases_its_pin(factory):
    relay = Relay("fan-1", 17, kind="fan", pin_factory=factory)
    relay.apply(1)
    relay.close()
    relay.close()
    assert relay.value == 0.0
    assert factory.pin(17).state == 0
    assert factory.pin(17).function == "input"


def test_close_drives_an_active_low_relay_off_before_releasing_its_pin(factory):
    relay = Relay("pump-1", 17, kind="pump", active_high=False, pin_factory=factory)
    relay.apply(1)
    relay.close()
    # high (off) was driven last; releasing the pin then leaves it to the relay board's pull-up
    assert [change.state for change in factory.pin(17).states][-2] == 1
    assert factory.pin(17).function == "input"


def test_an_unusable_pin_is_a_hardware_error_naming_the_actuator(factory):
    holder = Relay("fan-1", 17, kind="fan", pin_factory=factory)  # kept: gpiozero frees the pin of a collected device
    with pytest.raises(HardwareError, match="fan-2"):
        Relay("fan-2", 17, kind="fan", pin_factory=factory)  # already in use
    with pytest.raises(HardwareError, match="vent-1"):
        Relay("vent-1", "GPIO99", kind="vent", pin_factory=factory)
    assert holder.value == 0.0


def test_pwm_output_starts_at_zero_duty(factory):
    fan = PwmOutput("fan-pwm", 18, kind="fan", frequency=25, pin_factory=factory)
    assert fan.value == 0.0
    assert factory.pin(18).state == 0.0
    assert factory.pin(18).frequency == 25


def test_active_low_pwm_output_starts_with_its_pin_high(factory):
    fan = PwmOutput("fan-pwm", 18, kind="fan", active_high=False, pin_factory=factory)
    assert fan.value == 0.0
    assert factory.pin(18).state == 1.0


def test_pwm_output_sets_its_duty_cycle(factory):
    fan = PwmOutput("fan-pwm", 18, kind="fan", pin_factory=factory)
    dimmer = PwmOutput("lamp-pwm", 19, kind="light", active_high=False, pin_factory=factory)
    fan.apply(0.3)
    dimmer.apply(0.3)
    assert fan.value == pytest.approx(0.3)
    assert factory.pin(18).state == pytest.approx(0.3)
    assert factory.pin(19).state == pytest.approx(0.7)


@pytest.mark.parametrize("bad", [-0.5, 2, math.inf])
def test_pwm_output_refuses_values_outside_0_to_1_naming_the_actuator(factory, bad):
    fan = PwmOutput("fan-pwm", 18, kind="fan", pin_factory=factory)
    with pytest.raises(ValueError, match="fan-pwm"):
        fan.apply(bad)


def test_pwm_output_is_off_after_safe_state_and_close(factory):
    fan = PwmOutput("fan-pwm", 18, kind="fan", pin_factory=factory)
    fan.apply(0.8)
    fan.safe_state()
    assert factory.pin(18).state == 0.0
    fan.apply(0.8)
    fan.close()
    assert fan.value == 0.0
    assert factory.pin(18).state == 0.0


def test_outputs_satisfy_the_actuator_protocol(factory):
    assert isinstance(Relay("fan-1", 17, kind="fan", pin_factory=factory), Actuator)
    assert isinstance(PwmOutput("fan-pwm", 18, kind="fan", pin_factory=factory), Actuator)


def test_registry_builds_outputs_from_config_on_the_context_pin_factory(factory):
    ctx = HardwareContext(clock=FakeClock(), pin_factory=factory)
    relay_driver, pwm_driver = actuator_driver("relay"), actuator_driver("pwm")
    relay = relay_driver.from_config(
        relay_driver.Config(id="pump-n", type="relay", kind="pump", zone="north", pin="GPIO22", active_high=False),
        ctx)
    fan = pwm_driver.from_config(pwm_driver.Config(id="fan-pwm", type="pwm", kind="fan", pin=18, frequency=50), ctx)
    assert (relay.id, relay.kind, relay.zone) == ("pump-n", "pump", "north")
    assert factory.pin(22).state == 1
    assert factory.pin(18).frequency == 50
    assert fan.value == 0.0


def test_output_configs_refuse_bad_frequency_and_unknown_keys():
    with pytest.raises(ValidationError, match="frequency"):
        PwmOutputConfig(id="fan", type="pwm", kind="fan", pin=18, frequency=0)
    with pytest.raises(ValidationError, match="active_hi"):
        RelayConfig(id="fan", type="relay", kind="fan", pin=17, active_hi=False)
