"""The control state in the buffer's file (component ``control``): the only code that runs SQL on its tables.

What must survive a restart: each actuator as the supervisor last recorded it (``control_actuators``), the manual and
remote overrides in force (``control_overrides``) and the rules' memory (``control_rules``). Typed with
:mod:`.types`; the supervisor writes through it, ``edge status`` reads it (on a reader buffer, beside the daemon).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from edge.gateway.buffer import Access, Buffer
from edge.gateway.control.types import ActuatorState, Override

COMPONENT = "control"
TABLES = ("control_actuators", "control_overrides", "control_rules")
MIGRATIONS = [(1, "control state", """
    CREATE TABLE control_actuators (
        actuator TEXT PRIMARY KEY,
        value    REAL NOT NULL,
        reason   TEXT NOT NULL,
        since    REAL NOT NULL,     -- when it last changed
        on_since REAL,              -- start of the current (or last, if stopped by shutdown) continuous on-time
        until    REAL,              -- when the current reason ends, if known
        latched  INTEGER NOT NULL DEFAULT 0  -- cut by max_on: stays off until nothing requests it
    );
    CREATE TABLE control_overrides (
        actuator TEXT PRIMARY KEY,
        value    REAL NOT NULL,
        until    REAL,              -- NULL: until `edge actuate ID auto`
        who      TEXT NOT NULL,
        issued   REAL NOT NULL
    );
    CREATE TABLE control_rules (rule TEXT PRIMARY KEY, state TEXT NOT NULL);
""")]


class ControlState:
    """The supervisor's durable state. ``migrate=False`` for readers (``edge status``): nothing is created, and a
    file where control never ran reads as empty."""

    def __init__(self, buffer: Buffer, *, migrate: bool = True):
        self._db: Access = buffer.component(COMPONENT, TABLES)
        if migrate:
            self._db.migrate(MIGRATIONS)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction of the control state (nested in the caller's, if one is open)."""
        with self._db.transaction():
            yield

    # ------------------------------------------------------------------------------------------------- reading

    def actuators(self) -> dict[str, ActuatorState]:
        """Each actuator as last recorded (``off_at`` and ``refused`` are not kept); empty before control ran."""
        if not self._db.exists("control_actuators"):
            return {}
        return {row["actuator"]: ActuatorState(row["value"], row["reason"], row["since"], row["on_since"],
                                               row["until"], bool(row["latched"]))
                for row in self._db.query("SELECT * FROM control_actuators")}

    def overrides(self) -> list[Override]:
        """The overrides as stored; one held "until auto" (as versions before ``max_manual`` stored it) has
        ``until`` infinite: the supervisor bounds every one by the actuator's ``max_manual``."""
        if not self._db.exists("control_overrides"):
            return []
        return [Override(row["actuator"], row["value"], math.inf if row["until"] is None else row["until"],
                         row["who"], row["issued"])
                for row in self._db.query("SELECT * FROM control_overrides ORDER BY actuator")]

    def rule_memory(self) -> dict[str, dict[str, Any]]:
        if not self._db.exists("control_rules"):
            return {}
        return {row["rule"]: json.loads(row["state"]) for row in self._db.query("SELECT * FROM control_rules")}

    # ------------------------------------------------------------------------------------------------- writing

    def save_actuator(self, actuator_id: str, st: ActuatorState) -> None:
        with self._db.transaction() as db:
            db.execute("INSERT OR REPLACE INTO control_actuators VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (actuator_id, st.value, st.reason, st.since, st.on_since, st.until, int(st.latched)))

    def save_override(self, override: Override) -> None:
        until = None if math.isinf(override.until) else override.until
        with self._db.transaction() as db:
            db.execute("INSERT OR REPLACE INTO control_overrides VALUES (?, ?, ?, ?, ?)",
                       (override.actuator, override.value, until, override.who, override.issued))

    def drop_override(self, actuator_id: str) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM control_overrides WHERE actuator = ?", (actuator_id,))

    def save_rule(self, rule_id: str, memory: dict[str, Any]) -> None:
        with self._db.transaction() as db:
            db.execute("INSERT OR REPLACE INTO control_rules VALUES (?, ?)", (rule_id, json.dumps(memory)))
