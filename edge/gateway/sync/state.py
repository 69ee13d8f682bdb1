"""The uplink's state in the buffer's file (component ``sync``): the only code that runs SQL on its tables.

``sync_state``: the link as the uplink thread last recorded it, with its heartbeat (``edge status`` reads it, typed,
as :class:`LinkRecord`); ``sync_commands``: every command id carried out (replay protection); ``sync_quarantine``:
rows that could not be sent, their raw cells kept (see :mod:`.uplink`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

from edge.gateway.buffer import Access, Buffer

COMPONENT = "sync"
TABLES = ("sync_commands", "sync_state", "sync_quarantine")
MIGRATIONS = [(1, "sync state", """
    CREATE TABLE sync_commands (id TEXT PRIMARY KEY, issued REAL NOT NULL, received REAL NOT NULL, ok INTEGER NOT NULL);
    CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT);
"""), (2, "rows set aside", """
    CREATE TABLE sync_quarantine (
        stream  TEXT NOT NULL,
        epoch   INTEGER NOT NULL,
        seq     INTEGER NOT NULL,
        moved   REAL NOT NULL,       -- when it was set aside
        reason  TEXT NOT NULL,
        cells   TEXT NOT NULL,       -- JSON {column: [sqlite type, hex of text/blob or the number's literal]}
        PRIMARY KEY (stream, epoch, seq)
    );
""")]


@dataclass(frozen=True)
class LinkRecord:
    """The uplink as its thread last recorded it. Every field is None when it was never recorded (or could not be
    read back: a time that is not a number)."""

    link: str | None = None  # offline | connecting | up | down
    since: float | None = None  # when the link last changed (UTC seconds)
    last_ack: float | None = None  # the data center's last ack
    beat: float | None = None  # the thread's last heartbeat: it records one at least every minute (and twice within stall_after) while it works
    error: str | None = None  # the last failure, while it lasts


_TIMES = frozenset({"since", "last_ack", "beat"})


class SyncState:
    """``migrate=False`` for readers (``edge status``, ``edge doctor``): nothing is created, and a file where the
    uplink never ran reads as empty."""

    def __init__(self, buffer: Buffer, *, migrate: bool = True):
        self._db: Access = buffer.component(COMPONENT, TABLES)
        if migrate:
            self._db.migrate(MIGRATIONS)

    # -------------------------------------------------------------------------------------------------- link

    def record_link(self, **values: str | float | None) -> None:
        """Record fields of :class:`LinkRecord` (the others keep their value), in one transaction."""
        with self._db.transaction() as db:
            for key, value in values.items():
                if key not in _FIELDS:
                    raise ValueError(f"unknown link field {key!r}")
                db.execute("INSERT OR REPLACE INTO sync_state VALUES (?, ?)",
                           (key, None if value is None else str(value)))

    def link(self) -> LinkRecord:
        if not self._db.exists("sync_state"):
            return LinkRecord()
        stored = {row["key"]: row["value"] for row in self._db.query("SELECT key, value FROM sync_state")}
        return LinkRecord(**{name: (_time if name in _TIMES else _word)(stored.get(name)) for name in _FIELDS})

    # ---------------------------------------------------------------------------------------------- commands

    def seen(self, command_id: str) -> bool:
        """True if a command with this id was already received."""
        return self._db.execute("SELECT 1 FROM sync_commands WHERE id = ?", (command_id,)).fetchone() is not None

    def record_command(self, command_id: str, issued: float, received: float, ok: bool) -> None:
        with self._db.transaction() as db:
            db.execute("INSERT OR IGNORE INTO sync_commands VALUES (?, ?, ?, ?)",
                       (command_id, issued, received, int(ok)))

    # -------------------------------------------------------------------------------------------- quarantine

    def quarantine(self, stream: str, epoch: Any, seq: Any, moved: float, reason: str,
                   cells: dict[str, list[Any]]) -> None:
        """Keep one row set aside (in the caller's transaction, with the row's removal from the buffer)."""
        with self._db.transaction() as db:
            db.execute("INSERT OR REPLACE INTO sync_quarantine VALUES (?, ?, ?, ?, ?, ?)",
                       (stream, epoch, seq, moved, reason, json.dumps(cells, sort_keys=True)))

    def quarantined(self) -> list[dict[str, Any]]:
        """Every row set aside, ``cells`` decoded from its JSON."""
        if not self._db.exists("sync_quarantine"):
            return []
        return [{**row, "cells": json.loads(row["cells"])}
                for row in self._db.query("SELECT * FROM sync_quarantine ORDER BY moved, stream, epoch, seq")]


_FIELDS = tuple(f.name for f in fields(LinkRecord))


def _time(text: str | None) -> float | None:
    """A recorded time; None when absent or not a finite number (versions before this one stored ``"None"``)."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _word(text: str | None) -> str | None:
    return None if text in (None, "None") else text
