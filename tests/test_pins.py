"""`edge check` knows the Pi's header: pin names, pins that do not exist, and pins, buses and addresses with two users.

The header table is checked against gpiozero's own board data (``gpiozero.pins.data`` through ``MockFactory``), and
every conflict is a `FILE:LINE` problem that names both users with their lines.
"""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.cli import main
from edge.errors import ConfigError
from edge.gateway.clock import FakeClock
from edge.gateway.config import parse_config
from edge.gateway.hardware import actuator_driver
from edge.gateway.hardware.base import HardwareContext
from edge.gateway.hardware.pins import HEADER, find_conflicts, gpio_number

#: 40-pin boards of each generation gpiozero knows: 3B, 3B+, 4B, 5B, Zero 2 W, Zero W.
FORTY_PIN_BOARDS = ["a02082", "a020d3", "c03111", "d04170", "902120", "9000c1"]


def j8_pins(revision: str):
    return MockFactory(revision=revision).board_info.headers["J8"].pins.values()


@pytest.mark.parametrize("revision", FORTY_PIN_BOARDS)
def test_the_header_table_is_gpiozeros_j8_header(revision):
    for pin in j8_pins(revision):
        expected = int(pin.name[4:]) if pin.name.startswith("GPIO") else pin.name
        assert HEADER[pin.number] == expected, f"header pin {pin.number}"
    assert len(HEADER) == 40


@pytest.mark.parametrize("revision", FORTY_PIN_BOARDS)
def test_every_gpiozero_name_of_a_gpio_maps_to_the_same_gpio(revision):
    for pin in j8_pins(revision):
        if not pin.name.startswith("GPIO"):
            continue
        names = [name for name in pin.names if not str(name).startswith("WPI")]  # wiringPi numbers: not accepted
        assert {gpio_number(name) for name in names} == {int(pin.name[4:])}, pin.names
        assert gpio_number(str(pin.name).lower()) == int(pin.name[4:])


@pytest.mark.parametrize("revision", FORTY_PIN_BOARDS)
def test_power_and_ground_pins_are_refused_by_their_board_name(revision):
    for pin in j8_pins(revision):
        if pin.name.startswith("GPIO"):
            continue
        for name in (f"BOARD{pin.number}", f"J8:{pin.number}"):
            with pytest.raises(ValueError, match=rf"{name} is a (ground|{pin.name} power) pin, not a GPIO"):
                gpio_number(name)


def test_a_relay_on_a_board_pin_drives_the_gpio_gpiozero_gives_that_name():
    factory = MockFactory(pin_class=MockPWMPin)
    driver = actuator_driver("relay")
    config = parse_config("gateway: {id: gh-1}\nactuators:\n  - {id: fan, type: relay, kind: fan, pin: BOARD11}\n")
    assert config.actuators[0].pin == 17
    relay = driver.from_config(config.actuators[0], HardwareContext(clock=FakeClock(), pin_factory=factory))
    relay.apply(1.0)
    assert factory.pin(17).state == 1
    assert factory.pin(17) is factory.pin("BOARD11")  # gpiozero agrees: BOARD11 is GPIO 17


# ------------------------------------------------------------------------------------------------- edge check


def check(tmp_path, text: str):
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(text))
    result = CliRunner().invoke(main, ["check", "-c", str(path)], env={})
    return path, result.exit_code, [line for line in result.output.splitlines() if line]


def test_two_outputs_on_one_gpio_are_refused_naming_both_and_their_lines(tmp_path):
    path, code, lines = check(tmp_path, """\
        gateway: {id: gh-1}
        actuators:
          - id: heater
            type: relay
            kind: heater
            pin: 17
          - id: fan
            type: pwm
            kind: fan
            pin: GPIO17
        """)
    assert code == 2
    assert lines == [f"{path}:10: actuators[1].pin: GPIO 17 (header pin 11) is used twice: relay output of actuator "
                     "'heater' (line 6) and PWM output of actuator 'fan' (line 10): wire one of them to a free GPIO"]


def test_a_board_number_and_the_bcm_number_of_the_same_pin_collide(tmp_path):
    path, code, lines = check(tmp_path, """\
        gateway: {id: gh-1}
        sensors:
          - {id: tank, type: float_switch, pin: BOARD11}
        actuators:
          - {id: pump, type: relay, kind: pump, pin: 17}
        """)
    assert lines == [f"{path}:5: actuators[0].pin: GPIO 17 (header pin 11) is used twice: float switch input of "
                     "sensor 'tank' (line 3) and relay output of actuator 'pump' (line 5): wire one of them to a free "
                     "GPIO"]


def test_a_relay_on_an_i2c_pin_is_refused_while_a_sensor_uses_that_bus(tmp_path):
    path, code, lines = check(tmp_path, """\
        gateway: {id: gh-1}
        sensors:
          - id: air
            type: sht3x
            bus: 1
        actuators:
          - {id: pump, type: relay, kind: pump, pin: 2}
        """)
    assert code == 2
    assert lines == [f"{path}:7: actuators[0].pin: GPIO 2 (header pin 3) is used twice: I2C bus 1 SDA of sensor "
                     "'air' (line 5) and relay output of actuator 'pump' (line 7): wire one of them to a free GPIO"]


def test_the_i2c_pins_are_taken_by_bus_1_even_when_it_is_not_written(tmp_path):
    path, code, lines = check(tmp_path, """\
        gateway: {id: gh-1}
        sensors:
          - {id: light, type: bh1750}
        actuators:
          - {id: fan, type: relay, kind: fan, pin: BOARD5}
        """)
    assert lines == [f"{path}:5: actuators[0].pin: GPIO 3 (header pin 5) is used twice: I2C bus 1 SCL of sensor "
                     "'light' (line 3) and relay output of actuator 'fan' (line 5): wire one of them to a free GPIO"]


@pytest.mark.parametrize("pin, line", [(7, "CE1"), (8, "CE0"), (9, "MISO"), (10, "MOSI"), (11, "SCLK")])
def test_every_spi0_pin_is_taken_while_an_mcp3008_is_configured(tmp_path, pin, line):
    path, code, lines = check(tmp_path, f"""\
        gateway: {{id: gh-1}}
        sensors:
          - {{id: soil, type: mcp3008, channel: 0, chip_select: 0, zone: bed-1, dry: 2.6, wet: 1.2}}
        actuators:
          - {{id: fan, type: relay, kind: fan, pin: {pin}}}
        """)
    assert code == 2
    assert lines == [f"{path}:5: actuators[0].pin: GPIO {pin} (header pin {HEADER_PIN[pin]}) is used twice: SPI0 "
                     f"{line} of sensor 'soil' (line 3) and relay output of actuator 'fan' (line 5): wire one of "
                     "them to a free GPIO"]


HEADER_PIN = {gpio: pin for pin, gpio in HEADER.items()}


@pytest.mark.parametrize("port", ["/dev/serial0", "/dev/ttyAMA0", "/dev/ttyS0"])
def test_a_serial_sensor_on_the_pis_uart_takes_gpio_14_and_15(tmp_path, port):
    path, code, lines = check(tmp_path, f"""\
        gateway: {{id: gh-1}}
        sensors:
          - {{id: co2, type: mhz19b, port: {port}}}
        actuators:
          - {{id: fan, type: relay, kind: fan, pin: 15}}
        """)
    assert lines == [f"{path}:5: actuators[0].pin: GPIO 15 (header pin 10) is used twice: UART RXD ({port}) of "
                     "sensor 'co2' (line 3) and relay output of actuator 'fan' (line 5): wire one of them to a free "
                     "GPIO"]


def test_a_serial_sensor_on_a_usb_adapter_leaves_the_uart_pins_free(tmp_path):
    path, code, lines = check(tmp_path, """\
        gateway: {id: gh-1}
        sensors:
          - {id: co2, type: mhz19b, port: /dev/ttyUSB0}
        actuators:
          - {id: fan, type: relay, kind: fan, pin: 14}
        """)
    assert code == 0, lines


def test_a_gsm_modem_and_a_sensor_on_the_one_uart_are_refused(tmp_path):
    path, code, lines = check(tmp_path, """\
        gateway: {id: gh-1}
        sensors:
          - {id: co2, type: mhz19b, port: /dev/ttyAMA0}
        sms:
          transports:
            - {type: modem, port: /dev/serial0}
        """)
    assert lines == [f"{path}:6: sms.transports[0].port: GPIO 14 (header pin 8) is used twice: UART TXD "
                     "(/dev/ttyAMA0) of sensor 'co2' (line 3) and UART TXD (/dev/serial0) of SMS modem 'modem' "
                     "(line 6): wire one of them to a free GPIO"]


def test_two_sensors_on_one_usb_serial_port_are_refused(tmp_path):
    path, code, lines = check(tmp_path, """\
        gateway: {id: gh-1}
        sensors:
          - {id: co2-a, type: mhz19b, port: /dev/ttyUSB0}
          - {id: co2-b, type: mhz19b, port: /dev/ttyUSB0}
        """)
    assert lines == [f"{path}:4: sensors[1].port: serial port /dev/ttyUSB0 is used twice: serial port of sensor "
                     "'co2-a' (line 3) and serial port of sensor 'co2-b' (line 4): each serial device needs its own "
                     "port"]


def test_the_one_wire_bus_is_shared_by_its_probes_but_not_with_an_output(tmp_path):
    path, code, lines = check(tmp_path, """\
        gateway: {id: gh-1}
        sensors:
          - {id: pipe-in, type: ds18b20, device: 28-0316a2791eff}
          - {id: pipe-out, type: ds18b20, device: 28-0417c1b3a2ff, pin: 4}
        actuators:
          - {id: fan, type: relay, kind: fan, pin: 4}
        """)
    assert lines == [f"{path}:6: actuators[0].pin: GPIO 4 (header pin 7) is used twice: 1-Wire bus "
                     "(dtoverlay=w1-gpio) of sensor 'pipe-in' (line 3) and relay output of actuator 'fan' (line 6): "
                     "wire one of them to a free GPIO"]


def test_the_dht_and_one_wire_overlays_both_default_to_gpio_4(tmp_path):
    text = """\
        gateway: {id: gh-1}
        sensors:
          - {id: pipe, type: ds18b20, device: 28-0316a2791eff}
          - {id: shed, type: dht22}
        """
    path, code, lines = check(tmp_path, text)
    assert lines == [f"{path}:4: sensors[1].pin: GPIO 4 (header pin 7) is used twice: 1-Wire bus (dtoverlay=w1-gpio) "
                     "of sensor 'pipe' (line 3) and DHT22 data (dtoverlay=dht11) of sensor 'shed' (line 4): wire one "
                     "of them to a free GPIO"]
    path, code, lines = check(tmp_path, text.replace("type: dht22}", "type: dht22, pin: 16}"))
    assert code == 0, lines


def test_two_sensors_at_one_address_of_one_i2c_bus_are_refused(tmp_path):
    path, code, lines = check(tmp_path, """\
        gateway: {id: gh-1}
        sensors:
          - id: air-north
            type: sht3x
            address: 0x44
          - id: air-south
            type: sht4x
            address: 0x44
          - id: air-east
            type: sht4x
            bus: 3
            address: 0x44
        """)
    assert code == 2
    assert lines == [f"{path}:8: sensors[1].address: address 0x44 on I2C bus 1 is used twice: SHT3x of sensor "
                     "'air-north' (line 5) and SHT4x of sensor 'air-south' (line 8): each chip on a bus needs its own "
                     "address (set by its ADDR pin), or put one on another bus"]


def test_probes_on_the_inputs_of_one_adc_share_it_but_not_an_input(tmp_path):
    path, code, lines = check(tmp_path, """\
        gateway: {id: gh-1}
        sensors:
          - {id: bed-1, type: ads1115, channel: 0, zone: bed-1, dry: 2.6, wet: 1.2}
          - {id: bed-2, type: ads1115, channel: 1, zone: bed-2, dry: 2.6, wet: 1.2}
          - {id: bed-3, type: ads1115, channel: 1, zone: bed-3, dry: 2.6, wet: 1.2}
          - {id: bed-4, type: mcp3008, channel: 0, zone: bed-4, dry: 2.6, wet: 1.2}
          - {id: bed-5, type: mcp3008, channel: 1, zone: bed-5, dry: 2.6, wet: 1.2}
        """)
    assert lines == [f"{path}:5: sensors[2].address: address 0x48 on I2C bus 1 is used twice: ADS1115 input A1 of "
                     "sensor 'bed-2' (line 4) and ADS1115 input A1 of sensor 'bed-3' (line 5): each chip on a bus "
                     "needs its own address (set by its ADDR pin), or put one on another bus"]


def test_adcs_at_their_own_addresses_beside_other_chips_pass(tmp_path):
    path, code, lines = check(tmp_path, """\
        gateway: {id: gh-1}
        sensors:
          - {id: bed-1, type: ads1115, channel: 0, address: 0x48, zone: bed-1, dry: 2.6, wet: 1.2}
          - {id: bed-2, type: ads1115, channel: 1, address: 0x49, zone: bed-2, dry: 2.6, wet: 1.2}
          - {id: roof, type: bh1750, address: 0x23}
        """)
    assert code == 0, lines


@pytest.mark.parametrize("pin, message", [
    ("40", "there is no GPIO 40 on the Pi's header (GPIO 0-27); header pin 40 is GPIO 21: write BOARD40 if you "
           "mean the header pin"),
    ("BOARD6", "BOARD6 is a ground pin, not a GPIO"),
    ("BOARD1", "BOARD1 is a 3V3 power pin, not a GPIO"),
    ("BOARD41", "BOARD41: the Pi's header has pins 1-40"),
    ("WPI0", "unknown pin name 'WPI0': write a GPIO number (17) or GPIO17, BCM17, BOARD11 or J8:11"),
])
def test_pins_the_header_does_not_have_are_refused(tmp_path, pin, message):
    path, code, lines = check(tmp_path, f"""\
        gateway: {{id: gh-1}}
        actuators:
          - id: vent
            type: motor_vent
            kind: vent
            open_pin: 5
            close_pin: {pin}
            travel_time: 1m
        """)
    assert (code, lines) == (2, [f"{path}:7: actuators[0].close_pin: {message}"])


def test_every_conflict_is_reported_once_per_pair_of_users(tmp_path):
    path, code, lines = check(tmp_path, """\
        gateway: {id: gh-1}
        sensors:
          - {id: co2, type: mhz19b}
        actuators:
          - {id: a, type: relay, kind: fan, pin: 17}
          - {id: b, type: relay, kind: fan, pin: 17}
          - {id: c, type: relay, kind: fan, pin: 17}
        sms:
          transports:
            - {type: modem, port: /dev/serial0}
        """)
    assert [line.split(": ", 2)[1] for line in lines] == ["actuators[1].pin", "actuators[2].pin",
                                                          "sms.transports[0].port"]
    assert "actuator 'a' (line 5) and relay output of actuator 'c' (line 7)" in lines[1]


def test_pin_and_address_problems_come_with_the_others_in_one_pass():
    with pytest.raises(ConfigError) as caught:
        parse_config("gateway: {id: gh-1}\nsensors:\n  - {id: a, type: sht3x}\n  - {id: b, type: sht3x}\n"
                     "actuators:\n  - {id: f, type: relay, kind: fann, pin: 3}\n  - {id: g, type: relay, kind: fan, "
                     "pin: 3}\nlog: {level: loud}\n", "f.yaml")
    assert [problem.split(": ", 2)[1] for problem in caught.value.problems] == [
        "sensors[1].address", "actuators[0].kind", "actuators[1].pin", "log.level"]


def test_conflicts_are_found_between_any_kinds_of_claims():
    from edge.gateway.hardware.pins import Claim

    bus = [Claim(("gpio", 2), "I2C bus 1 SDA", "bus", share="i2c1")]
    users = [("a", bus), ("b", bus), ("c", [Claim(("gpio", 2), "relay output", "pin")])]
    [conflict] = find_conflicts(users)
    assert (conflict.first[0], conflict.second[0]) == ("a", "c")
