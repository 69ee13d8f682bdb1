"""The SQLite buffer: keys that are never reused, acks that are the only way out, and a corrupt file kept aside."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from conftest import wait_until
from edge.gateway.buffer import CLOCK_CORRECTED, CLOCK_UNSYNCED, MIGRATIONS, Buffer, NewReading

T0 = 1_752_562_800.0


def reading(i: int = 0, sensor: str = "air", **kw) -> NewReading:
    return NewReading(ts=T0 + i, sensor=sensor, quantity="temperature", value=20.0 + i, unit="°C", **kw)


@pytest.fixture
def buffer_path(tmp_path):
    return tmp_path / "var" / "buffer.db"


@pytest.fixture
def fresh_buffer(buffer_path):
    buffer, _ = Buffer.open(buffer_path, now=T0, boot_id="boot-1")
    yield buffer
    buffer.close()


def test_every_start_gets_a_new_epoch_and_seq_restarts(buffer_path):
    epochs = []
    for start in range(3):
        buffer, report = Buffer.open(buffer_path, now=T0 + start, boot_id="b")
        assert buffer.append_readings([reading(0), reading(1)]) == (1, 2)
        epochs.append(report.epoch)
        buffer.close()
    assert epochs == [1, 2, 3]


def test_seq_is_contiguous_and_increasing_across_appends(fresh_buffer):
    assert fresh_buffer.append_readings([reading(i) for i in range(3)]) == (1, 3)
    assert fresh_buffer.append_readings([reading(3)]) == (4, 4)
    seqs = [row["seq"] for row in fresh_buffer.pending(limit=100)]
    assert seqs == [1, 2, 3, 4]


def test_acked_and_pruned_rows_never_free_their_seq(fresh_buffer):
    fresh_buffer.append_readings([reading(i) for i in range(5)])
    assert fresh_buffer.ack("readings", fresh_buffer.epoch, 1, 5) == 5
    assert fresh_buffer.prune(older_than=T0 + 100) == 5
    assert fresh_buffer.counts()["total"] == 0
    assert fresh_buffer.append_readings([reading(9)]) == (6, 6)


def test_a_rolled_back_append_allocates_nothing(fresh_buffer):
    bad = NewReading(ts=T0, sensor=None, quantity="t", value=1.0, unit="°C")  # NOT NULL violation
    with pytest.raises(sqlite3.IntegrityError):
        fresh_buffer.append_readings([reading(0), bad])
    assert fresh_buffer.counts()["total"] == 0
    assert fresh_buffer.append_readings([reading(1)]) == (1, 1)


def test_only_an_ack_removes_rows_from_pending(fresh_buffer):
    fresh_buffer.append_readings([reading(i) for i in range(10)])
    assert len(fresh_buffer.pending(limit=100)) == 10
    assert fresh_buffer.ack("readings", fresh_buffer.epoch, 3, 6) == 4
    assert fresh_buffer.ack("readings", fresh_buffer.epoch, 3, 6) == 0  # idempotent
    assert [r["seq"] for r in fresh_buffer.pending(limit=100)] == [1, 2, 7, 8, 9, 10]
    assert fresh_buffer.counts() == {"total": 10, "pending": 6, "acknowledged": 4, "oldest_pending_ts": T0}
    # pruning before the retention keeps even acknowledged rows; pending rows are never pruned
    assert fresh_buffer.prune(older_than=T0) == 0
    assert fresh_buffer.prune(older_than=T0 + 100) == 4
    assert fresh_buffer.counts()["total"] == 6


def test_pending_pages_through_epochs_in_key_order(buffer_path):
    for start in range(2):
        buffer, _ = Buffer.open(buffer_path, now=T0, boot_id="b")
        buffer.append_readings([reading(i) for i in range(3)])
        buffer.close()
    buffer = Buffer.reader(buffer_path)
    first = buffer.pending(limit=4)
    rest = buffer.pending(limit=4, after=(first[-1]["epoch"], first[-1]["seq"]))
    assert [(r["epoch"], r["seq"]) for r in first + rest] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]


def test_events_have_their_own_sequence(fresh_buffer):
    assert fresh_buffer.append_event("daemon.start", "daemon", {"x": 1}, ts=T0) == 1
    fresh_buffer.append_readings([reading(0)])
    assert fresh_buffer.append_event("actuator.change", "fan", {"on": True}, ts=T0) == 2
    assert [e["kind"] for e in fresh_buffer.events()] == ["daemon.start", "actuator.change"]
    with pytest.raises(ValueError, match="unknown stream 'bogus'"):
        fresh_buffer.pending("bogus")


def test_a_clean_stop_is_remembered_and_an_unclean_one_reported(buffer_path):
    buffer, report = Buffer.open(buffer_path, now=T0, boot_id="b")
    assert report.previous_epoch_clean is None
    buffer.mark_clean_stop(T0 + 1)
    buffer.close()
    buffer, report = Buffer.open(buffer_path, now=T0, boot_id="b")
    assert report.previous_epoch_clean is True
    buffer.close()  # no clean-stop mark: as after kill -9 or a power cut
    buffer, report = Buffer.open(buffer_path, now=T0, boot_id="b")
    assert report.previous_epoch_clean is False
    buffer.close()


def test_migrations_are_tracked_and_applied_once(buffer_path):
    buffer, _ = Buffer.open(buffer_path, now=T0, boot_id="b")
    assert buffer.migrate() == []
    versions = [r["version"] for r in buffer._db.query("SELECT version FROM schema_migrations")]
    assert versions == [v for v, _, _ in MIGRATIONS]
    other = [(1, "widgets", "CREATE TABLE widgets (id INTEGER PRIMARY KEY)")]
    widgets = buffer.component("widgets", ["widgets"])
    assert widgets.migrate(other) == [1]
    assert widgets.migrate(other) == []
    with widgets.transaction() as db:
        db.execute("INSERT INTO widgets VALUES (7)")
    assert widgets.execute("SELECT id FROM widgets").fetchall() == [(7,)]
    buffer.close()


def test_pragmas_are_wal_and_full_sync(fresh_buffer):
    conn = fresh_buffer._db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_corrupt_buffer_is_moved_aside_kept_and_reported(buffer_path):
    buffer, _ = Buffer.open(buffer_path, now=T0, boot_id="b")
    buffer.append_readings([reading(i) for i in range(50)])
    buffer.close()
    original = buffer_path.read_bytes()
    with open(buffer_path, "r+b") as f:  # scribble over the middle of the file, as a dying SD card does
        f.seek(4096)
        f.write(b"\xde\xad\xbe\xef" * 2048)

    buffer, report = Buffer.open(buffer_path, now=T0 + 60, boot_id="b")
    assert report.corrupt_moved_to is not None and report.corrupt_moved_to.exists()
    assert report.corrupt_moved_to.read_bytes()[:4096] == original[:4096]
    assert report.epoch == 2 and buffer.counts()["total"] == 0  # never epoch 1 again: the data center holds it
    [event] = list(buffer.events())
    assert event["kind"] == "buffer.corrupt" and str(report.corrupt_moved_to) in event["data"]
    buffer.close()


def test_a_file_that_is_not_sqlite_is_moved_aside(buffer_path):
    buffer_path.parent.mkdir(parents=True)
    buffer_path.write_bytes(b"this is not a database" * 100)
    buffer, report = Buffer.open(buffer_path, now=T0, boot_id="b")
    assert report.corrupt_moved_to.read_bytes().startswith(b"this is not a database")
    assert "not a database" in report.corrupt_reason
    buffer.close()


def test_an_epoch_is_never_reused_when_the_file_and_its_moved_aside_copy_are_both_unreadable(buffer_path):
    for start in range(3):
        buffer, _ = Buffer.open(buffer_path, now=T0 + start, boot_id="b")
        buffer.close()
    buffer_path.write_bytes(b"\0" * 8192)  # the whole file zeroed: nothing in it says which epochs were used
    buffer, report = Buffer.open(buffer_path, now=T0 + 60, boot_id="b")
    assert report.corrupt_moved_to is not None
    assert report.epoch == 4  # from the sidecar beside the file
    buffer.close()


def test_a_rolled_back_file_continues_above_the_epochs_it_had_used(buffer_path, tmp_path):
    """A deleted write-ahead log and kill -9, or a restored backup: the file forgets its last epochs."""
    buffer, _ = Buffer.open(buffer_path, now=T0, boot_id="b")
    buffer.close()  # epoch 1, checkpointed into the file
    backup = buffer_path.read_bytes()
    for start in (1, 2):
        buffer, _ = Buffer.open(buffer_path, now=T0 + start, boot_id="b")
        buffer.append_readings([reading(0)])
        buffer.close()
    for suffix in ("", "-wal", "-shm"):
        buffer_path.with_name(buffer_path.name + suffix).unlink(missing_ok=True)
    buffer_path.write_bytes(backup)  # the file as it was after epoch 1
    buffer, report = Buffer.open(buffer_path, now=T0 + 60, boot_id="b")
    assert (report.epoch, report.rolled_back_to) == (4, 1)
    assert [e["epoch"] for e in buffer.epochs()] == [1, 4]
    [event] = [e for e in buffer.events() if e["kind"] == "buffer.rolled_back"]
    assert event["epoch"] == 4 and '"epoch_used": 3' in event["data"]
    buffer.close()


def test_the_epoch_floor_survives_a_garbled_sidecar(buffer_path, caplog):
    buffer, _ = Buffer.open(buffer_path, now=T0, boot_id="b")
    buffer.close()
    buffer.floor_path.write_text("garbage\n")
    buffer, report = Buffer.open(buffer_path, now=T0 + 1, boot_id="b")
    assert report.epoch == 2 and "is not an epoch" in caplog.text
    assert buffer.floor_path.read_text() == "2\n"
    buffer.close()


def test_an_epoch_the_data_center_holds_moves_new_rows_above_it(fresh_buffer):
    assert fresh_buffer.raise_epoch_floor(1, T0, "held") is None  # its own epoch: nothing to do
    fresh_buffer.append_readings([reading(0)])
    assert fresh_buffer.raise_epoch_floor(57, T0 + 1, "the data center holds epoch 57") == 58
    assert fresh_buffer.append_readings([reading(1)]) == (1, 1)
    assert [(r["epoch"], r["seq"]) for r in fresh_buffer.pending()] == [(1, 1), (58, 1)]
    [moved] = [e for e in fresh_buffer.events() if e["kind"] == "buffer.epoch"]
    assert (moved["epoch"], '"previous": 1' in moved["data"]) == (58, True)
    assert fresh_buffer.floor_path.read_text() == "58\n"


def test_rows_the_data_center_holds_with_other_content_get_new_keys(fresh_buffer):
    fresh_buffer.append_readings([reading(i) for i in range(6)])  # epoch 1, seq 1..6
    fresh_buffer.ack("readings", 1, 1, 2)
    mapping = fresh_buffer.rekey("readings", 1, 1, 4, T0 + 5)  # 1..2 are ours (acked); 3..4 collide
    assert mapping == {"stream": "readings", "count": 2, "from": {"epoch": 1, "ranges": [[3, 4]]},
                       "to": {"epoch": 2, "first_seq": 1, "last_seq": 2}}
    pending = [(r["epoch"], r["seq"], r["value"]) for r in fresh_buffer.pending()]
    assert pending == [(1, 5, 24.0), (1, 6, 25.0), (2, 1, 22.0), (2, 2, 23.0)]  # same readings, new keys
    assert fresh_buffer.append_readings([reading(9)]) == (3, 3)  # new rows continue in the new epoch
    assert fresh_buffer.rekey("readings", 1, 3, 4, T0 + 6) is None  # a repeated notice finds nothing to move
    kinds = [e["kind"] for e in fresh_buffer.events()]
    assert kinds == ["buffer.epoch", "buffer.rekey"]


def test_unsynced_readings_are_retimed_from_monotonic_time_once_the_clock_syncs(fresh_buffer):
    wrong = T0 - 86400 * 30  # fake-hwclock's stale time
    fresh_buffer.append_readings([
        NewReading(ts=wrong, sensor="air", quantity="temperature", value=20.0, unit="°C",
                   clock=CLOCK_UNSYNCED, boot_id="boot-1", mono=100.0),
        NewReading(ts=wrong, sensor="air", quantity="temperature", value=20.0, unit="°C",
                   clock=CLOCK_UNSYNCED, boot_id="other-boot", mono=100.0),
    ])
    assert fresh_buffer.correct_clock("boot-1", boot_wall_time=T0) == 1
    rows = fresh_buffer.pending()
    assert (rows[0]["ts"], rows[0]["clock"]) == (T0 + 100.0, CLOCK_CORRECTED)
    assert (rows[1]["ts"], rows[1]["clock"]) == (wrong, CLOCK_UNSYNCED)  # another boot's monotonic time is useless


def test_threads_append_concurrently_without_losing_or_reusing_seqs(fresh_buffer):
    def work():
        for i in range(20):
            fresh_buffer.append_readings([reading(i), reading(i)])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [r["seq"] for r in fresh_buffer.pending(limit=1000)]
    assert seqs == list(range(1, 161))


def test_reader_refuses_a_missing_buffer_with_a_clear_error(tmp_path):
    from edge.errors import BufferUnavailable

    with pytest.raises(BufferUnavailable, match="no buffer at .*has the gateway run yet"):
        Buffer.reader(tmp_path / "none.db")


def test_over_its_budget_the_buffer_drops_acknowledged_rows_first(fresh_buffer):
    fresh_buffer.append_readings([reading(i) for i in range(20_000)])
    fresh_buffer.ack("readings", fresh_buffer.epoch, 1, 15_000)
    budget = fresh_buffer.used_bytes() // 2
    assert fresh_buffer.enforce_budget(budget, now=T0) == []  # acknowledged rows were enough
    assert fresh_buffer.used_bytes() <= budget
    assert fresh_buffer.counts()["pending"] == 5_000
    assert [e for e in fresh_buffer.events() if e["kind"] == "buffer.gap"] == []


def test_past_the_acknowledged_rows_the_oldest_pending_go_and_a_gap_names_them(fresh_buffer):
    import json

    fresh_buffer.append_readings([reading(i) for i in range(20_000)])
    for i in range(50):
        fresh_buffer.append_event("actuator.change", "fan", {"i": i}, ts=T0)
    budget = fresh_buffer.used_bytes() // 3
    gaps = fresh_buffer.enforce_budget(budget, now=T0 + 5)
    assert fresh_buffer.used_bytes() <= budget
    remaining = [r["seq"] for r in fresh_buffer.pending(limit=100_000)]
    assert gaps[0]["first_seq"] == 1 and remaining[0] == gaps[-1]["last_seq"] + 1 and remaining[-1] == 20_000
    assert all(b["first_seq"] == a["last_seq"] + 1 for a, b in zip(gaps, gaps[1:]))  # oldest first, no holes
    assert sum(g["count"] for g in gaps) == 20_000 - len(remaining)
    assert (gaps[0]["first_ts"], gaps[0]["epoch"]) == (T0, fresh_buffer.epoch)
    recorded = [json.loads(e["data"]) for e in fresh_buffer.events() if e["kind"] == "buffer.gap"]
    assert recorded == gaps
    assert len([e for e in fresh_buffer.events() if e["kind"] == "actuator.change"]) == 50  # events are kept


def test_sampling_rounds_go_on_between_the_chunks_of_the_disk_budget(fresh_buffer, monkeypatch):
    """The budget releases the write lock between chunks: at each pause between two chunks (acknowledged rows, then
    pending ones) a round of readings appended from another thread goes through before the next chunk starts."""
    fresh_buffer.append_readings([reading(i) for i in range(6_000)])
    fresh_buffer.ack("readings", fresh_buffer.epoch, 1, 1_000)
    budget = fresh_buffer.used_bytes() // 4
    rounds = {"asked": 0, "done": 0}
    asked, done, stop = threading.Event(), threading.Event(), threading.Event()

    def sampling():  # a sampling group's worker: one round each time it is asked
        while asked.wait() and not stop.is_set():
            asked.clear()
            fresh_buffer.append_readings([reading(10_000 + rounds["done"], sensor="soil")])
            rounds["done"] += 1
            done.set()

    worker = threading.Thread(target=sampling, daemon=True)
    worker.start()
    excess_rows = fresh_buffer._excess_rows

    def between_chunks(target, most):  # called before each chunk: ask for a round and wait for it (generous bound)
        if rounds["asked"] == rounds["done"]:
            done.clear()
            rounds["asked"] += 1
            asked.set()
            done.wait(10)
        return excess_rows(target, most)

    monkeypatch.setattr(fresh_buffer, "_excess_rows", between_chunks)
    try:
        gaps = fresh_buffer.enforce_budget(budget, now=T0 + 5, chunk=200)
    finally:
        stop.set()
        asked.set()
        worker.join(10)
    assert rounds["asked"] > 10 and rounds["done"] == rounds["asked"]  # many chunks, a round between every two
    assert gaps and fresh_buffer.used_bytes() <= budget
    soil = [r for r in fresh_buffer.pending(limit=100_000) if r["sensor"] == "soil"]
    assert len(soil) == rounds["done"]  # the rounds' readings are newer than anything the budget dropped


def test_a_reader_leaves_a_file_the_daemon_has_just_created_as_it_is(tmp_path):
    """A reader never writes: on a file the daemon has created but not yet set to WAL, a reader that set the journal
    mode raced the daemon for the file's locks (see the next test)."""
    from edge.errors import BufferUnavailable

    path = tmp_path / "buffer.db"
    sqlite3.connect(path).close()  # what the daemon's first connection leaves for an instant: an empty file
    with pytest.raises(BufferUnavailable, match="no such table: epochs"):
        Buffer.reader(path)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    finally:
        conn.close()
    assert path.stat().st_size == 0 and not Path(f"{path}-wal").exists()


def _poll_readers(path: str, polls, stop) -> None:
    from edge.errors import BufferUnavailable

    while not stop.is_set():
        try:
            Buffer.reader(path).close()
        except BufferUnavailable:
            pass  # not created yet, or no tables yet
        with polls.get_lock():
            polls.value += 1


def test_a_fresh_buffer_starts_while_other_processes_poll_it(tmp_path):
    """`edge status`, the page and a technician's queries read the buffer while a daemon starts on a fresh file
    (the first start after an install). Their readers once made 15 starts in 100 fail with "database is locked",
    and the daemon then ran without an epoch."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    path = tmp_path / "buffer.db"
    polls, stop = context.Value("l", 0), context.Event()
    readers = [context.Process(target=_poll_readers, args=(str(path), polls, stop)) for _ in range(2)]
    for reader in readers:
        reader.start()
    failed = []
    try:
        for _ in range(25):
            seen = polls.value
            wait_until(lambda: polls.value > seen + 4, what="the readers to poll")
            buffer, report = Buffer.open(path, now=T0, boot_id="b")
            buffer.close()
            if report.epoch is None:
                failed.append(report.not_started)
            # The next start is on a fresh file again. A reader that closes last removes the -wal and -shm files
            # itself, so one listed here may be gone by the time it is unlinked.
            for leftover in tmp_path.glob("buffer.db*"):
                leftover.unlink(missing_ok=True)
    finally:
        stop.set()
        for reader in readers:
            reader.join(30)
    assert failed == []


def test_a_write_during_a_late_start_waits_for_it_and_what_waited_is_stored_first(tmp_path, monkeypatch):
    """A start finished late (:meth:`Buffer.resume`, after a full disk or a lock) holds other threads' writes until
    its epoch is on disk AND reported, so the first write after it stores what waited in memory (the daemon's start
    event, gap records) ahead of anything newer. A switch recorded in between once took the epoch's first event."""
    from edge.gateway.buffer import BufferWriteError

    real_start, writers = Buffer._start, []

    def start(self, now):
        if not writers:
            writers.append(None)
            raise BufferWriteError("writes refused (injected)")
        started = real_start(self, now)
        # the epoch is on disk and not yet reported: the control thread records a switch right now
        writer = threading.Thread(target=self.append_event, args=("actuator.switched", "pump"), kwargs={"ts": now})
        writer.start()
        writer.join(1.0)  # it waits for the start (the old code let it write at once)
        writers.append(writer)
        return started

    monkeypatch.setattr(Buffer, "_start", start)
    buffer, report = Buffer.open(tmp_path / "buffer.db", now=T0, boot_id="b")
    try:
        assert report.epoch is None
        assert buffer.append_event("daemon.start", "daemon", ts=T0) is None  # waits in memory
        assert buffer.resume(T0 + 5).epoch == 1
        writers[-1].join(10)
        with sqlite3.connect(tmp_path / "buffer.db") as conn:
            kinds = [kind for (kind,) in conn.execute("SELECT kind FROM events ORDER BY epoch, seq")]
    finally:
        buffer.close()
    assert kinds == ["daemon.start", "actuator.switched"]


def test_a_long_reader_holds_up_neither_the_disk_budget_nor_the_rounds_after_it(fresh_buffer, buffer_path):
    """Emptying the write-ahead log waits for readers while holding SQLite's write lock: the budget waits for a long
    reader (an export in progress) only briefly, leaves the log for its next run, and rounds go on."""
    fresh_buffer.append_readings([reading(i) for i in range(6_000)])
    fresh_buffer.ack("readings", fresh_buffer.epoch, 1, 6_000)
    export = sqlite3.connect(buffer_path, isolation_level=None, check_same_thread=False)
    export.execute("BEGIN")
    export.execute("SELECT COUNT(*) FROM readings").fetchone()  # holds its snapshot until it commits
    finished = threading.Event()

    def budget():
        fresh_buffer.enforce_budget(fresh_buffer.used_bytes() // 2, now=T0 + 5)
        finished.set()

    worker = threading.Thread(target=budget, daemon=True)
    worker.start()
    try:
        assert finished.wait(10), "the disk budget waited for the reader (SQLite's busy timeout is 30 s)"
        fresh_buffer.append_readings([reading(7_000)])
    finally:
        export.execute("COMMIT")
        export.close()
        worker.join(40)
    assert fresh_buffer.counts()["pending"] == 1


# ------------------------------------------------------------------------------- a backlog's usual batch as columns


def garble(path, sql: str) -> None:
    """Change the file behind the buffer's back, as a failing SD card does."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(sql)
    finally:
        conn.close()


def test_good_pending_readings_come_as_columns_within_the_bounds_asked(fresh_buffer):
    fresh_buffer.append_readings([reading(i, "air" if i % 2 else "soil") for i in range(10)])
    epoch = fresh_buffer.epoch
    batch = fresh_buffer.good_readings((epoch, 0), 100)
    assert batch.epoch == epoch and batch.seqs == list(range(1, 11))
    assert batch.times == [T0 + i for i in range(10)] and batch.values == [20.0 + i for i in range(10)]
    assert batch.sensors == ["soil", "air"] * 5
    assert batch.quantities == ["temperature"] * 10 and batch.units == ["°C"] * 10
    assert fresh_buffer.good_readings((epoch, 3), 4).seqs == [4, 5, 6, 7]  # after a key, at most a limit
    assert fresh_buffer.good_readings((epoch, 3), 100, until=(epoch, 5)).seqs == [4, 5]
    assert fresh_buffer.good_readings((epoch, 3), 100, until=(epoch - 1, 5)) is None
    fresh_buffer.ack("readings", epoch, 4, 8)
    assert fresh_buffer.good_readings((epoch, 0), 100).seqs == [1, 2, 3, 9, 10]  # only what is pending
    assert fresh_buffer.good_readings((epoch, 10), 100) is None  # none left
    assert fresh_buffer.good_readings((epoch + 1, 0), 100) is None  # another epoch: the row-by-row read moves on


@pytest.mark.parametrize("change", [
    "quality = 'error', value = NULL, reason = 'timeout'",
    "quality = 'implausible', reason = 'too hot'",
    "clock = 0, boot_id = 'boot-1', mono = 12.5",
    "unit = CAST(X'C328' AS TEXT)",  # invalid UTF-8
    "value = 9e999",  # infinity
    "value = 'warm'",
    "ts = 'yesterday'",
    "sensor = X'616972'",  # a blob
    "quantity = zeroblob(2)",
    "seq = CAST(X'FF07' AS TEXT)",  # even the key
])
def test_a_row_that_is_not_a_good_sound_reading_sends_its_batch_the_row_by_row_way(fresh_buffer, change):
    """Anything unusual among the rows (an error or an unsynced reading, a garbled cell) answers None: the uplink
    then reads them with pending_readings, which says what is wrong with the garbled ones."""
    fresh_buffer.append_readings([reading(i) for i in range(10)])
    epoch = fresh_buffer.epoch
    garble(fresh_buffer.path, f"UPDATE readings SET {change} WHERE seq = 6")
    assert fresh_buffer.good_readings((epoch, 0), 100) is None
    assert fresh_buffer.good_readings((epoch, 0), 5).seqs == [1, 2, 3, 4, 5]  # the rows before it still go
    if not change.startswith("seq"):  # a key garbled to text sorts after every number
        assert fresh_buffer.good_readings((epoch, 6), 100).seqs == [7, 8, 9, 10]


def test_readings_held_for_the_commit_window_go_the_row_by_row_way(buffer_path):
    buffer, _ = Buffer.open(buffer_path, now=T0, boot_id="b", commit_every=60)
    try:
        buffer.append_readings([reading(i) for i in range(5)])
        buffer.commit()
        buffer.append_readings([reading(i) for i in range(5, 8)])  # held: not in the file yet
        assert buffer.good_readings((buffer.epoch, 0), 100).seqs == [1, 2, 3, 4, 5]  # the file's rows
        assert buffer.good_readings((buffer.epoch, 5), 100) is None
        assert [p.seq for p in buffer.pending_readings(after=(buffer.epoch, 5))] == [6, 7, 8]
    finally:
        buffer.close()
