"""What every SMS transport looks like, and how the outcome of one attempt is classified.

The outbox decides what to do next from the outcome alone:

=============  ===================================================  ==============================================
outcome        meaning                                              the outbox then
=============  ===================================================  ==============================================
accepted       the provider or modem took the message               marks it sent
retryable      not sent (connect error, 5xx, modem error)            tries the next transport now
no_credit      not sent: the account has no credit                  tries the next transport now; raises an alert
refused        not sent: the provider refuses the account itself    tries the next transport now; raises an alert
               (invalid API key, disabled account, invalid sender)
busy           not sent: come back later (Kavenegar 409, HTTP 429)  retries this transport later, same local id
ambiguous      maybe sent (timeout after the request went out)      retries this transport later, same local id
partial        some parts of a multipart SMS went out, the rest     retries this transport later for the missing
               failed (``parts_done`` says how many are out)        parts only; never a transport that would send
                                                                    the first parts again (until
                                                                    ``same_provider_for`` has passed)
permanent      will never work (invalid number)                     gives up, no failover
=============  ===================================================  ==============================================

``no_credit`` and ``refused`` are about the account, not the message: every message would meet them, so the outbox
also remembers them per transport (``edge status``, ``edge doctor``) and the alert engine raises an alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Outcome = Literal["accepted", "retryable", "no_credit", "refused", "busy", "ambiguous", "partial", "permanent"]


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    local_id: str  # the same on every attempt: providers that know it (Kavenegar's localid) never send twice
    number: str  # canonical, +989121234567
    text: str
    parts_done: int = 0  # parts of a multipart text this transport already sent: send only the rest


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    detail: str = ""  # for logs and events; never holds a secret
    provider_id: str | None = None
    parts_done: int = 0  # for ``partial`` and ``ambiguous``: parts of the text known to be out by now


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
