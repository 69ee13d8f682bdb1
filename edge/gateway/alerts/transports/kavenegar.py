"""Kavenegar (kavenegar.com) over its REST API.

``POST {base_url}/v1/{API_KEY}/sms/send.json`` with ``receptor``, ``message``, ``sender`` and ``localid``; the answer
is ``{"return": {"status", "message"}, "entries": [...]}`` and its HTTP status equals ``return.status``. A repeated
``localid`` returns the earlier message instead of sending again, which is what makes retrying after a timeout safe.
Replies come from ``GET sms/receive.json?linenumber=<sender>&isread=0``. ``GET account/info.json`` answers the same
envelope with ``entries: {"remaincredit", "expiredate", "type"}`` and sends nothing: ``edge doctor`` uses it to try the
key (:meth:`KavenegarTransport.account`).

The API key is in the URL path: see :mod:`.web` for how it is kept out of every log line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from edge.gateway.alerts.numbers import canonical, national
from edge.gateway.alerts.transports.base import IncomingSms, Outcome, OutgoingSms, SendResult
from edge.gateway.alerts.transports.web import (classify_exception, describe_exception, guard_http_logs,
                                                make_client, read_json, redact, release_http_logs)

log = logging.getLogger(__name__)

#: Kavenegar's documented ``return.status`` codes and what each means for an alert. ``refused`` ones are about the
#: account or its setup (key, sender line, a trial account): every message would meet them until someone fixes it.
STATUS: dict[int, tuple[Outcome, str]] = {
    200: ("accepted", "accepted"),
    400: ("retryable", "parameters incomplete"),
    401: ("refused", "account disabled"),
    402: ("retryable", "operation failed"),
    403: ("refused", "invalid API key"),
    404: ("retryable", "unknown method"),
    405: ("retryable", "wrong HTTP method"),
    406: ("retryable", "required parameters missing"),
    407: ("refused", "no access to this information"),
    409: ("busy", "server busy, try again later"),
    411: ("permanent", "invalid receptor number"),
    412: ("refused", "invalid sender line"),
    413: ("retryable", "message empty or too long"),
    414: ("retryable", "too many receptors"),
    417: ("retryable", "invalid date"),
    418: ("no_credit", "insufficient credit"),
    422: ("retryable", "invalid characters in the message"),
    428: ("retryable", "template not found"),
    451: ("busy", "too many requests"),
    501: ("refused", "this account may only text its own number"),
}

#: ``entries[].status`` values that mean the message will not be delivered by this route.
_ENTRY_REFUSED = {6: "failed", 11: "undelivered", 13: "cancelled", 14: "receptor blocks advertising lines "
                  "(alerts need a service line)", 100: "invalid message id"}


@dataclass(frozen=True, slots=True)
class AccountCheck:
    outcome: Outcome  # accepted: the key works
    detail: str
    credit: float | None = None  # remaincredit, in rials


def interpret_send(http_status: int, body: Any) -> SendResult:
    """Classify one send answer. Pure: the tests feed it Kavenegar's documented answers."""
    ret = body.get("return") if isinstance(body, dict) else None
    status = ret.get("status") if isinstance(ret, dict) and isinstance(ret.get("status"), int) else http_status
    message = ret.get("message", "") if isinstance(ret, dict) else ""
    outcome, meaning = STATUS.get(status, ("retryable", f"status {status}"))
    detail = f"{status} {meaning}" + (f" ({message})" if message else "")
    if outcome != "accepted":
        return SendResult(outcome, detail)
    entries = body.get("entries") if isinstance(body, dict) else None
    entry = entries[0] if isinstance(entries, list) and entries and isinstance(entries[0], dict) else {}
    if entry.get("status") in _ENTRY_REFUSED:
        return SendResult("retryable", f"entry status {entry['status']}: {_ENTRY_REFUSED[entry['status']]}")
    message_id = entry.get("messageid")
    return SendResult("accepted", detail, None if message_id is None else str(message_id))


def interpret_inbox(body: Any, name: str, country: str) -> list[IncomingSms]:
    entries = body.get("entries") if isinstance(body, dict) else None
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not entry.get("sender") or entry.get("message") is None:
            continue
        try:
            number = canonical(str(entry["sender"]), country)
        except ValueError:
            continue
        out.append(IncomingSms(number, str(entry["message"]), name))
    return out


class KavenegarTransport:
    needs_uplink = True

    def __init__(self, api_key: str, sender: str | None = None, *, name: str = "kavenegar",
                 base_url: str = "https://api.kavenegar.com", timeout: float = 10.0, receive: bool = True,
                 country: str = "98", http: httpx.BaseTransport | None = None):
        if not api_key:
            raise ValueError("Kavenegar needs an API key")
        self.name = name
        self._key = api_key
        self.sender = sender
        self.base_url = base_url.rstrip("/")
        self.receives = receive and bool(sender)
        self.country = country
        self._guard = guard_http_logs([api_key])
        self._client = make_client(timeout, http)

    @classmethod
    def from_config(cls, cfg, secret: str | None = None, *, country: str = "98",
                    http: httpx.BaseTransport | None = None) -> "KavenegarTransport":
        return cls(secret or "", cfg.sender, name=cfg.name, base_url=cfg.base_url, timeout=cfg.timeout,
                   receive=cfg.receive, country=country, http=http)

    def __repr__(self) -> str:
        return f"KavenegarTransport(name={self.name!r}, base_url={self.base_url!r})"

    def _url(self, method: str) -> str:
        return self._url_of(f"sms/{method}")

    def _url_of(self, path: str) -> str:
        return f"{self.base_url}/v1/{self._key}/{path}.json"

    def send(self, sms: OutgoingSms) -> SendResult:
        data = {"receptor": national(sms.number, self.country), "message": sms.text, "localid": sms.local_id}
        if self.sender:
            data["sender"] = self.sender
        try:
            response = self._client.post(self._url("send"), data=data)
        except httpx.HTTPError as exc:
            return SendResult(classify_exception(exc), describe_exception(exc, [self._key]))
        result = interpret_send(response.status_code, read_json(response))
        return SendResult(result.outcome, redact(result.detail, [self._key]), result.provider_id)

    def account(self) -> AccountCheck:
        """Try the key without sending anything (``account/info.json``): the outcome as for a send (``accepted``,
        ``refused`` for a bad key, ``retryable`` when unreachable, ...), what it means, and the remaining credit."""
        try:
            response = self._client.get(self._url_of("account/info"))
        except httpx.HTTPError as exc:
            return AccountCheck(classify_exception(exc), describe_exception(exc, [self._key]))
        body = read_json(response)
        result = interpret_send(response.status_code, body)
        entries = body.get("entries") if isinstance(body, dict) else None
        credit = entries.get("remaincredit") if isinstance(entries, dict) else None
        if result.outcome == "accepted" and isinstance(credit, (int, float)) and credit <= 0:
            return AccountCheck("no_credit", "no credit left (remaincredit 0)", credit)
        return AccountCheck(result.outcome, redact(result.detail, [self._key]),
                            credit if isinstance(credit, (int, float)) else None)

    def receive(self) -> list[IncomingSms]:
        if not self.receives:
            return []
        try:
            response = self._client.get(self._url("receive"), params={"linenumber": self.sender, "isread": 0})
        except httpx.HTTPError as exc:
            log.warning("%s: reading replies failed: %s", self.name, describe_exception(exc, [self._key]))
            return []
        if response.status_code != 200:
            log.warning("%s: reading replies failed: %s", self.name,
                        redact(interpret_send(response.status_code, read_json(response)).detail, [self._key]))
            return []
        return interpret_inbox(read_json(response), self.name, self.country)

    def close(self) -> None:
        self._client.close()
        release_http_logs(self._guard)
