"""GPIO inputs (float and rain switches, flow meters) and MCP3008 soil probes on gpiozero mock pins."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory, MockSPIDevice

from edge.errors import HardwareError
from edge.gateway.hardware.base import HardwareContext
from edge.gateway.hardware.inputs import FloatSwitch, FlowMeter, RainSwitch, RainSwitchConfig
from edge.gateway.hardware.spi import Mcp3008, mcp3008_volts


@pytest.fixture
def factory():
    return MockFactory()


def level(sensor) -> float:
    (sample,) = sensor.read()
    assert (sample.quantity, sample.unit, sample.quality) == ("level", "bool", "good")
    return sample.value


# --- Switches --------------------------------------------------------------------------------------------------------

def test_float_switch_open_contact_reads_its_safe_level(factory, clock):
    assert level(FloatSwitch("tank-low", 17, clock=clock, pin_factory=factory)) == 0


def test_float_switch_closed_contact_reads_the_other_level(factory, clock):
    switch = FloatSwitch("tank-low", 17, clock=clock, pin_factory=factory)
    factory.pin(17).drive_low()  # contact to GND closes: water present
    assert level(switch) == 1


def test_float_switch_with_a_broken_wire_reads_the_safe_level(factory, clock):
    switch = FloatSwitch("tank-low", 17, clock=clock, pin_factory=factory)
    factory.pin(17).drive_low()
    assert level(switch) == 1
    factory.pin(17).drive_high()  # the wire breaks: the internal pull-up wins
    clock.advance(2.0)
    assert level(switch) == 0


def test_overflow_guard_reads_full_when_its_wire_breaks(factory, clock):
    switch = FloatSwitch("tank-high", 17, clock=clock, safe_level=1, pin_factory=factory)
    assert level(switch) == 1


def test_rain_module_with_a_broken_wire_reads_rain(factory, clock):
    switch = RainSwitch("rain", 22, clock=clock, pull_up=False, safe_level=1, pin_factory=factory)
    factory.pin(22).drive_high()  # module powered and dry: DO high
    assert level(switch) == 0
    factory.pin(22).drive_low()  # wire cut: the internal pull-down reads like DO low, i.e. wet
    clock.advance(2.0)
    assert level(switch) == 1


def test_sloshing_water_changes_the_level_only_once_it_held_still_for_the_debounce_time(factory, clock):
    switch = FloatSwitch("tank-low", 17, clock=clock, debounce=2.0, pin_factory=factory)
    pin = factory.pin(17)
    pin.drive_low()
    assert level(switch) == 1
    for _ in range(3):
        clock.advance(0.3)
        pin.drive_high()
        clock.advance(0.3)
        pin.drive_low()
    clock.advance(0.3)
    pin.drive_high()
    assert level(switch) == 1  # still bouncing: the last settled level
    clock.advance(1.9)
    assert level(switch) == 1
    clock.advance(0.1)
    assert level(switch) == 0


def test_rain_switch_defaults_are_a_pulled_down_input_whose_open_circuit_means_rain(factory, clock):
    cfg = RainSwitchConfig(id="rain", type="rain_switch", pin=22)
    switch = RainSwitch.from_config(cfg, HardwareContext(clock=clock, pin_factory=factory))
    assert (cfg.pull_up, cfg.safe_level) == (False, 1)
    assert level(switch) == 1


def test_a_pin_that_cannot_be_opened_names_the_sensor(factory, clock):
    with pytest.raises(HardwareError, match="sensor 'tank-low': cannot open DigitalInputDevice"):
        FloatSwitch("tank-low", "GPIO99", clock=clock, pin_factory=factory)


# --- Flow meter ------------------------------------------------------------------------------------------------------

def pulse(factory, pin: int, count: int) -> None:
    for _ in range(count):
        factory.pin(pin).drive_low()
        factory.pin(pin).drive_high()


def flow(sensor) -> float:
    (sample,) = sensor.read()
    assert (sample.quantity, sample.unit, sample.quality) == ("flow", "l/min", "good")
    return sample.value


def test_yf_s201_at_75_hz_is_10_litres_per_minute(factory, clock):
    meter = FlowMeter("pump-flow", 23, clock=clock, pulses_per_litre=450, pin_factory=factory)
    pulse(factory, 23, 150)  # F = 7.5 × Q: 75 Hz for 2 s
    clock.advance(2.0)
    assert flow(meter) == pytest.approx(10.0)


def test_flow_meter_counts_from_its_previous_read(factory, clock):
    meter = FlowMeter("pump-flow", 23, clock=clock, pulses_per_litre=450, pin_factory=factory)
    pulse(factory, 23, 450)
    clock.advance(60.0)
    assert flow(meter) == pytest.approx(1.0)
    clock.advance(30.0)
    assert flow(meter) == 0.0


def test_flow_meter_read_twice_at_the_same_instant_is_an_error_and_keeps_its_pulses(factory, clock):
    meter = FlowMeter("pump-flow", 23, clock=clock, pin_factory=factory)
    clock.advance(1.0)
    flow(meter)
    pulse(factory, 23, 45)
    assert meter.read()[0].quality == "error"
    clock.advance(6.0)
    assert flow(meter) == pytest.approx(1.0)  # 0.1 l in 0.1 min


# --- MCP3008 ---------------------------------------------------------------------------------------------------------

class FakeMcp3008(MockSPIDevice):
    """An MCP3008 on the mock SPI pins (SCLK 11, MOSI 10, MISO 9, CE0 8 / CE1 7), answering as its datasheet's SPI
    section shows: start bit, single/differential bit, three channel bits, then a null bit and the 10-bit code."""

    def __init__(self, factory, select_pin: int = 8, reference: float = 3.3):
        super().__init__(11, 10, 9, select_pin, pin_factory=factory)
        self.reference = reference
        self.voltages = [0.0] * 8
        self.state = "idle"

    def on_start(self):
        super().on_start()
        self.state = "idle"

    def on_bit(self):
        if self.state == "idle" and self.rx_buf[-1]:
            self.state, self.rx_buf = "mode", []
        elif self.state == "mode":
            self.state, self.rx_buf = "channel", []
        elif self.state == "channel" and len(self.rx_buf) == 3:
            volts = max(0.0, min(self.reference, self.voltages[self.rx_word()]))
            self.tx_word(min(1023, int(volts / self.reference * 1024)), 12)  # null bit first, then 10 bits
            self.state = "result"


def test_mcp3008_code_follows_the_datasheet():
    assert mcp3008_volts(512, 3.3) == pytest.approx(1.65)
    assert mcp3008_volts(1023, 3.3) == pytest.approx(3.3 * 1023 / 1024)


def test_mcp3008_reads_a_calibrated_soil_probe(factory):
    chip = FakeMcp3008(factory)
    chip.voltages[5] = 1.9
    probe = Mcp3008("soil", 5, dry=2.6, wet=1.2, pin_factory=factory)
    (sample,) = probe.read()
    assert (sample.quantity, sample.unit, sample.quality) == ("soil_moisture", "%", "good")
    assert sample.value == pytest.approx(50.0, abs=0.3)  # one code is 3.2 mV, 0.23 % of this probe's span
    assert probe.details == {"voltage": "1.898 V"}


def test_mcp3008_on_chip_select_1(factory):
    FakeMcp3008(factory, select_pin=7).voltages[0] = 2.6
    (sample,) = Mcp3008("soil", 0, dry=2.6, wet=1.2, chip_select=1, pin_factory=factory).read()
    assert sample.value == pytest.approx(0.0, abs=0.3)


def test_missing_mcp3008_reads_a_rail_and_is_an_error(factory):
    (sample,) = Mcp3008("soil", 0, dry=2.6, wet=1.2, pin_factory=factory).read()
    assert (sample.quality, sample.value) == ("error", None)
    assert sample.reason.startswith("reads 0 V (code 0): probe or MCP3008 not connected?")
