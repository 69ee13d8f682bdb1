"""The alert engine's memory, in the buffer's SQLite file (component ``alerts``): watches, incidents, notices, messages.

The only code that runs SQL on these tables (through the buffer's access for ``alerts``). Writes run inside a
transaction the engine opens with :meth:`Store.transaction`: the store's statements run inside it, so that a state
change, the incident it opens and the notices it owes commit together, and a dispatched message, the notices it
carries and the SMS queued for it (by the outbox, inside the same transaction) commit together. That is what makes
a restart re-send nothing and forget nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from edge.gateway.buffer import Buffer

COMPONENT = "alerts"
TABLES = ("alert_tracks", "alert_incidents", "alert_messages", "alert_notices")
MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "alert state",
        """
        CREATE TABLE alert_tracks (
            key         TEXT PRIMARY KEY,
            rule_id     TEXT NOT NULL,
            state       TEXT NOT NULL,       -- OK | PENDING | FIRING | ACKED | RESOLVED | STALE
            since_ts    REAL NOT NULL,
            incident_id INTEGER              -- the open incident, if any
        ) WITHOUT ROWID;
        CREATE TABLE alert_incidents (
            id             INTEGER PRIMARY KEY AUTOINCREMENT,
            key            TEXT NOT NULL,
            rule_id        TEXT NOT NULL,
            code           TEXT NOT NULL,    -- what the farmer replies to acknowledge
            severity       TEXT NOT NULL,
            kind           TEXT NOT NULL,
            fact           TEXT NOT NULL,    -- JSON: label, subject, quantity, unit, limit, window
            fired_ts       REAL NOT NULL,
            value          REAL,
            acked_ts       REAL,
            acked_by       TEXT,
            resolved_ts    REAL,
            resolved_value REAL,
            notified_ts    REAL,             -- first message about it queued
            repeats        INTEGER NOT NULL DEFAULT 0,
            next_repeat_ts REAL,
            escalated_ts   REAL,
            suppressed     INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX alert_incidents_open ON alert_incidents (code) WHERE resolved_ts IS NULL;
        CREATE TABLE alert_messages (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            recipient  TEXT NOT NULL,        -- canonical number
            ts         REAL NOT NULL,
            header     TEXT NOT NULL,        -- alert | digest | summary | status
            local_id   TEXT NOT NULL,        -- the SMS in sms_outbox
            segments   INTEGER NOT NULL
        );
        CREATE INDEX alert_messages_recipient ON alert_messages (recipient, ts);
        CREATE TABLE alert_notices (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            incident_id INTEGER NOT NULL,
            recipient   TEXT NOT NULL,
            kind        TEXT NOT NULL,       -- firing | repeat | escalation | resolved
            created_ts  REAL NOT NULL,
            deferred    INTEGER NOT NULL DEFAULT 0,
            capped      INTEGER NOT NULL DEFAULT 0,
            message_id  INTEGER              -- NULL while owed
        );
        CREATE INDEX alert_notices_owed ON alert_notices (recipient) WHERE message_id IS NULL;
        CREATE INDEX alert_notices_incident ON alert_notices (incident_id);
        """,
    ),
]

#: Codes are two digits while they last, then three.
CODE_RANGES = ((10, 99), (100, 999))


@dataclass
class TrackRow:
    key: str
    rule_id: str
    state: str
    since: float
    incident_id: int | None = None


def next_code(last: int | None, in_use: set[int]) -> str:
    """The code after ``last`` not held by an unresolved incident: 10, 11, ... 99, 10, ...; 100+ when all are taken."""
    for low, high in CODE_RANGES:
        span = high - low + 1
        start = last + 1 if last is not None and low <= last < high else low
        for offset in range(span):
            code = low + (start - low + offset) % span
            if code not in in_use:
                return str(code)
    raise RuntimeError("more than 990 open alerts")  # pragma: no cover


class Store:
    """``migrate=False`` for readers (``edge alerts``, ``edge status``): nothing is created, and a file where alerts
    never ran reads as empty."""

    def __init__(self, buffer: Buffer, *, migrate: bool = True):
        self.buffer = buffer
        self._db = buffer.component(COMPONENT, TABLES)
        if migrate:
            self._db.migrate(MIGRATIONS)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction for the store's writes (and the outbox's SMS, the buffer's events written with them):
        they commit together or not at all. Nested in a transaction the thread has open, it is a savepoint of it."""
        with self._db.transaction():
            yield

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return self._db.query(sql, tuple(args))

    def incidents(self, active_only: bool = False) -> list[dict[str, Any]]:
        """The incidents, newest first (empty before alerts first ran)."""
        if not self._db.exists("alert_incidents"):
            return []
        where = "WHERE resolved_ts IS NULL" if active_only else ""
        return self._query(f"SELECT * FROM alert_incidents {where} ORDER BY fired_ts DESC")

    # ---------------------------------------------------------------------------------------------- tracks

    def tracks(self) -> dict[str, TrackRow]:
        return {r["key"]: TrackRow(r["key"], r["rule_id"], r["state"], r["since_ts"], r["incident_id"])
                for r in self._query("SELECT * FROM alert_tracks")}

    def save_track(self, track: TrackRow) -> None:
        self._db.execute("INSERT OR REPLACE INTO alert_tracks VALUES (?, ?, ?, ?, ?)",
                   (track.key, track.rule_id, track.state, track.since, track.incident_id))

    def delete_track(self, key: str) -> None:
        self._db.execute("DELETE FROM alert_tracks WHERE key = ?", (key,))

    # ------------------------------------------------------------------------------------------- incidents

    def incident(self, incident_id: int) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM alert_incidents WHERE id = ?", (incident_id,))
        return rows[0] if rows else None

    def open_incidents(self) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM alert_incidents WHERE resolved_ts IS NULL ORDER BY id")

    def open_by_code(self, code: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM alert_incidents WHERE code = ? AND resolved_ts IS NULL", (code,))
        return rows[0] if rows else None

    def new_incident(self, *, key: str, rule_id: str, severity: str, kind: str, fact: dict[str, Any],
                     fired_ts: float, value: float | None) -> tuple[int, str]:
        last = self._db.execute("SELECT code FROM alert_incidents ORDER BY id DESC LIMIT 1").fetchone()
        in_use = {int(r[0]) for r in self._db.execute("SELECT code FROM alert_incidents WHERE resolved_ts IS NULL")}
        code = next_code(int(last[0]) if last else None, in_use)
        cursor = self._db.execute(
            "INSERT INTO alert_incidents (key, rule_id, code, severity, kind, fact, fired_ts, value) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, rule_id, code, severity, kind, json.dumps(fact, ensure_ascii=False), fired_ts, value))
        return cursor.lastrowid, code

    def resolve(self, incident_id: int, ts: float, value: float | None) -> None:
        self._db.execute("UPDATE alert_incidents SET resolved_ts = ?, resolved_value = ? WHERE id = ?",
                   (ts, value, incident_id))

    def ack(self, incident_id: int, ts: float, by: str) -> None:
        self._db.execute("UPDATE alert_incidents SET acked_ts = ?, acked_by = ? WHERE id = ?", (ts, by, incident_id))

    def update_incident(self, incident_id: int, **fields: Any) -> None:
        names = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(f"UPDATE alert_incidents SET {names} WHERE id = ?", (*fields.values(), incident_id))

    def repeats_due(self, now: float) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM alert_incidents WHERE resolved_ts IS NULL AND acked_ts IS NULL "
                           "AND next_repeat_ts IS NOT NULL AND next_repeat_ts <= ?", (now,))

    def escalations_due(self, now: float, after: float) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM alert_incidents WHERE resolved_ts IS NULL AND acked_ts IS NULL "
                           "AND severity = 'critical' AND escalated_ts IS NULL AND notified_ts IS NOT NULL "
                           "AND notified_ts + ? <= ?", (after, now))

    # --------------------------------------------------------------------------------------------- notices

    def add_notice(self, incident_id: int, recipient: str, kind: str, ts: float) -> None:
        self._db.execute("INSERT INTO alert_notices (incident_id, recipient, kind, created_ts) VALUES (?, ?, ?, ?)",
                   (incident_id, recipient, kind, ts))

    def owed(self) -> list[dict[str, Any]]:
        """Every notice not yet sent, joined with its incident."""
        return self._query(
            "SELECT n.id AS notice_id, n.recipient, n.kind AS notice_kind, n.created_ts, n.deferred, n.capped, "
            "i.* FROM alert_notices n JOIN alert_incidents i ON i.id = n.incident_id "
            "WHERE n.message_id IS NULL ORDER BY n.id")

    def owes(self, incident_id: int, recipient: str, kinds: tuple[str, ...]) -> bool:
        marks = ", ".join("?" for _ in kinds)
        return bool(self._query(
            f"SELECT 1 FROM alert_notices WHERE incident_id = ? AND recipient = ? AND message_id IS NULL "
            f"AND kind IN ({marks}) LIMIT 1", (incident_id, recipient, *kinds)))

    def told(self, incident_id: int) -> set[str]:
        """Recipients who were sent any message about an incident."""
        return {r["recipient"] for r in self._query(
            "SELECT DISTINCT recipient FROM alert_notices WHERE incident_id = ? AND message_id IS NOT NULL",
            (incident_id,))}

    def drop_owed(self, incident_id: int, kinds: tuple[str, ...]) -> None:
        marks = ", ".join("?" for _ in kinds)
        self._db.execute(f"DELETE FROM alert_notices WHERE incident_id = ? AND message_id IS NULL "
                         f"AND kind IN ({marks})", (incident_id, *kinds))

    def flag_notices(self, ids: Iterable[int], column: str) -> None:
        assert column in ("deferred", "capped")
        self._db.executemany(f"UPDATE alert_notices SET {column} = 1 WHERE id = ?", [(i,) for i in ids])

    # -------------------------------------------------------------------------------------------- messages

    def add_message(self, recipient: str, ts: float, header: str, local_id: str, segments: int,
                    notice_ids: Iterable[int]) -> int:
        cursor = self._db.execute("INSERT INTO alert_messages (recipient, ts, header, local_id, segments) "
                            "VALUES (?, ?, ?, ?, ?)", (recipient, ts, header, local_id, segments))
        self._db.executemany("UPDATE alert_notices SET message_id = ? WHERE id = ?",
                             [(cursor.lastrowid, i) for i in notice_ids])
        return cursor.lastrowid

    def sent_since(self, recipient: str, since: float) -> int:
        """Alert messages (not answers to replies) sent to ``recipient`` after ``since``: what the caps count."""
        return self._query("SELECT COUNT(*) AS n FROM alert_messages WHERE recipient = ? AND ts > ? "
                           "AND header IN ('alert', 'digest', 'summary')", (recipient, since))[0]["n"]

    def replies_since(self, recipient: str, since: float) -> list[tuple[float, str]]:
        """``(ts, header)`` of the answers to replies (status, ack, help) sent to ``recipient`` after ``since``."""
        return [(r["ts"], r["header"]) for r in self._query(
            "SELECT ts, header FROM alert_messages WHERE recipient = ? AND ts > ? "
            "AND header IN ('status', 'ack', 'help')", (recipient, since))]

    def prune(self, before: float) -> int:
        """Forget messages and resolved incidents (and their notices) older than ``before``."""
        with self._db.transaction() as db:
            gone = db.execute("DELETE FROM alert_notices WHERE message_id IS NOT NULL AND incident_id IN "
                              "(SELECT id FROM alert_incidents WHERE resolved_ts < ?)", (before,)).rowcount
            gone += db.execute("DELETE FROM alert_incidents WHERE resolved_ts < ? AND id NOT IN "
                               "(SELECT incident_id FROM alert_notices)", (before,)).rowcount
            gone += db.execute("DELETE FROM alert_messages WHERE ts < ?", (before,)).rowcount
        return gone
