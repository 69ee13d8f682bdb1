"""The console transport: logs each SMS instead of sending it (for the demo and for trying rules out)."""

from __future__ import annotations

import logging

from edge.gateway.alerts.numbers import masked
from edge.gateway.alerts.transports.base import IncomingSms, OutgoingSms, SendResult

log = logging.getLogger("edge.sms.console")


class ConsoleTransport:
    needs_uplink = False

    def __init__(self, name: str = "console"):
        self.name = name
        self.sent: list[OutgoingSms] = []

    @classmethod
    def from_config(cls, cfg, secret: str | None = None) -> "ConsoleTransport":
        return cls(cfg.name)

    def send(self, sms: OutgoingSms) -> SendResult:
        self.sent.append(sms)
        log.info("SMS to %s (id %s):\n%s", masked(sms.number), sms.local_id, sms.text)
        return SendResult("accepted", "logged")

    def receive(self) -> list[IncomingSms]:
        return []

    def close(self) -> None:
        pass
