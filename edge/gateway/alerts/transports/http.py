"""A generic HTTP SMS gateway, configured by URL, method, headers, body template and a success test.

Covers sms.ir (``X-API-KEY`` header, JSON body, ``{"status": 1}`` on success), Ghasedak, Melipayamak (form body;
failures come back as HTTP 200 with ``RetStatus != 1``) and Twilio-style APIs. String values in ``url``, ``headers``,
``params`` and ``body`` may use the placeholders ``{number}`` (+989121234567), ``{number_national}`` (09121234567),
``{number_digits}`` (989121234567), ``{text}``, ``{local_id}`` and ``{secret}``; nothing else is substituted, so
JSON braces in values stay as written.

A success needs an HTTP status from ``success.status`` *and* every ``success.json`` path at its value. Anything else
is classified: connect errors and 5xx are retryable (fail over), 401/403 refused (the credentials: every message would
meet it, so an alert is raised), 409/429 busy, a timeout after sending ambiguous, and other answers retryable with
the body's words in the detail.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from edge.gateway.alerts.numbers import national
from edge.gateway.alerts.transports.base import IncomingSms, OutgoingSms, SendResult
from edge.gateway.alerts.transports.web import (classify_exception, describe_exception, guard_http_logs,
                                                json_path, make_client, read_json, redact, release_http_logs)

_PLACEHOLDER = re.compile(r"\{(number|number_national|number_digits|text|local_id|secret)\}")


def fill(template: Any, values: dict[str, str]) -> Any:
    """Substitute placeholders in every string leaf of ``template`` (dicts and lists are walked)."""
    if isinstance(template, str):
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, values) for value in template]
    return template


def interpret(status: int, body: Any, text: str, success_status: list[int],
              success_json: dict[str, Any]) -> SendResult:
    """Classify one answer. Pure."""
    snippet = " ".join(text.split())[:200]
    if status in success_status:
        wrong = {path: json_path(body, path) for path, want in success_json.items() if json_path(body, path) != want}
        if not wrong:
            return SendResult("accepted", f"HTTP {status}")
        shown = ", ".join(f"{path}={value!r}" for path, value in wrong.items())
        return SendResult("retryable", f"HTTP {status} but {shown}: {snippet}")
    if status in (409, 429):
        return SendResult("busy", f"HTTP {status}: {snippet}")
    if status in (401, 403):
        return SendResult("refused", f"HTTP {status} (the credentials are refused): {snippet}")
    return SendResult("retryable", f"HTTP {status}: {snippet}")


class HttpTransport:
    needs_uplink = True

    def __init__(self, name: str, url: str, *, method: str = "POST", headers: dict[str, str] | None = None,
                 params: dict[str, Any] | None = None, body: dict[str, Any] | None = None, body_format: str = "json",
                 secret: str | None = None, success_status: list[int] | None = None,
                 success_json: dict[str, Any] | None = None, timeout: float = 10.0, country: str = "98",
                 http: httpx.BaseTransport | None = None):
        self.name = name
        self.url, self.method = url, method
        self.headers, self.params, self.body = dict(headers or {}), dict(params or {}), body
        self.body_format = body_format
        self._secret = secret or ""
        self.success_status = list(success_status or [200])
        self.success_json = dict(success_json or {})
        self.country = country
        self._guard = guard_http_logs([self._secret])
        self._client = make_client(timeout, http)

    @classmethod
    def from_config(cls, cfg, secret: str | None = None, *, country: str = "98",
                    http: httpx.BaseTransport | None = None) -> "HttpTransport":
        return cls(cfg.name, cfg.url, method=cfg.method, headers=cfg.headers, params=cfg.params, body=cfg.body,
                   body_format=cfg.body_format, secret=secret, success_status=cfg.success.status,
                   success_json=cfg.success.json_, timeout=cfg.timeout, country=country, http=http)

    def __repr__(self) -> str:
        return f"HttpTransport(name={self.name!r})"

    def _values(self, sms: OutgoingSms) -> dict[str, str]:
        return {"number": sms.number, "number_national": national(sms.number, self.country),
                "number_digits": sms.number.lstrip("+"), "text": sms.text, "local_id": sms.local_id,
                "secret": self._secret}

    def send(self, sms: OutgoingSms) -> SendResult:
        values = self._values(sms)
        body = fill(self.body, values) if self.body is not None else None
        request: dict[str, Any] = {"headers": fill(self.headers, values), "params": fill(self.params, values)}
        if body is not None:
            request["json" if self.body_format == "json" else "data"] = body
        try:
            response = self._client.request(self.method, fill(self.url, values), **request)
        except httpx.HTTPError as exc:
            return SendResult(classify_exception(exc), describe_exception(exc, [self._secret]))
        result = interpret(response.status_code, read_json(response), response.text, self.success_status,
                           self.success_json)
        return SendResult(result.outcome, redact(result.detail, [self._secret]))

    def receive(self) -> list[IncomingSms]:
        return []

    def close(self) -> None:
        self._client.close()
        release_http_logs(self._guard)
