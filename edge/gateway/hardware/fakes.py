"""Fake hardware that behaves like the datasheets say, for the tests and for trying ``edge probe`` without a Pi.

- :class:`FakeI2CBus` carries chip models at their addresses. It implements the three operations the I2C drivers use
  (``write``, ``read``, ``write_read``) and answers an absent or unplugged chip the way Linux does: ``OSError``
  EREMOTEIO (NACK). The chip models keep time with the bus's clock: a read before a measurement is finished gets
  what the real chip gives (a NACK for Sensirion chips, stale registers for the others).
- :class:`FakeMhz19Port` is an MH-Z19B behind a pyserial-like port.
- :class:`FlakyFiles` makes sysfs reads fail with the errors the kernel gives (EIO from a DHT22 checksum error).

Fake sysfs trees (``/sys/bus/w1/devices``, ``/sys/bus/iio/devices``) are plain directories: see ``tests/data/``.
Nothing here imports a hardware library.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edge.errors import SensorError
from edge.gateway.clock import FakeClock
from edge.gateway.hardware.i2c import Bme280Calibration, decode_words, encode_words
from edge.gateway.hardware.uart import mhz19_checksum


def nack() -> OSError:
    """What Linux I2C adapters raise when nobody acknowledges: errno 121, Remote I/O error."""
    return OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))


def _word(value: float) -> int:
    return max(0, min(0xFFFF, round(value)))


class FakeI2CDevice:
    """One chip on a :class:`FakeI2CBus`. ``plugged = False`` makes it NACK everything, like a pulled cable."""

    def __init__(self) -> None:
        self.plugged = True
        self.clock: Any = FakeClock()  # replaced by the bus's clock on attach

    def on_write(self, data: bytes) -> None:  # pragma: no cover - every chip overrides
        raise NotImplementedError

    def on_read(self, length: int) -> bytes:  # pragma: no cover - every chip overrides
        raise NotImplementedError


class FakeI2CBus:
    """A register-level fake I2C bus: ``attach(address, chip)``, then hand it to drivers as their bus."""

    def __init__(self, clock: Any = None):
        self.clock = clock if clock is not None else FakeClock()
        self.devices: dict[int, FakeI2CDevice] = {}

    def attach(self, address: int, device: FakeI2CDevice) -> Any:
        device.clock = self.clock
        self.devices[address] = device
        return device

    def write(self, address: int, data: bytes) -> None:
        device = self._device(address)
        if data:  # an empty write is SMBus "quick write": the address is acknowledged and nothing else happens
            device.on_write(bytes(data))

    def read(self, address: int, length: int) -> bytes:
        return self._device(address).on_read(length)

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        device = self._device(address)
        device.on_write(bytes(data))
        return device.on_read(length)

    def close(self) -> None:
        """Nothing to release: the bus belongs to the test that built it."""

    def _device(self, address: int) -> FakeI2CDevice:
        device = self.devices.get(address)
        if device is None or not device.plugged:
            raise nack()
        return device


# --- Sensirion ------------------------------------------------------------------------------------------------------

class _FakeSensirionHumidity(FakeI2CDevice):
    """A single-shot humidity chip: the measure command, then after DURATION two words with CRC; earlier: NACK."""

    COMMAND: bytes
    DURATION: float

    def __init__(self, temperature: float = 23.0, humidity: float = 50.0):
        super().__init__()
        self.temperature = temperature
        self.humidity = humidity
        self.corrupt_crc = False
        self._ready_at: float | None = None

    def on_write(self, data: bytes) -> None:
        if data != self.COMMAND:
            raise nack()
        self._ready_at = self.clock.monotonic() + self.DURATION

    def on_read(self, length: int) -> bytes:
        if self._ready_at is None or self.clock.monotonic() < self._ready_at:
            raise nack()  # no measurement started, or still measuring: the read header is not acknowledged
        self._ready_at = None
        data = bytearray(encode_words(_word((self.temperature + 45.0) * 65535.0 / 175.0),
                                      _word(self._raw_humidity())))
        if self.corrupt_crc:
            data[5] ^= 0x01
        return bytes(data[:length])

    def _raw_humidity(self) -> float:  # pragma: no cover - every chip overrides
        raise NotImplementedError


class FakeSht3x(_FakeSensirionHumidity):
    COMMAND = b"\x24\x00"  # single shot, high repeatability, no clock stretching
    DURATION = 0.015

    def _raw_humidity(self) -> float:
        return self.humidity * 65535.0 / 100.0


class FakeSht4x(_FakeSensirionHumidity):
    COMMAND = b"\xfd"  # measure, high precision
    DURATION = 0.0083

    def _raw_humidity(self) -> float:
        return (self.humidity + 6.0) * 65535.0 / 125.0


class FakeScd4x(FakeI2CDevice):
    """An SCD4x: idle after power-up with ASC on (the factory default), a measurement every 5 s in periodic mode.

    In periodic mode it NACKs every command but the four the datasheet allows; after stop_periodic_measurement it
    NACKs everything for 500 ms; read_measurement with no new data is NACKed; a command argument with a bad CRC is
    NACKed and not executed.
    """

    PERIODIC_ONLY = {0xEC05, 0x3F86, 0xE4B8, 0xE000}

    def __init__(self, co2: int = 800, temperature: float = 24.0, humidity: float = 55.0):
        super().__init__()
        self.co2, self.temperature, self.humidity = co2, temperature, humidity
        self.asc_enabled = True
        self.altitude = 0
        self.periodic = False
        self._started = 0.0
        self._taken = 0
        self._busy_until = float("-inf")
        self._reply: bytes | None = None

    def on_write(self, data: bytes) -> None:
        now = self.clock.monotonic()
        if now < self._busy_until or len(data) < 2:
            raise nack()
        command = int.from_bytes(data[:2], "big")
        if self.periodic and command not in self.PERIODIC_ONLY:
            raise nack()
        try:
            arguments = decode_words(data[2:])
        except SensorError:
            raise nack() from None
        self._reply = None
        if command == 0x21B1:
            self.periodic, self._started, self._taken = True, now, 0
        elif command == 0x3F86:
            self.periodic, self._busy_until = False, now + 0.5
        elif command == 0xE4B8:
            self._reply = encode_words(0x8006 if self._measurements(now) > self._taken else 0x8000)
        elif command == 0xEC05:
            self._read_measurement(now)
        elif command == 0x2416:
            self.asc_enabled = bool(arguments[0])
        elif command == 0x2427:
            self.altitude = arguments[0]
        else:
            raise nack()

    def on_read(self, length: int) -> bytes:
        if self._reply is None:
            raise nack()
        reply, self._reply = self._reply, None
        return reply[:length]

    def _measurements(self, now: float) -> int:
        return int((now - self._started) // 5.0) if self.periodic else 0

    def _read_measurement(self, now: float) -> None:
        if self._measurements(now) <= self._taken:
            return  # no new data: the read is NACKed
        self._taken = self._measurements(now)
        self._reply = encode_words(self.co2, _word((self.temperature + 45.0) * 65536.0 / 175.0),
                                   _word(self.humidity * 65536.0 / 100.0))


# --- BME280, ADS1115, BH1750 ------------------------------------------------------------------------------------------

#: The worked example in Bosch's BMP280 datasheet ("calculating pressure and temperature"), whose formulas the BME280
#: shares: adc_T 519888 gives 25.08 °C, adc_P 415148 gives 100653.27 Pa. The humidity trimming values are typical of
#: a BME280 (the datasheet has no worked humidity example).
BOSCH_EXAMPLE = Bme280Calibration(t=(27504, 26435, -1000),
                                  p=(36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000),
                                  h=(75, 362, 0, 313, 50, 30))


class FakeBme280(FakeI2CDevice):
    """A BME280 (or, with ``chip_id=0x58``, a BMP280) in sleep mode until ctrl_meas asks for a forced measurement.

    A write sets the register pointer and stores any following bytes from there; a read returns registers from the
    pointer on. Data registers hold their reset values until a measurement finishes.
    """

    DURATION = 0.0093

    def __init__(self, chip_id: int = 0x60, calibration: Bme280Calibration = BOSCH_EXAMPLE, adc_t: int = 519888,
                 adc_p: int = 415148, adc_h: int = 27000):
        super().__init__()
        self.adc_t, self.adc_p, self.adc_h = adc_t, adc_p, adc_h
        self.registers = bytearray(256)
        self.pointer = 0
        self.registers[0xD0] = chip_id
        t, p = calibration.t, calibration.p
        self.registers[0x88:0xA0] = struct.pack("<HhhHhhhhhhhh", *t, *p)
        if chip_id == 0x60 and calibration.h is not None:
            self._store_humidity_calibration(calibration.h)
        self.registers[0xF7:0xFF] = bytes([0x80, 0, 0, 0x80, 0, 0, 0x80, 0])  # reset values: nothing measured
        self._done_at: float | None = None

    def _store_humidity_calibration(self, h: tuple[int, ...]) -> None:
        h1, h2, h3, h4, h5, h6 = h
        self.registers[0xA1] = h1
        self.registers[0xE1:0xE8] = struct.pack("<hBbBbb", h2, h3, h4 >> 4, (h5 & 0x0F) << 4 | h4 & 0x0F, h5 >> 4, h6)

    def on_write(self, data: bytes) -> None:
        self.pointer = data[0]
        for register, value in enumerate(data[1:], start=self.pointer):
            self.registers[register] = value
            if register == 0xF4 and value & 0b11 in (0b01, 0b10):  # forced mode: one measurement
                self._done_at = self.clock.monotonic() + self.DURATION
                self.registers[0xF3] |= 0x08

    def on_read(self, length: int) -> bytes:
        self._update()
        return bytes(self.registers[self.pointer:self.pointer + length])

    def _update(self) -> None:
        if self._done_at is None or self.clock.monotonic() < self._done_at:
            return
        self._done_at = None
        self.registers[0xF3] &= ~0x08 & 0xFF
        self.registers[0xF4] &= 0xFC  # back to sleep mode
        self.registers[0xF7:0xFD] = (self.adc_p << 4).to_bytes(3, "big") + (self.adc_t << 4).to_bytes(3, "big")
        if self.registers[0xD0] == 0x60:
            self.registers[0xFD:0xFF] = self.adc_h.to_bytes(2, "big")


class FakeAds1115(FakeI2CDevice):
    """An ADS1115 with ``voltages`` on AIN0..AIN3: single-shot conversions against GND at the configured gain and
    rate; the config register's OS bit reads 0 while converting; the conversion register is big-endian signed."""

    FULL_SCALE = {0: 6.144, 1: 4.096, 2: 2.048, 3: 1.024, 4: 0.512}
    RATES = (8, 16, 32, 64, 128, 250, 475, 860)

    def __init__(self, voltages: Iterable[float] = (0.0, 0.0, 0.0, 0.0)):
        super().__init__()
        self.voltages = list(voltages)
        self.pointer = 0x00
        self._config = 0x8583  # reset value
        self._conversion = 0
        self._done_at: float | None = None

    def on_write(self, data: bytes) -> None:
        self.pointer = data[0] & 0x03
        if len(data) >= 3 and self.pointer == 0x01:
            self._configure(int.from_bytes(data[1:3], "big"))

    def on_read(self, length: int) -> bytes:
        self._update()
        value = self._config if self.pointer == 0x01 else self._conversion
        return value.to_bytes(2, "big", signed=self.pointer == 0x00)[:length]

    def _configure(self, config: int) -> None:
        self._config = config & 0x7FFF
        if config & 0x8000:  # OS=1: start a single conversion
            self._done_at = self.clock.monotonic() + 1.0 / self.RATES[config >> 5 & 0x07]

    def _update(self) -> None:
        if self._done_at is None or self.clock.monotonic() < self._done_at:
            return
        self._done_at = None
        mux, gain = self._config >> 12 & 0x07, self._config >> 9 & 0x07
        full_scale = self.FULL_SCALE.get(gain, 0.256)
        volts = self.voltages[mux - 4] if mux >= 4 else 0.0  # differential inputs are not modelled
        self._conversion = max(-32768, min(32767, round(volts / full_scale * 32768)))
        self._config |= 0x8000


class FakeBh1750(FakeI2CDevice):
    """A BH1750 measuring ``lux``: opcodes in, the last finished result out (stale until the measurement is done)."""

    def __init__(self, lux: float = 500.0):
        super().__init__()
        self.lux = lux
        self.mtreg = 69
        self.powered = False
        self._result = 0
        self._done_at: float | None = None

    def on_write(self, data: bytes) -> None:
        opcode = data[0]
        if opcode == 0x01:
            self.powered = True
        elif opcode == 0x00:
            self.powered = False
        elif opcode & 0xF8 == 0x40:
            self.mtreg = (opcode & 0x07) << 5 | self.mtreg & 0x1F
        elif opcode & 0xE0 == 0x60:
            self.mtreg = self.mtreg & 0xE0 | opcode & 0x1F
        elif opcode == 0x20 and self.powered:
            self._done_at = self.clock.monotonic() + 0.180 * self.mtreg / 69

    def on_read(self, length: int) -> bytes:
        if self._done_at is not None and self.clock.monotonic() >= self._done_at:
            self._done_at, self.powered = None, False  # one-time mode powers down after measuring
            self._result = _word(self.lux * 1.2 * self.mtreg / 69)
        return self._result.to_bytes(2, "big")[:length]


# --- Serial and sysfs -----------------------------------------------------------------------------------------------

class FakeMhz19Port:
    """An MH-Z19B on a pyserial-like port: 9-byte commands with checksum in, 9-byte answers out.

    ``plugged = False`` makes reads time out (return nothing); ``corrupt_checksum`` spoils the next answers.
    Automatic baseline calibration starts on, as the sensor ships.
    """

    def __init__(self, co2: int = 650, temperature: int = 24):
        self.co2 = co2
        self.temperature = temperature
        self.abc = True
        self.plugged = True
        self.corrupt_checksum = False
        self.closed = False
        self._pending = bytearray()

    def write(self, data: bytes) -> int:
        if self.plugged and len(data) == 9 and data[0] == 0xFF and data[8] == mhz19_checksum(data):
            self._answer(data)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        out, self._pending = bytes(self._pending[:size]), self._pending[size:]
        return out

    def reset_input_buffer(self) -> None:
        self._pending.clear()

    def close(self) -> None:
        self.closed = True

    def _answer(self, command: bytes) -> None:
        if command[2] == 0x79:
            self.abc = command[3] == 0xA0  # no answer to this command
        elif command[2] == 0x86:
            packet = bytearray([0xFF, 0x86, self.co2 >> 8, self.co2 & 0xFF, self.temperature + 40, 0, 0, 0, 0])
            packet[8] = mhz19_checksum(packet) ^ (0x01 if self.corrupt_checksum else 0)
            self._pending += packet


class FlakyFiles:
    """A ``Host.read_text`` that fails like sysfs: each file name can be given errno values to raise, in turn."""

    def __init__(self) -> None:
        self.failures: dict[str, list[int]] = {}
        self.reads: list[Path] = []

    def fail(self, name: str, *codes: int) -> None:
        self.failures.setdefault(name, []).extend(codes)

    def __call__(self, path: Path) -> str:
        self.reads.append(path)
        queued = self.failures.get(path.name)
        if queued:
            code = queued.pop(0)
            raise OSError(code, os.strerror(code), str(path))
        return path.read_text()
