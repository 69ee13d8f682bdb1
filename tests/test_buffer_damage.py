"""A damaged buffer, whatever the damage, is moved aside (kept, never deleted), a fresh buffer starts, and an event
records it: the integrity check at open cannot end in an exception, so it cannot end in a restart loop.

The damage is made the way an SD card or a power cut makes it: bytes flipped in pages, a file cut short, a header
overwritten, a file left empty, a write-ahead log that is garbage, and a page whose text makes SQLite's own answer
invalid UTF-8. The write-ahead log cases start from the files exactly as a ``kill -9`` leaves them (copied while the
buffer is open, its log not yet checkpointed).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3

import pytest

from edge.gateway import buffer as buffer_module
from edge.gateway.buffer import Buffer, NewReading

T0 = 1_752_562_800.0
PAGE = 4096


def reading(i: int) -> NewReading:
    return NewReading(ts=T0 + i, sensor="air", quantity="temperature", value=20.0 + i % 7, unit="°C")


def committed(path, rows: int = 2000):
    """A buffer with ``rows`` readings and a few events, cleanly closed (everything in the main file)."""
    buffer, _ = Buffer.open(path, now=T0, boot_id="b")
    buffer.append_readings([reading(i) for i in range(rows)])
    buffer.append_readings([NewReading(T0, "air", "temperature", None, "°C", "error", "no answer")])
    for i in range(5):
        buffer.append_event("actuator.change", "fan", {"value": i % 2}, ts=T0 + i)
    buffer.close()


def as_after_kill_9(path):
    """The files of an open buffer whose last commits are still in its write-ahead log, as a kill -9 leaves them."""
    live = path.with_name("live.db")
    buffer, _ = Buffer.open(live, now=T0, boot_id="b")
    for start in range(0, 300, 10):  # 30 commits
        buffer.append_readings([reading(i) for i in range(start, start + 10)])
    for suffix in ("", "-wal"):
        shutil.copy(f"{live}{suffix}", f"{path}{suffix}")
    buffer.close()
    assert os.path.getsize(f"{path}-wal") > 32


def flip_bytes_in_pages(path):
    committed(path)
    data = bytearray(path.read_bytes())
    rng = random.Random(7)
    for page in range(1, len(data) // PAGE):  # every page but the first: b-tree pages, cells, free lists
        for _ in range(8):
            data[page * PAGE + rng.randrange(PAGE)] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate_to_half(path):
    committed(path)
    os.truncate(path, path.stat().st_size // 2)


def truncate_inside_a_page(path):
    committed(path)
    os.truncate(path, path.stat().st_size - 100)


def overwrite_the_header(path):
    committed(path)
    with open(path, "r+b") as f:
        f.write(bytes(random.Random(3).randrange(256) for _ in range(100)))


def leave_it_empty(path):
    committed(path)
    os.truncate(path, 0)


def fill_the_log_with_garbage(path):
    as_after_kill_9(path)
    wal = f"{path}-wal"
    size = os.path.getsize(wal)
    with open(wal, "wb") as f:
        f.write(bytes(random.Random(5).randrange(256) for _ in range(size)))


def cut_the_log_inside_its_header(path):
    as_after_kill_9(path)
    os.truncate(f"{path}-wal", 20)


def make_the_check_answer_invalid_utf8(path):
    """A flipped bit in the schema's text: a column name gets a byte that is not UTF-8, and quick_check, which names
    the column in what it reports, answers in bytes that are not UTF-8."""
    committed(path)
    conn = sqlite3.connect(path, isolation_level=None)
    sql = conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'readings'").fetchone()[0]
    damaged = sql.replace("value    REAL,", "value    REAL NOT NULL,").encode().replace(b"value", b"val\xffe")
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("UPDATE sqlite_schema SET sql = CAST(? AS TEXT) WHERE name = 'readings'", (damaged,))
    conn.close()


DAMAGE = [flip_bytes_in_pages, truncate_to_half, truncate_inside_a_page, overwrite_the_header, leave_it_empty,
          fill_the_log_with_garbage, cut_the_log_inside_its_header, make_the_check_answer_invalid_utf8]


@pytest.fixture
def buffer_path(tmp_path):
    path = tmp_path / "var" / "buffer.db"
    path.parent.mkdir()
    return path


def files_of(path) -> dict[str, bytes]:
    return {suffix: open(f"{path}{suffix}", "rb").read() for suffix in ("", "-wal")
            if os.path.exists(f"{path}{suffix}")}


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_a_damaged_buffer_is_moved_aside_kept_and_a_fresh_one_records_why(buffer_path, damage):
    damage(buffer_path)
    damaged = files_of(buffer_path)

    buffer, report = Buffer.open(buffer_path, now=T0 + 60, boot_id="b")
    try:
        assert report.epoch is not None and report.corrupt_moved_to is not None
        assert files_of(report.corrupt_moved_to) == damaged  # kept as it was, the log beside it
        assert buffer.counts()["total"] == 0 and buffer.append_readings([reading(0)]) is not None
        [event] = [e for e in buffer.events() if e["kind"] == "buffer.corrupt"]
        data = json.loads(event["data"])
        assert data == {"moved_to": str(report.corrupt_moved_to), "reason": report.corrupt_reason}
        assert report.corrupt_reason.encode("utf-8")  # something to read, in valid UTF-8
    finally:
        buffer.close()
    buffer, again = Buffer.open(buffer_path, now=T0 + 120, boot_id="b")  # the fresh buffer is healthy
    buffer.close()
    assert again.corrupt_moved_to is None


def test_a_check_answer_in_invalid_utf8_is_reported_in_its_own_words(buffer_path):
    make_the_check_answer_invalid_utf8(buffer_path)
    buffer, report = Buffer.open(buffer_path, now=T0, boot_id="b")
    buffer.close()
    assert report.corrupt_reason == r"NULL value in readings.val\xffe"


def test_a_log_damaged_in_its_header_is_not_silently_dropped(buffer_path):
    """SQLite itself takes such a log for an empty one: 300 committed readings would vanish without an error."""
    fill_the_log_with_garbage(buffer_path)
    buffer, report = Buffer.open(buffer_path, now=T0, boot_id="b")
    buffer.close()
    assert "write-ahead log buffer.db-wal is damaged" in report.corrupt_reason
    check = sqlite3.connect(f"file:{report.corrupt_moved_to}?mode=ro", uri=True)
    try:
        assert check.execute("PRAGMA journal_mode").fetchone()  # the moved file still opens for forensics
    finally:
        check.close()


def test_a_log_cut_by_a_power_cut_is_not_damage(buffer_path):
    """A log cut inside its frames is what a power cut during a commit leaves: SQLite keeps what was committed."""
    as_after_kill_9(buffer_path)
    wal = f"{buffer_path}-wal"
    os.truncate(wal, os.path.getsize(wal) - 1000)
    buffer, report = Buffer.open(buffer_path, now=T0, boot_id="b")
    try:
        assert report.corrupt_moved_to is None
        assert 250 <= buffer.counts()["total"] < 300  # the commits before the cut
    finally:
        buffer.close()


@pytest.mark.parametrize("answer", [
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    ValueError("embedded null character"),
    OSError(5, "Input/output error"),
    RecursionError("maximum recursion depth exceeded"),
    [],
    ["ok", "ok"],
    ["*** in database main ***", "Page 12: never used"],
], ids=["UnicodeDecodeError", "ValueError", "EIO", "RecursionError", "no answer", "two oks", "a complaint"])
def test_any_failure_of_the_check_counts_against_the_file(buffer_path, monkeypatch, answer):
    committed(buffer_path, rows=10)

    def quick_check(path):
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(buffer_module, "_quick_check_answer", quick_check)
    buffer, report = Buffer.open(buffer_path, now=T0, boot_id="b")
    buffer.close()
    assert report.corrupt_moved_to is not None and report.corrupt_moved_to.exists() and report.epoch is not None
    assert report.corrupt_reason


def test_damage_the_check_missed_is_set_aside_when_opening_finds_it(buffer_path, monkeypatch):
    """quick_check does not read everything (index contents): damage found by the first write is handled alike."""
    committed(buffer_path, rows=10)
    original = Buffer.migrate
    calls = []

    def migrate(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            error = sqlite3.DatabaseError("database disk image is malformed")
            error.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
            raise error
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Buffer, "migrate", migrate)
    buffer, report = Buffer.open(buffer_path, now=T0, boot_id="b")
    buffer.close()
    assert report.corrupt_reason == "database disk image is malformed (found while opening it)"
    assert report.corrupt_moved_to.exists() and report.epoch is not None
