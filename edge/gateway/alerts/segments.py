"""How an SMS text is encoded and cut into parts: the one place that knows GSM 03.38 and UCS-2 limits.

A text that fits the GSM 7-bit alphabet is sent as GSM-7: 160 septets in a single SMS, 153 per part of a
concatenated one (the 6-octet user data header takes 7 septets). Characters of the extension table (``€ [ ] { } ^ ~
\\ |`` and form feed) take two septets (escape + code). Any other character (every Persian letter, ZWNJ, ``°``)
makes the whole text UCS-2: 70 UTF-16 code units single, 67 per part; a character outside the Basic Multilingual
Plane (most emoji) is a surrogate pair and takes two. A part never splits an escape pair or a surrogate pair.

Pure functions; the message composer (:mod:`..messages`) and the modem's PDU encoder both cut texts here, so the
count a message was budgeted with is the count the modem sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["gsm7", "ucs2"]

#: GSM 03.38 default alphabet; the index of a character is its septet. Index 27 is the escape to the extension table.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_ESCAPE = 0x1B
#: The extension table: character -> code sent after the escape septet.
GSM7_EXTENSION = {"\x0c": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E,
                  "|": 0x40, "€": 0x65}

_BASIC = {ch: i for i, ch in enumerate(GSM7_BASIC) if i != GSM7_ESCAPE}

#: (single-SMS limit, per-part limit) in septets (GSM-7) or UTF-16 code units (UCS-2).
LIMITS: dict[Encoding, tuple[int, int]] = {"gsm7": (160, 153), "ucs2": (70, 67)}


def is_gsm7(text: str) -> bool:
    return all(ch in _BASIC or ch in GSM7_EXTENSION for ch in text)


def encoding_of(text: str) -> Encoding:
    return "gsm7" if is_gsm7(text) else "ucs2"


def char_units(ch: str, encoding: Encoding) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) one character takes."""
    if encoding == "gsm7":
        return 2 if ch in GSM7_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def text_units(text: str, encoding: Encoding | None = None) -> int:
    encoding = encoding or encoding_of(text)
    return sum(char_units(ch, encoding) for ch in text)


def split_parts(text: str, encoding: Encoding | None = None) -> list[str]:
    """Cut ``text`` into the parts it is sent as (one part when it fits a single SMS). Joined, they give ``text``."""
    encoding = encoding or encoding_of(text)
    single, per_part = LIMITS[encoding]
    if text_units(text, encoding) <= single:
        return [text]
    parts, current, used = [], [], 0
    for ch in text:
        size = char_units(ch, encoding)
        if used + size > per_part:
            parts.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += size
    parts.append("".join(current))
    return parts


@dataclass(frozen=True, slots=True)
class Measure:
    encoding: Encoding
    units: int  # septets or UTF-16 code units
    segments: int


def measure(text: str) -> Measure:
    encoding = encoding_of(text)
    return Measure(encoding, text_units(text, encoding), len(split_parts(text, encoding)))


def segment_count(text: str) -> int:
    """How many SMS a text costs."""
    return measure(text).segments
