"""The SMS outbox: durable, retried with backoff, failing over in order, and never sending twice on a doubt."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest

from edge.gateway.alerts.outbox import Outbox, backoff, plan, transport_health
from edge.gateway.alerts.segments import segment_count
from edge.gateway.alerts.transports.kavenegar import KavenegarTransport
from edge.gateway.alerts.transports.modem import ModemTransport
from edge.gateway.alerts.transports.modem_sim import SimulatedModem
from edge.gateway.buffer import Buffer
from sms_fakes import KEY, FakeKavenegar, unreachable

NOW = 1_752_562_800.0
NUMBER = "+989121234567"


@pytest.fixture
def modem():
    with SimulatedModem() as sim:
        yield sim


@pytest.fixture
def kavenegar():
    return FakeKavenegar()


@pytest.fixture
def outbox(tmp_path, kavenegar, modem):
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=NOW, boot_id="b")
    transports = [KavenegarTransport(KEY, "2000660110", http=kavenegar.transport),
                  ModemTransport(modem.port, timeout=2)]
    box = Outbox(buffer, transports, retry_initial=30, retry_max=600, same_provider_for=1800)
    yield box
    box.close()
    buffer.close()


def queue(box: Outbox, text: str = "هشدار فوری Demo: دما ۴۲°C", critical: bool = True) -> str:
    return box.submit(recipient="Ali", number=NUMBER, text=text, critical=critical, now=NOW)


def events(box: Outbox) -> list[tuple[str, str, str]]:
    return [(e["kind"], json.loads(e["data"])["transport"], json.loads(e["data"])["outcome"])
            for e in box.buffer.events() if e["kind"].startswith("sms.")]


def test_a_healthy_provider_takes_the_sms_and_the_modem_is_never_used(outbox, kavenegar, modem):
    local_id = queue(outbox)
    outbox.flush(NOW)
    [row] = outbox.messages()
    assert (row["state"], row["transport"], row["provider_id"]) == ("sent", "kavenegar", "8792343")
    assert kavenegar.sent[0]["localid"] == local_id
    assert modem.messages == []
    assert events(outbox) == [("sms.sent", "kavenegar", "accepted")]


def test_no_credit_418_fails_over_to_the_modem(outbox, kavenegar, modem):
    kavenegar.script = [418]
    queue(outbox)
    attempts = outbox.flush(NOW)
    assert [(a.transport, a.outcome) for a in attempts] == [("kavenegar", "no_credit"), ("modem", "accepted")]
    assert [m.number for m in modem.messages] == [NUMBER]
    assert outbox.messages()[0]["state"] == "sent"


def test_an_invalid_number_411_fails_for_good_without_trying_the_modem(outbox, kavenegar, modem):
    kavenegar.script = [411]
    queue(outbox)
    outbox.flush(NOW)
    outbox.flush(NOW + 3600)
    assert outbox.messages()[0]["state"] == "failed"
    assert modem.messages == []
    assert events(outbox) == [("sms.failed", "kavenegar", "permanent")]


def test_a_timeout_retries_the_same_provider_with_the_same_local_id_and_never_the_modem(outbox, kavenegar, modem):
    kavenegar.script = ["timeout"]
    local_id = queue(outbox)
    outbox.flush(NOW)
    [row] = outbox.messages()
    assert (row["state"], row["pinned"], row["next_ts"]) == ("queued", "kavenegar", NOW + 30)
    outbox.flush(NOW + 10)  # not due yet
    outbox.flush(NOW + 30)
    assert outbox.messages()[0]["state"] == "sent"
    assert [r.url.path.endswith("send.json") for r in kavenegar.requests] == [True, True]
    assert [dict(parse_qsl(r.content.decode()))["localid"]
            for r in kavenegar.requests] == [local_id, local_id]
    assert len(kavenegar.sent) == 1  # the provider sent it once: the retry found the first one
    assert modem.messages == []


def test_a_message_in_doubt_waits_for_its_provider_even_through_a_link_outage(outbox, kavenegar, modem):
    kavenegar.script = ["timeout", "refuse"]
    queue(outbox)
    outbox.flush(NOW)
    outbox.set_link(False)
    outbox.flush(NOW + 30)
    assert outbox.messages()[0]["pinned"] == "kavenegar"
    outbox.set_link(True)
    outbox.flush(NOW + 90)
    assert outbox.messages()[0]["state"] == "sent"
    assert len(kavenegar.sent) == 1 and modem.messages == []


def test_after_same_provider_for_a_message_in_doubt_fails_over_rather_than_stay_silent(outbox, kavenegar, modem):
    kavenegar.script = ["timeout"] + ["refuse"] * 20
    queue(outbox)
    now = NOW
    while not modem.messages and now < NOW + 7200:
        outbox.flush(now)
        now += 60
    assert now - NOW > 1800  # only after the 30 minutes of same_provider_for
    assert outbox.messages()[0]["transport"] == "modem"


def test_a_provider_that_keeps_timing_out_is_left_after_same_provider_for(outbox, kavenegar, modem):
    kavenegar.script = ["timeout"] * 1000  # each answer lost: it may have sent it, or may never
    queue(outbox)
    now = NOW
    while not modem.messages and now < NOW + 7200:
        outbox.flush(now)
        now += 60
    assert 1800 < now - NOW < 7200
    assert outbox.messages()[0]["state"] == "sent" and outbox.messages()[0]["transport"] == "modem"


def test_a_busy_provider_is_asked_again_later_not_replaced(outbox, kavenegar, modem):
    kavenegar.script = [409, 409]
    queue(outbox)
    for minute in range(0, 10):
        outbox.flush(NOW + minute * 60)
    assert outbox.messages()[0]["transport"] == "kavenegar" and outbox.messages()[0]["state"] == "sent"
    assert modem.messages == []


def test_while_the_uplink_is_down_the_modem_goes_first(outbox, kavenegar, modem):
    outbox.set_link(False)
    queue(outbox)
    outbox.flush(NOW)
    assert kavenegar.requests == []
    assert [m.number for m in modem.messages] == [NUMBER]


def test_an_unreachable_gateway_hands_the_sms_to_the_modem(tmp_path, modem):
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=NOW, boot_id="b")
    box = Outbox(buffer, [KavenegarTransport(KEY, http=unreachable(), receive=False),
                          ModemTransport(modem.port, timeout=2)])
    queue(box)
    attempts = box.flush(NOW)
    box.close()
    buffer.close()
    assert [(a.transport, a.outcome) for a in attempts] == [("kavenegar", "retryable"), ("modem", "accepted")]


def test_when_every_transport_fails_the_sms_waits_longer_each_round(outbox, kavenegar, modem):
    kavenegar.script = ["refuse"] * 3
    modem.fail_next(3, code=500)
    queue(outbox)
    waits = []
    now = NOW
    for _ in range(3):
        outbox.flush(now)
        next_ts = outbox.messages()[0]["next_ts"]
        waits.append(next_ts - now)
        now = next_ts
    assert waits == [30, 60, 120]
    outbox.flush(now)
    assert outbox.messages()[0]["state"] == "sent"


def test_a_queued_sms_survives_a_restart(tmp_path, kavenegar, modem):
    path = tmp_path / "buffer.db"
    buffer, _ = Buffer.open(path, now=NOW, boot_id="b")
    Outbox(buffer, []).submit(recipient="Ali", number=NUMBER, text="hello", critical=False, now=NOW)
    buffer.close()  # power cut before any attempt
    buffer, _ = Buffer.open(path, now=NOW + 60, boot_id="b")
    box = Outbox(buffer, [KavenegarTransport(KEY, http=kavenegar.transport, receive=False)])
    box.flush(NOW + 60)
    assert [e["message"] for e in kavenegar.sent] == ["hello"]
    box.close()
    buffer.close()


def test_an_sms_not_sent_within_a_day_expires_and_says_so(outbox, kavenegar, modem):
    kavenegar.script = ["refuse"] * 100
    modem.fail_next(100)
    queue(outbox)
    now = NOW
    while outbox.messages("queued"):
        outbox.flush(now)
        now += 3600
    assert outbox.messages()[0]["state"] == "expired"
    assert [e["kind"] for e in outbox.buffer.events()][-1] == "sms.expired"


def test_criticals_go_before_warnings(outbox, kavenegar):
    queue(outbox, "warning", critical=False)
    queue(outbox, "critical", critical=True)
    outbox.flush(NOW)
    assert [e["message"] for e in kavenegar.sent] == ["critical", "warning"]


def test_the_plan_and_the_backoff_are_pure():
    class T:
        def __init__(self, name, needs_uplink):
            self.name, self.needs_uplink = name, needs_uplink

    http, gsm = T("kavenegar", True), T("modem", False)
    assert [t.name for t in plan([http, gsm], link_up=True)] == ["kavenegar", "modem"]
    assert [t.name for t in plan([http, gsm], link_up=False)] == ["modem", "kavenegar"]
    assert [t.name for t in plan([http, gsm], link_up=False, pinned="kavenegar")] == ["kavenegar"]
    assert [backoff(n, 30, 600) for n in (1, 2, 3, 4, 5, 6)] == [30, 60, 120, 240, 480, 600]


# ------------------------------------------------------------------------------------------ multipart SMS

LONG = ("هشدار فوری گلخانه دمو: دمای هوا ۴۲٫۳ درجه است و از ۴۰ بالاتر رفته؛ پنجره‌ها را باز کنید و فن را روشن "
        "کنید. " * 2)[:150]  # three UCS-2 parts


@pytest.fixture
def modem_first(tmp_path, kavenegar, modem):
    """The modem first (as while the uplink is down), Kavenegar behind it."""
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=NOW, boot_id="b")
    box = Outbox(buffer, [ModemTransport(modem.port, timeout=2),
                          KavenegarTransport(KEY, "2000660110", http=kavenegar.transport, receive=False)],
                 retry_initial=30, retry_max=600, same_provider_for=1800)
    yield box
    box.close()
    buffer.close()


def test_a_cms_error_on_part_2_sends_only_the_missing_parts_later_on_the_same_modem(modem_first, kavenegar, modem):
    assert segment_count(LONG) == 3
    modem.fail_next(code=500, after=1)  # part 1 goes out, part 2 is refused
    queue(modem_first, LONG)
    attempts = modem_first.flush(NOW)
    assert [(a.transport, a.outcome) for a in attempts] == [("modem", "partial")]
    [row] = modem_first.messages()
    assert (row["state"], row["pinned"], row["parts_done"], row["parts_via"]) == ("queued", "modem", 1, "modem")
    assert kavenegar.requests == []  # no second, whole copy through another transport
    modem_first.flush(NOW + 30)
    assert modem_first.messages()[0]["state"] == "sent"
    assert [(m.number, m.text, m.parts) for m in modem.messages] == [(NUMBER, LONG, 3)]  # whole, once
    assert [part.sequence for part in modem.parts] == [1, 2, 3]  # part 1 was not sent again
    assert kavenegar.requests == []


def test_a_modem_broken_after_part_1_is_left_only_after_same_provider_for_and_the_text_arrives(modem_first,
                                                                                               kavenegar, modem):
    modem.fail_next(count=1000, code=500, after=1)
    queue(modem_first, LONG)
    now = NOW
    while not kavenegar.sent and now < NOW + 7200:
        modem_first.flush(now)
        now += 60
    assert now - NOW > 1800  # the modem had its 30 minutes to finish the text
    assert [e["message"] for e in kavenegar.sent] == [LONG]  # an alert is never lost
    assert modem_first.messages()[0]["state"] == "sent" and [part.sequence for part in modem.parts] == [1]


# ------------------------------------------------------------------------------------ account problems


def test_a_refused_key_sends_through_the_modem_and_is_logged_once_per_transport(outbox, modem, caplog):
    outbox.transports[0] = KavenegarTransport("a-key-the-provider-does-not-know", "2000660110",
                                              http=FakeKavenegar().transport, receive=False)
    with caplog.at_level("DEBUG", logger="edge.gateway.alerts.outbox"):
        for minute in range(3):
            queue(outbox, f"alert {minute}")
            attempts = outbox.flush(NOW + minute * 60)
            assert [(a.transport, a.outcome) for a in attempts] == [("kavenegar", "refused"), ("modem", "accepted")]
    assert [m.text for m in modem.messages] == ["alert 0", "alert 1", "alert 2"]
    problems = [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert problems == ["SMS transport kavenegar cannot send anything: 403 invalid API key (کد شناسائی API-Key "
                        "معتبر نمی‌باشد). Until that is fixed, messages go through the other transports (edge "
                        "doctor shows what to do)"]
    assert "a-key-the-provider-does-not-know" not in caplog.text
    assert transport_health(outbox.buffer)["kavenegar"]["state"] == "refused"
