"""YAML configuration -> validated, typed models. Every problem names ``FILE:LINE: key.path: message``.

Loading happens in three steps:

1. YAML is composed into nodes so every key keeps its line; duplicate keys are refused; ``${VAR}`` and
   ``${VAR:-default}`` in string values are replaced from the environment.
2. Each sensor and actuator is validated by its driver's own config model (looked up by ``type:`` in the hardware
   registry, which imports only the driver modules the file uses), then the rest of the document.
3. Cross-references are checked: unique ids, references to known sensors and quantities.

All problems are collected, not just the first, and raised together as one :class:`ConfigError`.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from edge.durations import Duration, Size
from edge.errors import ConfigError
from edge.gateway import hardware
from edge.gateway.alerts.config import AlertsConfig, SmsConfig
from edge.gateway.control.config import ControlConfig, Rule, Schedule
from edge.gateway.sync import SyncConfig
from edge.gateway.hardware.base import (ActuatorConfig, ActuatorId, Identifier, SensorConfig, SensorId,
                                       SensorInput, StrictModel)

Loc = tuple[str | int, ...]

#: Where the embedded demo configuration lives (``config/demo.yaml`` is the same file).
DEMO_CONFIG = Path(__file__).parent / "gateway" / "demo.yaml"


# --------------------------------------------------------------------------------------------------------- models


class GatewayIdentity(StrictModel):
    id: Identifier = Field(description="unique gateway id; appears in MQTT topics and in the data center")
    name: str | None = Field(default=None, description="human name of the greenhouse")
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
    control: ControlConfig = ControlConfig()
    schedules: list[Schedule] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    sync: SyncConfig = SyncConfig()
    alerts: AlertsConfig = AlertsConfig()
    sms: SmsConfig = SmsConfig()
    source: str = Field(default="<memory>", exclude=True)

    def sensor(self, sensor_id: str) -> SensorConfig:
        for sensor in self.sensors:
            if sensor.id == sensor_id:
                return sensor
        raise KeyError(sensor_id)


# ------------------------------------------------------------------------------------------- YAML with line numbers

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Document:
    """Plain data from YAML plus the line of every key path, and the problems found while reading it."""

    def __init__(self, source: str):
        self.source = source
        self.lines: dict[Loc, int] = {}
        self.problems: list[tuple[int, str]] = []
        self.merged: dict[int, int] = {}  # id(mapping node) -> how many of its pairs came from merge keys

    def problem(self, loc: Loc, message: str) -> None:
        self.problems.append((self.line_of(loc), f"{self.source}:{self.line_of(loc)}: {render_loc(loc)}: {message}"))

    def line_of(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest ancestor that is in the file (for missing keys)."""
        loc = tuple(loc)
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)


def render_loc(loc: Loc) -> str:
    """``('sensors', 1, 'interval')`` -> ``sensors[1].interval``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


#: What a config file may be at most. A real one is a few kB, a dozen levels deep, a few thousand values; the bounds
#: keep a hostile or broken file (a YAML "billion laughs", a runaway nesting, a log pasted by mistake) from costing
#: more than a moment and a few MB before it is refused.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 40
MAX_VALUES = 100_000


def read_config_file(file: Path) -> str:
    """The text of a config file, or :class:`ConfigError` naming the file (and the line, where there is one):
    unreadable, a directory, larger than :data:`MAX_FILE_BYTES`, UTF-16/32, or not valid UTF-8. A UTF-8 byte order
    mark is dropped."""
    try:
        with open(file, "rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read: {exc.strerror or exc}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([f"{file}: larger than {MAX_FILE_BYTES // 1024} kB: not a config file (a config is a few "
                           "kB); is it the right file?"])
    encoding = _wide_encoding(data)
    if encoding:
        raise ConfigError([f"{file}:1: the file is {encoding}: save it as UTF-8"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError([f"{file}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} in column {column}): save "
                           "the file as UTF-8"]) from None


def _wide_encoding(data: bytes) -> str | None:
    """``"UTF-16"`` / ``"UTF-32"`` for a file in one of those (by its byte order mark, or by the zero bytes that
    ASCII text has in every other position), else None."""
    if data.startswith((b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")):
        return "UTF-32"
    if data.startswith((b"\xfe\xff", b"\xff\xfe")):
        return "UTF-16"
    head = data[:400]
    if len(head) >= 4 and max(head[0::2].count(0), head[1::2].count(0)) * 4 >= len(head):
        return "UTF-16"
    return None


def _reader_problem(exc: yaml.reader.ReaderError, text: str, doc: _Document) -> None:
    """A character YAML does not allow (a control character, NUL), named with its line."""
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    doc.problems.append((line, f"{doc.source}:{line}: yaml: control character U+{exc.character:04X} in column "
                               f"{column} is not allowed (only tab, newline and printable characters)"))


def _check_shape(text: str, doc: _Document) -> bool:
    """One pass over the YAML events, before anything is built (the parser is iterative, so this pass itself has
    no depth limit): refuse nesting deeper than :data:`MAX_DEPTH` and documents that expand to more than
    :data:`MAX_VALUES` values. Aliases (``*name``) and merge keys (``<<: *name``) repeat what their anchor holds, so
    both are counted as expanded: a "billion laughs" is ten lines that expand to a billion values. Syntax errors are
    left to the composer, which reports them with their line."""
    sizes: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels) once expanded
    stack: list[list[Any]] = []  # open collections: [anchor, values, levels below]
    total = 0

    def add(values: int, levels: int) -> None:
        nonlocal total
        if stack:
            stack[-1][1] += values
            stack[-1][2] = max(stack[-1][2], levels)
        else:
            total += values

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark else 1
            if isinstance(event, yaml.AliasEvent):
                if any(frame[0] == event.anchor for frame in stack):
                    doc.problems.append((line, f"{doc.source}:{line}: yaml: alias *{event.anchor} refers to a "
                                               "collection that contains it (it would never end)"))
                    return False
                values, levels = sizes.get(event.anchor, (1, 0))  # an unknown anchor: the composer says so
                if len(stack) + levels > MAX_DEPTH:
                    doc.problems.append((line, f"{doc.source}:{line}: yaml: nested more than {MAX_DEPTH} levels deep "
                                               f"(through *{event.anchor})"))
                    return False
                add(values, levels)
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor:
                    sizes[event.anchor] = (1, 0)
                add(1, 0)
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                stack.append([event.anchor, 1, 0])
                if len(stack) > MAX_DEPTH:
                    doc.problems.append((line, f"{doc.source}:{line}: yaml: nested more than {MAX_DEPTH} levels deep"))
                    return False
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                anchor, values, levels = stack.pop()
                if anchor:
                    sizes[anchor] = (values, levels + 1)
                add(values, levels + 1)
            else:
                continue
            if total + sum(frame[1] for frame in stack) > MAX_VALUES:
                doc.problems.append((line, f"{doc.source}:{line}: yaml: the document expands to more than "
                                           f"{MAX_VALUES} values (aliases such as *name repeat all that their anchor "
                                           "holds): not a config file"))
                return False
    except yaml.reader.ReaderError:
        raise
    except yaml.YAMLError:
        return True
    return True


def _read_yaml(text: str, doc: _Document, env: Mapping[str, str]) -> Any:
    try:
        if not _check_shape(text, doc):
            return None
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        _reader_problem(exc, text, doc)
        return None
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        reason = getattr(exc, "problem", None) or str(exc)
        doc.problems.append((line, f"{doc.source}:{line}: yaml: {reason}"))
        return None
    finally:
        loader.dispose()
    if root is None:
        doc.problems.append((1, f"{doc.source}:1: the file is empty (or holds only comments)"))
        return None
    return _convert(root, (), doc, env, loader)


def _convert(node: yaml.Node, loc: Loc, doc: _Document, env: Mapping[str, str], loader: yaml.SafeLoader) -> Any:
    doc.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        merged = _flatten(node, doc, loader)
        result: dict[Any, Any] = {}
        from_merge: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = loader.construct_object(key_node)
            child, line = loc + (key,), key_node.start_mark.line + 1
            if key in result and key not in from_merge:
                doc.problems.append((line, f"{doc.source}:{line}: {render_loc(child)}: "
                                           f"duplicate key (first on line {doc.lines[child]})"))
                continue
            # merged keys come first; the mapping's own keys override them (YAML's merge key semantics)
            (from_merge.add if index < merged else from_merge.discard)(key)
            doc.lines[child] = line
            result[key] = _convert(value_node, child, doc, env, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, loc + (i,), doc, env, loader) for i, item in enumerate(node.value)]
    value = loader.construct_object(node)
    if isinstance(value, str) and "${" in value:
        value = _substitute(value, loc, doc, env)
    return value


_MERGE = "tag:yaml.org,2002:merge"


def _flatten(node: yaml.MappingNode, doc: _Document, loader: yaml.SafeLoader) -> int:
    """Resolve the mapping's merge keys (``<<: *name``) once; return how many of its pairs came from them (they
    come first in ``node.value``). A node reached again through an alias is already flat: its count is kept."""
    if id(node) not in doc.merged:
        own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE)
        loader.flatten_mapping(node)
        doc.merged[id(node)] = len(node.value) - own
    return doc.merged[id(node)]


def _substitute(text: str, loc: Loc, doc: _Document, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                doc.problem(loc, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)")
                return ""
            return default
        return value

    return _ENV.sub(replace, text)


# ----------------------------------------------------------------------------------------------------- validation


def _friendly(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing required key"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return message


def _data_loc(data: Any, loc: Loc, kind: str) -> Loc:
    """Drop pydantic's type tags (``'int'``, ``'function-after[...]'``) so the path names keys in the file."""
    out: list[str | int] = []
    here = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(here, dict) and part in here:
            out.append(part)
            here = here[part]
        elif isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here):
            out.append(part)
            here = here[part]
        elif last and kind in ("missing", "extra_forbidden") and isinstance(part, str):
            out.append(part)
    return tuple(out)


def _report(exc: ValidationError, data: Any, prefix: Loc, doc: _Document) -> None:
    seen: set[Loc] = set()
    for error in exc.errors():
        loc = prefix + _data_loc(data, tuple(error["loc"]), error["type"])
        if loc in seen:
            continue  # one message per key: a union reports once per branch
        seen.add(loc)
        doc.problem(loc, _friendly(error))


def _validate_part(model: Any, data: Any, loc: Loc, doc: _Document) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        _report(exc, data, loc, doc)
        return None


def _validate_devices(items: Any, section: str, lookup: Any, doc: _Document) -> tuple[list[Any], set[str]]:
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


def _validate_device(item: dict[str, Any], loc: Loc, lookup: Any, doc: _Document) -> Any:
    type_name = item.get("type")
    if not isinstance(type_name, str):
        doc.problem(loc + ("type",), "missing required key" if type_name is None else "must be a string")
        return None
    try:
        driver = lookup(type_name)
    except KeyError as exc:
        doc.problem(loc + ("type",), exc.args[0])
        return None
    return _validate_part(driver.Config, item, loc, doc)


def _check_unique_ids(parts: dict[str, list[tuple[Loc, Any]]], doc: _Document) -> set[str]:
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


def _check_whole(config: "GatewayConfig", doc: _Document) -> None:
    """Checks a section can only make against the whole config: a section model may define
    ``check_whole(config) -> [(loc within the section, message)]``."""
    for name in GatewayConfig.model_fields:
        check = getattr(getattr(config, name), "check_whole", None)
        if callable(check):
            for loc, message in check(config):
                doc.problem((name, *loc), message)


def _check_unique(items: list[Any], section: str, doc: _Document) -> None:
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
                doc: _Document) -> None:
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


def _validate_hardware(section: Any, doc: _Document) -> Any:
    """Validate ``hardware.simulation`` with the simulation's own model, and only for the simulated backend."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        return section  # GatewayConfig's validation reports it
    section = dict(section)
    simulation = section.pop("simulation", None)
    if section.get("backend", "simulated") == "simulated":
        from edge.gateway.hardware.sim import SimulationConfig

        section["simulation"] = _validate_part(SimulationConfig, simulation or {}, ("hardware", "simulation"), doc)
    elif simulation is not None:
        doc.problem(("hardware", "simulation"), "only allowed with backend: simulated")
    return section


def parse_config(text: str, source: str = "<memory>", env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Validate YAML text into a :class:`GatewayConfig`, or raise :class:`ConfigError` listing every problem."""
    doc = _Document(source)
    data = _read_yaml(text, doc, os.environ if env is None else env)
    if data is not None and not isinstance(data, dict):
        doc.problem((), "the file must be a mapping of sections (gateway, hardware, sensors, ...)")
    if doc.problems or not isinstance(data, dict):
        raise ConfigError([message for _, message in sorted(doc.problems)])

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
    config = _validate_part(GatewayConfig, body, (), doc)
    if config is not None:
        for name in GatewayConfig.model_fields.keys() - {"sensors", "actuators"}:
            _check_refs(_find_refs(getattr(config, name), (name,)), known, doc)
        for section in ("schedules", "rules"):
            _check_unique(getattr(config, section), section, doc)
        if not doc.problems:
            _check_whole(config, doc)
    if doc.problems or config is None:
        raise ConfigError([message for _, message in sorted(doc.problems)])
    return config.model_copy(update={"source": source})


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Load and validate a config file; ``None`` loads the embedded simulated-greenhouse demo."""
    file = Path(path) if path is not None else DEMO_CONFIG
    return parse_config(read_config_file(file), str(file), env)


def load_model(model: type[BaseModel], path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Any:
    """Load any YAML file into ``model`` with the same ``${VAR}`` substitution and ``FILE:LINE`` errors as a gateway
    config (the data-center config uses it)."""
    file = Path(path)
    text = read_config_file(file)
    doc = _Document(str(file))
    data = _read_yaml(text, doc, os.environ if env is None else env)
    if data is not None and not isinstance(data, dict):
        doc.problem((), "the file must be a mapping of sections")
    config = _validate_part(model, data, (), doc) if not doc.problems and isinstance(data, dict) else None
    if doc.problems or config is None:
        raise ConfigError([message for _, message in sorted(doc.problems)])
    return config
