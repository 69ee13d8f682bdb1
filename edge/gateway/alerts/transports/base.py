"""What every SMS transport looks like, and how the outcome of one attempt is classified.

The outbox decides what to do next from the outcome alone:

=============  ===================================================  ==============================================
outcome        meaning                                              the outbox then
=============  ===================================================  ==============================================
accepted       the provider or modem took the message               marks it sent
retryable      not sent (connect error, 5xx, modem error)            tries the next transport now
no_credit      not sent: the account has no credit                  tries the next transport now; raises an alert
busy           not sent: come back later (Kavenegar 409, HTTP 429)  retries this transport later, same local id
ambiguous      maybe sent (timeout after the request went out)      retries this transport later, same local id
permanent      will never work (invalid number)                     gives up, no failover
=============  ===================================================  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Outcome = Literal["accepted", "retryable", "no_credit", "busy", "ambiguous", "permanent"]


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    local_id: str  # the same on every attempt: providers that know it (Kavenegar's localid) never send twice
    number: str  # canonical, +989121234567
    text: str


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    detail: str = ""  # for logs and events; never holds a secret
    provider_id: str | None = None


@dataclass(frozen=True, slots=True)
class IncomingSms:
    number: str
    text: str
    transport: str


@runtime_checkable
class Transport(Protocol):
    name: str
    needs_uplink: bool  # HTTP gateways need the internet; the GSM modem and the console do not

    def send(self, sms: OutgoingSms) -> SendResult: ...

    def receive(self) -> list[IncomingSms]:
        """Replies that arrived since the last call (an empty list if the transport cannot receive)."""

    def close(self) -> None: ...
