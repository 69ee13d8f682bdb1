"""Phone numbers in one canonical form (``+989121234567``), whatever way a farmer, a provider or a modem wrote them."""

from __future__ import annotations

import re

PERSIAN_DIGITS = "۰۱۲۳۴۵۶۷۸۹"
ARABIC_INDIC_DIGITS = "٠١٢٣٤٥٦٧٨٩"
_TO_LATIN = str.maketrans(PERSIAN_DIGITS + ARABIC_INDIC_DIGITS, "0123456789" * 2)
_JUNK = re.compile(r"[\s\-().]")


def normalize_digits(text: str) -> str:
    """Persian and Arabic-Indic digits -> Latin digits (replies and numbers come with any of the three)."""
    return text.translate(_TO_LATIN)


def canonical(number: str, country: str = "98") -> str:
    """``09121234567``, ``00989121234567``, ``989121234567``, ``+98 912 123 4567`` -> ``+989121234567``."""
    text = _JUNK.sub("", normalize_digits(number.strip()))
    if text.startswith("+"):
        digits = text[1:]
    elif text.startswith("00"):
        digits = text[2:]
    elif text.startswith("0"):
        digits = country + text[1:]
    elif text.startswith(country) and len(text) > 10:
        digits = text
    else:
        digits = country + text
    if not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise ValueError(f"not a phone number: {number!r} (write it as 09121234567 or +989121234567)")
    return "+" + digits


def national(number: str, country: str = "98") -> str:
    """``+989121234567`` -> ``09121234567`` (what Iranian HTTP gateways expect); foreign numbers stay international."""
    number = canonical(number, country)
    prefix = "+" + country
    return "0" + number[len(prefix):] if number.startswith(prefix) else number


def masked(number: str) -> str:
    """For logs and events: ``+98912***4567``."""
    return number[:6] + "***" + number[-4:] if len(number) > 10 else "***" + number[-3:]
