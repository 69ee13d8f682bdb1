"""Durations and sizes as people write them in config and on the command line: ``10s``, ``5m``, ``2h``, ``1d``;
``500MB``, ``2GB``; and counts as people read them: ``1 sensor``, ``3 sensors``."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_FORM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(text: Any) -> float:
    """Return seconds for ``"10s"``, ``"5m"``, ``"2h"`` or ``"1d"``. Bare numbers are refused: units are required."""
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError(f"duration must be a string such as 10s, 5m or 2h, not {text!r}")
    match = _FORM.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit, such as 10s, 5m, 2h or 1d")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    return seconds


def counted(count: int, noun: str, plural: str | None = None, *, grouped: bool = False) -> str:
    """``1 sensor``, ``0 sensors``, ``12000 readings`` (``12,000 readings`` when ``grouped``): a count with its noun
    in the right number."""
    number = f"{count:,}" if grouped else f"{count}"
    return f"{number} {noun if count == 1 else plural or noun + 's'}"


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def format_age(seconds: float) -> str:
    """How long ago, as a person reads it: ``45s``, ``12m``, ``3h``, ``2d`` (rounded in the largest unit it reaches);
    ``?`` when unknown (not a finite number); an age below 0 (the wall clock stepped back since, NTP) reads ``0s``.
    The one English age formatter (``edge status``, ``edge doctor``); SMS ages are worded by the alert messages."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


#: A config field holding a duration; validated from text, stored as float seconds. Defaults are given in seconds.
Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


def parse_duration_or_zero(text: Any) -> float:
    """As :func:`parse_duration`, and ``0s`` (zero in any unit) for "none" (a setting that can be switched off)."""
    match = _FORM.match(text) if isinstance(text, str) else None
    if match and float(match.group(1)) == 0:
        return 0.0
    return parse_duration(text)


#: A duration that may be ``0s`` (off).
DurationOrZero = Annotated[float, BeforeValidator(parse_duration_or_zero),
                           PlainSerializer(format_duration, return_type=str)]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def parse_size(text: Any) -> int:
    """Bytes for ``"500MB"``, ``"2GB"`` (decimal units, as SD cards are sold)."""
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError(f"size must be a string such as 500MB or 2GB, not {text!r}")
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"invalid size {text!r}: use a number and a unit, such as 500MB or 2GB")
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])
    if size <= 0:
        raise ValueError(f"invalid size {text!r}: must be greater than zero")
    return size


def format_size(size: int) -> str:
    for unit in ("TB", "GB", "MB", "KB"):
        if size >= _SIZE_UNITS[unit] and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return f"{size}B"


#: A config field holding a size in bytes, written with a unit.
Size = Annotated[int, BeforeValidator(parse_size), PlainSerializer(format_size, return_type=str)]
