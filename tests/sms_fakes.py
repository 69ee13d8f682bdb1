"""Stand-ins for SMS providers, behind ``httpx.MockTransport``: they answer as the providers' documentation says."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import httpx

KEY = "4A6B2F3C-SECRET-KEY-7D1E"

#: Kavenegar's documented ``return.message`` texts for the codes the tests use.
KAVENEGAR_MESSAGES = {200: "تایید شد", 403: "کد شناسائی API-Key معتبر نمی‌باشد", 409: "سرور قادر به پاسخگوئی نیست",
                      411: "دریافت کننده نامعتبر است", 412: "ارسال کننده نامعتبر است",
                      418: "اعتبار حساب شما کافی نیست"}


class FakeKavenegar:
    """``https://api.kavenegar.com/v1/{API_KEY}/sms/send.json``, ``sms/receive.json`` and ``account/info.json``.

    ``script`` holds the next answers to sends: a status code (answered as Kavenegar does: HTTP status =
    ``return.status``), ``"timeout"`` (the message is taken and sent, but the answer is lost) or ``"refuse"`` (no
    connection). A repeated ``localid`` returns the earlier message and sends nothing, as documented. A key other
    than ``key`` gets 403 from every method; a sender line not in ``lines`` (when given) gets 412; no ``credit``
    left gets 418. ``account/info.json`` answers ``entries: {remaincredit, expiredate, type}`` and sends nothing.
    """

    def __init__(self, key: str = KEY, *, lines: set[str] | None = None, credit: int = 5_000_000):
        self.key = key
        self.lines = lines
        self.credit = credit
        self.script: list[int | str] = []
        self.sent: list[dict[str, Any]] = []
        self.inbox: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        self._by_localid: dict[str, dict[str, Any]] = {}

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @staticmethod
    def answer(status: int, entries: Any = None) -> httpx.Response:
        body = {"return": {"status": status, "message": KAVENEGAR_MESSAGES.get(status, "خطا")}, "entries": entries}
        return httpx.Response(status, content=json.dumps(body, ensure_ascii=False).encode(),
                              headers={"content-type": "application/json"})

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        _, version, key, group, method = request.url.path.split("/")
        if key != self.key:
            return self.answer(403)
        if (group, method) == ("account", "info.json"):
            return self.answer(200, {"remaincredit": self.credit, "expiredate": 1_900_000_000, "type": "master"})
        if method == "receive.json":
            entries, self.inbox = self.inbox, []
            return self.answer(200, entries)
        action = self.script.pop(0) if self.script else 200
        if action == "refuse":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if action not in (200, "timeout"):
            return self.answer(int(action))
        form = dict(parse_qsl(request.content.decode()))
        if self.lines is not None and form.get("sender") not in self.lines:
            return self.answer(412)
        if self.credit <= 0:
            return self.answer(418)
        entry = self._by_localid.get(form.get("localid", ""))
        if entry is None:
            entry = {"messageid": 8792343 + len(self.sent), "message": form["message"], "status": 1,
                     "statustext": "در صف ارسال", "sender": form.get("sender"), "receptor": form["receptor"],
                     "date": 1356619709, "cost": 120, "localid": form.get("localid")}
            self.sent.append(entry)
            self._by_localid[form.get("localid", "")] = entry
        if action == "timeout":
            raise httpx.ReadTimeout("The read operation timed out", request=request)
        return self.answer(200, [entry])


def unreachable() -> httpx.MockTransport:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 101] Network is unreachable", request=request)

    return httpx.MockTransport(refuse)
