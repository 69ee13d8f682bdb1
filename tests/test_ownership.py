"""Each part of the gateway owns its tables in the buffer's file, and SQLite enforces it (the buffer's authorizer);
each part's state object is the only code that runs SQL on its tables.
"""

from __future__ import annotations

import ast
import math
import re
import sqlite3
from pathlib import Path

import pytest

from edge.gateway.alerts.outbox import Outbox, queue_summary
from edge.gateway.alerts.store import Store
from edge.gateway.buffer import Buffer, NewReading, NotOwner
from edge.gateway.control.state import ControlState
from edge.gateway.control.types import ActuatorState, Override
from edge.gateway.sync.state import LinkRecord, SyncState

T0 = 1_760_000_000.0
GATEWAY = Path(__file__).resolve().parent.parent / "edge" / "gateway"

#: Each owner's module, and the tables only it may name in SQL.
OWNERS = {
    "buffer.py": ("epochs", "counters", "readings", "events", "schema_migrations"),
    "control/state.py": ("control_actuators", "control_overrides", "control_rules"),
    "sync/state.py": ("sync_commands", "sync_state", "sync_quarantine"),
    "alerts/store.py": ("alert_tracks", "alert_incidents", "alert_messages", "alert_notices"),
    "alerts/outbox.py": ("sms_outbox", "sms_transports"),
}


@pytest.fixture
def buffer(tmp_path):
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=T0, boot_id="b")
    yield buffer
    buffer.close()


def every_part(buffer: Buffer) -> None:
    """Every owner's tables in the file, as after a daemon's first run."""
    ControlState(buffer)
    SyncState(buffer)
    Store(buffer)
    Outbox(buffer, [])


# ------------------------------------------------------------------------------------------------ enforcement


def test_the_control_state_may_neither_read_readings_nor_queue_an_sms(buffer):
    every_part(buffer)
    control = buffer.component("control")
    with pytest.raises(NotOwner, match="control may not read table readings: it belongs to buffer"):
        control.execute("SELECT * FROM readings")
    with pytest.raises(NotOwner, match="control may not insert into table sms_outbox: it belongs to sms_outbox"):
        with control.transaction() as db:
            db.execute("INSERT INTO sms_outbox (local_id, recipient, number, text, segments, priority, created_ts, "
                       "state, next_ts) VALUES ('x', 'Ali', '+98912', 'hi', 1, 1, 0, 'queued', 0)")
    assert queue_summary(buffer)["queued"] == 0  # refused before anything was written
    with control.transaction() as db:  # its own tables, as ever
        db.execute("DELETE FROM control_rules")


def test_the_buffer_itself_reads_no_other_parts_table(buffer):
    every_part(buffer)
    with pytest.raises(NotOwner, match="buffer may not read table sync_state: it belongs to sync"):
        with buffer.transaction() as db:
            db.execute("SELECT * FROM sync_state")
    with pytest.raises(sqlite3.DatabaseError):
        buffer._db.execute("SELECT * FROM control_actuators")


def test_a_statement_cached_for_one_owner_is_checked_again_for_the_next(buffer):
    """SQLite caches prepared statements per connection: a change of owner must not let a cached one through."""
    every_part(buffer)
    buffer.append_readings([NewReading(T0, "air", "temperature", 20.0, "°C")])
    sql = "SELECT COUNT(*) FROM readings"
    with buffer.transaction() as db:
        assert db.execute(sql).fetchone()[0] == 1  # prepared (and cached) for the buffer
    with pytest.raises(NotOwner, match="sync may not read table readings"):
        buffer.component("sync").execute(sql)
    with buffer.transaction() as db:
        assert db.execute(sql).fetchone()[0] == 1


def test_an_owner_writes_only_inside_its_transaction(buffer):
    control = ControlState(buffer)
    control.save_rule("cooling", {"on": True})
    with pytest.raises(NotOwner, match="control wrote to control_rules outside a transaction"):
        buffer.component("control").execute("DELETE FROM control_rules")
    assert control.rule_memory() == {"cooling": {"on": True}}


def test_a_table_has_one_owner(buffer):
    every_part(buffer)
    with pytest.raises(ValueError, match="cannot own readings: buffer does"):
        buffer.component("history", ["readings"])
    with pytest.raises(ValueError, match="already owns"):
        buffer.component("control", ["control_rules"])
    with pytest.raises(ValueError, match="no component 'nobody'"):
        buffer.component("nobody")


def test_owners_writing_together_commit_together(buffer):
    """An alert's incident and the SMS queued for it are one transaction of two owners: both or neither."""
    store, outbox = Store(buffer), Outbox(buffer, [])
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.new_incident(key="hot", rule_id="hot", severity="warning", kind="above", fact={},
                               fired_ts=T0, value=41.0)
            outbox.enqueue(recipient="Ali", number="+989121234567", text="hot", critical=False, now=T0)
            raise RuntimeError("the power went")
    assert store.incidents() == [] and queue_summary(buffer)["queued"] == 0
    with store.transaction():
        store.new_incident(key="hot", rule_id="hot", severity="warning", kind="above", fact={}, fired_ts=T0,
                           value=41.0)
        outbox.enqueue(recipient="Ali", number="+989121234567", text="hot", critical=False, now=T0)
    assert len(store.incidents()) == 1 and queue_summary(buffer)["queued"] == 1


# ------------------------------------------------------------------------------------------------ static checks


def gateway_modules() -> list[Path]:
    return sorted(GATEWAY.rglob("*.py")) + [GATEWAY.parent / "cli.py"]


def test_only_the_buffer_touches_its_connections():
    """Outside buffer.py, ``_db`` is only ever an owner's own access (``self._db``), and nothing reaches for the
    buffer's connections (``buffer.db``, ``_local``, ``_thread_conn``, ``_transaction``, ``sqlite3.connect``)."""
    found = []
    for path in gateway_modules():
        if path.name == "buffer.py" and path.parent == GATEWAY:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("_db", "db", "_local", "_thread_conn",
                                                                   "_transaction", "_thread_guard", "_own"):
                owner_self = node.attr == "_db" and isinstance(node.value, ast.Name) and node.value.id == "self"
                if not owner_self:
                    found.append(f"{path.relative_to(GATEWAY.parent)}:{node.lineno}: .{node.attr}")
            if isinstance(node, ast.Attribute) and node.attr == "connect" and \
                    isinstance(node.value, ast.Name) and node.value.id == "sqlite3":
                found.append(f"{path.relative_to(GATEWAY.parent)}:{node.lineno}: sqlite3.connect")
    assert found == []


def test_only_a_tables_owner_names_it_in_sql():
    found = []
    for path in gateway_modules():
        name = path.relative_to(GATEWAY).as_posix() if path.is_relative_to(GATEWAY) else path.name
        text = path.read_text()
        for owner, tables in OWNERS.items():
            if owner == name:
                continue
            for table in tables:
                if re.search(rf"\b(FROM|INTO|UPDATE|JOIN|TABLE)\s+{table}\b", text):
                    found.append(f"{name} names {table} (owned by {owner})")
    assert found == []


# ------------------------------------------------------------------------------------------------ state objects


def test_control_state_round_trips_typed_records_and_reads_empty_before_control_ran(buffer, tmp_path):
    reader = Buffer.reader(buffer.path)
    try:
        assert ControlState(reader, migrate=False).actuators() == {}  # no table yet: nothing, and nothing created
        assert ControlState(reader, migrate=False).overrides() == []
    finally:
        reader.close()
    control = ControlState(buffer)
    control.save_actuator("pump", ActuatorState(1.0, "schedule:morning", T0, T0, T0 + 600, False))
    control.save_override(Override("fan", 1.0, T0 + 60, "cli:ali", T0))
    control.save_override(Override("heater", 0.0, math.inf, "cli:old", T0))  # "until auto", as older versions did
    control.save_rule("cooling", {"on": False})
    assert control.actuators() == {"pump": ActuatorState(1.0, "schedule:morning", T0, T0, T0 + 600, False)}
    assert control.overrides() == [Override("fan", 1.0, T0 + 60, "cli:ali", T0),
                                   Override("heater", 0.0, math.inf, "cli:old", T0)]
    assert control.rule_memory() == {"cooling": {"on": False}}
    control.drop_override("fan")
    assert [o.actuator for o in control.overrides()] == ["heater"]


def test_sync_state_gives_typed_link_records(buffer):
    reader = Buffer.reader(buffer.path)
    try:
        assert SyncState(reader, migrate=False).link() == LinkRecord()
    finally:
        reader.close()
    state = SyncState(buffer)
    state.record_link(link="up", since=T0, beat=T0 + 5.5, last_ack=None, error=None)
    assert state.link() == LinkRecord("up", T0, None, T0 + 5.5, None)
    state.record_link(link="down", error="disconnected", since="None", beat="garbled")  # as older versions stored
    assert state.link() == LinkRecord("down", None, None, None, "disconnected")
    with pytest.raises(ValueError, match="unknown link field 'colour'"):
        state.record_link(colour="red")
    assert not state.seen("c-1")
    state.record_command("c-1", T0, T0 + 1, True)
    assert state.seen("c-1")
    with buffer.transaction():
        state.quarantine("readings", 1, 7, T0, "garbled", {"unit": ["text", "C328"]})
    assert [(r["stream"], r["seq"], r["cells"]) for r in state.quarantined()] == [
        ("readings", 7, {"unit": ["text", "C328"]})]


def test_the_alert_store_reads_no_incident_before_alerts_ran(buffer):
    reader = Buffer.reader(buffer.path)
    try:
        assert Store(reader, migrate=False).incidents() == []
    finally:
        reader.close()


def test_a_file_an_older_version_migrated_still_reads(buffer):
    """``edge status`` run by a newer version beside a daemon that has not migrated yet: what is there is read."""
    from edge.gateway.sync.state import COMPONENT, MIGRATIONS, TABLES

    buffer.component(COMPONENT, TABLES).migrate(MIGRATIONS[:1])  # no sync_quarantine yet
    SyncState(buffer, migrate=False).record_link(link="up")
    assert SyncState(buffer, migrate=False).link().link == "up"
    assert SyncState(buffer, migrate=False).quarantined() == []
    with pytest.raises(ValueError, match="sync does not own table readings"):
        buffer.component("sync").exists("readings")
