"""Durations as people write them in config and on the command line: ``10s``, ``5m``, ``2h``, ``1d``."""

from __future__ import annotations

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


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


#: A config field holding a duration; validated from text, stored as float seconds. Defaults are given in seconds.
Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
