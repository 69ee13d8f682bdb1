"""The durable SMS queue: every SMS is in SQLite before any attempt, and leaves the queue only sent, failed or expired.

Each round (:meth:`Outbox.flush`, one scheduler job) tries the due messages, criticals first. For one message the
transports are tried in the configured order; while the uplink is down, those that need no internet (the GSM modem)
go first. What happens after each attempt depends only on its outcome (:func:`next_step`, see
:mod:`.transports.base`): sent; failed for good; *pinned* to the same transport with the same local id (a timeout
after sending, or "busy"); or on to the next transport. When every transport failed, the message waits
(:func:`backoff`) and the round moves on.

A message pinned after an ambiguous timeout is retried on that transport only, for ``same_provider_for``; after that
the outbox prefers a possible duplicate to silence and fails over. A multipart text that failed after its first parts
went out (``partial``) is pinned the same way and remembers how many parts are out (``parts_done``, ``parts_via``):
the next attempts on that transport send only the missing parts, so the farmer gets the whole text once; only if that
transport stays broken past ``same_provider_for`` does the whole text go through another one (a fragment received
twice is better than an alert lost). Every attempt is recorded as a buffer event (``sms.sent``,
``sms.attempt_failed``, ``sms.failed``, ``sms.expired``) with the recipient's name, never the text.

A transport that refuses the account itself (``refused``: invalid API key, disabled account, invalid sender line;
``no_credit``) would refuse every message: the outbox records that state per transport (``sms_transports``, read by
``edge status`` and ``edge doctor``), logs it once as an ERROR when it starts (and once when it ends), and goes on to
the next transport at once; the alert engine raises an alert about it (:mod:`.service`).
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edge.contract.events import SmsAttemptFailed, SmsExpired, SmsFailed, SmsSent
from edge.gateway.alerts.numbers import masked
from edge.gateway.alerts.segments import segment_count
from edge.gateway.alerts.transports.base import Outcome, OutgoingSms, SendResult, Transport
from edge.gateway.buffer import Access, Buffer

log = logging.getLogger(__name__)

COMPONENT = "sms_outbox"
TABLES = ("sms_outbox", "sms_transports")
MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "sms outbox",
        """
        CREATE TABLE sms_outbox (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            local_id    TEXT NOT NULL UNIQUE,   -- the same on every attempt (Kavenegar localid)
            recipient   TEXT NOT NULL,          -- a name, for events and logs
            number      TEXT NOT NULL,          -- canonical +98...
            text        TEXT NOT NULL,
            segments    INTEGER NOT NULL,
            priority    INTEGER NOT NULL,       -- 1 critical: tried first
            created_ts  REAL NOT NULL,
            state       TEXT NOT NULL,          -- queued | sent | failed | expired
            attempts    INTEGER NOT NULL DEFAULT 0,  -- rounds tried
            next_ts     REAL NOT NULL,
            pinned      TEXT,                   -- transport to retry only (after a timeout or busy)
            pinned_ts   REAL,
            transport   TEXT,                   -- the transport that took it, or the last one tried
            provider_id TEXT,
            done_ts     REAL,
            last_error  TEXT
        );
        CREATE INDEX sms_outbox_due ON sms_outbox (next_ts) WHERE state = 'queued';
        """,
    ),
    (
        2,
        "multipart progress, account state per transport",
        """
        ALTER TABLE sms_outbox ADD COLUMN parts_done INTEGER NOT NULL DEFAULT 0;  -- parts out through parts_via
        ALTER TABLE sms_outbox ADD COLUMN parts_via TEXT;
        CREATE TABLE sms_transports (
            name      TEXT PRIMARY KEY,
            state     TEXT NOT NULL,    -- ok | refused | no_credit (as the last attempt that tells found it)
            detail    TEXT,             -- the provider's answer, e.g. "403 invalid API key"
            since_ts  REAL NOT NULL
        );
        """,
    ),
]

#: Outcomes that are about the transport's account, not the message (every message would meet them).
ACCOUNT_PROBLEMS = ("refused", "no_credit")

Step = Literal["sent", "failed", "pin", "next"]
_STEPS: dict[Outcome, Step] = {"accepted": "sent", "permanent": "failed", "busy": "pin", "ambiguous": "pin",
                               "partial": "pin", "retryable": "next", "no_credit": "next", "refused": "next"}


def next_step(outcome: Outcome) -> Step:
    return _STEPS[outcome]


def backoff(attempts: int, initial: float, maximum: float) -> float:
    """Seconds before the next round: ``initial``, doubling per round tried, at most ``maximum``."""
    return min(maximum, initial * 2 ** max(0, attempts - 1))


def plan(transports: Sequence[Transport], link_up: bool, pinned: str | None = None) -> list[Transport]:
    """The transports to try, in order, for one message this round."""
    if pinned is not None:
        return [t for t in transports if t.name == pinned]
    if link_up:
        return list(transports)
    return [t for t in transports if not t.needs_uplink] + [t for t in transports if t.needs_uplink]


def new_local_id() -> str:
    """18 random digits: numeric (as Kavenegar's localid wants) and never reused, even by a fresh buffer file."""
    return str(10**17 + secrets.randbelow(9 * 10**17))


@dataclass(frozen=True, slots=True)
class Attempt:
    local_id: str
    transport: str
    outcome: Outcome
    detail: str


class Outbox:
    def __init__(self, buffer: Buffer, transports: Sequence[Transport], *, retry_initial: float = 30.0,
                 retry_max: float = 600.0, same_provider_for: float = 1800.0, expire_after: float = 86400.0,
                 batch: int = 20, local_ids: Callable[[], str] = new_local_id):
        self.buffer = buffer
        self.transports = list(transports)
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.same_provider_for, self.expire_after = same_provider_for, expire_after
        self.batch = batch
        self.link_up = True
        self.on_wake: Callable[[], None] | None = None
        self._local_ids = local_ids
        self._flushing = threading.Lock()
        self._hint = threading.Lock()
        self._wakes = 0
        self._db = buffer.component(COMPONENT, TABLES)
        self._db.migrate(MIGRATIONS)
        self._next_due = self._earliest_due()  # lets the frequent outbox job skip SQLite while nothing is due
        self._accounts = {name: (row["state"], row["detail"]) for name, row in transport_health(buffer).items()}

    def set_link(self, up: bool) -> None:
        self.link_up = up

    # ------------------------------------------------------------------------------------------------ queueing

    def enqueue(self, *, recipient: str, number: str, text: str, critical: bool, now: float) -> str:
        """Queue one SMS inside the caller's open transaction (the alert store's :meth:`~.store.Store.transaction`);
        return its local id. Call :meth:`wake` once that transaction has committed."""
        local_id = self._local_ids()
        self._db.execute(
            "INSERT INTO sms_outbox (local_id, recipient, number, text, segments, priority, created_ts, state, "
            "next_ts) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
            (local_id, recipient, number, text, segment_count(text), 1 if critical else 0, now, now),
        )
        return local_id

    def wake(self, now: float) -> None:
        """Something was queued (and committed): the next :meth:`flush` must look, and ``on_wake`` may start it."""
        with self._hint:
            self._next_due = min(self._next_due, now)
            self._wakes += 1
        if self.on_wake is not None:
            self.on_wake()

    def submit(self, *, recipient: str, number: str, text: str, critical: bool, now: float) -> str:
        """Queue one SMS in a transaction of its own."""
        with self._db.transaction():
            local_id = self.enqueue(recipient=recipient, number=number, text=text, critical=critical, now=now)
        self.wake(now)
        return local_id

    def due(self, now: float) -> list[dict[str, Any]]:
        return list(self._db.query(
            "SELECT * FROM sms_outbox WHERE state = 'queued' AND next_ts <= ? ORDER BY priority DESC, id LIMIT ?",
            (now, self.batch)))

    def messages(self, state: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        return list(self._db.query(f"SELECT * FROM sms_outbox {where} ORDER BY id", args))

    # ------------------------------------------------------------------------------------------------- sending

    def _earliest_due(self) -> float:
        row = self._db.execute("SELECT MIN(next_ts) FROM sms_outbox WHERE state = 'queued'").fetchone()
        return math.inf if row[0] is None else row[0]

    def flush(self, now: float) -> list[Attempt]:
        """One round over the due messages; return every attempt made (the engine learns of credit from them).

        Cheap when nothing is due (no query at all), and never runs twice at once."""
        if now < self._next_due or not self._flushing.acquire(blocking=False):
            return []
        try:
            with self._hint:
                wakes = self._wakes
            attempts: list[Attempt] = []
            for row in self.due(now):
                if now - row["created_ts"] >= self.expire_after:
                    self._finish(row, "expired", now, None, None, "not sent in time")
                    continue
                attempts.extend(self._deliver(row, now))
            due = self._earliest_due()
            with self._hint:  # a wake during this round may be for a row the query above did not see yet
                self._next_due = due if self._wakes == wakes else min(due, now)
            return attempts
        finally:
            self._flushing.release()

    def _pin_over(self, row: dict[str, Any], transport: str, now: float) -> bool:
        return row["pinned"] == transport and row["pinned_ts"] is not None and \
            now - row["pinned_ts"] >= self.same_provider_for

    def _pinned(self, row: dict[str, Any], now: float) -> str | None:
        if row["pinned"] and now - row["pinned_ts"] < self.same_provider_for:
            return row["pinned"]
        return None

    def _deliver(self, row: dict[str, Any], now: float) -> list[Attempt]:
        attempts = []
        pinned = self._pinned(row, now)
        for transport in plan(self.transports, self.link_up, pinned):
            done = row["parts_done"] if row["parts_via"] == transport.name else 0
            sms = OutgoingSms(row["local_id"], row["number"], row["text"], parts_done=done)
            result = self._try(transport, sms)
            attempts.append(Attempt(sms.local_id, transport.name, result.outcome, result.detail))
            step = next_step(result.outcome)
            self._note_account(transport.name, result, now)
            self._record(row, transport.name, result, step, now)
            if step == "sent":
                self._finish(row, "sent", now, transport.name, result.provider_id, None)
                return attempts
            if step == "failed":
                self._finish(row, "failed", now, transport.name, None, result.detail)
                return attempts
            if step == "pin":
                if self._pin_over(row, transport.name, now):
                    continue  # it had same_provider_for to finish: a possible duplicate is better than silence
                self._retry_later(row, now, transport.name, result.detail, pin=True, parts_done=result.parts_done)
                return attempts
        last = attempts[-1] if attempts else None
        # a pinned message stays pinned even when its transport cannot be reached now: it may have sent it already
        self._retry_later(row, now, last.transport if last else pinned,
                          last.detail if last else "no transport configured", pin=pinned is not None)
        return attempts

    def _note_account(self, name: str, result: SendResult, now: float) -> None:
        """Keep each transport's account state; log when it changes, not at every message."""
        if result.outcome in ACCOUNT_PROBLEMS:
            state, detail = result.outcome, result.detail
        elif result.outcome == "accepted":
            state, detail = "ok", None
        else:
            return  # a timeout or a busy provider says nothing about the account
        before = self._accounts.get(name)
        if before == (state, detail) or (before is None and state == "ok"):
            return
        self._accounts[name] = (state, detail)
        with self._db.transaction() as db:
            db.execute("INSERT OR REPLACE INTO sms_transports (name, state, detail, since_ts) VALUES (?, ?, ?, ?)",
                       (name, state, detail, now))
        if state == "ok":
            log.info("SMS transport %s sends again", name)
        else:
            log.error("SMS transport %s cannot send anything: %s. Until that is fixed, messages go through the other "
                      "transports (edge doctor shows what to do)", name, detail)

    @staticmethod
    def _try(transport: Transport, sms: OutgoingSms) -> SendResult:
        try:
            return transport.send(sms)
        except Exception as exc:  # a transport must classify its own errors; a bug in one must not stop the rest
            log.exception("transport %s raised while sending", transport.name)
            return SendResult("retryable", f"transport raised {type(exc).__name__}")

    def _record(self, row: dict[str, Any], transport: str, result: SendResult, step: Step, now: float) -> None:
        data = {"local_id": row["local_id"], "to": row["recipient"], "transport": transport,
                "outcome": result.outcome, "detail": result.detail}
        if step == "sent":
            data.update(segments=row["segments"], provider_id=result.provider_id)
            log.info("SMS %s to %s sent via %s (%d segments)", row["local_id"], row["recipient"], transport,
                     row["segments"])
        else:  # an account problem was logged once by _note_account; repeating it per message helps no one
            log.log(logging.DEBUG if result.outcome in ACCOUNT_PROBLEMS else logging.WARNING,
                    "SMS %s to %s (%s) via %s: %s: %s", row["local_id"], row["recipient"], masked(row["number"]),
                    transport, result.outcome, result.detail)
            if result.outcome in ("partial", "ambiguous") and result.parts_done:
                data.update(parts_done=result.parts_done)
        payload = {"sent": SmsSent, "failed": SmsFailed}.get(step, SmsAttemptFailed)(**data)
        self.buffer.append_event(payload.KIND, "sms", payload.to_data(), ts=now)

    def _finish(self, row: dict[str, Any], state: str, now: float, transport: str | None, provider_id: str | None,
                error: str | None) -> None:
        with self._db.transaction() as db:
            db.execute("UPDATE sms_outbox SET state = ?, done_ts = ?, transport = COALESCE(?, transport), "
                       "provider_id = ?, last_error = COALESCE(?, last_error), attempts = attempts + 1 WHERE id = ?",
                       (state, now, transport, provider_id, error, row["id"]))
        if state == "expired":
            log.error("SMS %s to %s expired unsent after %d rounds", row["local_id"], row["recipient"],
                      row["attempts"])
            self.buffer.append_event(SmsExpired.KIND, "sms",
                                     SmsExpired(row["local_id"], row["recipient"], row["attempts"]).to_data(), ts=now)

    def _retry_later(self, row: dict[str, Any], now: float, transport: str | None, error: str, pin: bool,
                     parts_done: int | None = None) -> None:
        """Come back after the backoff; ``parts_done`` (with ``pin``): how many parts ``transport`` has sent."""
        attempts = row["attempts"] + 1
        wait = backoff(attempts, self.retry_initial, self.retry_max)
        pinned = transport if pin else None
        pinned_ts = (row["pinned_ts"] if row["pinned"] == transport and row["pinned_ts"] else now) if pin else None
        done, via = (parts_done, transport) if parts_done else (row["parts_done"], row["parts_via"])
        with self._db.transaction() as db:
            db.execute("UPDATE sms_outbox SET attempts = ?, next_ts = ?, pinned = ?, pinned_ts = ?, transport = ?, "
                       "last_error = ?, parts_done = ?, parts_via = ? WHERE id = ?",
                       (attempts, now + wait, pinned, pinned_ts, transport, error, done, via, row["id"]))

    def close(self) -> None:
        for transport in self.transports:
            try:
                transport.close()
            except Exception:  # closing is best effort; one transport must not keep the others open
                log.exception("closing transport %s failed", transport.name)


# ----------------------------------------------------------------------------------------------------- readers


def _reader(buffer: Buffer) -> Access:
    """The outbox's tables, read (a reader buffer beside the daemon, or the daemon's own)."""
    return buffer.component(COMPONENT, TABLES)


def transport_health(buffer: Buffer) -> dict[str, dict[str, Any]]:
    """Each transport's account state as the outbox last found it (``state`` ok | refused | no_credit, ``detail``,
    ``since_ts``); transports never found wanting are absent. ``buffer``: e.g. a reader's."""
    db = _reader(buffer)
    if not db.exists("sms_transports"):
        return {}
    return {row["name"]: row for row in db.query("SELECT name, state, detail, since_ts FROM sms_transports")}


def queue_summary(buffer: Buffer) -> dict[str, Any]:
    """``{"queued": n, "oldest_queued_ts": ts | None}`` of the SMS still waiting to be sent."""
    db = _reader(buffer)
    if not db.exists("sms_outbox"):
        return {"queued": 0, "oldest_queued_ts": None}
    count, oldest = db.execute("SELECT count(*), MIN(created_ts) FROM sms_outbox WHERE state = 'queued'").fetchone()
    return {"queued": count, "oldest_queued_ts": oldest}
