"""YAML configuration files -> validated, typed models, on either side. Every problem names ``FILE:LINE: key.path:
message``; all problems are collected and raised together as one :class:`~edge.errors.ConfigError`.

This module knows no section of any config: it reads YAML keeping the line of every key, refuses duplicate keys and
hostile files (bounded size, depth and alias expansion), substitutes ``${VAR}`` / ``${VAR:-default}`` from the
environment, and turns pydantic's errors into those lines. ``edge.gateway.config`` builds the gateway's config on
it, ``edge.datacenter.config`` the data center's; loading one imports nothing of the other side.
"""

from __future__ import annotations

import os
import re
import types
import typing
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from edge.errors import ConfigError

Loc = tuple[str | int, ...]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _check_identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"invalid id {value!r}: use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return value


#: An id as used in config, MQTT topics, events and the CLI.
Identifier = Annotated[str, AfterValidator(_check_identifier)]

#: The longest display name: every SMS carries the greenhouse's name, and one SMS in Persian is 70 characters.
DISPLAY_NAME_MAX = 30
_JOINERS = "\u200c\u200d"  # zero-width non-joiner and joiner: part of written Persian


def _check_display_name(value: str) -> str:
    hidden = [ch for ch in value if unicodedata.category(ch) in ("Cc", "Cf") and ch not in _JOINERS]
    if hidden:
        raise ValueError(f"name {value!r} holds a line break or an invisible control character "
                         f"(U+{ord(hidden[0]):04X}): write it on one line, letters, digits and spaces")
    text = " ".join(value.split())
    if not text:
        raise ValueError("name is empty: leave it out (or null) for the default")
    if len(text) > DISPLAY_NAME_MAX:
        raise ValueError(f"name '{text}' has {len(text)} characters, at most {DISPLAY_NAME_MAX}: it appears in "
                         f"SMS texts, where 70 Persian characters make one message")
    return text


#: A name people read (in SMS, pages, status), in any script: one line, at most 30 characters, spaces collapsed.
DisplayName = Annotated[str, AfterValidator(_check_display_name)]


# ------------------------------------------------------------------------------------------- YAML with line numbers

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Document:
    """Plain data from YAML plus the line of every key path, and the problems found while reading it."""

    def __init__(self, source: str):
        self.source = source
        self.lines: dict[Loc, int] = {}
        self.problems: list[tuple[int, str]] = []
        self.merged: dict[int, int] = {}  # id(mapping node) -> how many of its pairs came from merge keys
        #: Values whose ``${VAR}`` is not set: already reported, so what validation says about them is not.
        self.unresolved: set[Loc] = set()

    def problem(self, loc: Loc, message: str) -> None:
        self.problems.append((self.line_of(loc), f"{self.source}:{self.line_of(loc)}: {render_loc(loc)}: {message}"))

    def messages(self) -> list[str]:
        """Every problem, in line order."""
        return [message for _, message in sorted(self.problems, key=lambda problem: problem[0])]

    def reported(self, loc: Loc) -> bool:
        """Whether ``loc`` is (inside) a value already reported as unresolved."""
        return any(loc[:len(done)] == done for done in self.unresolved)

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


def _reader_problem(exc: yaml.reader.ReaderError, text: str, doc: Document) -> None:
    """A character YAML does not allow (a control character, NUL), named with its line."""
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    doc.problems.append((line, f"{doc.source}:{line}: yaml: control character U+{exc.character:04X} in column "
                               f"{column} is not allowed (only tab, newline and printable characters)"))


def _check_shape(text: str, doc: Document) -> bool:
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


def read_yaml(text: str, doc: Document, env: Mapping[str, str]) -> Any:
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
        line, reason = _syntax_problem(exc)
        doc.problems.append((line, f"{doc.source}:{line}: yaml: {reason}"))
        return None
    finally:
        loader.dispose()
    if root is None:
        doc.problems.append((1, f"{doc.source}:1: the file is empty (or holds only comments)"))
        return None
    return _convert(root, (), doc, env, loader)


#: Syntax errors PyYAML finds only past the mistake, reported where the unfinished token or collection started
#: (its context mark), with what to do.
_STARTED_AT = {
    "while scanning a quoted scalar": "a quoted value that starts here is never closed: add the closing quote",
    "while scanning a simple key": "no ':' after the key on this line: write key: value (a space after the colon)",
    "while parsing a flow sequence": "the [ list that starts here is not closed with ]",
    "while parsing a flow mapping": "the { mapping that starts here is not closed with }",
}


def _syntax_problem(exc: yaml.YAMLError) -> tuple[int, str]:
    """The line of a YAML syntax error as a person would point at it, and what it is.

    PyYAML reports an unfinished token where it gave up: an unclosed quote at the end of the file, a key without its
    colon on the line after. Those are reported at the line where the token started; the others (a tab, a line
    indented wrongly) at the line where they are."""
    problem, context = getattr(exc, "problem", None), getattr(exc, "context", None)
    mark, start = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark else 1
    if problem is None:
        return line, str(exc)
    if start is not None and context in _STARTED_AT and start.line + 1 < line:
        return start.line + 1, f"{_STARTED_AT[context]} (found {problem!s} on line {line})"
    if start is not None and context in _STARTED_AT:
        return line, f"{_STARTED_AT[context]} ({problem})"
    column = f" in column {mark.column + 1}" if mark else ""
    if "'\\t'" in problem:
        return line, f"a tab{column}: YAML indents with spaces, never tabs"
    if problem.startswith("expected <block end>") or problem == "mapping values are not allowed here":
        return line, (f"this line is indented wrongly ({problem}{column}): keys of one mapping line up exactly, "
                      "and a value containing ': ' needs quotes")
    return line, problem + column


def _convert(node: yaml.Node, loc: Loc, doc: Document, env: Mapping[str, str], loader: yaml.SafeLoader) -> Any:
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
            if child in doc.unresolved:  # reported already: left out, so the rest is checked as if it were absent
                del result[key]
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, loc + (i,), doc, env, loader) for i, item in enumerate(node.value)]
    value = loader.construct_object(node)
    if isinstance(value, str) and "${" in value:
        value = _substitute(value, loc, doc, env)
    return value


_MERGE = "tag:yaml.org,2002:merge"


def _flatten(node: yaml.MappingNode, doc: Document, loader: yaml.SafeLoader) -> int:
    """Resolve the mapping's merge keys (``<<: *name``) once; return how many of its pairs came from them (they
    come first in ``node.value``). A node reached again through an alias is already flat: its count is kept."""
    if id(node) not in doc.merged:
        own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE)
        loader.flatten_mapping(node)
        doc.merged[id(node)] = len(node.value) - own
    return doc.merged[id(node)]


def _substitute(text: str, loc: Loc, doc: Document, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                doc.problem(loc, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)")
                doc.unresolved.add(loc)
                return ""
            return default
        return value

    return _ENV.sub(replace, text)


# ----------------------------------------------------------------------------------------------------- validation


def _friendly(error: Mapping[str, Any], model: Any = None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = error["loc"][-1] if error["loc"] else None
        return "unknown key" + _did_you_mean(key, _keys_at(model, tuple(error["loc"][:-1])))
    if kind == "missing":
        return "missing required key"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    if kind == "literal_error":
        expected = str(error.get("ctx", {}).get("expected", ""))
        message += _did_you_mean(error.get("input"), re.findall(r"'([^']*)'", expected))
    return message


def _did_you_mean(given: Any, choices: Any) -> str:
    """`` (did you mean 'interval'?)`` when ``given`` is a near miss of one of ``choices``, else ``""``."""
    if not isinstance(given, str) or not choices:
        return ""
    import difflib  # only for a config with a mistake in it

    close = difflib.get_close_matches(given, [str(choice) for choice in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _keys_at(model: Any, loc: Loc) -> list[str]:
    """The keys the model accepts at ``loc`` (a pydantic error location, with its union and type tags), for a
    suggestion when a key is unknown; empty when the location cannot be followed."""
    candidates = _unwrap(model) if model is not None else []
    for part in loc:
        with_field = [c for c in candidates if isinstance(part, str) and part in _fields_of(c)]
        if with_field:
            candidates = [t for c in with_field for t in _unwrap(_fields_of(c)[part].annotation)]
        elif isinstance(part, int):
            candidates = [t for c in candidates if typing.get_origin(c) in (list, tuple)
                          for arg in typing.get_args(c) if arg is not Ellipsis for t in _unwrap(arg)]
        elif any(getattr(c, "__name__", None) == part for c in candidates):
            candidates = [c for c in candidates if getattr(c, "__name__", None) == part]  # a union's branch
        elif any(typing.get_origin(c) is dict for c in candidates):
            candidates = [t for c in candidates if typing.get_origin(c) is dict for t in _unwrap(typing.get_args(c)[1])]
        # else: a type tag such as 'function-after[...]': the value is still the same one
    return sorted({key for candidate in candidates for key in _fields_of(candidate)})


def _fields_of(model: Any) -> dict[str, Any]:
    fields = getattr(model, "model_fields", None) if isinstance(model, type) else None
    if not isinstance(fields, dict):
        return {}
    return {(field.alias or name): field for name, field in fields.items()}


def _unwrap(annotation: Any) -> list[Any]:
    """An annotation as the types a value may take (``Annotated``, ``Optional`` and unions opened)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [inner for member in typing.get_args(annotation) for inner in _unwrap(member)]
    return [annotation]


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


def report(exc: ValidationError, data: Any, prefix: Loc, doc: Document, model: Any = None) -> None:
    """Each error of a validation as ``FILE:LINE: key.path: message``: once per key (a union reports once per
    branch), and not for values whose ``${VAR}`` was missing (that is reported already)."""
    seen: set[Loc] = set()
    for error in exc.errors():
        loc = prefix + _data_loc(data, tuple(error["loc"]), error["type"])
        if loc in seen or doc.reported(loc):
            continue
        seen.add(loc)
        doc.problem(loc, _friendly(error, model))


def validate_part(model: Any, data: Any, loc: Loc, doc: Document) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        report(exc, data, loc, doc, model)
        return None


def load_model(model: type[BaseModel], path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Any:
    """Load any YAML file into ``model`` with the same ``${VAR}`` substitution and ``FILE:LINE`` errors as a gateway
    config (the data-center config uses it)."""
    file = Path(path)
    text = read_config_file(file)
    doc = Document(str(file))
    data = read_yaml(text, doc, os.environ if env is None else env)
    if data is not None and not isinstance(data, dict):
        doc.problem((), "the file must be a mapping of sections")
    config = validate_part(model, data, (), doc) if isinstance(data, dict) else None
    if doc.problems or config is None:
        raise ConfigError(doc.messages())
    return config
