"""One reading type from the sampler to the wire: what the sampler builds, what its listeners get, what the buffer
hands the uplink and what the data center decodes are the contract's ``protocol.Reading``, equal field by field."""

from __future__ import annotations

import sqlite3

import pytest

from edge.contract import protocol
from edge.errors import BufferFull
from edge.gateway.buffer import Buffer, PendingReading
from edge.gateway.clock import FakeClock
from edge.gateway.hardware.base import Sample
from edge.gateway.sampler import Sampler, SensorSlot

T0 = 1_752_571_800.25  # a wall time the wire's milliseconds carry exactly


class FixedSensor:
    """A sensor that answers the same samples every time: a good one, a failed one, an implausible one."""

    id = "air"

    def quantities(self) -> tuple[str, ...]:
        return ("temperature", "humidity", "co2")

    def read(self) -> list[Sample]:
        return [Sample("temperature", 21.5, "°C"), Sample.error("humidity", "no answer (CRC)"),
                Sample("co2", 90_000.0, "ppm")]

    def close(self) -> None:
        pass


@pytest.fixture
def buffer(tmp_path):
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=T0, boot_id="fake-boot")
    yield buffer
    buffer.close()


@pytest.mark.parametrize("synced", [True, False], ids=["clock-synced", "clock-unsynced"])
def test_the_sampler_the_buffer_and_the_wire_share_one_reading_type(buffer, synced):
    clock = FakeClock(start=T0, synced=synced)
    heard: list = []
    sampler = Sampler([SensorSlot(FixedSensor(), 10.0)], buffer, clock, listeners=[heard.extend])

    built = sampler.read_slot(sampler.groups[10.0][0])  # as the sampler builds them: no seq yet
    returned = sampler.run_round(10.0)

    pending = buffer.pending_readings()
    stored = [p.reading for p in pending]
    batch = protocol.decode_readings(protocol.encode_readings("gh-a", buffer.epoch, stored))
    assert [p.garbled for p in pending] == [None, None, None]
    assert (batch.gateway_id, batch.epoch) == ("gh-a", buffer.epoch)
    for readings in (built, returned, heard, stored, list(batch.readings)):
        assert [type(r) for r in readings] == [protocol.Reading] * 3
    assert {r.seq for r in built} == {protocol.UNSTORED}
    assert [r.seq for r in returned] == [1, 2, 3]  # numbered by the buffer in the round's transaction
    as_fields = [tuple(r) for r in returned]
    assert [tuple(r) for r in heard] == as_fields
    assert [tuple(r) for r in stored] == as_fields
    assert [tuple(r) for r in batch.readings] == as_fields
    assert [r._replace(seq=protocol.UNSTORED) for r in returned] == built
    assert [(r.quality, r.clock) for r in stored] == [
        (quality, 1 if synced else 0) for quality in ("good", "error", "implausible")]


def test_a_round_that_cannot_be_stored_still_reaches_the_listeners_as_readings_without_seq(buffer):
    clock = FakeClock(start=T0)
    heard: list = []
    sampler = Sampler([SensorSlot(FixedSensor(), 10.0)], buffer, clock, listeners=[heard.extend])

    class Refusing:
        """A buffer whose file system has no room."""

        def append_readings(self, readings):
            raise BufferFull("no room")

    sampler.buffer = Refusing()
    sampler.run_round(10.0)
    assert [type(r) for r in heard] == [protocol.Reading] * 3
    assert {r.seq for r in heard} == {protocol.UNSTORED}


def test_a_row_that_cannot_be_read_as_a_reading_is_reported_garbled_with_the_reason(buffer):
    sampler = Sampler([SensorSlot(FixedSensor(), 10.0)], buffer, FakeClock(start=T0))
    sampler.run_round(10.0)
    conn = sqlite3.connect(buffer.path, isolation_level=None)  # behind the buffer's back, as a failing card does
    try:
        conn.execute("UPDATE readings SET quality = 'bogus' WHERE seq = 1")
        conn.execute("UPDATE readings SET value = 9e999 WHERE seq = 3")
    finally:
        conn.close()

    pending = buffer.pending_readings()
    assert pending[1] == PendingReading(buffer.epoch, 2, pending[1].reading)
    assert pending[1].reading is not None and pending[1].reading.quantity == "humidity"
    assert (pending[0].epoch, pending[0].seq, pending[0].reading) == (buffer.epoch, 1, None)
    assert pending[0].garbled == "quality 'bogus' is not one of good, error, implausible"
    assert (pending[2].seq, pending[2].reading, pending[2].garbled) == (3, None, "value 'inf' is not a finite number")
    assert buffer.pending_readings_range(buffer.epoch, 2, 3) == pending[1:]


@pytest.mark.parametrize("column, cell", [
    ("seq", "'x7'"), ("ts", "'noon'"), ("ts", "1e16"), ("sensor", "x'41'"), ("quantity", "x'00'"),
    ("value", "'warm'"), ("value", "9e999"), ("value", "-9e999"), ("unit", "x'25'"), ("quality", "'bogus'"),
    ("reason", "x'01'"), ("clock", "5"), ("clock", "'one'"), ("boot_id", "x'02'"), ("mono", "1e16"),
    ("mono", "'soon'"),
])  # blobs and texts where SQLite's column affinity would otherwise turn the cell back into its type
def test_one_garbled_cell_among_many_sound_rows_is_found(buffer, column, cell):
    sampler = Sampler([SensorSlot(FixedSensor(), 10.0)], buffer, FakeClock(start=T0))
    for _ in range(20):
        sampler.run_round(10.0)
    conn = sqlite3.connect(buffer.path, isolation_level=None)  # behind the buffer's back, as a failing card does
    try:
        conn.execute(f"UPDATE readings SET {column} = {cell} WHERE seq = 31")
    finally:
        conn.close()

    pending = buffer.pending_readings(limit=100)
    assert [p.garbled is not None for p in pending] == [p.seq == 31 for p in pending] or column == "seq"
    assert sum(p.reading is None for p in pending) == 1
    assert all(type(p.reading) is protocol.Reading for p in pending if p.garbled is None)
