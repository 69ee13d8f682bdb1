"""The farmer's side of the SMS: what «وضعیت» answers, what any reply gets back, and how every Persian text reads.

The farmer never opens a terminal: these texts are all they see of the gateway. The greenhouse here is named in
Persian like a real one (``gateway.name: گلخانه حسن``, sensors and outputs named), and the texts are pinned whole.
"""

from __future__ import annotations

import re

import pytest

from alerts_kit import OWNER, STRANGER, Greenhouse
from conftest import wait_until
from edge.gateway.alerts.catalog import examples
from edge.gateway.alerts.segments import measure, segment_count
from edge.gateway.alerts.transports.modem import ModemTransport
from edge.gateway.alerts.transports.modem_sim import SimulatedModem

HASAN = "{id: gh-hasan, name: گلخانه حسن, timezone: Asia/Tehran}"
FARM = """\
sensors:
  - {id: air, name: هوا, type: simulated, measures: [temperature, humidity], interval: 10s}
  - {id: soil-bed-1, name: بستر ۱, type: simulated, measures: [soil_moisture], zone: bed-1, interval: 1m}
  - {id: soil-bed-2, name: بستر ۲, type: simulated, measures: [soil_moisture], zone: bed-2, interval: 1m}
actuators:
  - {id: heater-1, name: بخاری, type: relay, kind: heater, pin: 17, feedback: {sensor: air, quantity: temperature}}
  - {id: roof-vent, name: دریچه سقف, type: motor_vent, kind: vent, open_pin: 5, close_pin: 6, travel_time: 30s}
  - {id: pump-bed-1, name: پمپ بستر ۱, type: relay, kind: pump, zone: bed-1, pin: 27}
"""
FROST = ("- {id: frost, type: below, severity: critical, input: {sensor: air, quantity: temperature}, threshold: 5, "
         "clear: 7, for: 1m}\n")
DRY = ("- {id: dry, type: below, input: {sensor: soil-bed-1, quantity: soil_moisture}, threshold: 20, clear: 25, "
       "for: 1m}\n")
LATIN = re.compile(r"[A-Za-z]")


@pytest.fixture
def farm(tmp_path):
    made = []

    def make(rules: str = FROST, **kwargs) -> Greenhouse:
        kwargs.setdefault("sensors", FARM)
        kwargs.setdefault("gateway", HASAN)
        gh = Greenhouse(tmp_path / str(len(made)), rules, language="fa", **kwargs)
        made.append(gh)
        return gh

    yield make
    for gh in made:
        gh.close()


def answer(gh: Greenhouse, text: str, number: str = OWNER) -> str | None:
    """The farmer texts ``text``; the SMS that comes back (None: no answer)."""
    before = len(gh.texts())
    gh.reply(number, text)
    gh.jobs()
    after = gh.texts()
    assert len(after) - before <= 1
    return after[-1] if len(after) > before else None


# ------------------------------------------------------------------------------------------------- the status


def test_a_failing_sensor_shows_no_data_in_the_status_never_its_last_value(farm):
    gh = farm()
    gh.run(minutes=1, **{"soil-bed-1_soil_moisture": 30})
    gh.run(minutes=1, **{"soil-bed-1_soil_moisture": None})  # the probe answers with errors from 10:31
    text = answer(gh, "وضعیت")
    assert text.splitlines() == [
        "گلخانه حسن، ساعت ۱۰:۳۲",
        "الان: دما ۲۵°، رطوبت هوا ۵۰٪، رطوبت خاک بستر ۲: ۳۵٪",
        "بدون داده: رطوبت خاک بستر ۱ از ۱۰:۳۰",
        "خاموش: بخاری، پمپ بستر ۱",
        "بسته: دریچه سقف",
        "هشدار بازی نیست."]
    assert "۳۰٪" not in text


def test_a_silent_sensor_shows_no_data_once_its_value_is_stale_and_until_then_its_age(farm):
    gh = farm()
    gh.run(minutes=1)
    gh.run(minutes=2, **{"soil-bed-2_soil_moisture": "silent"})  # read every minute: 2 minutes old, not stale yet
    assert answer(gh, "وضعیت").splitlines()[1:3] == ["الان: دما ۲۵°، رطوبت هوا ۵۰٪، رطوبت خاک بستر ۱: ۳۵٪",
                                                     "۲ دقیقه پیش: رطوبت خاک بستر ۲: ۳۵٪"]
    gh.run(minutes=2, **{"soil-bed-2_soil_moisture": "silent"})  # 4 minutes: past three intervals
    assert answer(gh, "گزارش").splitlines()[2] == "بدون داده: رطوبت خاک بستر ۲ از ۱۰:۳۰"


def test_no_reading_since_the_start_is_no_data_without_a_time(farm):
    gh = farm()
    gh.run(minutes=1, air_temperature="silent", air_humidity="silent")
    assert "بدون داده: دما، رطوبت هوا" in answer(gh, "وضعیت").splitlines()


def test_the_status_says_which_outputs_are_on_and_why(farm):
    gh = farm()
    gh.run(minutes=1, air_temperature=9)
    gh.switched("heater-1", 1.0, "rule:frost-protection")
    gh.switched("roof-vent", 0.4, "manual:cli:root")
    gh.switched("pump-bed-1", 0.0, "safety:max_on")
    gh.run(seconds=10, air_temperature=9)
    assert answer(gh, "وضعیت").splitlines()[2:5] == ["روشن: بخاری (خودکار)", "باز: دریچه سقف ۴۰٪ (دستی)",
                                                    "خاموش: پمپ بستر ۱ (ایمنی)"]
    gh.switched("heater-1", 0.0, "rule:frost-protection")  # the rule let go: just off
    gh.switched("pump-bed-1", 1.0, "schedule:irrigation-morning")
    gh.run(seconds=10, air_temperature=9)
    assert answer(gh, "وضعیت").splitlines()[2:5] == ["روشن: پمپ بستر ۱ (برنامه)", "باز: دریچه سقف ۴۰٪ (دستی)",
                                                    "خاموش: بخاری"]


def test_the_status_lists_only_the_alerts_still_open_and_not_acknowledged(farm):
    gh = farm(FROST + DRY)
    gh.run(minutes=2, air_temperature=3, **{"soil-bed-1_soil_moisture": 15})  # 10 frost, 11 dry soil
    assert answer(gh, "وضعیت").splitlines()[-1] == "هشدار باز: ۱۰، ۱۱"  # what each is about, when it costs no SMS
    answer(gh, "۱۰")
    assert answer(gh, "وضعیت").splitlines()[-1] == "هشدار باز: ۱۱"
    gh.run(minutes=2, air_temperature=3, **{"soil-bed-1_soil_moisture": 30})  # 11 resolved
    assert answer(gh, "وضعیت").splitlines()[-1] == "هشدار بازی نیست."


def test_asking_for_the_status_never_silences_the_next_alert(farm):
    gh = farm(FROST, alerts="caps: {per_hour: 2, per_day: 30}\n")
    for _ in range(6):  # six answers: all the hour allows
        answer(gh, "وضعیت")
        gh.run(minutes=5)
    gh.run(minutes=2, air_temperature=3)
    assert gh.texts()[-1] == "گلخانه حسن: هشدار فوری ۱۰، دما ۳° (زیر ۵°). دریچه و بخاری را ببینید."


# ------------------------------------------------------------------------------------------------------ replies


def test_an_acknowledgement_is_confirmed(farm):
    gh = farm()
    gh.run(minutes=2, air_temperature=3)
    assert answer(gh, "۱۰") == "گلخانه حسن: هشدار ۱۰ تأیید شد؛ دیگر تکرار نمی‌شود."
    gh.run(minutes=60, air_temperature=3)
    assert not any(t.startswith("گلخانه حسن: هنوز") for t in gh.texts())


@pytest.mark.parametrize("reply", ["۱۰", "١٠", "10", "تایید ۱۰", "  ۱۰ ."])
def test_persian_arabic_indic_and_latin_digits_all_acknowledge(farm, reply):
    gh = farm()
    gh.run(minutes=2, air_temperature=3)
    assert gh.reply(OWNER, reply) == "acked"


def test_any_other_text_gets_a_one_line_help(farm):
    gh = farm()
    text = answer(gh, "سلام، چه خبر؟")
    assert text == "گلخانه حسن: شماره هشدار را بفرستید تا تأیید شود، یا «وضعیت» را."
    assert segment_count(text) == 1


def test_a_code_that_is_not_open_is_answered_with_the_open_ones(farm):
    gh = farm()
    gh.run(minutes=2, air_temperature=3)
    assert answer(gh, "۹۹") == "گلخانه حسن: هشدار ۹۹ باز نیست. هشدار باز: ۱۰."
    answer(gh, "۱۰")
    gh.clock.advance(3600)  # the answers above used the hour's one help
    assert answer(gh, "۱۰") == "گلخانه حسن: هشدار ۱۰ قبلاً تأیید شده است."


def test_a_chatty_farmer_gets_one_help_an_hour(farm):
    gh = farm()
    helps = [answer(gh, text) for text in ("سلام", "خوبی؟", "چی بفرستم؟", "الو")]
    assert [h is not None for h in helps] == [True, False, False, False]
    gh.clock.advance(3600)
    assert answer(gh, "سلام") is not None
    assert answer(gh, "وضعیت") is not None  # a status or an acknowledgement is still answered


def test_a_loop_with_an_auto_responder_costs_one_sms_an_hour(farm):
    """The farmer's number forwards to a machine that answers every SMS: our help, its answer, our help..."""
    gh = farm()
    for _ in range(6 * 60 * 3):  # three hours, the machine answering within 10 s of anything we send
        gh.reply(OWNER, "پیام خودکار: در دسترس نیستم")
        gh.step()
    assert [round(m) for m, _, _ in gh.sent()] == [0, 60, 120]


def test_a_stranger_gets_no_answer(farm):
    gh = farm()
    assert answer(gh, "وضعیت", number=STRANGER) is None


def test_replies_and_answers_round_trip_over_the_gsm_modem(farm):
    with SimulatedModem() as modem:
        gh = farm(transports=[ModemTransport(modem.port, timeout=2)])
        gh.run(minutes=2, air_temperature=3)

        def answered(count: int):
            gh.service.receive()
            gh.jobs()
            return len(modem.messages) >= count

        modem.deliver(OWNER, "سلام، چه خبر؟")
        wait_until(lambda: answered(2), timeout=10, what="the help over the modem")
        modem.deliver(OWNER, "١٠")
        wait_until(lambda: answered(3), timeout=10, what="the confirmation over the modem")
        assert [m.text for m in modem.messages] == [
            "گلخانه حسن: هشدار فوری ۱۰، دما ۳° (زیر ۵°). دریچه و بخاری را ببینید.",
            "گلخانه حسن: شماره هشدار را بفرستید تا تأیید شود، یا «وضعیت» را.",
            "گلخانه حسن: هشدار ۱۰ تأیید شد؛ دیگر تکرار نمی‌شود."]
        assert [m.parts for m in modem.messages] == [1, 1, 1]


# ---------------------------------------------------------------------------------------------- how texts read


def test_a_resolution_reads_greenhouse_then_alert(farm):
    gh = farm()
    gh.run(minutes=2, air_temperature=3)
    gh.run(minutes=2, air_temperature=8)  # a resolution waits the grouping minute, like a warning
    assert gh.texts()[-1] == "گلخانه حسن: هشدار ۱۰ رفع شد، دما ۸°."


def test_an_unclean_restart_says_the_power_was_cut(farm):
    gh = farm("- {id: power-cut, type: unclean_restart}\n")
    gh.restart()
    gh.run(minutes=2)
    assert gh.texts() == ["گلخانه حسن: برق دستگاه قطع و وصل شد. آداپتور و پریز را بررسی کنید."]


def test_an_unnamed_greenhouse_and_unnamed_sensors_get_persian_names_not_ids(farm):
    sensors = FARM.replace("name: هوا, ", "").replace("name: بستر ۱, ", "").replace("name: بستر ۲, ", "")
    gh = farm(FROST + DRY, sensors=sensors, gateway="{id: gh-hasan, timezone: Asia/Tehran}")
    gh.run(minutes=3, air_temperature=3)
    gh.run(minutes=3, air_temperature=3, **{"soil-bed-1_soil_moisture": 15})
    assert gh.texts() == ["گلخانه: هشدار فوری ۱۰، دما ۳° (زیر ۵°). دریچه و بخاری را بررسی کنید.",
                          "گلخانه: هشدار ۱۱، رطوبت خاک ۱: ۱۵٪ (زیر ۲۰٪). آبیاری را بررسی کنید."]


def test_a_farm_alert_in_a_real_run_fits_one_segment_and_says_what_to_check(farm):
    gh = farm(FROST + DRY + "- {id: silent, type: stale, sensors: [soil-bed-2], after: 3}\n")
    gh.run(minutes=2, air_temperature=3)
    gh.run(minutes=2, air_temperature=3, **{"soil-bed-1_soil_moisture": 15})
    gh.run(minutes=6, air_temperature=3, **{"soil-bed-1_soil_moisture": 15, "soil-bed-2_soil_moisture": "silent"})
    gh.run(minutes=2, air_temperature=8, **{"soil-bed-1_soil_moisture": 15, "soil-bed-2_soil_moisture": "silent"})
    assert len(gh.texts()) == 4
    for text in gh.texts():
        assert segment_count(text) == 1, text
        assert text.rstrip(".").endswith(("بررسی کنید", "ببینید")) or "رفع شد" in text, text
        assert not LATIN.search(text), text


@pytest.mark.parametrize("example", list(examples()), ids=lambda e: e.kind)
def test_no_persian_sms_of_the_demo_holds_a_latin_letter(example):
    assert not LATIN.search(example.text), example.text


@pytest.mark.parametrize("example", [e for e in examples() if not e.kind.startswith(("a critical grouped", "quiet",
                                                                                      "summary", "answer to «وضعیت»"))],
                         ids=lambda e: e.kind)
def test_every_single_message_of_the_demo_fits_one_segment(example):
    assert measure(example.text).segments == 1, example.text


def test_a_grouped_critical_takes_two_segments_and_the_status_four():
    by_kind = {e.kind: e for e in examples()}
    assert by_kind["a critical grouped with warnings"].segments == 2
    assert by_kind["answer to «وضعیت» (status)"].segments == 4
