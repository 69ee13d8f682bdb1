"""The Raspberry Pi's 40-pin header, and which of its pins, buses and addresses a config's devices occupy.

``edge check`` uses this to refuse, before anything is wired or started, what would only fail on site: two devices
on one GPIO, an output on a pin that a bus uses (I2C bus 1 is GPIO 2/3, SPI0 GPIO 7-11, the UART GPIO 14/15, the
1-Wire and DHT overlays one GPIO each), a pin the header does not have, and two chips at one address of a bus.

Each device config says what it occupies as :class:`Claim` objects (``claims()``, beside its driver); this module
knows the header and finds the conflicts. Nothing here imports a hardware library.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

#: The J8 header of every 40-pin Pi (1 B+, 2, 3, 4, 5, 400, Zero): header pin -> BCM GPIO number, or what the pin
#: carries when it is not a GPIO. ``tests/test_pins.py`` checks it against gpiozero's own board data.
HEADER: dict[int, int | str] = {
    1: "3V3", 2: "5V", 3: 2, 4: "5V", 5: 3, 6: "GND", 7: 4, 8: 14, 9: "GND", 10: 15,
    11: 17, 12: 18, 13: 27, 14: "GND", 15: 22, 16: 23, 17: "3V3", 18: 24, 19: 10, 20: "GND",
    21: 9, 22: 25, 23: 11, 24: 8, 25: "GND", 26: 7, 27: 0, 28: 1, 29: 5, 30: "GND",
    31: 6, 32: 12, 33: 13, 34: "GND", 35: 19, 36: 16, 37: 26, 38: 20, 39: "GND", 40: 21,
}

#: BCM GPIO number -> header pin.
BOARD_PIN: dict[int, int] = {gpio: pin for pin, gpio in HEADER.items() if isinstance(gpio, int)}

#: I2C bus number -> (SDA, SCL) GPIOs. Bus 1 is the one ``dtparam=i2c_arm=on`` enables; bus 0 (``i2c_vc``) is
#: normally the HAT EEPROM's. Other bus numbers come from overlays whose pins are configurable: not checked.
I2C_PINS: dict[int, tuple[int, int]] = {0: (0, 1), 1: (2, 3)}

#: SPI0 (``dtparam=spi=on``): the kernel claims both chip-select lines as soon as SPI is enabled.
SPI0_PINS: dict[int, str] = {9: "MISO", 10: "MOSI", 11: "SCLK", 8: "CE0", 7: "CE1"}

#: Serial devices that are the Pi's UART on GPIO 14 (TXD) and 15 (RXD), depending on the model and overlays.
UART_PORTS = frozenset({"/dev/serial0", "/dev/ttyAMA0", "/dev/ttyS0"})

#: The GPIO ``dtoverlay=w1-gpio`` and ``dtoverlay=dht11`` use when no ``gpiopin=`` is given.
OVERLAY_DEFAULT_GPIO = 4

_NAMED = re.compile(r"^(GPIO|BCM|BOARD|J8:)(\d+)$", re.IGNORECASE)


def gpio_number(spec: Any) -> int:
    """The BCM GPIO number of a pin as a config may write it: ``17``, ``"17"``, ``"GPIO17"``, ``"BCM17"``,
    ``"BOARD11"`` or ``"J8:11"`` (gpiozero's names; header pin numbers are mapped with :data:`HEADER`). Anything
    else, a GPIO the header does not have, or a power or ground pin is a ``ValueError`` that says what to write."""
    if isinstance(spec, bool) or not isinstance(spec, (int, str)):
        raise ValueError(f"a pin is a GPIO number (17) or a name such as GPIO17 or BOARD11, not {spec!r}")
    text = str(spec).strip()
    match = _NAMED.match(text)
    if match and match.group(1).upper() in ("BOARD", "J8:"):
        return _header_gpio(int(match.group(2)), text)
    number = int(match.group(2)) if match else int(text) if text.isdecimal() else None
    if number is None:
        raise ValueError(f"unknown pin name {text!r}: write a GPIO number (17) or GPIO17, BCM17, BOARD11 or J8:11")
    if number not in BOARD_PIN:
        hint = (f"; header pin {number} is GPIO {HEADER[number]}: write BOARD{number} if you mean the header pin"
                if isinstance(HEADER.get(number), int) else "")
        raise ValueError(f"there is no GPIO {number} on the Pi's header (GPIO 0-27){hint}")
    return number


def _header_gpio(pin: int, text: str) -> int:
    carries = HEADER.get(pin)
    if carries is None:
        raise ValueError(f"{text}: the Pi's header has pins 1-40")
    if isinstance(carries, str):
        what = "ground" if carries == "GND" else f"{carries} power"
        raise ValueError(f"{text} is a {what} pin, not a GPIO")
    return carries


#: A config field holding one GPIO: validated and stored as its BCM number, whichever way it was written.
GpioPin = Annotated[int, BeforeValidator(gpio_number),
                    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}]})]


def describe_gpio(number: int) -> str:
    """``GPIO 17 (header pin 11)``."""
    return f"GPIO {number} (header pin {BOARD_PIN[number]})" if number in BOARD_PIN else f"GPIO {number}"


# ------------------------------------------------------------------------------------------------- who uses what


@dataclass(frozen=True)
class Claim:
    """One thing a device occupies: a GPIO, an address on a bus, a chip select, a serial port.

    Two claims on one ``resource`` conflict unless both carry the same ``share`` (the devices of one bus share its
    pins; probes on one ADC share its address) and they differ in ``part`` (an ADC channel), when they have one."""

    resource: tuple[Hashable, ...]  # ("gpio", 17), ("i2c", 1, 0x44), ("spi", 0, 1), ("serial", "/dev/ttyUSB0")
    role: str  # what the device does with it: "relay output", "I2C bus 1 SDA", "ADS1115 channel 0"
    key: str  # the config key that decides it, for the problem's line: "pin", "bus", "address", "port"
    share: str | None = None
    part: Hashable | None = None

    def compatible(self, other: "Claim") -> bool:
        if self.share is None or self.share != other.share:
            return False
        return self.part is None or other.part is None or self.part != other.part


def gpio_claim(number: int, role: str, key: str = "pin", share: str | None = None) -> Claim:
    return Claim(("gpio", number), role, key, share)


def i2c_claims(bus: int, address: int, chip: str, *, share: str | None = None, part: Hashable | None = None,
               role: str | None = None) -> tuple[Claim, ...]:
    """A chip at ``address`` on I2C ``bus``, and the bus's pins (shared by every device on that bus)."""
    pins = tuple(gpio_claim(gpio, f"I2C bus {bus} {line}", "bus", share=f"i2c{bus}")
                 for gpio, line in zip(I2C_PINS.get(bus, ()), ("SDA", "SCL")))
    return (Claim(("i2c", bus, address), role or chip, "address", share, part), *pins)


def spi0_claims(chip_select: int, role: str, *, share: str | None = None,
                part: Hashable | None = None) -> tuple[Claim, ...]:
    """A device on SPI0's chip select ``chip_select``, and SPI0's pins (both CE lines: the kernel claims them)."""
    pins = tuple(gpio_claim(gpio, f"SPI0 {line}", "chip_select", share="spi0") for gpio, line in SPI0_PINS.items())
    return (Claim(("spi", 0, chip_select), role, "chip_select", share, part), *pins)


def serial_claims(port: str, key: str = "port") -> tuple[Claim, ...]:
    """A serial port; the Pi's own UART is GPIO 14 and 15."""
    if port in UART_PORTS:
        return (gpio_claim(14, f"UART TXD ({port})", key), gpio_claim(15, f"UART RXD ({port})", key))
    return (Claim(("serial", port), "serial port", key),)


def describe_resource(resource: tuple[Hashable, ...]) -> str:
    kind = resource[0]
    if kind == "gpio":
        return describe_gpio(int(resource[1]))  # type: ignore[call-overload]
    if kind == "i2c":
        return f"address 0x{resource[2]:02x} on I2C bus {resource[1]}"
    if kind == "spi":
        return f"SPI{resource[1]} chip select CE{resource[2]}"
    return f"serial port {resource[1]}"


_HINTS = {
    "gpio": "wire one of them to a free GPIO",
    "i2c": "each chip on a bus needs its own address (set by its ADDR pin), or put one on another bus",
    "spi": "put the second chip on the other chip select",
    "serial": "each serial device needs its own port",
}


@dataclass(frozen=True)
class Conflict:
    """Two users of one resource: ``first`` (earlier in the file) and ``second``, each ``(user, claim)``."""

    resource: tuple[Hashable, ...]
    first: tuple[Any, Claim]
    second: tuple[Any, Claim]

    @property
    def hint(self) -> str:
        return _HINTS[str(self.resource[0])]


def find_conflicts(users: Iterable[tuple[Any, Iterable[Claim]]]) -> list[Conflict]:
    """Every pair of users whose claims collide, once per pair (the first resource they collide on), each later
    user against the first one it collides with. ``users`` are ``(anything naming the user, its claims)``."""
    holders: dict[tuple[Hashable, ...], list[tuple[int, Any, Claim]]] = {}
    conflicts: list[Conflict] = []
    reported: set[tuple[int, int]] = set()
    for index, (user, claims) in enumerate(users):
        for claim in claims:
            for other_index, other, held in holders.get(claim.resource, []):
                if other_index != index and (other_index, index) not in reported and not held.compatible(claim):
                    reported.add((other_index, index))
                    conflicts.append(Conflict(claim.resource, (other, held), (user, claim)))
                    break
            holders.setdefault(claim.resource, []).append((index, user, claim))
    return conflicts
