"""The GSM modem: PDUs that round-trip every length, and AT commands against a simulated modem on a pseudo-terminal."""

from __future__ import annotations

import time

import pytest

from conftest import wait_until
from edge.gateway.alerts.segments import segment_count
from edge.gateway.alerts.transports.base import OutgoingSms
from edge.gateway.alerts.transports.modem import ModemTransport
from edge.gateway.alerts.transports.modem_sim import SimulatedModem
from edge.gateway.alerts.transports.pdu import (decode_deliver, decode_submit, encode_deliver, encode_submit,
                                                reassemble)

PERSIAN = "هشدار فوری گلخانه: دمای هوا ۴۲٫۳ درجه است؛ پنجره‌ها را باز کنید. "  # with a ZWNJ
ENGLISH = "CRITICAL greenhouse: air temperature 42.3C [above 40] {code 17} ~ "
NUMBER = "+989121234567"


def round_trip(text: str) -> tuple[str, int]:
    pdus = encode_submit(NUMBER, text, reference=42)
    whole = reassemble(decode_submit(p.hex) for p in pdus)
    assert len(whole) == 1 and whole[0].number == NUMBER
    return whole[0].text, len(pdus)


def test_every_persian_message_from_1_to_400_characters_round_trips_with_the_right_part_count():
    for length in range(1, 401):
        text = (PERSIAN * 10)[:length]
        decoded, parts = round_trip(text)
        assert decoded == text, f"length {length}"
        assert parts == segment_count(text) == (1 if length <= 70 else -(-length // 67)), f"length {length}"


def test_persian_messages_of_135_to_139_characters_are_not_truncated():
    for length in range(135, 140):
        text = (PERSIAN * 3)[:length]
        assert round_trip(text) == (text, 3)


def test_every_gsm7_message_from_1_to_400_septets_round_trips():
    for length in range(1, 401):
        text = (ENGLISH * 10)[:length]
        decoded, parts = round_trip(text)
        assert decoded == text, f"length {length}"
        assert parts == segment_count(text)


def test_an_incoming_persian_reply_decodes_from_its_deliver_pdu():
    [pdu] = encode_deliver("+989121234567", "۱۷")
    decoded = decode_deliver(pdu)
    assert (decoded.number, decoded.text) == ("+989121234567", "۱۷")


def test_a_known_pdu_is_encoded_as_the_standard_says():
    [pdu] = encode_submit("+989121234567", "hello")
    assert (pdu.hex, pdu.length) == ("0001000C91891912325476000005E8329BFD06", 18)


# ------------------------------------------------------------------------------------------------- the modem


@pytest.fixture
def modem():
    with SimulatedModem() as sim:
        transport = ModemTransport(sim.port, timeout=2)
        yield sim, transport
        transport.close()


def test_the_modem_is_set_up_as_in_the_field_then_sends_a_long_persian_alert_in_parts(modem):
    sim, transport = modem
    text = (PERSIAN * 3)[:150]
    result = transport.send(OutgoingSms("123456789012345678", NUMBER, text))
    assert result.outcome == "accepted"
    assert sim.commands[:7] == ["ATE0", "AT+CMEE=1", "AT+CPIN?", "AT+CREG?", "AT+CSQ", "AT+CMGF=0",
                                "AT+CNMI=2,1,0,0,0"]
    [message] = sim.messages
    assert (message.number, message.text, message.parts) == (NUMBER, text, 3)


def test_cms_error_500_is_retryable_and_the_next_attempt_goes_through(modem):
    sim, transport = modem
    sim.fail_next(code=500)
    failed = transport.send(OutgoingSms("1", NUMBER, "hello"))
    assert failed.outcome == "retryable" and "+CMS ERROR: 500" in failed.detail
    assert transport.send(OutgoingSms("1", NUMBER, "hello")).outcome == "accepted"
    assert [m.text for m in sim.messages] == ["hello"]


def test_an_error_on_part_2_is_partial_and_the_rest_follows_with_the_same_reference(modem):
    sim, transport = modem
    text = (PERSIAN * 3)[:150]
    sim.fail_next(code=500, after=1)
    first = transport.send(OutgoingSms("123456789012345678", NUMBER, text))
    assert (first.outcome, first.parts_done) == ("partial", 1)
    assert "+CMS ERROR: 500" in first.detail and "part 2 of 3" in first.detail
    rest = transport.send(OutgoingSms("123456789012345678", NUMBER, text, parts_done=first.parts_done))
    assert (rest.outcome, rest.parts_done) == ("accepted", 3)
    assert [p.sequence for p in sim.parts] == [1, 2, 3] and len({p.reference for p in sim.parts}) == 1
    assert [(m.text, m.parts) for m in sim.messages] == [(text, 3)]


def test_a_modem_that_stops_answering_after_part_1_keeps_the_text_it_is_never_retryable_elsewhere():
    with SimulatedModem() as sim:
        transport = ModemTransport(sim.port, timeout=0.5)
        text = (PERSIAN * 3)[:150]
        assert transport.send(OutgoingSms("1", NUMBER, "hello")).outcome == "accepted"  # set up, answering
        sim.fail_next(code=500, after=1)
        assert transport.send(OutgoingSms("2", NUMBER, text)).outcome == "partial"
        sim.silent = True
        again = transport.send(OutgoingSms("2", NUMBER, text, parts_done=1))
        transport.close()
    assert (again.outcome, again.parts_done) == ("partial", 1)  # no PDU of this attempt left: nothing in doubt


def test_an_incoming_sms_is_announced_by_cmti_and_read(modem):
    sim, transport = modem
    transport.send(OutgoingSms("1", NUMBER, "hello"))  # the port is open and set up
    sim.deliver("09121234567", "۱۷")
    replies = wait_until(transport.receive, timeout=5, what="the reply")
    assert [(r.number, r.text, r.transport) for r in replies] == [(NUMBER, "۱۷", "modem")]
    assert sim.storage == {}  # read, then deleted from the SIM


def test_replies_that_arrived_while_nobody_listened_are_read_at_start(modem):
    sim, transport = modem
    sim.store("+989121234567", "وضعیت")
    assert [r.text for r in transport.receive()] == ["وضعیت"]


def test_a_modem_that_does_not_answer_is_retryable_and_nothing_hangs():
    with SimulatedModem() as sim:
        sim.silent = True
        transport = ModemTransport(sim.port, timeout=0.3)
        began = time.monotonic()
        result = transport.send(OutgoingSms("1", NUMBER, "hello"))
        transport.close()
    assert result.outcome == "retryable"
    assert time.monotonic() - began < 2


def test_a_modem_not_registered_on_the_network_is_retryable():
    with SimulatedModem(registered=False) as sim:
        transport = ModemTransport(sim.port, timeout=1)
        result = transport.send(OutgoingSms("1", NUMBER, "hello"))
        transport.close()
    assert result.outcome == "retryable" and "not registered" in result.detail


def test_a_missing_serial_device_is_retryable():
    transport = ModemTransport("/dev/does-not-exist", timeout=1)
    result = transport.send(OutgoingSms("1", NUMBER, "hello"))
    assert result.outcome == "retryable" and "/dev/does-not-exist" in result.detail
