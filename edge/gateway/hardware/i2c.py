"""I2C sensors at register level: SHT3x, SHT4x, BME280, BH1750, ADS1115 (capacitive soil probes) and SCD4x.

Every driver speaks to its chip through three bus operations, :class:`I2CBus`: ``write`` bytes, ``read`` bytes, and
``write_read`` (write a register pointer or command, then read, with a repeated start). :class:`SMBusI2C` implements
them with smbus2's ``i2c_rdwr`` on ``/dev/i2c-N``, imported and opened at the first transfer, so a missing bus or
library is a read error rather than a crash; ``edge.gateway.hardware.fakes.FakeI2CBus`` implements them with register
models of the chips. The Linux kernel reports a chip that does not acknowledge (unplugged, wrong address) as
``OSError`` EREMOTEIO; :func:`i2c_hint` turns it and its kin into a reason an installer can act on.

Conversions follow the datasheets; each function says which formula it implements.
"""

from __future__ import annotations

import errno
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from pydantic import Field, field_validator

from edge.errors import SensorError
from edge.gateway.hardware.base import HardwareContext, Sample
from edge.gateway.hardware.common import (Driver, DriverConfig, Host, SoilProbeConfig, at_least, crc8,
                                          describe_os_error, hardware_library, host_of, soil_percent)
from edge.gateway.hardware.pins import Claim, i2c_claims


class I2CBus(Protocol):
    """What an I2C driver needs from a bus. Failures are ``OSError`` with the kernel's errno (EREMOTEIO: NACK)."""

    def write(self, address: int, data: bytes) -> None: ...

    def read(self, address: int, length: int) -> bytes: ...

    def write_read(self, address: int, data: bytes, length: int) -> bytes: ...

    def close(self) -> None: ...


class SMBusI2C:
    """``/dev/i2c-<number>`` through smbus2's combined transfers, opened at the first transfer."""

    def __init__(self, number: int = 1):
        self.number = number
        self._smbus: Any = None
        self._message: Any = None  # smbus2.i2c_msg

    def write(self, address: int, data: bytes) -> None:
        bus = self._open()
        bus.i2c_rdwr(self._message.write(address, data))

    def read(self, address: int, length: int) -> bytes:
        bus = self._open()
        reply = self._message.read(address, length)
        bus.i2c_rdwr(reply)
        return bytes(reply)

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        bus = self._open()
        reply = self._message.read(address, length)
        bus.i2c_rdwr(self._message.write(address, data), reply)
        return bytes(reply)

    def close(self) -> None:
        if self._smbus is not None:
            self._smbus.close()
            self._smbus = None

    def _open(self) -> Any:
        if self._smbus is None:
            smbus2 = hardware_library("smbus2")
            self._smbus, self._message = smbus2.SMBus(self.number), smbus2.i2c_msg
        return self._smbus


def open_bus(host: Host, number: int) -> I2CBus:
    """The bus ``number`` as the host provides it: injected (a fake), else the real ``/dev/i2c-<number>``."""
    return host.i2c(number) if host.i2c is not None else SMBusI2C(number)


#: errno values with which Linux I2C adapters report an address nobody acknowledged.
NO_ANSWER = frozenset({errno.EREMOTEIO, errno.ENXIO, errno.EIO})


def i2c_hint(exc: OSError, bus_number: int) -> str:
    """A bus error as an installer reads it: what is wrong, and what to check."""
    if exc.errno in (errno.ENOENT, errno.ENODEV):
        return f"/dev/i2c-{bus_number} does not exist: enable I2C (dtparam=i2c_arm=on in config.txt)"
    if exc.errno == errno.EACCES:
        return f"no permission on /dev/i2c-{bus_number}: add the service user to the i2c group"
    if exc.errno in NO_ANSWER:
        return "no answer (NACK): check power, the SDA/SCL wiring and the address"
    if exc.errno == errno.ETIMEDOUT:
        return "bus timeout: SDA or SCL held low? check the pull-ups and the cable length"
    return describe_os_error(exc)


class I2CConfig(DriverConfig):
    """Keys every I2C sensor has. A driver's config sets ``CHIP``, ``ADDRESSES`` and the default ``address``."""

    CHIP: ClassVar[str] = ""
    ADDRESSES: ClassVar[tuple[int, ...]] = ()

    bus: int = Field(default=1, ge=0, description="I2C bus number; 1 is SDA/SCL on GPIO 2/3 (header pins 3 and 5)")
    address: int

    @field_validator("address")
    @classmethod
    def _chip_answers_there(cls, address: int) -> int:
        if address not in cls.ADDRESSES:
            listed = " or ".join(f"0x{a:02x}" for a in cls.ADDRESSES)
            raise ValueError(f"{cls.CHIP} answers at {listed}, not 0x{address:02x}")
        return address

    def claims(self) -> tuple[Claim, ...]:
        return i2c_claims(self.bus, self.address, self.CHIP)


class I2CDriver(Driver):
    """What the I2C drivers share: bus, address, the wait between command and result, errors with context."""

    Config: ClassVar[type[I2CConfig]]

    def __init__(self, id: str, *, address: int | None = None, bus: I2CBus | None = None, bus_number: int = 1,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__(id)
        self.address = self.Config.model_fields["address"].default if address is None else address
        self.bus_number = bus_number
        self._bus = SMBusI2C(bus_number) if bus is None else bus
        self._sleep = sleep

    @classmethod
    def from_config(cls, cfg: I2CConfig, ctx: HardwareContext) -> "I2CDriver":
        return cls(cfg.id, **cls._i2c_args(cfg, ctx))

    @staticmethod
    def _i2c_args(cfg: I2CConfig, ctx: HardwareContext) -> dict[str, Any]:
        host = host_of(ctx)
        return {"address": cfg.address, "bus": open_bus(host, cfg.bus), "bus_number": cfg.bus, "sleep": host.sleep}

    def close(self) -> None:
        self._bus.close()

    def _write(self, data: bytes) -> None:
        self._transfer(self._bus.write, data)

    def _read(self, length: int) -> bytes:
        return self._transfer(self._bus.read, length)

    def _read_register(self, register: int, length: int) -> bytes:
        return self._transfer(self._bus.write_read, bytes([register]), length)

    def _write_register(self, register: int, *values: int) -> None:
        self._write(bytes([register, *values]))

    def _transfer(self, operation: Callable[..., Any], *args: Any) -> Any:
        try:
            return operation(self.address, *args)
        except OSError as exc:
            where = f"I2C bus {self.bus_number}, address 0x{self.address:02x}"
            raise SensorError(f"{where}: {i2c_hint(exc, self.bus_number)}") from exc


# --- Sensirion: SHT3x, SHT4x, SCD4x ----------------------------------------------------------------------------------

def encode_words(*words: int) -> bytes:
    """16-bit words as Sensirion chips exchange them: big-endian, each followed by its CRC-8."""
    out = bytearray()
    for word in words:
        pair = word.to_bytes(2, "big")
        out += pair + bytes([crc8(pair)])
    return bytes(out)


def decode_words(data: bytes) -> list[int]:
    """The words of a Sensirion reply (2 bytes + CRC each); a CRC mismatch is a ``SensorError``."""
    words = []
    for index in range(0, len(data) - len(data) % 3, 3):
        pair, crc = data[index:index + 2], data[index + 2]
        if crc8(pair) != crc:
            raise SensorError(f"CRC mismatch in word {index // 3} (got 0x{crc:02x}, expected 0x{crc8(pair):02x}): "
                              "noise on the bus? check cable length and pull-ups")
        words.append(int.from_bytes(pair, "big"))
    return words


class _SensirionDriver(I2CDriver):
    def _command(self, code: int, *arguments: int) -> None:
        self._write(code.to_bytes(2, "big") + encode_words(*arguments))

    def _read_words(self, count: int) -> list[int]:
        return decode_words(self._read(3 * count))


def sht_temperature(raw: int) -> float:
    """SHT3x and SHT4x datasheets: T = -45 + 175 · S_T / (2^16 - 1), °C."""
    return -45.0 + 175.0 * raw / 65535.0


def sht3x_humidity(raw: int) -> float:
    """SHT3x datasheet: RH = 100 · S_RH / (2^16 - 1), %."""
    return 100.0 * raw / 65535.0


def sht4x_humidity(raw: int) -> float:
    """SHT4x datasheet: RH = -6 + 125 · S_RH / (2^16 - 1), cropped to 0..100 % as the datasheet recommends."""
    return min(100.0, max(0.0, -6.0 + 125.0 * raw / 65535.0))


class Sht3xConfig(I2CConfig):
    CHIP = "SHT3x"
    ADDRESSES = (0x44, 0x45)
    QUANTITIES = ("temperature", "humidity")

    type: Literal["sht3x"]
    address: int = Field(default=0x44, description="0x44 (ADDR pin to GND) or 0x45 (ADDR to VDD)")


class Sht4xConfig(I2CConfig):
    CHIP = "SHT4x"
    ADDRESSES = (0x44, 0x45, 0x46)
    QUANTITIES = ("temperature", "humidity")

    type: Literal["sht4x"]
    address: int = Field(default=0x44, description="fixed by the part: SHT40-A 0x44, SHT40-B 0x45, SHT40-C 0x46")


class _SensirionHumidity(_SensirionDriver):
    """A single-shot measurement: one command, the datasheet's maximum duration, then temperature and humidity."""

    MEASURE: ClassVar[bytes]
    DURATION: ClassVar[float]
    _humidity: ClassVar[Callable[[int], float]]  # the chip's humidity formula, a staticmethod

    def _measure(self) -> list[Sample]:
        self._write(self.MEASURE)
        self._sleep(self.DURATION)  # reading earlier is NACKed: the chip is still measuring
        raw_t, raw_rh = self._read_words(2)
        return [self._sample("temperature", sht_temperature(raw_t)),
                self._sample("humidity", self._humidity(raw_rh))]


class Sht3x(_SensirionHumidity):
    """Sensirion SHT3x (SHT30/31/35, SHT85): single shot, high repeatability, no clock stretching (0x2400, 15 ms)."""

    Config = Sht3xConfig
    MEASURE = b"\x24\x00"
    DURATION = 0.016
    _humidity = staticmethod(sht3x_humidity)


class Sht4x(_SensirionHumidity):
    """Sensirion SHT4x (SHT40/41/45): measure with high precision (0xFD, 8.3 ms)."""

    Config = Sht4xConfig
    MEASURE = b"\xfd"
    DURATION = 0.009
    _humidity = staticmethod(sht4x_humidity)


# --- SCD4x: CO2 (photoacoustic), with temperature and humidity ------------------------------------------------------

SCD4X_PERIOD = 5.0  # s between measurements in periodic mode


class Scd4xConfig(I2CConfig):
    CHIP = "SCD4x"
    ADDRESSES = (0x62,)
    QUANTITIES = ("co2", "temperature", "humidity")

    type: Literal["scd4x"]
    address: int = Field(default=0x62, description="always 0x62")
    automatic_self_calibration: bool = Field(
        default=False, description="ASC assumes the sensor sees outdoor air (~420 ppm) at least once a week: wrong, "
        "and drifting, in a CO2-enriched greenhouse; turn it on only where the house is aired daily")
    altitude: int = Field(default=0, ge=0, le=3000,
                          description="metres above sea level, for pressure compensation (Khorramabad ~1150)")

    @field_validator("interval")
    @classmethod
    def _not_faster_than_the_sensor(cls, interval: float) -> float:
        return at_least(interval, SCD4X_PERIOD, "an SCD4x measures every 5 s")


def scd4x_temperature(raw: int) -> float:
    """SCD4x datasheet: T = -45 + 175 · word / 2^16, °C."""
    return -45.0 + 175.0 * raw / 65536.0


def scd4x_humidity(raw: int) -> float:
    """SCD4x datasheet: RH = 100 · word / 2^16, %."""
    return 100.0 * raw / 65536.0


class Scd4x(_SensirionDriver):
    """Sensirion SCD40/SCD41 in periodic measurement mode (one measurement every 5 s).

    The automatic self-calibration (ASC) and altitude settings are volatile: ``_setup`` writes them after every
    power-up, in idle mode (stop periodic measurement, wait 500 ms), and never to EEPROM (persist_settings wears it).
    """

    Config = Scd4xConfig
    START_PERIODIC = 0x21B1
    STOP_PERIODIC = 0x3F86
    READ_MEASUREMENT = 0xEC05
    GET_DATA_READY = 0xE4B8
    SET_ASC = 0x2416
    SET_ALTITUDE = 0x2427

    def __init__(self, id: str, *, clock: Any, automatic_self_calibration: bool = False, altitude: int = 0,
                 **i2c: Any):
        super().__init__(id, **i2c)
        self._clock = clock
        self._asc = automatic_self_calibration
        self._altitude = altitude
        self._started = 0.0

    @classmethod
    def from_config(cls, cfg: Scd4xConfig, ctx: HardwareContext) -> "Scd4x":
        return cls(cfg.id, clock=ctx.clock, automatic_self_calibration=cfg.automatic_self_calibration,
                   altitude=cfg.altitude, **cls._i2c_args(cfg, ctx))

    def _setup(self) -> None:
        self._command(self.STOP_PERIODIC)
        self._sleep(0.5)
        self._command(self.SET_ALTITUDE, self._altitude)
        self._sleep(0.001)
        self._command(self.SET_ASC, int(self._asc))
        self._sleep(0.001)
        self._command(self.START_PERIODIC)
        self._started = self._clock.monotonic()

    def _measure(self) -> list[Sample]:
        self._wait_for_data()
        self._command(self.READ_MEASUREMENT)
        self._sleep(0.001)
        co2, raw_t, raw_rh = self._read_words(3)
        return [self._sample("co2", co2), self._sample("temperature", scd4x_temperature(raw_t)),
                self._sample("humidity", scd4x_humidity(raw_rh))]

    def _wait_for_data(self) -> None:
        """Wait (at most one period) for the next measurement when none is ready, e.g. right after start."""
        if self._data_ready():
            return
        elapsed = self._clock.monotonic() - self._started
        self._sleep(SCD4X_PERIOD - elapsed % SCD4X_PERIOD + 0.1)
        if not self._data_ready():
            raise SensorError("no new measurement within one 5 s period")

    def _data_ready(self) -> bool:
        """get_data_ready_status: the least significant 11 bits are 0 while no new measurement is ready."""
        self._command(self.GET_DATA_READY)
        self._sleep(0.001)
        (status,) = self._read_words(1)
        return status & 0x07FF != 0


# --- BME280: temperature, humidity, pressure -------------------------------------------------------------------------

BME280_CHIP_ID = 0x60
BMP280_CHIP_IDS = (0x56, 0x57, 0x58)


@dataclass(frozen=True)
class Bme280Calibration:
    """The trimming parameters burnt into each chip (datasheet table 16): dig_T1..3, dig_P1..9, dig_H1..6."""

    t: tuple[int, int, int]
    p: tuple[int, int, int, int, int, int, int, int, int]
    h: tuple[int, int, int, int, int, int] | None  # None on a BMP280, which has no humidity sensor

    @classmethod
    def parse(cls, block_88: bytes, block_e1: bytes | None) -> "Bme280Calibration":
        """From registers 0x88..0xA1 (26 bytes) and 0xE1..0xE7 (7 bytes; ``None`` for a BMP280)."""
        words = struct.unpack("<HhhHhhhhhhhh", block_88[:24])
        humidity = None
        if block_e1 is not None:
            h2, h3, e4, e5, e6, h6 = struct.unpack("<hBbBbb", block_e1[:7])
            h4 = (e4 << 4) | (e5 & 0x0F)  # 12-bit signed, split across 0xE4 and the low nibble of 0xE5
            h5 = (e6 << 4) | (e5 >> 4)  # 12-bit signed, the high nibble of 0xE5 and 0xE6
            humidity = (block_88[25], h2, h3, h4, h5, h6)
        return cls(words[:3], words[3:], humidity)


def bme280_temperature(adc_t: int, cal: Bme280Calibration) -> tuple[float, int]:
    """Datasheet 8.1, double precision: (°C, t_fine), t_fine feeding the pressure and humidity formulas."""
    t1, t2, t3 = cal.t
    var1 = (adc_t / 16384.0 - t1 / 1024.0) * t2
    var2 = (adc_t / 131072.0 - t1 / 8192.0) ** 2 * t3
    return (var1 + var2) / 5120.0, int(var1 + var2)


def bme280_pressure(adc_p: int, t_fine: int, cal: Bme280Calibration) -> float:
    """Datasheet 8.1, double precision: pressure in Pa."""
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = cal.p
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * p6 / 32768.0
    var2 = var2 + var1 * p5 * 2.0
    var2 = var2 / 4.0 + p4 * 65536.0
    var1 = (p3 * var1 * var1 / 524288.0 + p2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * p1
    if var1 == 0.0:
        raise SensorError("pressure calibration is all zeros: not a working BME280")
    p = 1048576.0 - adc_p
    p = (p - var2 / 4096.0) * 6250.0 / var1
    return p + (p9 * p * p / 2147483648.0 + p * p8 / 32768.0 + p7) / 16.0


def bme280_humidity(adc_h: int, t_fine: int, dig_h: tuple[int, ...]) -> float:
    """Datasheet 8.1, double precision: relative humidity in %, clamped to 0..100 as the datasheet does."""
    h1, h2, h3, h4, h5, h6 = dig_h
    var_h = t_fine - 76800.0
    var_h = (adc_h - (h4 * 64.0 + h5 / 16384.0 * var_h)) * (
        h2 / 65536.0 * (1.0 + h6 / 67108864.0 * var_h * (1.0 + h3 / 67108864.0 * var_h)))
    var_h = var_h * (1.0 - h1 * var_h / 524288.0)
    return min(100.0, max(0.0, var_h))


class Bme280Config(I2CConfig):
    CHIP = "BME280"
    ADDRESSES = (0x76, 0x77)
    QUANTITIES = ("temperature", "humidity", "pressure")

    type: Literal["bme280"]
    address: int = Field(default=0x76, description="0x76 (SDO to GND) or 0x77 (SDO to VDDIO)")


class Bme280(I2CDriver):
    """Bosch BME280 in forced mode, 1x oversampling, filter off (the datasheet's "weather monitoring" setting).

    The chip id is checked at setup: a BMP280 (ids 0x56..0x58), often sold as a BME280, gives temperature and
    pressure but its humidity is reported as an error naming the part, never read from registers it does not have.
    """

    Config = Bme280Config
    CHIP_ID, CALIBRATION_TP, CALIBRATION_H = 0xD0, 0x88, 0xE1
    CTRL_HUM, STATUS, CTRL_MEAS, DATA = 0xF2, 0xF3, 0xF4, 0xF7
    FORCED_X1 = 0b001_001_01  # osrs_t x1, osrs_p x1, forced mode
    DURATION = 0.010  # datasheet 9.1: at most 9.3 ms with every oversampling at x1
    MEASURING = 0x08  # status bit 3
    RESET_VALUE = 0x80000  # what a skipped or never-run temperature measurement reads

    def __init__(self, id: str, **i2c: Any):
        super().__init__(id, **i2c)
        self._chip_id = 0
        self._calibration: Bme280Calibration | None = None

    def _setup(self) -> None:
        self._chip_id = self._read_register(self.CHIP_ID, 1)[0]
        if self._chip_id != BME280_CHIP_ID and self._chip_id not in BMP280_CHIP_IDS:
            raise SensorError(f"chip id 0x{self._chip_id:02x} at 0x{self.address:02x} is not a BME280 (0x60)")
        humidity = self._read_register(self.CALIBRATION_H, 7) if self._chip_id == BME280_CHIP_ID else None
        self._calibration = Bme280Calibration.parse(self._read_register(self.CALIBRATION_TP, 26), humidity)

    def _measure(self) -> list[Sample]:
        cal = self._calibration
        assert cal is not None
        if cal.h is not None:
            self._write_register(self.CTRL_HUM, 0b001)  # humidity x1; takes effect with the ctrl_meas write
        self._write_register(self.CTRL_MEAS, self.FORCED_X1)
        self._sleep(self.DURATION)
        if self._read_register(self.STATUS, 1)[0] & self.MEASURING:
            raise SensorError(f"still measuring {self.DURATION * 1000:g} ms after the start")
        data = self._read_register(self.DATA, 8)
        adc_p = data[0] << 12 | data[1] << 4 | data[2] >> 4
        adc_t = data[3] << 12 | data[4] << 4 | data[5] >> 4
        if adc_t == self.RESET_VALUE:
            raise SensorError("no measurement: the temperature register still holds its reset value")
        temperature, t_fine = bme280_temperature(adc_t, cal)
        return [self._sample("temperature", temperature), self._humidity(data[6] << 8 | data[7], t_fine, cal),
                self._sample("pressure", bme280_pressure(adc_p, t_fine, cal) / 100.0)]

    def _humidity(self, adc_h: int, t_fine: int, cal: Bme280Calibration) -> Sample:
        if cal.h is None:
            return Sample.error("humidity", f"chip id 0x{self._chip_id:02x} is a BMP280, which has no humidity "
                                            "sensor (sold as a BME280?): replace it with a BME280")
        return self._sample("humidity", bme280_humidity(adc_h, t_fine, cal.h))


# --- BH1750: light ---------------------------------------------------------------------------------------------------

BH1750_DEFAULT_MTREG = 69


def bh1750_lux(raw: int, measurement_time: int = BH1750_DEFAULT_MTREG) -> float:
    """BH1750 datasheet, H-resolution mode: lx = count / 1.2 · (69 / MTreg)."""
    return raw / 1.2 * BH1750_DEFAULT_MTREG / measurement_time


class Bh1750Config(I2CConfig):
    CHIP = "BH1750"
    ADDRESSES = (0x23, 0x5C)
    QUANTITIES = ("light",)

    type: Literal["bh1750"]
    address: int = Field(default=0x23, description="0x23 (ADDR to GND) or 0x5C (ADDR to VCC)")
    measurement_time: int = Field(
        default=31, ge=31, le=254,
        description="the chip's MTreg: 69 (chip default) saturates at 54612 lx, 31 reaches 121557 lx, enough for "
                    "full sun under a greenhouse cover; higher values resolve dim light better")


class Bh1750(I2CDriver):
    """Rohm BH1750FVI: one-time H-resolution measurements (the chip powers down after each)."""

    Config = Bh1750Config
    POWER_ON, ONE_TIME_HIGH_RES = 0x01, 0x20
    DURATION = 0.180  # datasheet: at most 180 ms at MTreg 69, proportional to MTreg

    def __init__(self, id: str, *, measurement_time: int = 31, **i2c: Any):
        super().__init__(id, **i2c)
        self._mtreg = measurement_time

    @classmethod
    def from_config(cls, cfg: Bh1750Config, ctx: HardwareContext) -> "Bh1750":
        return cls(cfg.id, measurement_time=cfg.measurement_time, **cls._i2c_args(cfg, ctx))

    def _setup(self) -> None:
        """Write MTreg (volatile): high 3 bits with 01000_xxx, low 5 bits with 011_xxxxx."""
        self._write(bytes([0x40 | self._mtreg >> 5]))
        self._write(bytes([0x60 | self._mtreg & 0x1F]))

    def _measure(self) -> list[Sample]:
        self._write(bytes([self.POWER_ON]))
        self._write(bytes([self.ONE_TIME_HIGH_RES]))
        self._sleep(self.DURATION * self._mtreg / BH1750_DEFAULT_MTREG)
        raw = int.from_bytes(self._read(2), "big")
        lux = bh1750_lux(raw, self._mtreg)
        if raw == 0xFFFF:
            return [self._sample("light", lux, "implausible",
                                 f"saturated: brighter than {lux:.0f} lx, the top of the range at measurement_time "
                                 f"{self._mtreg}")]
        return [self._sample("light", lux)]


# --- ADS1115: capacitive soil probes ---------------------------------------------------------------------------------

ADS1115_FULL_SCALE = 4.096  # V, PGA setting 001: covers a 3.3 V probe with the best resolution


def ads1115_config(channel: int) -> int:
    """Config register (datasheet 9.6.3) for one single-shot conversion of AINn against GND.

    OS=1 (start), MUX=1nn (AINn vs GND), PGA=001 (±4.096 V), MODE=1 (single shot), DR=100 (128 SPS),
    comparator disabled (COMP_QUE=11). Channel 0 gives 0xC383.
    """
    return 1 << 15 | (0b100 | channel) << 12 | 0b001 << 9 | 1 << 8 | 0b100 << 5 | 0b11


def ads1115_volts(raw: int) -> float:
    """ADS111x datasheet: a signed 16-bit code, 1 LSB = FSR / 2^15 (125 µV at ±4.096 V)."""
    return raw * ADS1115_FULL_SCALE / 32768.0


class Ads1115Config(I2CConfig, SoilProbeConfig):
    CHIP = "ADS1115"
    ADDRESSES = (0x48, 0x49, 0x4A, 0x4B)

    type: Literal["ads1115"]
    address: int = Field(default=0x48, description="0x48 (ADDR to GND), 0x49 (VDD), 0x4A (SDA) or 0x4B (SCL)")
    channel: int = Field(ge=0, le=3, description="input the probe's AOUT is wired to: 0..3 (A0..A3)")

    def claims(self) -> tuple[Claim, ...]:
        # probes on the four inputs of one ADS1115 share its address
        return i2c_claims(self.bus, self.address, self.CHIP, share="ads1115", part=self.channel,
                          role=f"ADS1115 input A{self.channel}")


class Ads1115(I2CDriver):
    """TI ADS1115 reading one capacitive soil probe, single-shot, calibrated to percent."""

    Config = Ads1115Config
    CONVERSION, CONFIG = 0x00, 0x01
    DURATION = 0.009  # one conversion at 128 SPS is 7.8 ms; the oscillator may run 10 % slow
    NOT_BUSY = 0x80  # OS bit, high byte of the config register: 1 once the conversion is done

    def __init__(self, id: str, *, channel: int, dry: float, wet: float, **i2c: Any):
        super().__init__(id, **i2c)
        self._channel = channel
        self._dry, self._wet = dry, wet

    @classmethod
    def from_config(cls, cfg: Ads1115Config, ctx: HardwareContext) -> "Ads1115":
        return cls(cfg.id, channel=cfg.channel, dry=cfg.dry, wet=cfg.wet, **cls._i2c_args(cfg, ctx))

    def _measure(self) -> list[Sample]:
        config = ads1115_config(self._channel)
        self._write_register(self.CONFIG, config >> 8, config & 0xFF)
        self._sleep(self.DURATION)
        if not self._read_register(self.CONFIG, 1)[0] & self.NOT_BUSY:
            raise SensorError(f"conversion not finished after {self.DURATION * 1000:g} ms")
        volts = ads1115_volts(int.from_bytes(self._read_register(self.CONVERSION, 2), "big", signed=True))
        self.details = {"voltage": f"{volts:.3f} V"}
        return [self._sample("soil_moisture", soil_percent(volts, self._dry, self._wet))]
