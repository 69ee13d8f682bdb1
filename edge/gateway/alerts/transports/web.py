"""What the HTTP transports share: an httpx client that never logs a secret, and outcome classification.

httpx logs every request URL at INFO (``HTTP Request: POST https://api.kavenegar.com/v1/<KEY>/...``) and Kavenegar's
API key sits in that URL. Each HTTP transport therefore raises the ``httpx`` logger to WARNING and adds a filter to the
httpx and httpcore loggers that replaces its secrets (raw and URL-encoded) with ``***`` in any record that still
gets through, whatever level someone sets later. Details the transports put into results pass :func:`redact` too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import httpx

from edge.gateway.alerts.transports.base import Outcome

HTTP_LOGGERS = ("httpx", "httpcore", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy")
MASK = "***"


def _variants(secrets: Iterable[str]) -> list[str]:
    out = set()
    for secret in secrets:
        if secret:
            out |= {secret, quote(secret, safe=""), quote(secret)}
    return sorted(out, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in _variants(secrets):
        text = text.replace(secret, MASK)
    return text


class RedactSecrets(logging.Filter):
    """A logging filter that masks the given secrets in a record's message (and drops its traceback text)."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = _variants(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            record.msg, record.args = redact(message, self.secrets), ()
        if record.exc_info and record.exc_info[1] is not None and \
                any(secret in str(record.exc_info[1]) for secret in self.secrets):
            record.exc_info, record.exc_text = None, None
        return True


def guard_http_logs(secrets: Iterable[str]) -> RedactSecrets:
    """Silence httpx's per-request INFO line and mask ``secrets`` in whatever the HTTP stack still logs."""
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
    guard = RedactSecrets(secrets)
    for name in HTTP_LOGGERS:
        logging.getLogger(name).addFilter(guard)
    return guard


def release_http_logs(guard: RedactSecrets) -> None:
    for name in HTTP_LOGGERS:
        logging.getLogger(name).removeFilter(guard)


def make_client(timeout: float, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """A client with a short connect timeout (an unreachable gateway must fail fast so the modem can take over)."""
    return httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)), transport=transport,
                        follow_redirects=False)


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError, httpx.UnsupportedProtocol)


def classify_exception(exc: httpx.HTTPError) -> Outcome:
    """A request that never reached the provider is retryable elsewhere; one that may have reached it is ambiguous."""
    return "retryable" if isinstance(exc, _NOT_SENT) else "ambiguous"


def describe_exception(exc: Exception, secrets: Iterable[str]) -> str:
    return redact(f"{type(exc).__name__}: {exc}", secrets)


def json_path(data: Any, path: str) -> Any:
    """``json_path({"a": {"b": [5]}}, "a.b.0")`` -> 5; a missing step gives ``None``."""
    for step in path.split("."):
        if isinstance(data, dict):
            data = data.get(step)
        elif isinstance(data, list) and step.isdigit() and int(step) < len(data):
            data = data[int(step)]
        else:
            return None
    return data


def read_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
