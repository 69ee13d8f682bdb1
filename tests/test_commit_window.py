"""The buffer's commit window (``buffer.commit_every``): rounds held in memory and committed together, pending for the
uplink meanwhile, and what an unclean end cost recorded at the next start (``buffer.window_lost``)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import SMALL_GATEWAY, wait_until
from edge.contract.events import BufferWindowLost
from edge.gateway.buffer import MAX_HELD, Buffer, NewReading
from edge.gateway.clock import FakeClock

T0 = 1_752_562_800.0


def reading(i: int, sensor: str = "air") -> NewReading:
    return NewReading(ts=T0 + i, sensor=sensor, quantity="temperature", value=20.0 + i, unit="°C")


def on_disk(path) -> list[tuple[int, int, int]]:
    """(epoch, seq, acked) of every reading another process would read from the file."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT epoch, seq, acked FROM readings ORDER BY epoch, seq").fetchall()


@pytest.fixture
def windowed(tmp_path):
    clock = FakeClock()
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=T0, boot_id="b", commit_every=60)
    buffer.monotonic = clock.monotonic
    yield buffer, clock
    buffer.close()


def test_rounds_are_held_for_the_window_then_committed_together(windowed, tmp_path):
    buffer, clock = windowed
    commits = []
    buffer._db.conn.set_trace_callback(lambda sql: commits.append(sql) if sql.startswith(("COMMIT", "RELEASE"))
                                       else None)
    for i in range(6):  # six rounds, ten seconds apart: all within one window
        assert buffer.append_readings([reading(2 * i), reading(2 * i + 1, "soil")]) == (2 * i + 1, 2 * i + 2)
        clock.advance(10)
    assert on_disk(tmp_path / "buffer.db") == []
    assert commits == []
    assert buffer.held() == 12
    assert buffer.counts()["pending"] == 12

    buffer.append_readings([reading(12)])  # the oldest is 60 s old: the whole window goes in one transaction
    assert [seq for _, seq, _ in on_disk(tmp_path / "buffer.db")] == list(range(1, 14))
    assert len(commits) == 1
    assert buffer.held() == 0
    with sqlite3.connect(tmp_path / "buffer.db") as conn:  # the counter is on disk with the rows
        assert conn.execute("SELECT last_seq FROM counters WHERE stream = 'readings'").fetchone() == (13,)


def test_the_window_is_kept_without_a_round_to_commit_it(windowed, tmp_path):
    buffer, clock = windowed
    buffer.append_readings([reading(0)])
    clock.advance(59)
    assert buffer.commit_due() == 0
    clock.advance(1)
    assert buffer.commit_due() == 1
    assert len(on_disk(tmp_path / "buffer.db")) == 1


def test_held_readings_are_pending_for_the_uplink_and_an_ack_before_the_commit_writes_them_acked_once(
        windowed, tmp_path):
    buffer, clock = windowed
    buffer.append_readings([reading(i) for i in range(5)])
    buffer.commit()
    buffer.append_readings([reading(i) for i in range(5, 10)])  # seqs 6..10 held
    pending = buffer.pending_readings(limit=100)
    assert [(p.epoch, p.seq) for p in pending] == [(1, s) for s in range(1, 11)]
    assert pending[-1].reading.value == 29.0
    assert [(p.epoch, p.seq) for p in buffer.pending_readings(limit=3, after=(1, 4))] == [(1, 5), (1, 6), (1, 7)]
    assert [p.seq for p in buffer.pending_readings_range(1, 4, 7)] == [4, 5, 6, 7]
    assert buffer.last_pending_key() == (1, 10)

    assert buffer.ack("readings", 1, 1, 8) == 8  # 1..5 on disk, 6..8 held
    assert [p.seq for p in buffer.pending_readings(limit=100)] == [9, 10]
    assert buffer.counts() == {"total": 10, "pending": 2, "acknowledged": 8, "oldest_pending_ts": T0 + 8}
    updates = []
    buffer._db.conn.set_trace_callback(lambda sql: updates.append(sql) if sql.startswith("UPDATE readings")
                                       else None)
    assert buffer.ack("readings", 1, 9, 9) == 1  # held only: nothing on disk to change
    assert updates == []
    clock.advance(60)
    buffer.commit_due()
    assert on_disk(tmp_path / "buffer.db") == [(1, s, int(s <= 9)) for s in range(1, 11)]


def test_seqs_given_to_held_readings_are_never_given_again(windowed):
    buffer, clock = windowed
    assert buffer.append_readings([reading(0), reading(1)]) == (1, 2)  # held
    buffer.append_event("test.event", "test", ts=T0)  # another write meanwhile commits without them
    gap_first = buffer._allocate  # the gap records of a full disk take readings seqs too
    with buffer.transaction():
        first = gap_first(buffer._db, "readings", 3)
    assert first == 3  # after the held ones, which that transaction wrote first
    assert buffer.append_readings([reading(2)]) == (6, 6)


def test_a_refused_commit_counts_the_held_readings_for_their_gap_record(windowed, monkeypatch):
    from edge.errors import BufferFull

    buffer, clock = windowed
    buffer.append_readings([reading(0), reading(1, "soil")])

    def full(_db):
        raise BufferFull("no room (test)")

    monkeypatch.setattr(buffer, "_write_held", full)
    with pytest.raises(BufferFull):
        buffer.commit()
    assert buffer.held() == 0
    assert buffer.waiting()["unstored_readings"] == 2


def test_at_most_max_held_readings_wait(windowed, tmp_path):
    buffer, _ = windowed
    buffer.append_readings([reading(i) for i in range(MAX_HELD - 1)])
    assert on_disk(tmp_path / "buffer.db") == []
    buffer.append_readings([reading(MAX_HELD)])
    assert len(on_disk(tmp_path / "buffer.db")) == MAX_HELD


def test_a_clean_stop_commits_the_window_and_records_no_loss(tmp_path):
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=T0, boot_id="b", commit_every=60)
    buffer.append_readings([reading(0), reading(1)])
    buffer.mark_clean_stop(T0 + 5)
    buffer.close()
    assert len(on_disk(tmp_path / "buffer.db")) == 2
    again, report = Buffer.open(tmp_path / "buffer.db", now=T0 + 10, boot_id="b", commit_every=60)
    assert report.previous_epoch_clean is True
    assert not [e for e in again.events() if e["kind"] == BufferWindowLost.KIND]
    again.close()


def test_an_unclean_end_records_what_the_window_may_have_lost(tmp_path):
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=T0, boot_id="b", commit_every=30)
    buffer.append_readings([reading(0), reading(1)])
    buffer.commit()
    buffer.append_readings([reading(2), reading(3)])  # held: lost with the process
    buffer._held.clear()  # what a power cut does to memory (close() would commit them)
    buffer.close()

    again, report = Buffer.open(tmp_path / "buffer.db", now=T0 + 100, boot_id="b2")
    assert report.previous_epoch_clean is False
    lost = [json.loads(e["data"]) for e in again.events() if e["kind"] == BufferWindowLost.KIND]
    assert lost == [{"epoch": 1, "after_seq": 2, "after_ts": T0 + 1, "window": 30.0}]
    again.close()
    again, _ = Buffer.open(tmp_path / "buffer.db", now=T0 + 200, boot_id="b3")  # no window in epoch 2: none
    assert len([e for e in again.events() if e["kind"] == BufferWindowLost.KIND]) == 1
    again.close()


WINDOW = 6


def test_kill_9_loses_at_most_the_window_and_the_next_start_records_it(tmp_path, start_daemon):
    """A real `edge run` with a 6 s window, killed with SIGKILL: what is on disk ends at most the window (and the
    window's 5 s check, and a round) before the kill, and the next start records the loss."""
    buffer_path = tmp_path / "buffer.db"
    config = tmp_path / "gateway.yaml"
    config.write_text(SMALL_GATEWAY.format(buffer=buffer_path, socket=tmp_path / "control.sock").replace(
        f"  path: {buffer_path}\n", f"  path: {buffer_path}\n  commit_every: {WINDOW}s\n"))
    first = start_daemon(config)

    def readings():
        try:
            with sqlite3.connect(buffer_path) as conn:
                return conn.execute("SELECT MAX(seq), MAX(ts) FROM readings WHERE epoch = 1").fetchone()
        except sqlite3.OperationalError:
            return None

    wait_until(lambda: (readings() or (None,))[0], timeout=60, what="the first window committed")
    committed_once = readings()[0]
    wait_until(lambda: readings()[0] > committed_once, timeout=60, what="a second window committed")
    time.sleep(1.5)  # a round or two held
    first.proc.kill()
    killed = time.time()
    first.proc.communicate()
    last_seq, last_ts = readings()
    assert killed - last_ts <= WINDOW + 5 + 2 + 1  # the window, its 5 s check, a 2 s round, and slack

    second = start_daemon(config)
    wait_until(lambda: any(json.loads(e)["epoch"] == 1 for (e,) in sqlite3.connect(buffer_path).execute(
        "SELECT data FROM events WHERE kind = 'buffer.window_lost'")), timeout=60, what="the loss recorded")
    assert second.stop()[0] == 0
    with sqlite3.connect(buffer_path) as conn:
        (data,) = conn.execute("SELECT data FROM events WHERE kind = 'buffer.window_lost'").fetchone()
        assert conn.execute("SELECT COUNT(*) FROM readings WHERE epoch = 2").fetchone()[0] > 0
    assert json.loads(data) == {"epoch": 1, "after_seq": last_seq, "after_ts": last_ts, "window": float(WINDOW)}


def test_edge_status_and_readings_beside_the_daemon_show_the_readings_its_window_holds(tmp_path, start_daemon):
    """With an hour's window nothing reaches the file for an hour; `edge status` (and the greenhouse page, which reads
    the same report) and `edge readings` ask the daemon for what it holds, so a farmer never sees «no data» for a
    sensor that reads, and a newcomer's first `edge readings` is not empty."""
    buffer_path = tmp_path / "buffer.db"
    config = tmp_path / "gateway.yaml"
    config.write_text(SMALL_GATEWAY.format(buffer=buffer_path, socket=tmp_path / "control.sock").replace(
        f"  path: {buffer_path}\n", f"  path: {buffer_path}\n  commit_every: 1h\n"))
    daemon = start_daemon(config)

    def status() -> dict:
        result = subprocess.run([sys.executable, "-m", "edge", "status", "-c", str(config), "--json"],
                                capture_output=True, text=True, timeout=60)
        return json.loads(result.stdout) if result.returncode == 0 else {}

    def fresh() -> dict:
        report = status()
        air = report.get("sensors", {}).get("air", {})
        return report if report.get("daemon") == "running" and air.get("quantities") else {}

    report = wait_until(fresh, timeout=60, what="edge status to show the air sensor's held readings")
    assert report["sensors"]["air"]["age_s"] < 10
    assert set(report["sensors"]["air"]["quantities"]) == {"temperature", "humidity"}
    with sqlite3.connect(buffer_path) as conn:  # held, not in the file: only the daemon could tell
        assert conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 0
    listed = subprocess.run([sys.executable, "-m", "edge", "readings", "-c", str(config), "--format", "json"],
                            capture_output=True, text=True, timeout=60)
    rows = json.loads(listed.stdout)
    assert {r["quantity"] for r in rows if r["sensor"] == "air"} == {"temperature", "humidity"}
    assert len({(r["epoch"], r["seq"]) for r in rows}) == len(rows)  # each once
    assert daemon.stop()[0] == 0
    after = subprocess.run([sys.executable, "-m", "edge", "readings", "-c", str(config), "--format", "json"],
                           capture_output=True, text=True, timeout=60)
    committed = {(r["epoch"], r["seq"]) for r in json.loads(after.stdout)}  # the clean stop committed the window
    assert {(r["epoch"], r["seq"]) for r in rows} <= committed
