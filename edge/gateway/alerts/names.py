"""What an SMS calls the greenhouse, its sensors, their quantities and its outputs: the config's ``name:``, else a
Persian word the farmer knows. Never a Latin id in a Persian text (a Latin word breaks right-to-left reading).

Pure: :class:`Names` is plain data built once from the config (:func:`names_of`); the message composer asks it.

- The greenhouse: ``gateway.name``; unnamed: «گلخانه».
- A quantity: its word alone when one sensor measures it («دما»); when several do, the word with the sensor's
  name («رطوبت خاک بستر ۱»), or with a number in config order when unnamed («رطوبت خاک ۲»).
- A sensor (a stale alert): «سنسور» and its name («سنسور بستر ۱»; «سنسور جریان آب بستر ۱» when another sensor
  shares the name), else what it measures («سنسور دما و رطوبت هوا»).
- An output: its name («بخاری ۱»), else its kind («بخاری»), numbered when several of that kind are unnamed.

English texts use the config name when it is plain GSM 7-bit text (else the id), so they stay 160 characters per
SMS; an English recipient reads ids the way the technician wrote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.gateway.alerts.segments import is_gsm7

PERSIAN_DIGITS = "۰۱۲۳۴۵۶۷۸۹"
_TO_PERSIAN = str.maketrans("0123456789.", PERSIAN_DIGITS + "٫")

#: The greenhouse when the config gives no name.
GREENHOUSE_FA = "گلخانه"

#: Each quantity in Persian: alone, and before a place's name (ezafe written where Persian writes it).
QUANTITY_FA: dict[str, tuple[str, str]] = {
    "temperature": ("دما", "دمای"),
    "humidity": ("رطوبت هوا", "رطوبت هوای"),
    "soil_moisture": ("رطوبت خاک", "رطوبت خاک"),
    "light": ("نور", "نور"),
    "co2": ("گاز کربنیک", "گاز کربنیک"),
    "pressure": ("فشار هوا", "فشار هوای"),
    "flow": ("جریان آب", "جریان آب"),
    "level": ("سطح آب", "سطح آب"),
    "par": ("نور فتوسنتزی", "نور فتوسنتزی"),
    "vpd": ("کمبود فشار بخار", "کمبود فشار بخار"),
    "leaf_vpd": ("کمبود فشار بخار برگ", "کمبود فشار بخار برگ"),
    "dew_point": ("نقطه شبنم", "نقطه شبنم"),
    "dew_margin": ("فاصله تا شبنم", "فاصله تا شبنم"),
    "abs_humidity": ("رطوبت مطلق", "رطوبت مطلق"),
    "humidity_deficit": ("کمبود رطوبت", "کمبود رطوبت"),
    "dli": ("نور روزانه", "نور روزانه"),
    "temperature_min": ("کمینه دما", "کمینه دمای"),
    "temperature_mean": ("میانگین دما", "میانگین دمای"),
    "temperature_max": ("بیشینه دما", "بیشینه دمای"),
    "gdd": ("درجه-روز رشد", "درجه-روز رشد"),
    "et0": ("تبخیر و تعرق", "تبخیر و تعرق"),
}
QUANTITY_EN: dict[str, str] = {
    "temperature": "temperature", "humidity": "humidity", "soil_moisture": "soil moisture", "light": "light",
    "co2": "CO2", "pressure": "pressure", "flow": "water flow", "level": "water level", "par": "PAR",
    "vpd": "VPD", "leaf_vpd": "leaf VPD", "dew_point": "dew point", "dew_margin": "margin to dew point",
    "abs_humidity": "absolute humidity", "humidity_deficit": "humidity deficit", "dli": "daily light",
    "temperature_min": "day's minimum", "temperature_mean": "day's mean", "temperature_max": "day's maximum",
    "gdd": "degree days", "et0": "ET0",
}
#: Each kind of output in Persian, as a farmer names the device.
KIND_FA: dict[str, str] = {
    "heater": "بخاری", "fan": "فن", "vent": "دریچه", "pump": "پمپ", "light": "چراغ", "co2": "دستگاه گاز کربنیک",
    "mister": "مه‌پاش", "other": "خروجی",
}
#: SMS transports by the name a farmer knows them.
TRANSPORT_FA: dict[str, str] = {"kavenegar": "کاوه‌نگار", "modem": "مودم", "console": "کنسول"}


def persian_digits(text: str) -> str:
    """``"42.5"`` -> ``"۴۲٫۵"`` (Latin digits and the decimal point; nothing else changes)."""
    return text.translate(_TO_PERSIAN)


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else "، ".join(words[:-1]) + " و " + words[-1]


@dataclass(frozen=True)
class Names:
    """The display names of one greenhouse. Every mapping keeps config order (it decides the numbering)."""

    greenhouse: str | None = None
    gateway_id: str = ""
    sensors: Mapping[str, str | None] = field(default_factory=dict)  # id -> name
    quantities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # sensor id -> what it measures
    actuators: Mapping[str, str | None] = field(default_factory=dict)  # id -> name
    kinds: Mapping[str, str] = field(default_factory=dict)  # actuator id -> kind

    # ---------------------------------------------------------------------------------------------- greenhouse

    def of_greenhouse(self, language: str) -> str:
        if language == "fa":
            return persian_digits(self.greenhouse) if self.greenhouse else GREENHOUSE_FA
        if self.greenhouse and is_gsm7(self.greenhouse):
            return self.greenhouse
        return self.gateway_id or "Greenhouse"

    # ------------------------------------------------------------------------------------------------- sensors

    def _measuring(self, quantity: str) -> list[str]:
        return [s for s, qs in self.quantities.items() if quantity in qs]

    def _number(self, sensor: str, peers: list[str]) -> str | None:
        """The sensor's place among ``peers`` (1-based, config order) when there are several, else None."""
        return str(peers.index(sensor) + 1) if len(peers) > 1 and sensor in peers else None

    def of_quantity(self, sensor: str | None, quantity: str, language: str) -> str:
        """``دما`` / ``رطوبت خاک بستر ۱`` / ``رطوبت خاک ۲``; English ``air temperature``."""
        if language != "fa":
            word = QUANTITY_EN.get(quantity, quantity)
            return f"{self._latin(sensor, self.sensors)} {word}" if sensor else word
        alone, before = QUANTITY_FA.get(quantity, (quantity, quantity))
        peers = self._measuring(quantity)
        if sensor is None or sensor not in peers or len(peers) == 1:
            return alone
        name = self.sensors.get(sensor)
        if name:
            return f"{before} {persian_digits(name)}"
        return f"{alone} {persian_digits(self._number(sensor, peers) or '')}".strip()

    def of_sensor(self, sensor: str, language: str) -> str:
        """The sensor itself (what went silent): ``سنسور بستر ۱`` / ``سنسور دما و رطوبت هوا``."""
        if language != "fa":
            return self._latin(sensor, self.sensors)
        name = self.sensors.get(sensor)
        measures = self.quantities.get(sensor)
        if name and measures and any(n == name for s, n in self.sensors.items() if s != sensor):
            return f"سنسور {QUANTITY_FA.get(measures[0], (measures[0],) * 2)[1]} {persian_digits(name)}"
        if name:
            return f"سنسور {persian_digits(name)}"
        if not measures:
            return "سنسور"  # not configured any more: an old incident
        text = "سنسور " + _and([QUANTITY_FA.get(q, (q, q))[0] for q in measures])
        same = [s for s, qs in self.quantities.items() if qs == measures and not self.sensors.get(s)]
        number = self._number(sensor, same)
        return f"{text} {persian_digits(number)}" if number else text

    # ------------------------------------------------------------------------------------------------- outputs

    def of_actuator(self, actuator: str, language: str) -> str:
        """``بخاری ۱`` (its name) / ``بخاری`` (its kind) / ``پمپ ۲`` (the second unnamed pump)."""
        if language != "fa":
            return self._latin(actuator, self.actuators)
        name = self.actuators.get(actuator)
        if name:
            return persian_digits(name)
        kind = self.kinds.get(actuator)
        if kind is None:
            return "خروجی"
        same = [a for a, k in self.kinds.items() if k == kind and not self.actuators.get(a)]
        number = self._number(actuator, same)
        word = KIND_FA.get(kind, "خروجی")
        return f"{word} {persian_digits(number)}" if number else word

    def kind_of(self, actuator: str | None) -> str | None:
        return self.kinds.get(actuator) if actuator else None

    @staticmethod
    def of_transport(transport: str, language: str) -> str:
        if language != "fa":
            return transport
        return TRANSPORT_FA.get(transport, "سامانه پیامک")

    @staticmethod
    def _latin(key: str, names: Mapping[str, str | None]) -> str:
        name = names.get(key)
        return name if name and is_gsm7(name) else key


def names_of(config: Any) -> Names:
    """The names of a validated gateway config."""
    return Names(
        greenhouse=config.gateway.name, gateway_id=config.gateway.id,
        sensors={s.id: s.name for s in config.sources()},  # sensors and derived sets
        quantities={s.id: s.quantities for s in config.sources()},
        actuators={a.id: a.name for a in config.actuators},
        kinds={a.id: a.kind for a in config.actuators})


def name_clashes(config: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Names an SMS could not tell apart: two sensors measuring one quantity, or two outputs, with one name.
    ``(loc, message)`` for ``edge check``."""
    problems = []
    seen: dict[tuple[str, str], str] = {}
    for index, sensor in enumerate(config.sensors):
        for quantity in sensor.quantities() if sensor.name else ():
            other = seen.setdefault((quantity, sensor.name), sensor.id)
            if other != sensor.id:
                problems.append((("sensors", index, "name"), f"sensors {other!r} and {sensor.id!r} both measure "
                                 f"{quantity} and are both named {sensor.name!r}: an SMS could not tell them apart"))
                break
    named: dict[str, str] = {}
    for index, actuator in enumerate(config.actuators):
        if actuator.name:
            other = named.setdefault(actuator.name, actuator.id)
            if other != actuator.id:
                problems.append((("actuators", index, "name"), f"actuators {other!r} and {actuator.id!r} are both "
                                 f"named {actuator.name!r}: an SMS could not tell them apart"))
    return problems
