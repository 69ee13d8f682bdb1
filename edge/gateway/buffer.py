"""The local SQLite buffer: the gateway's outbox and its memory across restarts and power cuts.

Every reading gets a key ``(epoch, seq)``. ``epoch`` grows at every daemon start and is committed (fsynced, with
``synchronous=FULL``) before the first reading, so a power cut that rolls back the last commits can never make a new
reading reuse a key the data center already holds. ``seq`` is allocated per stream (``readings``, ``events``) and
epoch inside the transaction that stores the rows, from a counter table, so deleting acknowledged rows never frees a
``seq`` for reuse.

The epoch's floor does not live only in the file it protects: a sidecar file ``<buffer>.epoch`` (written and
fsynced before an epoch is used) and the highest epoch still readable in a file moved aside as corrupt both raise it,
so a corrupt file, a deleted write-ahead log or a restored backup cannot bring an old epoch back. What even they
cannot survive (a re-imaged card) the data center catches: its acks carry the highest epoch it holds for the gateway
(:meth:`Buffer.raise_epoch_floor` moves to a new epoch above it) and name keys it already holds with other content
(:meth:`Buffer.rekey` sends those rows again under a new epoch).

Rows leave the pending set only through :meth:`Buffer.ack` (the data center's acknowledgement, after its commit), and
leave the file only through :meth:`Buffer.prune` once acknowledged and older than the retention.

Each thread gets its own connection (WAL mode: readers never block the writer); writes in this process are
serialised by a lock so they never wait on SQLite's busy handler.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from edge import __version__
from edge.errors import BufferUnavailable
from edge.protocol import seq_ranges

log = logging.getLogger(__name__)

STREAMS = ("readings", "events")

#: Clock state of a reading's timestamp.
CLOCK_UNSYNCED, CLOCK_SYNCED, CLOCK_CORRECTED = 0, 1, 2

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema",
        """
        CREATE TABLE epochs (
            epoch      INTEGER PRIMARY KEY,
            started_ts REAL NOT NULL,
            boot_id    TEXT NOT NULL,
            version    TEXT NOT NULL,
            stopped_ts REAL              -- NULL while running, or after an unclean stop
        );
        CREATE TABLE counters (
            stream   TEXT NOT NULL,
            epoch    INTEGER NOT NULL,
            last_seq INTEGER NOT NULL,
            PRIMARY KEY (stream, epoch)
        ) WITHOUT ROWID;
        CREATE TABLE readings (
            epoch    INTEGER NOT NULL,
            seq      INTEGER NOT NULL,
            ts       REAL NOT NULL,      -- UTC seconds since 1970, taken at the sensor
            sensor   TEXT NOT NULL,
            quantity TEXT NOT NULL,
            value    REAL,               -- NULL when quality is 'error'
            unit     TEXT NOT NULL,
            quality  TEXT NOT NULL,      -- good | error | implausible
            reason   TEXT,
            clock    INTEGER NOT NULL,   -- 0 unsynced, 1 synced, 2 corrected after sync
            boot_id  TEXT,               -- set while the clock is unsynced, to correct ts later
            mono     REAL,
            acked    INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (epoch, seq)
        ) WITHOUT ROWID;
        CREATE INDEX readings_pending ON readings (epoch, seq) WHERE acked = 0;
        CREATE INDEX readings_sensor_ts ON readings (sensor, ts);
        CREATE TABLE events (
            epoch  INTEGER NOT NULL,
            seq    INTEGER NOT NULL,
            ts     REAL NOT NULL,
            kind   TEXT NOT NULL,        -- e.g. daemon.start, buffer.corrupt, actuator.change
            source TEXT NOT NULL,        -- what raised it: a sensor or actuator id, 'daemon', 'buffer'
            data   TEXT NOT NULL,        -- JSON object
            acked  INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (epoch, seq)
        ) WITHOUT ROWID;
        CREATE INDEX events_pending ON events (epoch, seq) WHERE acked = 0;
        """,
    ),
]


@dataclass(frozen=True, slots=True)
class NewReading:
    """A reading as the sampler hands it over: the buffer adds ``epoch`` and ``seq``."""

    ts: float
    sensor: str
    quantity: str
    value: float | None
    unit: str
    quality: str = "good"
    reason: str | None = None
    clock: int = CLOCK_SYNCED
    boot_id: str | None = None
    mono: float | None = None


@dataclass(frozen=True)
class OpenReport:
    """What happened when the buffer was opened: for the daemon's log and events."""

    epoch: int
    previous_epoch_clean: bool | None  # None on a fresh buffer
    corrupt_moved_to: Path | None = None
    corrupt_reason: str | None = None
    #: the file's last epoch when the sidecar says a later one was used (a rolled-back or restored file)
    rolled_back_to: int | None = None


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _last_epoch_in(path: Path) -> int:
    """The highest epoch a file moved aside as corrupt still shows, or 0 when nothing can be read from it."""
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT MAX(epoch) FROM epochs").fetchone()
        finally:
            conn.close()
    except (sqlite3.Error, ValueError):
        return 0
    return row[0] if row and isinstance(row[0], int) else 0


def _quick_check(path: Path) -> str | None:
    """``None`` if the file is healthy (or absent), else the reason it is not."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(path, timeout=30)
        try:
            rows = [row[0] for row in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if rows == ["ok"] else "; ".join(rows[:5])


class Buffer:
    """The SQLite outbox. Use :meth:`open` in the daemon; :meth:`reader` for the CLI beside a running daemon."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.epoch: int | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.RLock()  # re-entrant: a transaction may append an event
        self._owner_lock = None  # the open lock file while this process owns the buffer

    # ------------------------------------------------------------------------------------------ opening and closing

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, now: float, boot_id: str) -> tuple["Buffer", OpenReport]:
        """Check, migrate and start a new epoch. A corrupt file is moved aside (kept) and a fresh one started."""
        buffer = cls(path)
        buffer.path.parent.mkdir(parents=True, exist_ok=True)
        buffer._take_owner_lock()
        reason = _quick_check(buffer.path)
        moved_to = buffer._move_aside(now) if reason else None
        floor = 0
        if moved_to:
            log.error("buffer %s failed its integrity check (%s); moved to %s, starting a fresh buffer",
                      buffer.path, reason, moved_to)
            floor = _last_epoch_in(moved_to)
        buffer.migrate()
        in_file, used = buffer._last_epochs()
        previous_clean = buffer._start_epoch(now, boot_id, floor)
        if moved_to:
            buffer.append_event("buffer.corrupt", "buffer", {"moved_to": str(moved_to), "reason": reason}, ts=now)
        rolled_back = in_file if used > in_file and not moved_to else None
        if rolled_back is not None:
            log.error("buffer %s went back in time: its last epoch is %d but epoch %d was used (a deleted "
                      "write-ahead log, a restored backup?); rows of the lost epochs that had not reached the data "
                      "center are gone; continuing at epoch %d", buffer.path, in_file, used, buffer.epoch)
            buffer.append_event("buffer.rolled_back", "buffer", {"last_epoch_in_file": in_file, "epoch_used": used},
                                ts=now)
        return buffer, OpenReport(buffer.epoch, previous_clean, moved_to, reason, rolled_back)

    @classmethod
    def reader(cls, path: str | os.PathLike[str]) -> "Buffer":
        """Open an existing buffer for queries only (no epoch, no migration): safe while the daemon runs."""
        buffer = cls(path)
        if not buffer.path.exists():
            raise BufferUnavailable(f"no buffer at {buffer.path} (has the gateway run yet?)")
        try:
            buffer.epoch = buffer.current_epoch()
        except sqlite3.DatabaseError as exc:
            raise BufferUnavailable(f"cannot read buffer {buffer.path}: {exc}") from None
        return buffer

    @property
    def lock_path(self) -> Path:
        return Path(f"{self.path}.lock")

    def _take_owner_lock(self) -> None:
        """One daemon per buffer: a second ``edge run`` on the same file (say, beside systemd's) is refused."""
        handle = open(self.lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise BufferUnavailable(f"buffer {self.path} is in use by another edge process (pid {holder})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._owner_lock = handle

    def owned_by_a_running_daemon(self) -> bool:
        """True while some process holds the buffer's owner lock (the kernel drops it when that process dies)."""
        try:
            with open(self.lock_path) as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                fcntl.flock(handle, fcntl.LOCK_UN)
                return False
        except FileNotFoundError:
            return False

    def _move_aside(self, now: float) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{self.path}{suffix}")
            if part.exists():
                part.rename(Path(f"{target}{suffix}"))
        return target

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection (one per thread, as SQLite in WAL mode likes it)."""
        db = getattr(self._local, "db", None)
        if db is None:
            conn = _connect(self.path)
            with self._connections_lock:
                self._connections.append(conn)
            db = self._local.db = sqlite_utils.Database(conn)
        return db

    def migrate(self, component: str = "buffer",
                migrations: Sequence[tuple[int, str, str]] = MIGRATIONS) -> list[int]:
        """Apply a component's missing schema migrations, each in its own transaction; return the versions applied.

        Other parts of the gateway (alerts, control) keep their tables in this file under their own ``component``
        name, so one file holds the gateway's whole state and one backup saves it.
        """
        db = self.db
        applied = []
        with self._write_lock:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, "
                "name TEXT NOT NULL, applied_ts REAL NOT NULL, PRIMARY KEY (component, version))"
            )
            done = {row["version"] for row in
                    db.query("SELECT version FROM schema_migrations WHERE component = ?", (component,))}
            for version, name, sql in migrations:
                if version in done:
                    continue
                with db.atomic():
                    for statement in filter(str.strip, sql.split(";")):
                        db.execute(statement)
                    db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?, ?)",
                               (component, version, name, time.time()))
                applied.append(version)
        if applied:
            log.info("buffer %s: applied %s schema migrations %s", self.path, component, applied)
        return applied

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction on this thread's connection, serialised with every other write of this process."""
        db = self.db
        with self._write_lock, db.atomic():
            yield db

    @property
    def floor_path(self) -> Path:
        return Path(f"{self.path}.epoch")

    def _last_epochs(self) -> tuple[int, int]:
        """The last epoch this file records, and the last the sidecar says was used."""
        row = self.db.execute("SELECT MAX(epoch) FROM epochs").fetchone()
        return (row[0] or 0), self._read_floor()

    def _start_epoch(self, now: float, boot_id: str, floor: int = 0) -> bool | None:
        """Start the epoch after every one this gateway may have used: the file's last, the sidecar's, ``floor``."""
        with self.transaction() as db:
            last = db.execute("SELECT epoch, stopped_ts FROM epochs ORDER BY epoch DESC LIMIT 1").fetchone()
            self._begin_epoch(db, max((last[0] if last else 0), self._read_floor(), floor) + 1, now, boot_id)
        # synchronous=FULL: the epoch is on disk before the first reading of it is taken.
        return None if last is None else last[1] is not None

    def _begin_epoch(self, db: sqlite_utils.Database, epoch: int, now: float, boot_id: str) -> None:
        """Record ``epoch`` (sidecar first, then this file) and make it the one new rows get. In a transaction."""
        self._write_floor(epoch)
        db.execute("INSERT INTO epochs (epoch, started_ts, boot_id, version) VALUES (?, ?, ?, ?)",
                   (epoch, now, boot_id, __version__))
        for stream in STREAMS:
            db.execute("INSERT INTO counters VALUES (?, ?, 0)", (stream, epoch))
        self.epoch = epoch

    def _read_floor(self) -> int:
        try:
            text = self.floor_path.read_text().strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("buffer %s: cannot read the epoch floor %s (%s)", self.path, self.floor_path, exc)
            return 0
        if not text.isdigit():
            log.warning("buffer %s: ignoring the epoch floor %s: %r is not an epoch", self.path, self.floor_path,
                        text[:40])
            return 0
        return int(text)

    def _write_floor(self, epoch: int) -> None:
        """Replace the sidecar atomically and durably (temporary file, fsync, rename, fsync of the directory). A
        failure is logged, not fatal: the file's own epochs table and the data center's conflict check remain."""
        if epoch <= self._read_floor():
            return
        tmp = self.floor_path.with_name(self.floor_path.name + ".tmp")
        try:
            with open(tmp, "w") as handle:
                handle.write(f"{epoch}\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.floor_path)
            directory = os.open(self.floor_path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            log.error("buffer %s: cannot record epoch %d in %s (%s)", self.path, epoch, self.floor_path, exc)

    def raise_epoch_floor(self, held: int, now: float, reason: str) -> int | None:
        """The data center holds rows of this gateway up to epoch ``held``. Epochs only grow, so one above ours was
        used by an earlier life of this gateway whose buffer is lost, and ours may be in use too: start a new epoch
        above it, so that new rows never reuse a key. Returns the new epoch, or None when ours is not below it."""
        with self.transaction() as db:
            if self.epoch is not None and self.epoch >= held:
                return None
            return self._rotate(db, held, now, reason)

    def _rotate(self, db: sqlite_utils.Database, above: int, now: float, reason: str) -> int:
        previous = self.epoch
        boot_id = db.execute("SELECT boot_id FROM epochs WHERE epoch = ?", (previous,)).fetchone()
        self._begin_epoch(db, max(above, previous or 0, self._read_floor()) + 1, now, boot_id[0] if boot_id else "")
        self.append_event("buffer.epoch", "buffer", {"previous": previous, "epoch": self.epoch, "reason": reason},
                          ts=now)
        log.warning("buffer %s: moved from epoch %s to %d: %s", self.path, previous, self.epoch, reason)
        return self.epoch

    def rekey(self, stream: str, epoch: int, first: int, last: int, now: float) -> dict[str, Any] | None:
        """The data center already holds ``first..last`` of ``epoch`` with other content (a key this gateway used in
        an earlier life): give this gateway's unacknowledged rows of that range new keys in an epoch above ``epoch``,
        in one transaction, and record a ``buffer.rekey`` event mapping old keys to new. Returns that mapping, or
        None if no such rows are pending (already re-keyed, or never ours)."""
        _check_stream(stream)
        with self.transaction() as db:
            rows = db.execute(f"SELECT * FROM {stream} WHERE acked = 0 AND epoch = ? AND seq BETWEEN ? AND ? "
                              f"ORDER BY seq", (epoch, first, last)).fetchall()
            if not rows:
                return None
            if self.epoch <= epoch:
                self._rotate(db, epoch, now, f"the data center holds other {stream} under epoch {epoch}")
            columns = [d[0] for d in db.execute(f"SELECT * FROM {stream} LIMIT 0").description]
            at_epoch, at_seq = columns.index("epoch"), columns.index("seq")
            start = self._allocate(db, stream, len(rows))
            moved = []
            for i, row in enumerate(rows):
                row = list(row)
                row[at_epoch], row[at_seq] = self.epoch, start + i
                moved.append(row)
            db.execute(f"DELETE FROM {stream} WHERE acked = 0 AND epoch = ? AND seq BETWEEN ? AND ?",
                       (epoch, first, last))
            db.conn.executemany(f"INSERT INTO {stream} ({', '.join(columns)}) VALUES "
                                f"({', '.join('?' for _ in columns)})", moved)
            mapping = {"stream": stream, "count": len(rows),
                       "from": {"epoch": epoch, "ranges": seq_ranges([r[at_seq] for r in rows])},
                       "to": {"epoch": self.epoch, "first_seq": start, "last_seq": start + len(rows) - 1}}
            self.append_event("buffer.rekey", "buffer", mapping, ts=now)
        log.warning("buffer %s: the data center holds other %s under epoch %d seq %d..%d; %d pending rows sent again "
                    "as epoch %d seq %d..%d", self.path, stream, epoch, first, last, len(rows), self.epoch, start,
                    start + len(rows) - 1)
        return mapping

    def mark_clean_stop(self, now: float) -> None:
        with self._write_lock:
            self.db.execute("UPDATE epochs SET stopped_ts = ? WHERE epoch = ?", (now, self.epoch))

    def close_thread_connection(self) -> None:
        """Close the calling thread's connection (for threads that end before the buffer is closed)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            with self._connections_lock:
                self._connections.remove(db.conn)
            db.conn.close()
            self._local.db = None

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        if self._owner_lock is not None:
            self._owner_lock.close()  # releases the flock
            self._owner_lock = None

    # --------------------------------------------------------------------------------------------------- appending

    def _allocate(self, db: sqlite_utils.Database, stream: str, count: int) -> int:
        """Reserve ``count`` seqs in the open transaction; return the first."""
        row = db.execute(
            "UPDATE counters SET last_seq = last_seq + ? WHERE stream = ? AND epoch = ? RETURNING last_seq",
            (count, stream, self.epoch),
        ).fetchone()
        if row is None:
            raise BufferUnavailable(f"buffer {self.path} has no epoch started (use Buffer.open)")
        return row[0] - count + 1

    def append_readings(self, readings: Sequence[NewReading]) -> tuple[int, int] | None:
        """Store readings in one transaction; return the ``(first, last)`` seq given to them."""
        if not readings:
            return None
        with self.transaction() as db:
            first = self._allocate(db, "readings", len(readings))
            db.conn.executemany(
                "INSERT INTO readings (epoch, seq, ts, sensor, quantity, value, unit, quality, reason, clock, "
                "boot_id, mono) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (self.epoch, first + i, r.ts, r.sensor, r.quantity, r.value, r.unit, r.quality, r.reason,
                     r.clock, r.boot_id, r.mono)
                    for i, r in enumerate(readings)
                ],
            )
        return first, first + len(readings) - 1

    def append_event(self, kind: str, source: str, data: dict[str, Any] | None = None, *, ts: float) -> int:
        """Store one event (never dropped for space); return its seq."""
        with self.transaction() as db:
            seq = self._allocate(db, "events", 1)
            db.execute(
                "INSERT INTO events (epoch, seq, ts, kind, source, data) VALUES (?, ?, ?, ?, ?, ?)",
                (self.epoch, seq, ts, kind, source, json.dumps(data or {}, ensure_ascii=False, sort_keys=True)),
            )
        return seq

    def correct_clock(self, boot_id: str, boot_wall_time: float) -> int:
        """Once the clock syncs, re-time this boot's unsynced, unacknowledged readings from monotonic time.

        ``boot_wall_time`` is the true wall time at monotonic zero (``wall - monotonic`` read right after sync).
        """
        with self._write_lock:
            cursor = self.db.execute(
                "UPDATE readings SET ts = ? + mono, clock = ? "
                "WHERE clock = ? AND boot_id = ? AND acked = 0 AND mono IS NOT NULL",
                (boot_wall_time, CLOCK_CORRECTED, CLOCK_UNSYNCED, boot_id),
            )
        return cursor.rowcount

    # ------------------------------------------------------------------------------------- the sync transaction API

    def pending(self, stream: str = "readings", limit: int = 500,
                after: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """Unacknowledged rows, oldest ``(epoch, seq)`` first, optionally strictly after a key."""
        _check_stream(stream)
        epoch, seq = after or (0, 0)
        return list(self.db.query(
            f"SELECT * FROM {stream} WHERE acked = 0 AND (epoch, seq) > (?, ?) ORDER BY epoch, seq LIMIT ?",
            (epoch, seq, limit),
        ))

    def pending_range(self, stream: str, epoch: int, first: int, last: int) -> list[dict[str, Any]]:
        """Unacknowledged rows of ``first..last`` in ``epoch`` (to re-send a batch whose ack did not come)."""
        _check_stream(stream)
        return list(self.db.query(
            f"SELECT * FROM {stream} WHERE acked = 0 AND epoch = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (epoch, first, last),
        ))

    def ack(self, stream: str, epoch: int, first: int, last: int) -> int:
        """Mark ``first..last`` of ``epoch`` acknowledged (idempotent); return how many rows changed."""
        _check_stream(stream)
        with self._write_lock:
            cursor = self.db.execute(
                f"UPDATE {stream} SET acked = 1 WHERE epoch = ? AND seq BETWEEN ? AND ? AND acked = 0",
                (epoch, first, last),
            )
        return cursor.rowcount

    def prune(self, older_than: float) -> int:
        """Delete acknowledged rows (readings and events) older than ``older_than``; pending rows always stay."""
        with self._write_lock:
            deleted = 0
            for stream in STREAMS:
                deleted += self.db.execute(
                    f"DELETE FROM {stream} WHERE acked = 1 AND ts < ?", (older_than,)
                ).rowcount
        return deleted

    def write_problem(self, timeout: float = 2.0) -> str | None:
        """``None`` if a write transaction can start on the file now, else why not (for the systemd watchdog).

        ``BEGIN IMMEDIATE; ROLLBACK`` on a connection of its own: it takes SQLite's write lock and writes nothing, so
        it is cheap, and it fails on a file another process keeps locked, a file system remounted read-only after SD
        card errors, or a file that was deleted (``mode=rw`` never creates one)."""
        try:
            conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=rw", uri=True, timeout=timeout,
                                   isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return str(exc)
        return None

    # ------------------------------------------------------------------------------------------------ disk budget

    def used_bytes(self) -> int:
        """Bytes of the database file in use (free pages excluded) plus the write-ahead log."""
        db = self.db
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        used = (db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0])
        wal = Path(f"{self.path}-wal")
        return used * page_size + (wal.stat().st_size if wal.exists() else 0)

    def enforce_budget(self, max_bytes: int, now: float, chunk: int = 5000) -> list[dict[str, Any]]:
        """Keep the buffer within ``max_bytes``: drop acknowledged rows first, oldest first; then, only if that is
        not enough, the oldest unacknowledged readings, each dropped range recorded as a ``buffer.gap`` event so the
        data center learns exactly what is missing. Events are never dropped for space. Returns the gaps."""
        gaps: list[dict[str, Any]] = []
        target = int(max_bytes * 0.95)  # a little headroom, so the next round does not start over at once
        if self.used_bytes() <= max_bytes:
            return gaps
        with self._write_lock:
            while (excess := self._excess_rows(target, chunk)) > 0:
                deleted = self.db.execute(
                    "DELETE FROM readings WHERE (epoch, seq) IN "
                    "(SELECT epoch, seq FROM readings WHERE acked = 1 ORDER BY epoch, seq LIMIT ?)", (excess,)
                ).rowcount
                if deleted == 0:
                    break
            while (excess := self._excess_rows(target, chunk)) > 0:
                dropped = self._drop_oldest_pending(excess, now)
                if not dropped:
                    break
                gaps.extend(dropped)
        for gap in gaps:
            log.error("buffer over its budget of %d bytes: dropped unacknowledged readings %d..%d of epoch %d (%d)",
                      max_bytes, gap["first_seq"], gap["last_seq"], gap["epoch"], gap["count"])
        return gaps

    def _excess_rows(self, target: int, most: int) -> int:
        """About how many readings must go to bring the file down to ``target`` bytes (0 if it is there), at most
        ``most`` at a time. Measured after moving the write-ahead log into the file (deletions grow the log)."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        excess = self.used_bytes() - target
        if excess <= 0:
            return 0
        rows = self.db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        per_row = max(1, self.used_bytes() // max(rows, 1))
        return min(most, max(100, excess // per_row + 1))

    def _drop_oldest_pending(self, chunk: int, now: float) -> list[dict[str, Any]]:
        with self.transaction() as db:
            rows = db.execute(
                "SELECT epoch, seq, ts FROM readings WHERE acked = 0 ORDER BY epoch, seq LIMIT ?", (chunk,)
            ).fetchall()
            gaps = []
            for epoch in sorted({r[0] for r in rows}):
                of_epoch = [r for r in rows if r[0] == epoch]
                ts_by_seq = {r[1]: r[2] for r in of_epoch}
                for first, last in seq_ranges([r[1] for r in of_epoch]):
                    db.execute("DELETE FROM readings WHERE epoch = ? AND seq BETWEEN ? AND ?", (epoch, first, last))
                    gap = {"stream": "readings", "epoch": epoch, "first_seq": first, "last_seq": last,
                           "count": last - first + 1, "first_ts": ts_by_seq[first], "last_ts": ts_by_seq[last]}
                    self.append_event("buffer.gap", "buffer", gap, ts=now)
                    gaps.append(gap)
        return gaps

    # ---------------------------------------------------------------------------------------------------- queries

    def current_epoch(self) -> int | None:
        row = self.db.execute("SELECT MAX(epoch) FROM epochs").fetchone()
        return row[0] if row else None

    def counts(self, stream: str = "readings") -> dict[str, Any]:
        _check_stream(stream)
        row = self.db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(acked = 0), 0), MIN(CASE WHEN acked = 0 THEN ts END) FROM {stream}"
        ).fetchone()
        total, pending, oldest = row
        return {"total": total, "pending": pending, "acknowledged": total - pending, "oldest_pending_ts": oldest}

    def latest(self, sensors: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """The most recent reading of each quantity of each sensor (uses the (sensor, ts) index)."""
        result: dict[str, list[dict[str, Any]]] = {}
        for sensor in sensors:
            rows = self.db.query(
                "SELECT * FROM readings WHERE sensor = ? AND ts = (SELECT MAX(ts) FROM readings WHERE sensor = ?) "
                "ORDER BY quantity",
                (sensor, sensor),
            )
            result[sensor] = list(rows)
        return result

    def readings(self, sensors: Iterable[str], since: float) -> Iterator[dict[str, Any]]:
        """Readings of ``sensors`` taken at or after ``since``, in time order."""
        sensors = list(sensors)
        if not sensors:
            return iter(())
        marks = ", ".join("?" for _ in sensors)
        return self.db.query(
            f"SELECT * FROM readings WHERE sensor IN ({marks}) AND ts >= ? ORDER BY ts, epoch, seq",
            (*sensors, since),
        )

    def events(self, since: float = 0.0) -> Iterator[dict[str, Any]]:
        return self.db.query("SELECT * FROM events WHERE ts >= ? ORDER BY epoch, seq", (since,))

    def alert_incidents(self, active_only: bool = False) -> list[dict[str, Any]]:
        """The alert engine's incidents, newest first (empty before alerts first ran)."""
        if "alert_incidents" not in self.db.table_names():
            return []
        where = "WHERE resolved_ts IS NULL" if active_only else ""
        return list(self.db.query(f"SELECT * FROM alert_incidents {where} ORDER BY fired_ts DESC"))

    def sync_state(self) -> dict[str, str | None]:
        """The uplink's last recorded state (link, since, last_ack, error); empty before sync first ran."""
        if "sync_state" not in self.db.table_names():
            return {}
        return {row["key"]: row["value"] for row in self.db.query("SELECT key, value FROM sync_state")}

    def control_state(self) -> dict[str, dict[str, Any]]:
        """The supervisor's last recorded state of each actuator (empty before control first ran)."""
        if "control_actuators" not in self.db.table_names():
            return {}
        return {row["actuator"]: row for row in self.db.query("SELECT * FROM control_actuators")}

    def epochs(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM epochs ORDER BY epoch"))


def _check_stream(stream: str) -> None:
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r} (streams: {', '.join(STREAMS)})")
