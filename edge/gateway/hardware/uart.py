"""MH-Z19B CO2 sensor on the Pi's UART, in a few lines of pyserial.

The sensor talks 9600 8N1 in 9-byte packets: ``FF 01 <command> <args...> <checksum>`` out, ``FF <command> <data...>
<checksum>`` back. The driver only opens the port it is given: it never stops the serial console (getty) or touches
anything else; freeing the UART for a sensor is an installation step (docs/operations.md).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from edge.errors import SensorError
from edge.gateway.hardware.base import HardwareContext, Sample
from edge.gateway.hardware.common import Driver, DriverConfig, hardware_library, host_of
from edge.gateway.hardware.pins import Claim, serial_claims

READ_CO2 = 0x86
SET_ABC = 0x79  # automatic baseline correction: argument 0xA0 on, 0x00 off; the sensor does not answer
TIMEOUT = 1.0  # s to wait for an answer


def mhz19_checksum(packet: bytes | bytearray) -> int:
    """MH-Z19B datasheet: 0xFF minus the sum of bytes 1..7, plus 1 (the two's complement of the sum), modulo 256."""
    return (0xFF - (sum(packet[1:8]) & 0xFF) + 1) & 0xFF


def mhz19_command(command: int, argument: int = 0) -> bytes:
    """A 9-byte command packet with its checksum; ``mhz19_command(0x86)`` is ``FF 01 86 00 00 00 00 00 79``."""
    packet = bytearray([0xFF, 0x01, command, argument, 0, 0, 0, 0, 0])
    packet[8] = mhz19_checksum(packet)
    return bytes(packet)


def mhz19_co2(answer: bytes) -> int:
    """The CO2 concentration (ppm, bytes 2..3) of an answer to READ_CO2, after checking its frame and checksum."""
    if len(answer) < 9:
        raise SensorError(f"no answer within {TIMEOUT:g} s ({len(answer)} of 9 bytes): check that TX and RX are "
                          "crossed, the sensor has 5 V, and the serial console is disabled")
    if answer[0] != 0xFF or answer[1] != READ_CO2:
        raise SensorError(f"unexpected answer {answer.hex(' ')}: another device on this port?")
    if answer[8] != mhz19_checksum(answer):
        raise SensorError(f"checksum mismatch in {answer.hex(' ')} (expected {mhz19_checksum(answer):02x})")
    return answer[2] << 8 | answer[3]


class Mhz19bConfig(DriverConfig):
    QUANTITIES: ClassVar[tuple[str, ...]] = ("co2",)

    type: Literal["mhz19b"]
    port: str = Field(default="/dev/serial0", description="serial device: /dev/serial0 is the UART on GPIO 14/15")
    automatic_self_calibration: bool = Field(
        default=False, description="ABC resets the baseline to 400 ppm every 24 h, assuming the sensor saw outdoor "
        "air: wrong in a CO2-enriched greenhouse. The sensor ships with it on; the driver turns it off unless true")

    def claims(self) -> tuple[Claim, ...]:
        return serial_claims(self.port)


class Mhz19b(Driver):
    """Winsen MH-Z19B: sets automatic baseline correction after every (re)start, then reads CO2 with command 0x86."""

    Config = Mhz19bConfig

    def __init__(self, id: str, port: str = "/dev/serial0", *, automatic_self_calibration: bool = False,
                 serial: Any = None):
        super().__init__(id)
        self.port = port
        self._abc = automatic_self_calibration
        self._serial = serial  # an open pyserial-like port; None: open ``port`` at the first read

    @classmethod
    def from_config(cls, cfg: Mhz19bConfig, ctx: HardwareContext) -> "Mhz19b":
        host = host_of(ctx)
        return cls(cfg.id, cfg.port, automatic_self_calibration=cfg.automatic_self_calibration,
                   serial=host.serial(cfg.port) if host.serial is not None else None)

    def close(self) -> None:
        if self._serial is not None:
            self._serial.close()

    def _setup(self) -> None:
        if self._serial is None:
            self._serial = hardware_library("serial").Serial(self.port, 9600, timeout=TIMEOUT)
        self._serial.write(mhz19_command(SET_ABC, 0xA0 if self._abc else 0x00))

    def _measure(self) -> list[Sample]:
        self._serial.reset_input_buffer()  # drop anything left over from a half-read answer
        self._serial.write(mhz19_command(READ_CO2))
        return [self._sample("co2", mhz19_co2(self._serial.read(9)))]
