"""SMS texts: exact segment counts, Persian digits and Jalali dates, and critical alerts that fit two segments."""

from __future__ import annotations

import math
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.gateway.alerts.messages import (EVENT_KINDS, Fact, Item, Output, Reading, Style, compose, compose_status,
                                          local_time, normalize_digits, parse_reply, to_persian_digits)
from edge.gateway.alerts.segments import GSM7_BASIC, GSM7_EXTENSION, measure, segment_count, split_parts

PERSIAN = "ابپتثجچحخدذرزژسشصضطظعغفقکگلمنوهی "
GSM_BASIC = GSM7_BASIC.replace("\x1b", "")
ZWNJ = "\u200c"
JULY_15_1030_TEHRAN = datetime.fromisoformat("2025-07-15T10:30:00+03:30").timestamp()


def expected_parts(units: int, single: int, per_part: int) -> int:
    return 1 if units <= single else math.ceil(units / per_part)


# ------------------------------------------------------------------------------------------------ segment counting


@given(st.text(alphabet=GSM_BASIC, max_size=600))
def test_plain_gsm7_text_is_160_single_and_153_per_part(text):
    assert measure(text).encoding == "gsm7"
    assert segment_count(text) == expected_parts(len(text), 160, 153)


@given(st.text(alphabet=PERSIAN.strip(), min_size=1, max_size=600))
def test_persian_text_is_70_single_and_67_per_part(text):
    assert measure(text).encoding == "ucs2"
    assert segment_count(text) == expected_parts(len(text), 70, 67)


def test_the_gsm7_limits_are_exact_at_their_edges():
    assert [segment_count("a" * n) for n in (160, 161, 306, 307)] == [1, 2, 2, 3]
    assert [segment_count("س" * n) for n in (70, 71, 134, 135)] == [1, 2, 2, 3]


def test_extension_characters_count_two_septets():
    assert measure("€" * 80).units == 160
    assert segment_count("€" * 80) == 1
    assert segment_count("€" * 80 + "a") == 2


def test_zwnj_counts_and_makes_the_text_ucs2():
    text = "a" * 69 + ZWNJ
    assert measure(text).encoding == "ucs2"
    assert measure(text).units == 70
    assert segment_count(text) == 1
    assert segment_count(text + ZWNJ) == 2


def test_an_emoji_outside_the_bmp_counts_two():
    assert measure("🌡").units == 2
    assert segment_count("س" * 68 + "🌡") == 1
    assert segment_count("س" * 69 + "🌡") == 2


def test_a_degree_sign_is_not_gsm7():
    assert measure("42°C").encoding == "ucs2"


@given(st.text(alphabet=GSM_BASIC + "".join(GSM7_EXTENSION), max_size=500))
def test_gsm7_parts_never_split_an_escape_pair_and_join_back(text):
    parts = split_parts(text)
    assert "".join(parts) == text
    if len(parts) > 1:
        assert all(measure(part).units <= 153 for part in parts)


@given(st.text(alphabet=PERSIAN + ZWNJ + "🌡🔥a", max_size=500))
def test_ucs2_parts_never_split_a_surrogate_pair_and_join_back(text):
    parts = split_parts(text)
    assert "".join(parts) == text
    if len(parts) > 1:
        assert all(sum(2 if ord(c) > 0xFFFF else 1 for c in part) <= 67 for part in parts)
    assert len(parts) == segment_count(text)


# ------------------------------------------------------------------------------------------------- digits and dates


@given(st.integers(min_value=0, max_value=10**9))
def test_persian_digits_normalise_back_to_latin(n):
    assert normalize_digits(to_persian_digits(str(n))) == str(n)


def test_replies_are_read_in_persian_arabic_indic_or_latin_digits():
    assert parse_reply("۱۷") == ("ack", ["17"])
    assert parse_reply("١٧") == ("ack", ["17"])
    assert parse_reply(" ok 17 ") == ("ack", ["17"])
    assert parse_reply("وضعیت") == ("status", [])
    assert parse_reply("Status") == ("status", [])
    assert parse_reply("سلام") == ("unknown", [])


def test_times_are_jalali_with_persian_digits_in_the_greenhouse_zone():
    fa = Style("fa", "x", "Asia/Tehran")
    assert local_time(JULY_15_1030_TEHRAN, fa) == "۲۴ تیر ۱۰:۳۰"
    assert local_time(JULY_15_1030_TEHRAN, Style("en", "x", "Asia/Tehran")) == "15 Jul 10:30"
    assert local_time(JULY_15_1030_TEHRAN, Style("en", "x", "UTC")) == "15 Jul 07:00"


# ------------------------------------------------------------------------------------------------------- messages


def hot(code="17", severity="critical", **kw) -> Fact:
    base = dict(code=code, severity=severity, kind="above", fired_ts=JULY_15_1030_TEHRAN, subject="air",
                quantity="temperature", value=42.34, unit="°C", limit=40.0)
    return Fact(**{**base, **kw})


def test_a_persian_critical_alert_says_where_what_and_what_to_check_in_one_segment():
    text = compose([Item("firing", hot())], Style("fa", "گلخانه نمونه", now=JULY_15_1030_TEHRAN))
    assert text == "گلخانه نمونه: هشدار فوری ۱۷، دما ۴۲٫۳°. دریچه و فن را بررسی کنید."
    assert segment_count(text) == 1


def test_an_english_alert_stays_in_the_gsm_alphabet():
    text = compose([Item("firing", hot())], Style("en", "Demo", now=JULY_15_1030_TEHRAN))
    assert text == ("CRITICAL Demo: air temperature 42.3C (above 40), since 15 Jul 10:30. Check vents and fans. "
                    "Reply 17 to acknowledge.")
    assert measure(text).encoding == "gsm7"


def test_a_resolved_message_gives_the_value_that_cleared_it():
    fact = hot(value=37.9, resolved_ts=JULY_15_1030_TEHRAN + 600)
    text = compose([Item("resolved", fact)], Style("en", "Demo", now=JULY_15_1030_TEHRAN + 600))
    assert text == "Resolved Demo: air temperature 37.9C, 15 Jul 10:40 (code 17)"


def test_several_alerts_in_one_message_list_criticals_first():
    items = [Item("firing", Fact("18", "warning", "stale", JULY_15_1030_TEHRAN, subject="soil-1")),
             Item("firing", hot())]
    text = compose(items, Style("en", "Demo", now=JULY_15_1030_TEHRAN))
    assert text.splitlines() == ["Demo, 2 alerts:", "17 CRIT: air temperature 42.3C (above 40) 10:30",
                                 "18 WARN: no data from soil-1 10:30",
                                 "Check vents, fans and the sensor's cable.", "Reply with a code to acknowledge."]


def test_a_long_list_is_cut_with_and_n_more_within_its_budget():
    items = [Item("firing", hot(code=str(10 + i), severity="warning")) for i in range(40)]
    text = compose(items, Style("fa", "گلخانه", now=JULY_15_1030_TEHRAN, max_segments=3), header="summary")
    assert segment_count(text) <= 3
    assert "مورد دیگر" in text


names = st.text(alphabet=PERSIAN + "abcXYZ-_ 0123456789" + ZWNJ, min_size=1, max_size=64)
values = st.floats(min_value=-40, max_value=10_000, allow_nan=False)
kinds = st.sampled_from(["above", "below", "rate", "stale", "actuator_fault", "link_down", "buffer",
                         "clock_unsynced", "unclean_restart", "sms_credit", "sms_refused"])


@settings(max_examples=300)
@given(greenhouse=names, label=st.none() | names, subject=names, value=values, limit=values, kind=kinds,
       notice=st.sampled_from(["firing", "repeat", "escalation", "resolved"]),
       language=st.sampled_from(["fa", "en"]), code=st.integers(10, 9999), minutes=st.integers(0, 60 * 24 * 40))
def test_a_critical_alert_always_fits_two_segments(greenhouse, label, subject, value, limit, kind, notice, language,
                                                   code, minutes):
    fact = Fact(str(code), "critical", kind, JULY_15_1030_TEHRAN, label=label, subject=subject,
                quantity="soil_moisture", value=value, unit="%", limit=limit, window=600)
    style = Style(language, greenhouse, now=JULY_15_1030_TEHRAN + minutes * 60)
    text = compose([Item(notice, fact)], style)
    assert segment_count(text) <= 2
    shown_code = to_persian_digits(str(code)) if language == "fa" else str(code)
    if language == "en" or kind not in EVENT_KINDS:  # a Persian event (a power cut) has nothing to acknowledge
        assert shown_code in text


def test_the_status_reply_fits_one_message_budget():
    readings = [Reading(f"sensor-{i}", "temperature", 20 + i, "°C", age=5) for i in range(30)]
    outputs = [Output(f"out-{i}", i % 2, "rule:x") for i in range(20)]
    text = compose_status(readings, outputs, [hot()], Style("fa", "گلخانه", now=JULY_15_1030_TEHRAN, max_segments=4))
    assert segment_count(text) <= 4
