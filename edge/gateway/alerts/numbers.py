"""Phone numbers in one canonical form (``+989121234567``), whatever way a farmer, a provider or a modem wrote them.

An Iranian number is held to what an Iranian mobile is: ``09xx xxx xxxx`` (11 digits), ``+989xx xxx xxxx`` or
``00989xx xxx xxxx``, in Latin, Persian or Arabic-Indic digits, with any spaces, dashes, dots or parentheses. A number
one digit short (``0912 123 456``) or a landline (``021 ...``) would never get an SMS: it is refused with a message
that says which. Other countries' numbers are checked against the international limit (8-15 digits).
"""

from __future__ import annotations

import re

PERSIAN_DIGITS = "۰۱۲۳۴۵۶۷۸۹"
ARABIC_INDIC_DIGITS = "٠١٢٣٤٥٦٧٨٩"
_TO_LATIN = str.maketrans(PERSIAN_DIGITS + ARABIC_INDIC_DIGITS, "0123456789" * 2)
#: What people and phones put between digits: spaces, dashes, dots, parentheses, direction marks pasted from RTL text.
_JUNK = re.compile(r"[\s\-().\u200c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
IRAN = "98"
#: Digits of an Iranian mobile number after the country code: 9 and nine more.
IRAN_MOBILE_DIGITS = 10


def normalize_digits(text: str) -> str:
    """Persian and Arabic-Indic digits -> Latin digits (replies and numbers come with any of the three)."""
    return text.translate(_TO_LATIN)


def _international(text: str, country: str) -> str:
    if text.startswith("+"):
        return text[1:]
    if text.startswith("00"):
        return text[2:]
    if text.startswith("0"):
        return country + text[1:]
    if text.startswith(country) and len(text) > 10:
        return text
    return country + text


def _iranian_problem(national: str) -> str | None:
    """Why the digits after +98 are not an Iranian mobile number, or None."""
    if not national.startswith("9"):
        return "is not a mobile number: SMS needs a mobile, and Iranian mobile numbers start with 09"
    missing = IRAN_MOBILE_DIGITS - len(national)
    if missing > 0:
        return f"is {'one digit' if missing == 1 else f'{missing} digits'} short"
    if missing < 0:
        return f"has {'one digit' if missing == -1 else f'{-missing} digits'} too many"
    return None


def canonical(number: str, country: str = IRAN) -> str:
    """``09121234567``, ``00989121234567``, ``989121234567``, ``+98 912 123 4567``, ``۰۹۱۲۱۲۳۴۵۶۷`` ->
    ``+989121234567``. Raises ``ValueError`` naming what is wrong."""
    text = _JUNK.sub("", normalize_digits(number.strip()))
    digits = _international(text, country)
    if not digits.isdigit():
        raise ValueError(f"not a phone number: {number!r} (write it as 09121234567 or +989121234567)")
    if digits.startswith(IRAN):
        problem = _iranian_problem(digits[len(IRAN):])
        if problem:
            raise ValueError(f"{number!r} {problem} (an Iranian mobile number has 11 digits: 09xx xxx xxxx, "
                             f"+989xx xxx xxxx or 00989xx xxx xxxx)")
    elif not 8 <= len(digits) <= 15:
        raise ValueError(f"not a phone number: {number!r} (write it as 09121234567 or +989121234567)")
    return "+" + digits


def national(number: str, country: str = IRAN) -> str:
    """``+989121234567`` -> ``09121234567`` (what Iranian HTTP gateways expect); foreign numbers stay international."""
    number = canonical(number, country)
    prefix = "+" + country
    return "0" + number[len(prefix):] if number.startswith(prefix) else number


def masked(number: str) -> str:
    """For logs and events: ``+98912***4567``."""
    return number[:6] + "***" + number[-4:] if len(number) > 10 else "***" + number[-3:]
