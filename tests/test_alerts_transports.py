"""HTTP SMS transports: Kavenegar's documented answers, a generic gateway's success test, and no key in any log."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from edge.gateway.alerts.transports.base import OutgoingSms
from edge.gateway.alerts.transports.http import HttpTransport, fill, interpret
from edge.gateway.alerts.transports.kavenegar import KavenegarTransport, interpret_send
from sms_fakes import KEY, FakeKavenegar

SMS = OutgoingSms("123456789012345678", "+989121234567", "هشدار فوری Demo: دما ۴۲°C")


@pytest.fixture
def kavenegar():
    fake = FakeKavenegar()
    transport = KavenegarTransport(KEY, "2000660110", http=fake.transport)
    yield fake, transport
    transport.close()


@pytest.mark.parametrize("status, outcome", [(200, "accepted"), (418, "no_credit"), (411, "permanent"),
                                             (409, "busy"), (403, "refused"), (412, "refused"), (401, "refused"),
                                             (422, "retryable"), (500, "retryable")])
def test_kavenegar_status_codes_are_classified_as_documented(status, outcome):
    body = {"return": {"status": status, "message": "..."}, "entries": [{"messageid": 1, "status": 1}]}
    assert interpret_send(status, body).outcome == outcome


def test_kavenegar_sends_the_national_number_the_text_the_line_and_the_local_id(kavenegar):
    fake, transport = kavenegar
    result = transport.send(SMS)
    assert (result.outcome, result.provider_id) == ("accepted", "8792343")
    assert fake.sent[0]["receptor"] == "09121234567"
    assert fake.sent[0]["message"] == SMS.text
    assert fake.sent[0]["sender"] == "2000660110"
    assert fake.sent[0]["localid"] == SMS.local_id


def test_a_repeated_local_id_is_not_sent_twice(kavenegar):
    fake, transport = kavenegar
    assert transport.send(SMS).outcome == "accepted"
    assert transport.send(SMS).outcome == "accepted"
    assert len(fake.sent) == 1


def test_a_timeout_after_sending_is_ambiguous_and_a_refused_connection_retryable(kavenegar):
    fake, transport = kavenegar
    fake.script = ["timeout", "refuse"]
    assert transport.send(SMS).outcome == "ambiguous"
    assert transport.send(SMS).outcome == "retryable"


def test_a_receptor_that_blocks_advertising_lines_is_worth_another_route():
    body = {"return": {"status": 200, "message": "تایید شد"}, "entries": [{"messageid": 1, "status": 14}]}
    result = interpret_send(200, body)
    assert result.outcome == "retryable" and "service line" in result.detail


def test_kavenegar_replies_are_read_from_the_line_inbox(kavenegar):
    fake, transport = kavenegar
    fake.inbox = [{"messageid": 1, "message": "۱۷", "sender": "09121234567", "receptor": "2000660110",
                   "date": 1356619709}]
    [reply] = transport.receive()
    assert (reply.number, reply.text, reply.transport) == ("+989121234567", "۱۷", "kavenegar")
    assert fake.requests[-1].url.params["linenumber"] == "2000660110"
    assert transport.receive() == []


def test_the_api_key_appears_in_no_log_output(kavenegar, caplog):
    fake, transport = kavenegar
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)  # even with the HTTP stack's own logging turned all the way up
    fake.script = [200, 418, 411, "timeout", "refuse"]
    details = [transport.send(SMS).detail for _ in range(5)]
    transport.receive()
    wrong = KavenegarTransport("WRONG-" + KEY, "2000660110", http=fake.transport)
    details.append(wrong.send(SMS).detail)
    wrong.close()
    assert any(r.name == "httpx" for r in caplog.records)  # httpx did log every request...
    assert KEY not in caplog.text  # ...without the key
    assert all(KEY not in detail for detail in details)
    assert KEY not in repr(transport)


# --------------------------------------------------------------------------------------------- generic gateways


def test_sms_ir_style_gateways_get_the_key_in_a_header_and_a_json_body():
    seen = []

    def sms_ir(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": 1, "message": "موفق", "data": {"packId": 1}})

    transport = HttpTransport("smsir", "https://api.sms.ir/v1/send/bulk", headers={"X-API-KEY": "{secret}"},
                              body={"lineNumber": 30007732000000, "messageText": "{text}", "mobiles": ["{number}"]},
                              secret=KEY, success_json={"status": 1}, http=httpx.MockTransport(sms_ir))
    assert transport.send(SMS).outcome == "accepted"
    transport.close()
    assert seen[0].headers["X-API-KEY"] == KEY
    assert json.loads(seen[0].content) == {"lineNumber": 30007732000000, "messageText": SMS.text,
                                           "mobiles": ["+989121234567"]}


def test_an_http_200_failure_body_counts_as_failure():
    def melipayamak(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"Value": "11", "RetStatus": 35, "StrRetStatus": "InvalidData"})

    transport = HttpTransport("melipayamak", "https://rest.payamak-panel.com/api/SendSMS/SendSMS",
                              body={"username": "u", "password": "{secret}", "to": "{number_national}",
                                    "from": "50004001", "text": "{text}"}, body_format="form", secret=KEY,
                              success_json={"RetStatus": 1}, http=httpx.MockTransport(melipayamak))
    result = transport.send(SMS)
    transport.close()
    assert result.outcome == "retryable"
    assert "RetStatus=35" in result.detail


def test_generic_answers_are_classified():
    assert interpret(429, None, "slow down", [200], {}).outcome == "busy"
    assert interpret(401, None, "bad api key", [200], {}).outcome == "refused"
    assert interpret(403, None, "forbidden", [200], {}).outcome == "refused"
    assert interpret(503, None, "", [200], {}).outcome == "retryable"
    assert interpret(201, {"sid": "SM1"}, "", [200, 201], {}).outcome == "accepted"


def test_placeholders_are_filled_in_string_leaves_only():
    template = {"to": ["{number}"], "raw": '{"keep": "{braces}"}', "n": 5}
    assert fill(template, {"number": "+98912", "number_national": "", "number_digits": "", "text": "",
                           "local_id": "", "secret": ""}) == {"to": ["+98912"], "raw": '{"keep": "{braces}"}', "n": 5}
