"""edge/durations.py: the one age formatter that edge status and edge doctor print."""

from __future__ import annotations

import math

from edge.durations import format_age


def test_an_age_is_rounded_in_its_largest_unit():
    assert [format_age(s) for s in (0, 44.6, 59.4, 60, 90, 3599, 3600, 5 * 3600, 86400, 3 * 86400 + 7)] == \
        ["0s", "45s", "59s", "1m", "2m", "60m", "1h", "5h", "1d", "3d"]


def test_an_unknown_or_negative_age():
    assert format_age(math.inf) == "?" and format_age(math.nan) == "?"
    assert format_age(-30) == "0s"  # the wall clock stepped back since
