"""The gateway's configuration: one YAML file describing one greenhouse -> a validated :class:`GatewayConfig`.

Loading happens in three steps, on the neutral reader of :mod:`edge.config`:

1. YAML is composed into nodes so every key keeps its line; duplicate keys are refused; ``${VAR}`` and
   ``${VAR:-default}`` in string values are replaced from the environment.
2. Each sensor and actuator is validated by its driver's own config model (looked up by ``type:`` in the hardware
   registry, which imports only the driver modules the file uses), then the rest of the document, each section on
   its own when the whole does not validate.
3. Cross-references are checked: unique ids, references to known sensors and quantities; the Pi's pins, buses and
   addresses have one user each (``edge.gateway.hardware.pins``); and, for ``edge check`` and at start, every
   ``*_file`` the config names can be read.

All problems are collected in one pass, not just the first (a missing ``${VAR}`` hides nothing else), and raised
together as one :class:`ConfigError`.
"""

from __future__ import annotations

import os
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator

from edge.config import (DisplayName, Document, Identifier, Loc, StrictModel, read_config_file, read_yaml, render_loc,
                         validate_part)
from edge.durations import Duration, DurationOrZero, Size
from edge.errors import ConfigError
from edge.gateway import hardware
from edge.gateway.alerts.config import AlertsConfig, SmsConfig
from edge.gateway.alerts.names import name_clashes
from edge.gateway.control.config import ControlConfig, Rule, Schedule
from edge.gateway.derived import DerivedConfig
from edge.gateway.hardware.base import ActuatorConfig, ActuatorId, SensorConfig, SensorId, SensorInput
from edge.gateway.hardware.pins import describe_resource, find_conflicts, serial_claims
from edge.gateway.sync.config import SyncConfig
from edge.gateway.web.config import WebConfig

#: Where the embedded demo configuration lives (``config/demo.yaml`` is the same file).
DEMO_CONFIG = Path(__file__).parent / "demo.yaml"


# --------------------------------------------------------------------------------------------------------- models


class GatewayIdentity(StrictModel):
    id: Identifier = Field(description="unique gateway id; appears in MQTT topics and in the data center")
    name: DisplayName | None = Field(default=None, description="the greenhouse's name, in every SMS (e.g. گلخانه حسن); "
                                     "null: گلخانه")
    latitude: float = Field(default=33.487, ge=-90, le=90, description="for sunrise/sunset and the simulation")
    longitude: float = Field(default=48.356, ge=-180, le=180)
    timezone: str = Field(default="Asia/Tehran", description="IANA time zone of the greenhouse")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (for example Asia/Tehran)") from None
        return value


class HardwareConfig(StrictModel):
    backend: Literal["simulated", "gpio"] = Field(
        default="simulated", description="simulated: the greenhouse model on mock pins; gpio: real pins"
    )
    pin_factory: Literal["lgpio", "rpigpio", "pigpio", "native", "mock"] | None = Field(
        default=None, description="gpiozero pin factory for backend gpio; null lets gpiozero choose (lgpio on a Pi 5)"
    )
    #: A ``sim.SimulationConfig`` (validated by the simulation module itself); None unless the backend is simulated.
    simulation: Any = None


class ClockConfig(StrictModel):
    trust: Literal["auto", "synced", "unsynced"] = Field(
        default="auto",
        description="auto: trust the wall clock once systemd-timesyncd (or the kernel) says it is synced",
    )


class BufferConfig(StrictModel):
    path: Path = Field(default=Path("/var/lib/edge/buffer.db"), description="SQLite file; relative to the cwd")
    retention: Duration = Field(default=7 * 86400.0, description="how long acknowledged readings are kept locally")
    max_size: Size = Field(
        default=2_000_000_000,
        description="disk budget: past it, acknowledged rows go first, then the oldest unacknowledged readings "
        "(reported to the data center as a gap); events are never dropped")
    commit_every: DurationOrZero = Field(
        default=0.0, ge=0, le=3600,
        description="the commit window: readings are held in memory and committed together at most this often "
        "(one write to the SD card instead of one per round); a power cut or kill -9 loses at most the last window, "
        "recorded at the next start (buffer.window_lost); 0: every round is committed at once")


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"


class GatewayConfig(StrictModel):
    """One greenhouse gateway: identity, hardware, sensors, actuators, buffer."""

    gateway: GatewayIdentity
    hardware: HardwareConfig = HardwareConfig()
    clock: ClockConfig = ClockConfig()
    buffer: BufferConfig = BufferConfig()
    log: LogConfig = LogConfig()
    sensors: list[SensorConfig] = Field(default_factory=list)
    actuators: list[ActuatorConfig] = Field(default_factory=list)
    derived: list[DerivedConfig] = Field(default_factory=list, description="derived quantities (VPD, dew point, "
                                         "DLI, degree days, ET0) as readings of their own sensor id")
    control: ControlConfig = ControlConfig()
    schedules: list[Schedule] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    sync: SyncConfig = SyncConfig()
    alerts: AlertsConfig = AlertsConfig()
    sms: SmsConfig = SmsConfig()
    web: WebConfig = WebConfig()
    source: str = Field(default="<memory>", exclude=True)

    def sensor(self, sensor_id: str) -> SensorConfig:
        for sensor in self.sensors:
            if sensor.id == sensor_id:
                return sensor
        raise KeyError(sensor_id)

    def sources(self) -> list["Source"]:
        """Everything that gives readings: each sensor, and each derived set (which gives readings at the interval
        of its air temperature's sensor)."""
        intervals = {s.id: s.interval for s in self.sensors}
        found = [Source(s.id, s.interval, tuple(s.quantities()), s.name) for s in self.sensors]
        found += [Source(d.id, intervals.get(d.air_temperature.sensor, 60.0), d.quantities(), d.name)
                  for d in self.derived]
        return found


@dataclass(frozen=True)
class Source:
    """A sensor or a derived set, as the parts that read readings see it: id, interval, quantities, name."""

    id: str
    interval: float
    quantities: tuple[str, ...]
    name: str | None


def _validate_devices(items: Any, section: str, lookup: Any, doc: Document) -> tuple[list[Any], set[str]]:
    """Validate each item with its driver's model; return ``(loc, config)`` pairs and the ids of invalid items."""
    if items is None:
        return [], set()
    if not isinstance(items, list):
        doc.problem((section,), "must be a list")
        return [], set()
    validated, invalid = [], set()
    for index, item in enumerate(items):
        loc: Loc = (section, index)
        if not isinstance(item, dict):
            doc.problem(loc, "must be a mapping with at least id and type")
            continue
        config = _validate_device(item, loc, lookup, doc)
        if config is not None:
            validated.append((loc, config))
        elif isinstance(item.get("id"), str):
            invalid.add(item["id"])
    return validated, invalid


def _validate_device(item: dict[str, Any], loc: Loc, lookup: Any, doc: Document) -> Any:
    type_name = item.get("type")
    if not isinstance(type_name, str):
        doc.problem(loc + ("type",), "missing required key" if type_name is None else "must be a string")
        return None
    try:
        driver = lookup(type_name)
    except KeyError as exc:
        doc.problem(loc + ("type",), exc.args[0])
        return None
    return validate_part(driver.Config, item, loc, doc)


def _check_unique_ids(parts: dict[str, list[tuple[Loc, Any]]], doc: Document) -> set[str]:
    """Ids are unique across sensors and actuators; return the ids given more than once."""
    first_seen: dict[str, Loc] = {}
    repeated = set()
    for section in ("sensors", "actuators"):
        for loc, item in parts[section]:
            if item.id in first_seen:
                doc.problem(loc + ("id",), f"duplicate id {item.id!r} (also {render_loc(first_seen[item.id])})")
                repeated.add(item.id)
            else:
                first_seen[item.id] = loc
    return repeated


def _check_whole(config: "GatewayConfig", doc: Document) -> None:
    """Checks a section can only make against the whole config: a section model may define
    ``check_whole(config) -> [(loc within the section, message)]``."""
    for name in GatewayConfig.model_fields:
        check = getattr(getattr(config, name), "check_whole", None)
        if callable(check):
            for loc, message in check(config):
                doc.problem((name, *loc), message)
    for loc, message in name_clashes(config):  # display names an SMS could not tell apart
        doc.problem(loc, message)


def _check_unique(items: list[Any], section: str, doc: Document) -> None:
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in first:
            doc.problem((section, index, "id"), f"duplicate id {item.id!r} (also {section}[{first[item.id]}])")
        first.setdefault(item.id, index)


def _find_refs(value: Any, loc: Loc) -> Iterator[tuple[Loc, SensorInput | ActuatorId | SensorId]]:
    """Every reference (:class:`SensorInput`, :class:`ActuatorId`, :class:`SensorId`) inside a validated config
    value, with its path."""
    if isinstance(value, (SensorInput, ActuatorId, SensorId)):
        yield loc, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _find_refs(getattr(value, name), loc + (name,))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _find_refs(item, loc + (index,))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _find_refs(item, loc + (key,))


@dataclass
class _Known:
    measures: dict[str, set[str]]  # sensor id -> quantities
    actuators: set[str]
    unsure: set[str]  # ids that are invalid or duplicated: references to them are not reported again


def _check_refs(refs: Iterable[tuple[Loc, SensorInput | ActuatorId | SensorId]], known: _Known,
                doc: Document) -> None:
    """Each reference names a known actuator, or a known sensor and a quantity it measures."""
    for loc, ref in refs:
        if isinstance(ref, ActuatorId):
            if ref not in known.actuators and ref not in known.unsure:
                listed = ", ".join(sorted(known.actuators)) or "none configured"
                doc.problem(loc, f"unknown actuator {str(ref)!r} (actuators: {listed})")
            continue
        if isinstance(ref, SensorId):
            if ref not in known.measures and ref not in known.unsure:
                listed = ", ".join(sorted(known.measures)) or "none configured"
                doc.problem(loc, f"unknown sensor {str(ref)!r} (sensors: {listed})")
            continue
        if ref.sensor in known.unsure:
            continue
        if ref.sensor not in known.measures:
            listed = ", ".join(sorted(known.measures)) or "none configured"
            doc.problem(loc + ("sensor",), f"unknown sensor {ref.sensor!r} (sensors: {listed})")
        elif ref.quantity not in known.measures[ref.sensor]:
            doc.problem(loc + ("quantity",), f"sensor {ref.sensor!r} does not measure {ref.quantity}")


def _add_derived(derived: list[DerivedConfig], known: _Known, doc: Document) -> None:
    """A derived set's id is a sensor id of its own: unique among sensors and actuators; rules and alerts may then
    refer to its quantities."""
    for index, item in enumerate(derived):
        if item.id in known.measures or item.id in known.actuators:
            doc.problem(("derived", index, "id"), f"duplicate id {item.id!r} (a sensor, actuator or derived set "
                        "has it already)")
            known.unsure.add(item.id)
            continue
        known.measures[item.id] = set(item.quantities())


def _validate_hardware(section: Any, doc: Document) -> Any:
    """Validate ``hardware.simulation`` with the simulation's own model, and only for the simulated backend."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        return section  # GatewayConfig's validation reports it
    section = dict(section)
    simulation = section.pop("simulation", None)
    if section.get("backend", "simulated") == "simulated":
        from edge.gateway.hardware.sim import SimulationConfig

        section["simulation"] = validate_part(SimulationConfig, simulation or {}, ("hardware", "simulation"), doc)
    elif simulation is not None:
        doc.problem(("hardware", "simulation"), "only allowed with backend: simulated")
    return section


def parse_config(text: str, source: str = "<memory>", env: Mapping[str, str] | None = None, *,
                 files: bool = False) -> GatewayConfig:
    """Validate YAML text into a :class:`GatewayConfig`, or raise :class:`ConfigError` listing every problem.
    With ``files``, every ``*_file`` the config names must also exist and be readable by this user."""
    doc = Document(source)
    data = read_yaml(text, doc, os.environ if env is None else env)
    if data is not None and not isinstance(data, dict):
        doc.problem((), "the file must be a mapping of sections (gateway, hardware, sensors, ...)")
    if not isinstance(data, dict):
        raise ConfigError(doc.messages())
    read_problems = len(doc.problems)  # unset variables and duplicate keys: the data is whole all the same

    body = dict(data)
    sensors, invalid_sensors = _validate_devices(body.pop("sensors", None), "sensors", hardware.sensor_driver, doc)
    actuators, invalid_actuators = _validate_devices(
        body.pop("actuators", None), "actuators", hardware.actuator_driver, doc)
    parts = {"sensors": sensors, "actuators": actuators}
    body["hardware"] = _validate_hardware(body.get("hardware"), doc)

    known = _Known(
        measures={item.id: set(item.quantities()) for _, item in parts["sensors"]},
        actuators={item.id for _, item in parts["actuators"]},
        unsure=invalid_sensors | invalid_actuators | _check_unique_ids(parts, doc),
    )
    for section in ("sensors", "actuators"):
        for loc, item in parts[section]:
            _check_refs(_find_refs(item, loc), known, doc)
    body["sensors"] = [item for _, item in parts["sensors"]]
    body["actuators"] = [item for _, item in parts["actuators"]]
    config = validate_part(GatewayConfig, body, (), doc)
    sections = _valid_sections(config, body)
    if "derived" in sections:  # its inputs are sensors; what it gives may be referred to by what follows
        _check_refs(_find_refs(sections["derived"], ("derived",)), known, doc)
        _add_derived(sections["derived"], known, doc)
    for name, section in sections.items():
        if name not in ("sensors", "actuators", "derived"):
            _check_refs(_find_refs(section, (name,)), known, doc)
    for section in ("schedules", "rules"):
        if section in sections:
            _check_unique(sections[section], section, doc)
    if config is not None and len(doc.problems) == read_problems:
        _check_whole(config, doc)  # needs every section and reference sound, or it would repeat their problems
    _check_claims(parts, sections.get("sms"), doc)
    if files:
        _check_files(sections, doc)
    if doc.problems or config is None:
        raise ConfigError(doc.messages())
    return config.model_copy(update={"source": source})


def _valid_sections(config: GatewayConfig | None, body: dict[str, Any]) -> dict[str, Any]:
    """Each section of the config that is valid: all of them from a valid config, else those that validate on
    their own (their problems are reported already), so the checks across sections still run on them."""
    if config is not None:
        return {name: getattr(config, name) for name in GatewayConfig.model_fields}
    sections = {}
    for name, field in GatewayConfig.model_fields.items():
        if name not in body and field.is_required():
            continue
        try:
            sections[name] = (TypeAdapter(field.annotation).validate_python(body[name]) if name in body
                              else field.get_default(call_default_factory=True))
        except ValidationError:
            continue
    return sections


def _check_claims(parts: dict[str, list[tuple[Loc, Any]]], sms: Any, doc: Document) -> None:
    """One user for each GPIO, bus address, chip select and serial port; each problem names both users and their
    lines (``edge.gateway.hardware.pins``). A GSM modem on the Pi's own UART counts as a user of GPIO 14/15."""
    users: list[tuple[tuple[Loc, str], Any]] = [
        ((loc, f"{section[:-1]} {item.id!r}"), item.claims()) for section in ("sensors", "actuators")
        for loc, item in parts[section]]
    for index, transport in enumerate(getattr(sms, "transports", ())):
        if transport.type == "modem":
            modem = (("sms", "transports", index), f"SMS modem {transport.name!r}")
            users.append((modem, serial_claims(transport.port)))
    for conflict in find_conflicts(users):
        (first_loc, first_name), first = conflict.first
        (second_loc, second_name), second = conflict.second
        first_line = doc.line_of(first_loc + (first.key,))
        second_line = doc.line_of(second_loc + (second.key,))
        doc.problem(second_loc + (second.key,),
                    f"{describe_resource(conflict.resource)} is used twice: {first.role} of {first_name} (line "
                    f"{first_line}) and {second.role} of {second_name} (line {second_line}): {conflict.hint}")


def _files_named(value: Any, loc: Loc) -> Iterator[tuple[Loc, Path]]:
    """Every ``*_file`` setting with a value inside a validated config value, with its path."""
    if isinstance(value, BaseModel):
        created = getattr(value, "files_created", frozenset)()  # made by the program itself when missing
        for name in type(value).model_fields:
            item = getattr(value, name)
            if name in created:
                continue
            if name.endswith("_file") and isinstance(item, (str, Path)):
                yield loc + (name,), Path(item)
            else:
                yield from _files_named(item, loc + (name,))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _files_named(item, loc + (index,))


def _check_files(sections: dict[str, Any], doc: Document) -> None:
    """Every file the config names (passwords, API keys, certificates) exists and this user can read it: the
    daemon reads them when it starts. Only the path is named, never what the file holds."""
    for name, value in sections.items():
        for loc, path in _files_named(value, (name,)):
            problem = file_problem(path)
            if problem:
                doc.problem(loc, problem)


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot serve as a secret or certificate file for this user, or None. Opens it, reads nothing."""
    try:
        with open(path, "rb") as stream:
            empty = os.fstat(stream.fileno()).st_size == 0
    except FileNotFoundError:
        return f"{path} does not exist: create it (owner root, group edge, mode 0640)"
    except IsADirectoryError:
        return f"{path} is a directory, not a file"
    except PermissionError:
        return (f"{path} is not readable by this user ({_user()}): the service user edge must read it "
                "(owner root, group edge, mode 0640); run edge check as root or as edge")
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror or exc}"
    if empty:
        return f"{path} is empty"
    return None


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None, *,
                files: bool = False) -> GatewayConfig:
    """Load and validate a config file; ``None`` loads the embedded simulated-greenhouse demo. ``files``: also check
    that every ``*_file`` it names can be read (``edge check``, and ``edge run`` before it starts anything)."""
    file = Path(path) if path is not None else DEMO_CONFIG
    return parse_config(read_config_file(file), str(file), env, files=files)
