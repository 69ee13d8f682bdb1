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

One file, several owners. The buffer owns ``epochs``, ``counters``, ``readings``, ``events`` and
``schema_migrations``; every other part of the gateway that keeps state here (control, sync, alerts, the SMS outbox)
declares its tables with :meth:`Buffer.component` and runs its SQL only through the :class:`Access` it gets back. The
writer discipline, stated once: every write runs inside :meth:`Access.transaction` (or the buffer's own methods), on
the calling thread's connection, under the buffer's one write lock; transactions of several owners nest on that
connection (the outermost commits them all), so an owner's change and the buffer event it records commit together.
Ownership is enforced by SQLite itself: each connection carries an authorizer that refuses a statement naming a table
the code running it does not own (:class:`NotOwner`), and refuses an owner's writes outside its transactions.

A damaged file (anything the integrity check at open does not like, including a check that cannot even run) is moved
aside, kept, and a fresh buffer started. A file system with no room is not damage: writes raise :class:`BufferFull`,
readings that cannot be stored are counted per sensor and reported as ``buffer.gap`` events once there is room again,
and events wait in memory meanwhile (see :meth:`Buffer.append_event`), so the rest of the gateway goes on.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import math
import os
import sqlite3
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from operator import is_not, itemgetter
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from edge import __version__
from edge.errors import BufferFull, BufferUnavailable, BufferWriteError
from edge.contract.events import (BufferCorrupt, BufferEpoch, BufferEventsLost, BufferGap, BufferRekey,
                                  BufferRolledBack, BufferWindowLost)
from edge.contract.protocol import QUALITIES, Reading, seq_ranges

log = logging.getLogger(__name__)

STREAMS = ("readings", "events")

#: Clock state of a reading's timestamp.
CLOCK_UNSYNCED, CLOCK_SYNCED, CLOCK_CORRECTED = 0, 1, 2

#: Below this many free bytes an I/O error is taken for a full file system, and a full one is not yet called free.
LOW_SPACE = 1 << 20
#: Events kept in memory while the buffer cannot store them (the newest; older ones are counted, then reported).
MAX_DEFERRED_EVENTS = 10_000
#: Why readings in a ``buffer.gap`` written for readings that were never stored are missing.
UNSTORED_REASON = "not stored: no room on the buffer's file system"
_WAL_MAGIC = (0x377F0682, 0x377F0683)
_WAL_VERSION = 3007000

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
    (
        2,
        "the commit window of each epoch",
        # seconds a reading of that epoch could wait in memory before its commit (0: none); a start after an unclean
        # stop reads it to record what the stop may have cost (buffer.window_lost)
        "ALTER TABLE epochs ADD COLUMN commit_every REAL NOT NULL DEFAULT 0",
    ),
    (
        3,
        "readings indexed by time alone",
        # (sensor, ts) put each sensor's new entries on a leaf page of its own: a commit rewrote one page per sensor
        # (and their parents), most of what the SD card was written per commit. By time, a commit's entries go to
        # the last leaf page: one page. latest() walks back from the newest reading instead.
        """
        DROP INDEX readings_sensor_ts;
        CREATE INDEX readings_ts ON readings (ts);
        """,
    ),
]

#: The columns of a held row (see ``Buffer._hold``), as ``latest()`` names them.
_HELD_COLUMNS = ("epoch", "seq", "ts", "sensor", "quantity", "value", "unit", "quality", "reason", "clock", "boot_id",
                 "mono", "acked")

#: Readings held for the commit window at most; more are committed at once, whatever the window.
MAX_HELD = 5_000


#: A reading as the sampler hands it over (``Reading.taken``: no seq yet); the buffer gives it ``epoch`` and ``seq``.
#: Not a type of its own: the gateway has one reading type, the contract's :class:`Reading`, from sampler to wire.
NewReading = Reading.taken

#: The columns of a reading row, in the order of :class:`Reading`'s fields (after ``epoch``).
_READING_COLUMNS = "epoch, seq, ts, sensor, quantity, value, unit, quality, reason, clock, boot_id, mono"


class PendingReading(NamedTuple):
    """A pending reading as the buffer hands it to the uplink: its key and the :class:`Reading` it holds, or, when
    its row cannot be read as one (a garbled cell on a failing SD card), ``reading`` None and ``garbled`` saying
    why. The key is then the cells as they are (the uplink sets the row aside by them)."""

    epoch: int
    seq: int
    reading: Reading | None
    garbled: str | None = None


class GoodReadings(NamedTuple):
    """Pending readings of one epoch, in seq order, every one good and from a synced clock, as columns (what
    :func:`edge.contract.protocol.encode_good_readings` takes): :meth:`Buffer.good_readings`."""

    epoch: int
    seqs: list[int]
    times: list[float]
    sensors: list[str]
    quantities: list[str]
    units: list[str]
    values: list[float]


@dataclass(frozen=True)
class OpenReport:
    """What happened when the buffer was opened: for the daemon's log and events.

    ``epoch`` is None while the start could not be finished for lack of room (``not_started`` says why): nothing is
    stored until :meth:`Buffer.resume` succeeds."""

    epoch: int | None
    previous_epoch_clean: bool | None  # None on a fresh buffer
    corrupt_moved_to: Path | None = None
    corrupt_reason: str | None = None
    not_started: str | None = None
    #: the file's last epoch when the sidecar says a later one was used (a rolled-back or restored file)
    rolled_back_to: int | None = None


#: The buffer's own tables (its name as a component is ``buffer``).
BUFFER_TABLES = ("epochs", "counters", "readings", "events", "schema_migrations")
_WRITES = frozenset({sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE, sqlite3.SQLITE_CREATE_TABLE,
                     sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_DROP_INDEX,
                     sqlite3.SQLITE_ALTER_TABLE})
_TABLE_IN_ARG1 = frozenset({sqlite3.SQLITE_READ, sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE,
                            sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_ANALYZE})
_TABLE_IN_ARG2 = frozenset({sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_DROP_INDEX, sqlite3.SQLITE_ALTER_TABLE})
_TABLE_PRAGMAS = frozenset({"table_info", "table_xinfo", "index_list", "foreign_key_list"})
_VERBS = {sqlite3.SQLITE_READ: "read", sqlite3.SQLITE_INSERT: "insert into", sqlite3.SQLITE_UPDATE: "update",
          sqlite3.SQLITE_DELETE: "delete from", sqlite3.SQLITE_PRAGMA: "inspect"}


class NotOwner(sqlite3.DatabaseError):
    """A statement named a table its caller does not own (or wrote outside its transaction): a bug, never data."""


class _Guard:
    """The authorizer of one connection: which component's code runs on it now, and so which tables it may name.

    SQLite asks it once per table a statement touches, when the statement is prepared. Prepared statements are cached
    per connection, so a change of owner installs it again: SQLite then expires every cached statement, and each one
    is checked anew for its next owner. Owners change a few times per sampling round at most."""

    __slots__ = ("conn", "owner", "tables", "writable", "refused", "owners")

    def __init__(self, conn: sqlite3.Connection, owners: dict[str, frozenset[str]]):
        self.conn = conn
        self.owners = owners  # every component's tables (shared with the buffer), to name the owner in a refusal
        self.owner, self.tables, self.writable = "buffer", owners["buffer"], True
        self.refused: str | None = None
        conn.set_authorizer(self)

    def act_as(self, owner: str, tables: frozenset[str], writable: bool) -> None:
        if owner != self.owner or writable != self.writable:
            self.owner, self.tables, self.writable = owner, tables, writable
            self.conn.set_authorizer(self)  # expires the statements prepared for the previous owner

    def __call__(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
        if action in _TABLE_IN_ARG1:
            table = arg1
        elif action in _TABLE_IN_ARG2 or (action == sqlite3.SQLITE_PRAGMA and arg1 in _TABLE_PRAGMAS):
            table = arg2
        else:
            return sqlite3.SQLITE_OK
        if table is None or table.startswith("sqlite_"):
            return sqlite3.SQLITE_OK
        if table not in self.tables:
            owner = next((name for name, tables in self.owners.items() if table in tables), None)
            self.refused = (f"{self.owner} may not {_VERBS.get(action, 'change')} table {table}: "
                            + (f"it belongs to {owner}" if owner else "no component declares it"))
            return sqlite3.SQLITE_DENY
        if action in _WRITES and not self.writable:
            self.refused = f"{self.owner} wrote to {table} outside a transaction (use its transaction())"
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK


class _Db:
    """A thread's connection as the buffer's own code uses it: ``execute``, ``query`` (rows as dicts) and ``atomic``
    (a transaction, or a savepoint inside one). A few lines instead of a library: sqlite-utils, which this was, cost
    the daemon 2-10 MB of RSS in the modules it imports (pluggy, dateutil, numpy when installed)."""

    __slots__ = ("conn", "_savepoints")

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self._savepoints = 0

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Iterator[dict[str, Any]]:
        return _rows(self.conn.execute(sql, params))

    @contextmanager
    def atomic(self) -> Iterator["_Db"]:
        """A transaction (``BEGIN`` ... ``COMMIT``), or inside one a savepoint; rolled back on any exception (unless
        SQLite already ended the transaction, as some errors do)."""
        conn = self.conn
        if conn.in_transaction:
            self._savepoints += 1
            name = f"edge_{self._savepoints}"
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                if conn.in_transaction:
                    conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    conn.execute(f"RELEASE SAVEPOINT {name}")
                raise
            else:
                conn.execute(f"RELEASE SAVEPOINT {name}")
            finally:
                self._savepoints -= 1
            return
        conn.execute("BEGIN")
        try:
            yield self
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


class Access:
    """One component's access to the buffer's file: SQL on its own tables only, on the calling thread's connection.

    Got from :meth:`Buffer.component`. Reads run anywhere; writes only inside :meth:`transaction`, which takes the
    buffer's write lock and nests inside any transaction the thread has open (another owner's included), so that
    what several owners write for one change commits together. A statement on a table the component does not own
    raises :class:`NotOwner` and changes nothing."""

    def __init__(self, buffer: "Buffer", name: str, tables: frozenset[str]):
        self._buffer = buffer
        self.name = name
        self.tables = tables

    def _conn(self) -> sqlite3.Connection:
        writable = self._buffer._writer_depth() > 0
        conn = self._buffer._thread_conn()
        self._buffer._thread_guard().act_as(self.name, self.tables, writable)
        return conn

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        conn = self._conn()
        try:
            return conn.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            raise self._refusal(exc) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        conn = self._conn()
        try:
            return conn.executemany(sql, rows)
        except sqlite3.DatabaseError as exc:
            raise self._refusal(exc) from None

    def _refusal(self, exc: sqlite3.DatabaseError) -> BaseException:
        guard = self._buffer._thread_guard()
        refused, guard.refused = guard.refused, None
        if refused is None:
            return exc
        log.error("buffer %s: refused: %s", self._buffer.path, refused)
        return NotOwner(refused)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Every row of ``sql`` as a dict (read at once: nothing is left half-read on the connection)."""
        cursor = self.execute(sql, params)
        keys = [d[0] for d in cursor.description]
        return [dict(zip(keys, row)) for row in cursor.fetchall()]

    def table_names(self) -> list[str]:
        return [row[0] for row in self.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]

    def exists(self, table: str | None = None) -> bool:
        """True once ``table`` (by default every table of this component) is in the file: before the component first
        ran (or migrated), readers find nothing."""
        if table is not None and table not in self.tables:
            raise ValueError(f"{self.name} does not own table {table}")
        return ({table} if table else self.tables) <= set(self.table_names())

    @contextmanager
    def transaction(self) -> Iterator["Access"]:
        """A write transaction (nested: a savepoint) under the buffer's write lock; see :meth:`Buffer.transaction`."""
        with self._buffer.transaction():
            yield self

    def migrate(self, migrations: Sequence[tuple[int, str, str]]) -> list[int]:
        """Apply this component's missing schema migrations (its own tables only); return the versions applied."""
        return self._buffer._migrate(self, migrations)


def _connect(path: Path, reader: bool = False) -> sqlite3.Connection:
    """A connection to the buffer file. A reader's leaves the journal mode alone: the daemon sets it (WAL, kept in
    the file) as it creates the file, and a reader that set it too, on a file just created, would race the daemon
    for the file's locks and make its start fail with "database is locked"."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        if not reader:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
    except BaseException:
        conn.close()
        raise
    return conn


def _last_epoch_in(path: Path) -> int:
    """The highest epoch a file moved aside as corrupt still shows, or 0 when nothing can be read from it."""
    try:
        # immutable: read the file as it lies, creating nothing beside it (the evidence stays as it was found)
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT MAX(epoch) FROM epochs").fetchone()
        finally:
            conn.close()
    except (sqlite3.Error, ValueError):
        return 0
    return row[0] if row and isinstance(row[0], int) else 0


def free_bytes(path: Path) -> int:
    """Bytes the file system holding ``path`` still gives an unprivileged writer (``df``'s Avail)."""
    try:
        stats = os.statvfs(Path(path).absolute().parent)
    except OSError:
        return sys.maxsize  # cannot tell: never take an error for a full disk on this ground
    return stats.f_bavail * stats.f_frsize


def _write_error(exc: BaseException, path: Path) -> BufferWriteError | None:
    """What a failed SQLite call (or file write) on the buffer amounts to: :class:`BufferFull` when the file system
    has no room, :class:`BufferWriteError` when it refuses otherwise (read-only, I/O error, locked), None when it is
    not the file system's doing (a bug, a damaged file)."""
    if isinstance(exc, BufferWriteError):
        return exc
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return BufferFull(f"no room on the file system of {path} ({exc.strerror})")
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EIO):
        return BufferWriteError(f"buffer {path} refused a write ({exc.strerror})")
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and free_bytes(path) < LOW_SPACE):
        return BufferFull(f"no room on the file system of {path} ({exc}; {_human(free_bytes(path))} free)")
    if code in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED,
                sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return BufferWriteError(f"buffer {path} refused a write ({exc})")
    return None


def _is_damage(exc: BaseException) -> bool:
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _text(value: Any) -> str:
    """A damaged file's own words, made safe to log and store (valid UTF-8, nothing raised)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"  # pragma: no cover


def _wal_checksum(data: bytes, big_endian: bool) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    s0 = s1 = 0
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def _wal_problem(path: Path) -> str | None:
    """What is wrong with the write-ahead log beside ``path``, if anything. SQLite takes a log whose header is damaged
    for an empty one, so every transaction in it would vanish without an error (and the log is deleted at the next
    close): it is checked before SQLite opens the file. A log cut short inside its frames is what a power cut leaves,
    and SQLite keeps what was committed; that is not damage."""
    wal = Path(f"{path}-wal")
    try:
        with open(wal, "rb") as handle:
            head = handle.read(32)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"the write-ahead log {wal.name} cannot be read ({exc.strerror or exc})"
    if not head:
        return None
    if len(head) < 32:
        return f"the write-ahead log {wal.name} is damaged ({len(head)} bytes, shorter than its header)"
    magic, version, *_, check1, check2 = struct.unpack(">8I", head)
    if magic not in _WAL_MAGIC or version != _WAL_VERSION or _wal_checksum(head[:24], magic & 1) != (check1, check2):
        return (f"the write-ahead log {wal.name} is damaged (no valid header): SQLite would drop the transactions "
                f"in it")
    return None


def _quick_check_answer(path: Path) -> list[str]:
    """SQLite's ``quick_check`` of the file, each line decoded whatever its encoding (the text of a damaged file)."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.text_factory = bytes
        return [_text(row[0]) for row in conn.execute("PRAGMA quick_check")]
    finally:
        conn.close()


def _integrity_problem(path: Path) -> str | None:
    """``None`` if the file is healthy (or absent), else what is wrong with it. Whatever goes wrong while checking
    counts against the file (an exception of any kind, an answer that is not ``ok``, in any encoding), except a file
    system with no room (:class:`BufferFull`) or a lock another process holds (:class:`BufferWriteError`): those say
    nothing about the file, which is then checked later."""
    if not path.exists():
        return None
    problem = _wal_problem(path)
    if problem:
        return problem
    try:
        if path.stat().st_size == 0:
            return "the file is empty (0 bytes): the database in it is gone"
        rows = _quick_check_answer(path)
    except Exception as exc:  # noqa: BLE001 - any failure of the check is a failed check
        error = _write_error(exc, path)
        if isinstance(error, BufferFull):
            raise error from exc
        if (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise BufferWriteError(f"buffer {path} is locked by another process ({exc})") from exc
        return _text(exc) if isinstance(exc, sqlite3.DatabaseError) else _text(f"{type(exc).__name__}: {exc}")
    return None if rows == ["ok"] else "; ".join(rows[:5]) or "quick_check gave no answer"


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
        self._reader = False  # opened by Buffer.reader: queries only, beside the daemon
        self._owners: dict[str, frozenset[str]] = {"buffer": frozenset(BUFFER_TABLES)}  # component -> its tables
        self._own = Access(self, "buffer", self._owners["buffer"])
        # Starting (Buffer.open, then Buffer.resume while the file system has no room):
        self._boot_id = ""
        self._checked = False
        self._set_aside: tuple[Path, str] | None = None  # where a damaged file went, and why
        self._start_error: BufferWriteError | None = None  # why the epoch is not started yet
        self._report: OpenReport | None = None
        self._epochs_before = (0, 0)  # the file's last epoch and the sidecar's, before this start
        # (the epoch a start of this process wrote to the sidecar but could not commit, the sidecar's before it)
        self._unstarted: tuple[int, int] | None = None
        # While writes are refused (see _writing): since when, why, and what waits for room.
        self.refused_since: float | None = None
        self.refusal: str | None = None
        self.full = False
        self._unstored: dict[str, dict[str, Any]] = {}  # sensor -> count, first_ts, last_ts, quantities
        self._deferred: deque[tuple[str, str, str, float]] = deque()  # events: kind, source, JSON data, ts
        self._overflow: dict[str, Any] | None = None  # deferred events pushed out by newer ones
        # The commit window (see append_readings): readings stored but held in memory until their commit.
        self.commit_every = 0.0  # seconds a reading may be held before its commit; 0: every round commits at once
        self.monotonic = time.monotonic  # the window's clock (a test hands a FakeClock's)
        self._held: list[list[Any]] = []  # rows of readings not on disk yet: the INSERT's columns, acked last
        self._held_since: float | None = None  # when the oldest of them was stored (self.monotonic)
        self._held_written = 0  # how many of them the open transaction wrote (forgotten once it commits)
        self._given = (0, 0)  # (epoch, the last readings seq given in it), ahead of the counter while rows are held

    # ------------------------------------------------------------------------------------------ opening and closing

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, now: float, boot_id: str,
             commit_every: float = 0.0) -> tuple["Buffer", OpenReport]:
        """Check, migrate and start a new epoch. A damaged file is moved aside (kept) and a fresh one started.

        A file system with no room (or one that refuses writes) does not make this raise: the buffer comes back
        without an epoch (``report.epoch is None``, ``report.not_started`` says why), stores nothing, and
        :meth:`resume` finishes the start once it can. The epoch is on disk before any reading of it, as always.

        ``commit_every``: the commit window in seconds (see :meth:`append_readings`), recorded with the epoch so that
        the next start can say what an unclean end of this one may have cost."""
        buffer = cls(path)
        buffer.commit_every = max(0.0, float(commit_every))
        buffer.path.parent.mkdir(parents=True, exist_ok=True)
        buffer._take_owner_lock()
        buffer._boot_id = boot_id
        return buffer, buffer.resume(now)

    @property
    def started(self) -> bool:
        """True once this process's epoch is on disk (readings can be stored)."""
        return self._report is not None

    def resume(self, now: float) -> OpenReport:
        """Finish the start :meth:`open` could not (integrity check, migrations, new epoch); once the epoch is on
        disk, the report of that start."""
        if self._report is not None:
            return self._report
        try:
            with self._writing():
                self._check(now)  # before the write lock: a big file's check holds up no other thread's writes
        except BufferWriteError as exc:
            return self._start_refused(exc)
        # Another thread's write (a round, a switch) waits until the epoch is on disk AND reported: the first
        # transaction after that stores what waited in memory (daemon.start, gap records) ahead of anything newer.
        with self._write_lock:
            return self._finish_start(now)

    def _start_refused(self, exc: BufferWriteError) -> OpenReport:
        self.epoch = None  # _start_epoch may have chosen it before its transaction failed
        if self._start_error is None:
            self.refused_since = None  # said once, with what it means for the start
            self._refused(exc, starting=True)
        self._start_error = exc
        moved, reason = self._set_aside or (None, None)
        return OpenReport(None, None, moved, reason, not_started=str(exc))

    def _finish_start(self, now: float) -> OpenReport:
        try:
            with self._writing():  # whatever the start writes (files beside the buffer too) may find no room
                try:
                    previous_clean = self._start(now)
                except sqlite3.DatabaseError as exc:
                    if self._set_aside is not None or not _is_damage(exc):
                        raise
                    self._move_damaged(now, f"{_text(exc)} (found while opening it)")  # quick_check missed it
                    previous_clean = self._start(now)
        except BufferWriteError as exc:
            return self._start_refused(exc)
        self._start_error = None
        moved, reason = self._set_aside or (None, None)
        if moved:
            self.append_event(BufferCorrupt.KIND, "buffer", BufferCorrupt(str(moved), reason).to_data(), ts=now)
        in_file, used = self._epochs_before
        rolled_back = in_file if used > in_file and not moved else None
        if rolled_back is not None:
            log.error("buffer %s went back in time: its last epoch is %d but epoch %d was used (a deleted "
                      "write-ahead log, a restored backup?); rows of the lost epochs that had not reached the data "
                      "center are gone; continuing at epoch %d", self.path, in_file, used, self.epoch)
            self.append_event(BufferRolledBack.KIND, "buffer", BufferRolledBack(in_file, used).to_data(), ts=now)
        self._report = OpenReport(self.epoch, previous_clean, moved, reason, rolled_back_to=rolled_back)
        return self._report

    def _check(self, now: float) -> None:
        """The integrity check, once: a damaged file is moved aside. Raises BufferWriteError when it cannot tell
        (no room, locked)."""
        if not self._checked:
            reason = _integrity_problem(self.path)
            if reason:
                self._move_damaged(now, reason)
            self._checked = True

    def _start(self, now: float) -> bool | None:
        self._check(now)
        self.migrate()
        in_file, used = self._last_epochs()
        if self._unstarted is not None and used == self._unstarted[0]:
            used = self._unstarted[1]  # not an epoch used and lost: this process wrote it, and its start failed
        self._epochs_before = (in_file, used)
        floor = _last_epoch_in(self._set_aside[0]) if self._set_aside else 0
        return self._start_epoch(now, self._boot_id, floor)

    def _move_damaged(self, now: float, reason: str) -> None:
        self._close_connections()
        moved_to = self._move_aside(now)
        self._set_aside = (moved_to, reason)
        log.error("buffer %s failed its integrity check (%s); moved to %s, starting a fresh buffer",
                  self.path, reason, moved_to)

    @classmethod
    def reader(cls, path: str | os.PathLike[str]) -> "Buffer":
        """Open an existing buffer for queries only (no epoch, no migration): safe while the daemon runs."""
        buffer = cls(path)
        buffer._reader = True
        if not buffer.path.exists():
            raise BufferUnavailable(f"no buffer at {buffer.path} (has the gateway run yet?)")
        try:
            buffer.epoch = buffer.current_epoch()
        except (sqlite3.DatabaseError, BufferFull) as exc:
            if isinstance(_write_error(exc, buffer.path), BufferFull):
                raise BufferFull(f"cannot read buffer {buffer.path}: its file system is full "
                                 f"({_human(free_bytes(buffer.path))} free)") from None
            raise BufferUnavailable(f"cannot read buffer {buffer.path}: {exc}") from None
        return buffer

    @property
    def lock_path(self) -> Path:
        return Path(f"{self.path}.lock")

    def _take_owner_lock(self) -> None:
        """One daemon per buffer: a second ``edge run`` on the same file (say, beside systemd's) is refused. On a
        read-only file system (an SD card the kernel remounted read-only after errors) the lock is taken on the
        existing file opened for reading, or not at all when there is none: nothing can be written there anyway,
        and the daemon must still start and control its outputs."""
        try:
            handle = open(self.lock_path, "a+")
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise
            try:
                handle = open(self.lock_path)  # flock needs a descriptor, not one open for writing
            except FileNotFoundError:
                log.warning("buffer %s: its file system is read-only and it has no lock file: started without the "
                            "lock that keeps a second daemon off it", self.path)
                return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise BufferUnavailable(f"buffer {self.path} is in use by another edge process (pid {holder})") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        except OSError as exc:  # the pid is for the message above only; a full disk must not stop the start
            log.debug("could not write the pid into %s: %s", self.lock_path, exc)
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

    def _thread_conn(self) -> sqlite3.Connection:
        """This thread's connection (one per thread, as SQLite in WAL mode likes it), with its :class:`_Guard`.
        Raises :class:`BufferFull` when the file cannot even be opened for lack of room (WAL mode needs room for its
        index file)."""
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                conn = _connect(self.path, reader=self._reader)
            except sqlite3.Error as exc:
                error = _write_error(exc, self.path)
                if error is None:
                    raise
                raise error from exc
            with self._connections_lock:
                self._connections.append(conn)
            self._local.guard = _Guard(conn, self._owners)
            db = self._local.db = _Db(conn)
        return db.conn

    def _thread_guard(self) -> _Guard:
        """The authorizer of this thread's connection (see :meth:`_thread_conn`)."""
        return self._local.guard

    def _writer_depth(self) -> int:
        return getattr(self._local, "writing", 0)

    @property
    def _db(self) -> _Db:
        """This thread's connection, acting for the buffer itself (its own tables only). Private: other parts of the
        gateway reach the file through their :class:`Access` (see :meth:`component`)."""
        self._thread_conn()
        self._local.guard.act_as("buffer", self._owners["buffer"], True)
        return self._local.db

    def component(self, name: str, tables: Iterable[str] | None = None) -> Access:
        """The access of component ``name`` that owns ``tables`` in this file (declared once per buffer; a second
        call with the same tables, or with none, gives the same access). Raises ValueError for a table another
        component owns."""
        with self._connections_lock:
            known = self._owners.get(name)
            if tables is None:
                if known is None:
                    raise ValueError(f"no component {name!r} was declared on buffer {self.path}")
                return Access(self, name, known)
            wanted = frozenset(tables)
            if known is not None and known != wanted:
                raise ValueError(f"component {name!r} already owns {', '.join(sorted(known))}")
            for other, owned in self._owners.items():
                if other != name and owned & wanted:
                    raise ValueError(f"component {name!r} cannot own {', '.join(sorted(owned & wanted))}: "
                                     f"{other} does")
            self._owners[name] = wanted
            return Access(self, name, wanted)

    def migrate(self) -> list[int]:
        """Apply the buffer's own missing schema migrations; return the versions applied. Other components migrate
        their tables through their access (:meth:`Access.migrate`), tracked in the same ``schema_migrations``."""
        return self._migrate(None, MIGRATIONS)

    def _migrate(self, access: Access | None, migrations: Sequence[tuple[int, str, str]]) -> list[int]:
        """Each missing migration in its own transaction, run with the rights of its component (``access``; None for
        the buffer), recorded in ``schema_migrations`` by the buffer. One file holds the gateway's whole state and one
        backup saves it."""
        component = "buffer" if access is None else access.name
        applied = []
        with self._write_lock, self._writing():
            db = self._db
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
                    run = self._db.execute if access is None else access.execute
                    for statement in filter(str.strip, sql.split(";")):
                        run(statement)
                    self._db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?, ?)",
                                     (component, version, name, time.time()))
                applied.append(version)
        if applied:
            log.info("buffer %s: applied %s schema migrations %s", self.path, component, applied)
        return applied

    @contextmanager
    def transaction(self) -> Iterator[Access]:
        """A write transaction on this thread's connection, serialised with every other write of this process; it
        gives the buffer's own access. Owners open theirs with :meth:`Access.transaction`; nested ones (of any
        owner) are savepoints of the outermost, which commits them all. Raises :class:`BufferWriteError`
        (:class:`BufferFull` for lack of room) when the file system refuses it.

        Once the epoch is on disk, an outermost transaction first stores what waits for room (events kept in memory,
        the gap records of readings that could not be stored); those are forgotten only once it has committed."""
        with self._transaction():
            yield self._own

    @contextmanager
    def _transaction(self) -> Iterator[_Db]:
        with self._write_lock, self._writing():
            db = self._db
            outermost = not db.conn.in_transaction
            written, given, epoch = self._held_written, self._given, self.epoch
            try:
                with db.atomic():
                    waiting = outermost and self._report is not None and self._store_waiting(db)
                    yield db
            except BaseException:
                # rolled back: the held rows it wrote are held still, the seqs it gave are free again, and an epoch
                # it began is not on disk (new rows keep the one that is)
                self._held_written, self._given, self.epoch = written, given, epoch
                raise
            if outermost and self._held_written:
                self._forget_held()
            if waiting:
                self._forget_waiting()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn the file system's refusals into :class:`BufferWriteError` / :class:`BufferFull`, and keep track of
        them: the first is logged once, and the first write that goes through again (with room to spare, after a
        full disk) is logged once too."""
        depth = getattr(self._local, "writing", 0)
        self._local.writing = depth + 1
        try:
            yield
        except Exception as exc:
            error = _write_error(exc, self.path)
            if error is None:
                raise
            self._refused(error)
            if error is exc:
                raise
            raise error from exc
        finally:
            self._local.writing = depth
        if depth == 0:
            self._accepted()

    def _refused(self, error: BufferWriteError, starting: bool = False) -> None:
        if self.refused_since is None:
            self.refused_since = time.time()
            self.refusal = str(error)
            if starting:
                log.error("buffer %s: cannot start a new epoch (%s): no reading is stored until it can; outputs stay "
                          "under control", self.path, error)
            elif self._report is not None:  # while starting, resume() says it, once
                log.error("buffer %s: %s. Readings that cannot be stored are counted and reported as a gap, events "
                          "wait in memory, until writes go through again; outputs stay under control",
                          self.path, error)
        self.full = self.full or isinstance(error, BufferFull)

    def _accepted(self, readings: bool = False) -> None:
        """A write went through. After a full disk, room is back once a round of readings is stored or there is
        room to spare (a write that squeezed into the write-ahead log proves little)."""
        if self.refused_since is None or self._start_error is not None or \
                (self.full and not readings and free_bytes(self.path) < LOW_SPACE):
            return
        log.warning("buffer %s accepts writes again, after %.0fs", self.path, time.time() - self.refused_since)
        self.refused_since, self.refusal, self.full = None, None, False

    def _in_transaction(self) -> bool:
        db = getattr(self._local, "db", None)
        return db is not None and db.conn.in_transaction

    @property
    def floor_path(self) -> Path:
        return Path(f"{self.path}.epoch")

    def _last_epochs(self) -> tuple[int, int]:
        """The last epoch this file records, and the last the sidecar says was used."""
        row = self._db.execute("SELECT MAX(epoch) FROM epochs").fetchone()
        return (row[0] or 0), self._read_floor()

    def _start_epoch(self, now: float, boot_id: str, floor: int = 0) -> bool | None:
        """Start the epoch after every one this gateway may have used: the file's last, the sidecar's, ``floor``.

        The sidecar is written first. When the file system then refuses the start (a disk with room for the sidecar
        but not for the file's commit), the epoch written was never used: this process gives it again at its next
        try, instead of skipping it and taking the gap for a file that went back in time. A new process cannot
        know that, and skips it."""
        trying = None
        try:
            with self._transaction() as db:
                last = db.execute("SELECT epoch, stopped_ts, commit_every FROM epochs ORDER BY epoch DESC LIMIT 1"
                                  ).fetchone()
                sidecar = self._read_floor()
                if self._unstarted is not None and sidecar == self._unstarted[0]:
                    sidecar = self._unstarted[1]
                trying = (max((last[0] if last else 0), sidecar, floor) + 1, sidecar)
                self._begin_epoch(db, trying[0], now, boot_id)
                if last is not None and last[1] is None and last[2]:
                    self._record_window_lost(db, last[0], last[2], now)
        except BaseException:
            if trying is not None and self._read_floor() == trying[0]:
                self._unstarted = trying
            raise
        self._unstarted = None
        # synchronous=FULL: the epoch is on disk before the first reading of it is taken.
        return None if last is None else last[1] is not None

    def _record_window_lost(self, db: _Db, epoch: int, window: float, now: float) -> None:
        """The previous run held readings for a commit window and did not stop cleanly: what it may have lost is
        every reading after its last one on disk, at most ``window`` seconds of them (a ``buffer.window_lost``)."""
        after_seq = db.execute("SELECT last_seq FROM counters WHERE stream = 'readings' AND epoch = ?",
                               (epoch,)).fetchone()
        after_ts = db.execute("SELECT MAX(ts) FROM readings WHERE epoch = ?", (epoch,)).fetchone()[0]
        lost = BufferWindowLost(epoch, after_seq[0] if after_seq else 0, after_ts, window)
        self._insert_event(db, BufferWindowLost.KIND, "buffer", json.dumps(lost.to_data(), sort_keys=True), now)
        log.warning("buffer %s: the previous run (epoch %d) did not stop cleanly while it held readings for its "
                    "%gs commit window: readings taken after %s UTC (seq %d) may be lost on this gateway (recorded "
                    "as buffer.window_lost)", self.path, epoch, window, _utc(after_ts) if after_ts else "its start",
                    lost.after_seq)

    def _begin_epoch(self, db: _Db, epoch: int, now: float, boot_id: str) -> None:
        """Record ``epoch`` (sidecar first, then this file) and make it the one new rows get. In a transaction."""
        self._write_held(db)  # rows held for the window keep the epoch they were given
        self._write_floor(epoch)
        db.execute("INSERT INTO epochs (epoch, started_ts, boot_id, version, commit_every) VALUES (?, ?, ?, ?, ?)",
                   (epoch, now, boot_id, __version__, self.commit_every))
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
            if _write_error(exc, self.path) is not None:
                raise  # no room, a read-only card: the epoch cannot be stored either, and the start waits
            log.error("buffer %s: cannot record epoch %d in %s (%s)", self.path, epoch, self.floor_path, exc)

    def raise_epoch_floor(self, held: int, now: float, reason: str) -> int | None:
        """The data center holds rows of this gateway up to epoch ``held``. Epochs only grow, so one above ours was
        used by an earlier life of this gateway whose buffer is lost, and ours may be in use too: start a new epoch
        above it, so that new rows never reuse a key. Returns the new epoch, or None when ours is not below it."""
        with self._transaction() as db:
            if self.epoch is None:  # not started yet (no room): the start will begin above it
                if self._unstarted is not None and held >= self._unstarted[0]:
                    self._unstarted = None  # the data center holds it: never give it
                self._write_floor(held)
                return None
            if self.epoch >= held:
                return None
            return self._rotate(db, held, now, reason)

    def _rotate(self, db: _Db, above: int, now: float, reason: str) -> int:
        previous = self.epoch
        boot_id = db.execute("SELECT boot_id FROM epochs WHERE epoch = ?", (previous,)).fetchone()
        self._begin_epoch(db, max(above, previous or 0, self._read_floor()) + 1, now, boot_id[0] if boot_id else "")
        self.append_event(BufferEpoch.KIND, "buffer", BufferEpoch(previous, self.epoch, reason).to_data(), ts=now)
        log.warning("buffer %s: moved from epoch %s to %d: %s", self.path, previous, self.epoch, reason)
        return self.epoch

    def rekey(self, stream: str, epoch: int, first: int, last: int, now: float) -> dict[str, Any] | None:
        """The data center already holds ``first..last`` of ``epoch`` with other content (a key this gateway used in
        an earlier life): give this gateway's unacknowledged rows of that range new keys in an epoch above ``epoch``,
        in one transaction, and record a ``buffer.rekey`` event mapping old keys to new. Returns that mapping, or
        None if no such rows are pending (already re-keyed, or never ours)."""
        _check_stream(stream)
        with self._transaction() as db:
            self._write_held(db)
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
            mapping = BufferRekey(stream, len(rows), epoch, tuple(seq_ranges([r[at_seq] for r in rows])), self.epoch,
                                  start, start + len(rows) - 1).to_data()
            self.append_event(BufferRekey.KIND, "buffer", mapping, ts=now)
        log.warning("buffer %s: the data center holds other %s under epoch %d seq %d..%d; %d pending rows sent again "
                    "as epoch %d seq %d..%d", self.path, stream, epoch, first, last, len(rows), self.epoch, start,
                    start + len(rows) - 1)
        return mapping

    def mark_clean_stop(self, now: float) -> None:
        """Commit what the window holds, and mark this epoch stopped cleanly (in one transaction). Nothing to mark
        when no epoch was started (a fresh file may not even have its tables)."""
        if self.epoch is None:
            return
        with self._transaction() as db:
            self._write_held(db)
            db.execute("UPDATE epochs SET stopped_ts = ? WHERE epoch = ?", (now, self.epoch))

    def _close_connections(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def close_thread_connection(self) -> None:
        """Close the calling thread's connection (for threads that end before the buffer is closed)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            with self._connections_lock:
                self._connections.remove(db.conn)
            db.conn.close()
            self._local.db = None

    def close(self) -> None:
        if self._held:
            try:
                self.commit()
            except BufferWriteError:
                pass  # counted as unstored, and said by _report_waiting_lost
        self._report_waiting_lost()
        self._close_connections()
        if self._owner_lock is not None:
            self._owner_lock.close()  # releases the flock
            self._owner_lock = None

    # --------------------------------------------------------------------------------------------------- appending

    def _allocate(self, db: _Db, stream: str, count: int) -> int:
        """Reserve ``count`` seqs in the open transaction; return the first. Readings held for the commit window are
        written first (their seqs come before)."""
        if self.epoch is None:  # not started: a fresh file may not even have its tables yet
            self._not_started()
        given = 0
        if stream == "readings":
            self._write_held(db)
            given = self._given[1] if self._given[0] == self.epoch else 0
        row = db.execute(
            "UPDATE counters SET last_seq = MAX(last_seq, ?) + ? WHERE stream = ? AND epoch = ? RETURNING last_seq",
            (given, count, stream, self.epoch),
        ).fetchone()
        if row is None:
            self._not_started()
        if stream == "readings":
            self._given = (self.epoch, row[0])
        return row[0] - count + 1

    def _not_started(self) -> NoReturn:
        if self._start_error is not None:  # Buffer.open could not start the epoch: no room, or writes refused
            raise type(self._start_error)(f"no epoch started yet ({self._start_error})")
        raise BufferUnavailable(f"buffer {self.path} has no epoch started (use Buffer.open)")

    def append_readings(self, readings: Sequence[Reading]) -> tuple[int, int] | None:
        """Store readings (their ``seq`` is ignored) in one transaction; return the ``(first, last)`` seq given to
        them, in their order.

        When the file system refuses (:class:`BufferWriteError`, :class:`BufferFull` for lack of room), the readings
        are counted per sensor and the error raised; the first write that goes through again also stores a
        ``buffer.gap`` event per sensor naming what was lost (see :meth:`_store_waiting`).

        With a commit window (``commit_every`` > 0) the readings get their seqs at once but are held in memory, and
        committed together with the rounds of the window, once its oldest is ``commit_every`` old (checked here and
        by :meth:`commit_due`), or when ``MAX_HELD`` wait, or at a clean stop: one transaction (one fsync, each page
        written once) instead of one per round. They are pending for the uplink meanwhile (it may send them, and
        their acks are kept with them). A power cut or a ``kill -9`` loses what is held (at most the window; the
        next start records it: ``buffer.window_lost``). While writes are refused, every round commits at once."""
        if not readings:
            return None
        if self.commit_every > 0 and self.epoch is not None and self.refused_since is None:
            return self._hold(readings)
        with self._write_lock:  # counted before another write can store the gap record: all in one record
            try:
                with self._transaction() as db:
                    first = self._allocate(db, "readings", len(readings))
                    db.conn.executemany(
                        "INSERT INTO readings (epoch, seq, ts, sensor, quantity, value, unit, quality, reason, "
                        "clock, boot_id, mono) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            (self.epoch, first + i, r.ts, r.sensor, r.quantity, r.value, r.unit, r.quality,
                             r.reason, r.clock, r.boot_id, r.mono)
                            for i, r in enumerate(readings)
                        ],
                    )
            except BufferWriteError:
                self._count_unstored((r.sensor, r.ts, r.quantity) for r in readings)
                raise
        self._accepted(readings=True)
        return first, first + len(readings) - 1

    def _hold(self, readings: Sequence[Reading]) -> tuple[int, int]:
        """Give ``readings`` their seqs and hold them for the commit window (see :meth:`append_readings`)."""
        with self._write_lock:
            if self._given[0] != self.epoch:
                row = self._db.execute("SELECT last_seq FROM counters WHERE stream = 'readings' AND epoch = ?",
                                       (self.epoch,)).fetchone()
                self._given = (self.epoch, row[0] if row else 0)
            first = self._given[1] + 1
            self._held.extend([self.epoch, first + i, r.ts, r.sensor, r.quantity, r.value, r.unit, r.quality,
                               r.reason, r.clock, r.boot_id, r.mono, 0] for i, r in enumerate(readings))
            self._given = (self.epoch, first + len(readings) - 1)
            if self._held_since is None:
                self._held_since = self.monotonic()
        if len(self._held) >= MAX_HELD or self.monotonic() - self._held_since >= self.commit_every:
            self.commit()
        return first, first + len(readings) - 1

    def commit_due(self) -> int:
        """Commit the held readings if the oldest is ``commit_every`` old (the daemon asks every few seconds, so a
        window is kept when no round comes); return how many were committed."""
        since = self._held_since
        if since is None or self.monotonic() - since < self.commit_every:
            return 0
        return self.commit()

    def commit(self) -> int:
        """Commit every reading held for the window now, in one transaction; return how many. When the file system
        refuses, they are counted as not stored (a gap record once there is room, as for a round that could not be
        stored) and the error raised."""
        with self._write_lock:
            if not self._held:
                return 0
            count = len(self._held)
            try:
                with self._transaction() as db:
                    self._write_held(db)
            except BufferWriteError:
                held, self._held, self._held_since = self._held, [], None
                self._count_unstored([(row[3], row[2], row[4]) for row in held])
                raise
        self._accepted(readings=True)
        return count

    def held(self) -> int:
        """How many readings wait in memory for their commit."""
        return len(self._held)

    def _write_held(self, db: _Db) -> None:
        """In the open transaction: insert the held readings not yet written (acked ones as acked) and move their
        epoch's counter past them. They are forgotten once the outermost transaction commits."""
        rows = self._held[self._held_written:]
        if not rows:
            return
        db.conn.executemany(f"INSERT INTO readings ({_READING_COLUMNS}, acked) VALUES "
                            f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        for epoch in sorted({row[0] for row in rows}):
            last = max(row[1] for row in rows if row[0] == epoch)
            db.execute("UPDATE counters SET last_seq = MAX(last_seq, ?) WHERE stream = 'readings' AND epoch = ?",
                       (last, epoch))
        self._held_written = len(self._held)

    def _forget_held(self) -> None:
        """The transaction that wrote held rows committed: they are on disk now."""
        del self._held[:self._held_written]
        self._held_written = 0
        self._held_since = self.monotonic() if self._held else None

    def _held_pending(self, after: tuple[int, int] = (0, 0), until: tuple[int, int] | None = None
                      ) -> list[list[Any]]:
        """The held rows not acknowledged, with keys after ``after`` (and up to ``until``), oldest first. A copy
        taken without the write lock (the list only grows at its end or loses its head)."""
        return [row for row in list(self._held) if not row[-1] and (row[0], row[1]) > after
                and (until is None or (row[0], row[1]) <= until)]

    def append_event(self, kind: str, source: str, data: dict[str, Any] | None = None, *,
                     ts: float) -> int | None:
        """Store one event (never dropped for space); return its seq.

        When the file system refuses the write (no room), the event waits in memory, and the next write that goes
        through stores it first, with its own time (``None`` is returned meanwhile; at most
        ``MAX_DEFERRED_EVENTS`` wait, older ones are then counted in a ``buffer.events_lost`` event). Inside a
        caller's transaction the error is raised instead: that transaction failed, and its caller decides."""
        text = json.dumps(data or {}, ensure_ascii=False, sort_keys=True)
        nested = self._in_transaction()
        with self._write_lock:  # kept in memory before another write can store what waits: the order is kept
            try:
                with self._transaction() as db:
                    return self._insert_event(db, kind, source, text, ts)
            except BufferWriteError:
                if nested:
                    raise
                self._defer_event(kind, source, text, ts)
                return None

    def flush(self) -> bool:
        """Store what waits for room (gap records, events kept in memory); True if nothing waits any more."""
        with self._write_lock:
            if not (self._unstored or self._deferred or self._overflow):
                return True
            try:
                with self._transaction():
                    pass
            except BufferWriteError:
                return False
            return not (self._unstored or self._deferred or self._overflow)

    def _insert_event(self, db: _Db, kind: str, source: str, data: str, ts: float) -> int:
        seq = self._allocate(db, "events", 1)
        db.execute("INSERT INTO events (epoch, seq, ts, kind, source, data) VALUES (?, ?, ?, ?, ?, ?)",
                   (self.epoch, seq, ts, kind, source, data))
        return seq

    # ------------------------------------------------------------------------------------- what waits for room

    def _count_unstored(self, readings: Iterable[tuple[str, float, str]]) -> None:
        """Count readings (sensor, ts, quantity) that could not be stored, for their gap record."""
        with self._write_lock:
            for sensor, ts, quantity in readings:
                lost = self._unstored.setdefault(sensor, {"count": 0, "first_ts": ts, "last_ts": ts,
                                                          "quantities": set()})
                lost["count"] += 1
                lost["first_ts"], lost["last_ts"] = min(lost["first_ts"], ts), max(lost["last_ts"], ts)
                lost["quantities"].add(quantity)

    def _defer_event(self, kind: str, source: str, data: str, ts: float) -> None:
        with self._write_lock:
            self._deferred.append((kind, source, data, ts))
            if len(self._deferred) > MAX_DEFERRED_EVENTS:
                _, _, _, old_ts = self._deferred.popleft()
                lost = self._overflow or {"count": 0, "first_ts": old_ts, "last_ts": old_ts}
                lost["count"] += 1
                lost["first_ts"], lost["last_ts"] = min(lost["first_ts"], old_ts), max(lost["last_ts"], old_ts)
                self._overflow = lost

    def _store_waiting(self, db: _Db) -> bool:
        """In the open transaction: the events that waited, oldest first, then one ``buffer.gap`` per sensor whose
        readings could not be stored. Readings never stored have no seq, so their gap is given a range of seqs
        of its own, never used by a row: it has the shape of the disk budget's gaps (the data center's ``gaps``
        table takes both), plus the sensor, its quantities and why. Returns whether anything was written."""
        if self._overflow:
            self._insert_event(db, BufferEventsLost.KIND, "buffer", json.dumps(BufferEventsLost(
                **self._overflow, reason=f"more than {MAX_DEFERRED_EVENTS} events waited for room").to_data(),
                sort_keys=True), self._overflow["last_ts"])
        for kind, source, data, ts in self._deferred:
            self._insert_event(db, kind, source, data, ts)
        for sensor, lost in sorted(self._unstored.items()):
            first = self._allocate(db, "readings", lost["count"])
            gap = BufferGap(self.epoch, first, first + lost["count"] - 1, lost["count"], lost["first_ts"],
                            lost["last_ts"], "readings", sensor, tuple(sorted(lost["quantities"])), UNSTORED_REASON)
            self._insert_event(db, BufferGap.KIND, "buffer", json.dumps(gap.to_data(), ensure_ascii=False,
                                                                       sort_keys=True), lost["last_ts"])
        return bool(self._unstored or self._deferred or self._overflow)

    def _forget_waiting(self) -> None:
        for sensor, lost in sorted(self._unstored.items()):
            log.warning("buffer %s: %d readings of %s taken while they could not be stored (%s .. %s UTC) are "
                        "recorded as a gap", self.path, lost["count"], sensor, _utc(lost["first_ts"]),
                        _utc(lost["last_ts"]))
        if self._deferred:
            log.info("buffer %s: stored %d events that waited for room", self.path, len(self._deferred))
        self._unstored.clear()
        self._deferred.clear()
        self._overflow = None

    def waiting(self) -> dict[str, int]:
        """What waits for room: readings not stored (their gap records are to be written) and events in memory."""
        with self._write_lock:
            return {"unstored_readings": sum(lost["count"] for lost in self._unstored.values()),
                    "deferred_events": len(self._deferred) + (self._overflow or {}).get("count", 0)}

    def _report_waiting_lost(self) -> None:
        """At close, what still waits for room is lost with the process: the journal is its only record."""
        if not (self._unstored or self._deferred or self._overflow):
            return
        kinds: dict[str, int] = {}
        for kind, *_ in self._deferred:
            kinds[kind] = kinds.get(kind, 0) + 1
        log.error("buffer %s closed while it had no room: lost %d events kept in memory (%s) and the gap records of "
                  "%s", self.path, len(self._deferred) + (self._overflow or {}).get("count", 0),
                  ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none",
                  ", ".join(f"{lost['count']} readings of {sensor} ({_utc(lost['first_ts'])} .. "
                            f"{_utc(lost['last_ts'])} UTC)" for sensor, lost in sorted(self._unstored.items()))
                  or "no readings")
        for kind, source, data, ts in list(self._deferred)[-50:]:
            log.warning("lost event: %s %s %s %s", _utc(ts), kind, source, data)

    def correct_clock(self, boot_id: str, boot_wall_time: float) -> int:
        """Once the clock syncs, re-time this boot's unsynced, unacknowledged readings from monotonic time.

        ``boot_wall_time`` is the true wall time at monotonic zero (``wall - monotonic`` read right after sync).
        """
        with self._transaction() as db:
            self._write_held(db)
            cursor = db.execute(
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
        held = self._held_pending((epoch, seq)) if stream == "readings" else []
        rows = list(self._db.query(
            f"SELECT * FROM {stream} WHERE acked = 0 AND (epoch, seq) > (?, ?) ORDER BY epoch, seq LIMIT ?",
            (epoch, seq, limit),
        ))
        return _merged(rows, [_held_dict(row) for row in held], lambda r: (r["epoch"], r["seq"]), limit)

    def pending_readings(self, limit: int = 500, after: tuple[int, int] | None = None) -> list[PendingReading]:
        """Unacknowledged readings, oldest ``(epoch, seq)`` first, optionally strictly after a key, as the uplink
        sends them (a row that cannot be read as a reading comes back garbled, see :class:`PendingReading`)."""
        epoch, seq = after or (0, 0)
        held = self._held_pending((epoch, seq))  # first: a row committed meanwhile is then read from the file
        rows = _sound_readings(self._db.execute(
            f"SELECT {_READING_COLUMNS} FROM readings WHERE acked = 0 AND (epoch, seq) > (?, ?) "
            "ORDER BY epoch, seq LIMIT ?", (epoch, seq, limit)).fetchall())
        return _merged(rows, [_pending_reading(row[:-1]) for row in held], lambda r: (r.epoch, r.seq), limit)

    def good_readings(self, after: tuple[int, int], limit: int,
                      until: tuple[int, int] | None = None) -> GoodReadings | None:
        """The next pending readings of ``after``'s epoch, strictly after it (and up to ``until``, inclusive), at most
        ``limit``, as columns, when every one of them is on file, good and from a synced clock, with every cell what
        the schema promises; else None (and None when there are none). A backlog is thousands of such rows a batch:
        read this way they become a few lists, not a :class:`Reading` each. When this answers None, the uplink reads
        the same rows with :meth:`pending_readings`, which says what is wrong with any of them."""
        epoch, seq = after
        bound, params = "", [epoch, seq]
        if until is not None:
            if until[0] < epoch:
                return None
            if until[0] == epoch:
                bound = " AND seq <= ?"
                params.append(until[1])
        try:
            rows = self._db.execute(
                "SELECT seq, ts, sensor, quantity, unit, value, quality = 'good' AND reason IS NULL AND clock = 1 "
                "AND boot_id IS NULL AND mono IS NULL FROM readings WHERE acked = 0 AND epoch = ? AND seq > ?"
                f"{bound} ORDER BY seq LIMIT ?", (*params, limit)).fetchall()
        except sqlite3.Error:
            return None  # a cell SQLite cannot decode, say: the row-by-row read finds it
        if not rows or self._held_pending(after, (epoch, rows[-1][0])):
            return None
        seqs, times, sensors, quantities, units, values, usual = (list(map(getter, rows)) for getter in
                                                                  _CELL_GETTERS[:7])
        if not (usual.count(1) == len(rows) and set(map(type, seqs)) <= _INT and set(map(type, times)) <= _FLOAT
                and -1e15 < min(times) and max(times) < 1e15 and set(map(type, values)) <= _FLOAT
                and math.isfinite(sum(values)) and set(map(type, sensors)) <= _TEXT
                and set(map(type, quantities)) <= _TEXT and set(map(type, units)) <= _TEXT):
            return None
        return GoodReadings(epoch, seqs, times, sensors, quantities, units, values)

    def pending_readings_range(self, epoch: int, first: int, last: int) -> list[PendingReading]:
        """Unacknowledged readings of ``first..last`` in ``epoch`` (to re-send a batch whose ack did not come)."""
        held = self._held_pending((epoch, first - 1), (epoch, last))
        rows = _sound_readings(self._db.execute(
            f"SELECT {_READING_COLUMNS} FROM readings WHERE acked = 0 AND epoch = ? AND seq BETWEEN ? AND ? "
            "ORDER BY seq", (epoch, first, last)).fetchall())
        return _merged(rows, [_pending_reading(row[:-1]) for row in held], lambda r: (r.epoch, r.seq), None)

    def pending_range(self, stream: str, epoch: int, first: int, last: int) -> list[dict[str, Any]]:
        """Unacknowledged rows of ``first..last`` in ``epoch`` (to re-send a batch whose ack did not come)."""
        _check_stream(stream)
        held = self._held_pending((epoch, first - 1), (epoch, last)) if stream == "readings" else []
        rows = list(self._db.query(
            f"SELECT * FROM {stream} WHERE acked = 0 AND epoch = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (epoch, first, last),
        ))
        return _merged(rows, [_held_dict(row) for row in held], lambda r: (r["epoch"], r["seq"]), None)

    def last_pending_key(self, stream: str = "readings") -> tuple[int, int] | None:
        """The newest pending ``(epoch, seq)`` whose key is a pair of integers (a garbled key sorts last as text, and
        is found by :meth:`garbled_keys`)."""
        _check_stream(stream)
        held = self._held_pending() if stream == "readings" else []
        if held:
            return held[-1][0], held[-1][1]
        row = self._db.execute(
            f"SELECT epoch, seq FROM {stream} WHERE acked = 0 AND typeof(epoch) = 'integer' AND "
            f"typeof(seq) = 'integer' ORDER BY epoch DESC, seq DESC LIMIT 1").fetchone()
        return tuple(row) if row else None

    # Rows that cannot be sent as they are (a garbled cell on a failing SD card): the uplink finds them with these,
    # and moves them out with take_raw (into its quarantine), in one transaction.

    def garbled_keys(self, stream: str) -> list[tuple[str, str]]:
        """The hex of ``(epoch, seq)`` of pending rows whose key is not a pair of integers (they cannot even be
        selected by key)."""
        _check_stream(stream)
        return [tuple(row) for row in self._db.execute(
            f"SELECT hex(epoch), hex(seq) FROM {stream} WHERE acked = 0 AND "
            f"(typeof(epoch) != 'integer' OR typeof(seq) != 'integer')").fetchall()]

    def undecodable(self, stream: str, where: str, params: Sequence[Any]) -> list[tuple[int, int, str]]:
        """``(epoch, seq, error)`` of the pending rows selected by ``where`` (a condition on this stream, as the
        uplink reads it) with a cell SQLite cannot decode (invalid UTF-8 in a TEXT column passes ``quick_check``)."""
        _check_stream(stream)
        found = []
        for epoch, seq in self._db.execute(f"SELECT epoch, seq FROM {stream} WHERE acked = 0 AND {where}",
                                           params).fetchall():
            try:
                self._db.execute(f"SELECT * FROM {stream} WHERE epoch = ? AND seq = ?", (epoch, seq)).fetchall()
            except sqlite3.OperationalError as exc:
                if "Could not decode" not in str(exc):
                    raise
                found.append((epoch, seq, str(exc)))
        return found

    def take_raw(self, stream: str, where: str, params: Sequence[Any]) -> dict[str, list[Any]] | None:
        """Remove the row ``where`` selects and return every cell of it as ``[sqlite type, text]``: text and blobs as
        hex (their exact bytes, whatever they are), numbers as their literal; read with SQL functions only, so an
        undecodable cell never reaches Python. None if no row matches. In the caller's transaction (the row goes
        with whatever keeps it)."""
        _check_stream(stream)
        with self._transaction() as db:
            if stream == "readings":
                self._write_held(db)
            columns = [row[1] for row in db.execute(f"PRAGMA table_info({stream})").fetchall()]
            parts = ", ".join(f"typeof(\"{c}\"), CASE WHEN typeof(\"{c}\") IN ('text', 'blob') THEN hex(\"{c}\") "
                              f"ELSE quote(\"{c}\") END" for c in columns)
            row = db.execute(f"SELECT {parts} FROM {stream} WHERE {where}", params).fetchone()
            if row is None:
                return None
            db.execute(f"DELETE FROM {stream} WHERE {where}", params)
        return {c: [row[2 * i], row[2 * i + 1]] for i, c in enumerate(columns)}

    def ack(self, stream: str, epoch: int, first: int, last: int) -> int:
        """Mark ``first..last`` of ``epoch`` acknowledged (idempotent); return how many rows changed."""
        _check_stream(stream)
        with self._write_lock:
            changed = 0
            if stream == "readings" and self._held:
                for row in self._held:  # acknowledged before their commit: written as acknowledged, once
                    if row[0] == epoch and first <= row[1] <= last and not row[-1]:
                        row[-1] = 1
                        changed += 1
                below = [row[1] for row in self._held if row[0] == epoch]
                if below and first >= below[0]:
                    return changed  # every row of the range is held: nothing on disk to change
            with self._writing():
                cursor = self._db.execute(
                    f"UPDATE {stream} SET acked = 1 WHERE epoch = ? AND seq BETWEEN ? AND ? AND acked = 0",
                    (epoch, first, last),
                )
        return changed + cursor.rowcount

    def prune(self, older_than: float) -> int:
        """Delete acknowledged rows (readings and events) older than ``older_than``; pending rows always stay."""
        with self._write_lock, self._writing():
            deleted = 0
            for stream in STREAMS:
                deleted += self._db.execute(
                    f"DELETE FROM {stream} WHERE acked = 1 AND ts < ?", (older_than,)
                ).rowcount
        return deleted

    def out_of_room(self) -> bool:
        """True while the buffer's file system is full: then a write that fails is a degraded state (readings dropped
        and counted, control going on), not a fault that a restart would cure."""
        return self.full or free_bytes(self.path) < LOW_SPACE

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

    #: Seconds the disk budget's TRUNCATE checkpoint may hold SQLite's write lock waiting for readers.
    TRUNCATE_WAIT = 0.2

    def used_bytes(self) -> int:
        """Bytes of the database file in use (free pages excluded) plus the write-ahead log."""
        wal = Path(f"{self.path}-wal")
        return self._pages_in_use() + (wal.stat().st_size if wal.exists() else 0)

    def enforce_budget(self, max_bytes: int, now: float, chunk: int = 5000) -> list[dict[str, Any]]:
        """Keep the buffer within ``max_bytes``: drop acknowledged rows first, oldest first; then, only if that is
        not enough, the oldest unacknowledged readings, each dropped range recorded as a ``buffer.gap`` event so the
        data center learns exactly what is missing. Events are never dropped for space. Returns the gaps.

        Each chunk of at most ``chunk`` rows is a short transaction of its own, and the write lock is released
        between chunks, so sampling rounds (which need it) go on while a large buffer is brought down. The
        write-ahead log is checkpointed without the write lock: PASSIVE between chunks (it waits for nobody), one
        TRUNCATE at the end (SQLite's busy timeout waits for the writer in hand), so the log gives its room back."""
        gaps: list[dict[str, Any]] = []
        target = int(max_bytes * 0.95)  # a little headroom, so the next round does not start over at once
        if self.used_bytes() <= max_bytes:
            return gaps
        try:
            while (excess := self._excess_rows(target, chunk)) > 0:
                with self._transaction() as db:
                    deleted = db.execute(
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
        finally:
            for gap in gaps:
                log.error("buffer over its budget of %d bytes: dropped unacknowledged readings %d..%d of epoch %d "
                          "(%d)", max_bytes, gap["first_seq"], gap["last_seq"], gap["epoch"], gap["count"])
        self._checkpoint("TRUNCATE")
        return gaps

    def _checkpoint(self, mode: str) -> None:
        """Move the write-ahead log into the file, without the buffer's write lock (SQLite's own locking protects a
        checkpoint). PASSIVE does what it can at once and waits for nobody. TRUNCATE also empties the log file, but
        it holds SQLite's write lock while it waits for readers, so it waits at most ``TRUNCATE_WAIT`` (not the
        connection's 30 s busy timeout): a long reader (an export) must not hold up sampling rounds; a log it could
        not empty is emptied at the budget's next run."""
        with self._writing():
            db = self._db
            if mode != "TRUNCATE":
                db.execute(f"PRAGMA wal_checkpoint({mode})")
                return
            timeout = db.execute("PRAGMA busy_timeout").fetchone()[0]
            db.execute(f"PRAGMA busy_timeout = {int(self.TRUNCATE_WAIT * 1000)}")
            try:
                busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.OperationalError as exc:  # SQLITE_BUSY: a writer kept the lock past the wait
                busy = str(exc)
            finally:
                db.execute(f"PRAGMA busy_timeout = {timeout}")
            if busy:
                log.debug("buffer %s: the write-ahead log is not emptied yet (busy); the budget's next run tries "
                          "again", self.path)

    def _excess_rows(self, target: int, most: int) -> int:
        """About how many readings must go to bring the file down to ``target`` bytes (0 if it is there), at most
        ``most`` at a time. Measured on the pages in use after a PASSIVE checkpoint (deletions grow the log, and the
        log goes back to its start once checkpointed); the TRUNCATE at the end of :meth:`enforce_budget` empties it."""
        self._checkpoint("PASSIVE")
        used = self._pages_in_use()
        if used - target <= 0:
            return 0
        rows = self._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        per_row = max(1, used // max(rows, 1))
        return min(most, max(100, (used - target) // per_row + 1))

    def _pages_in_use(self) -> int:
        """Bytes of the database in use (free pages excluded), as this connection sees it: the log's pages
        included, whether checkpointed or not; the log file's own size excluded."""
        db = self._db
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        return (db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]) \
            * page_size

    def _drop_oldest_pending(self, chunk: int, now: float) -> list[dict[str, Any]]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT epoch, seq, ts FROM readings WHERE acked = 0 ORDER BY epoch, seq LIMIT ?", (chunk,)
            ).fetchall()
            gaps = []
            for epoch in sorted({r[0] for r in rows}):
                of_epoch = [r for r in rows if r[0] == epoch]
                ts_by_seq = {r[1]: r[2] for r in of_epoch}
                for first, last in seq_ranges([r[1] for r in of_epoch]):
                    db.execute("DELETE FROM readings WHERE epoch = ? AND seq BETWEEN ? AND ?", (epoch, first, last))
                    gap = BufferGap(epoch, first, last, last - first + 1, ts_by_seq[first], ts_by_seq[last]).to_data()
                    self.append_event(BufferGap.KIND, "buffer", gap, ts=now)
                    gaps.append(gap)
        return gaps

    # ---------------------------------------------------------------------------------------------------- queries

    def held_latest(self) -> dict[str, list[dict[str, Any]]]:
        """The newest reading of each quantity of each sensor among those held for the commit window (in memory,
        not on disk yet), as :meth:`latest` gives rows: what another process (``edge status``, ``edge web``) cannot
        read from the file, and asks the daemon for over the control socket."""
        with self._write_lock:
            held = list(self._held)
        newest: dict[tuple[str, str], list[Any]] = {}
        for row in held:
            key = (row[3], row[4])
            if key not in newest or (row[0], row[1]) > (newest[key][0], newest[key][1]):
                newest[key] = row
        result: dict[str, list[dict[str, Any]]] = {}
        for (sensor, _quantity), row in sorted(newest.items()):
            result.setdefault(sensor, []).append(dict(zip(_HELD_COLUMNS, row)))
        return result

    def held_readings(self, sensors: Iterable[str], since: float) -> list[dict[str, Any]]:
        """The readings of ``sensors`` taken at or after ``since`` among those held for the commit window, in time
        order, as :meth:`readings` gives rows."""
        wanted = set(sensors)
        with self._write_lock:
            held = [row for row in self._held if row[3] in wanted and row[2] >= since]
        return [dict(zip(_HELD_COLUMNS, row)) for row in sorted(held, key=lambda r: (r[2], r[0], r[1]))]

    def committed_keys(self, epoch: int, first: int, last: int) -> set[int]:
        """The readings seqs of ``epoch`` between ``first`` and ``last`` that are in the file."""
        return {seq for (seq,) in self._db.execute(
            "SELECT seq FROM readings WHERE epoch = ? AND seq BETWEEN ? AND ?", (epoch, first, last))}

    def _commit_for_readers(self) -> None:
        if self._held:
            try:
                self.commit()
            except BufferWriteError:
                pass  # counted as unstored; the reader reads what is on disk

    def current_epoch(self) -> int | None:
        row = self._db.execute("SELECT MAX(epoch) FROM epochs").fetchone()
        return row[0] if row else None

    def quick_check(self) -> list[str]:
        """SQLite's ``quick_check`` of the file on this thread's connection: ``["ok"]`` when intact."""
        return [row[0] for row in self._db.execute("PRAGMA quick_check")]

    def last_reading_ts(self) -> float | None:
        """When the newest reading in the file was taken (the last sign of life of the daemon that stored it)."""
        held = list(self._held)
        if held:
            return max(row[2] for row in held)
        self._tables_or_unavailable()
        return self._db.execute("SELECT MAX(ts) FROM readings").fetchone()[0]

    def counts(self, stream: str = "readings") -> dict[str, Any]:
        _check_stream(stream)
        row = self._db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(acked = 0), 0), MIN(CASE WHEN acked = 0 THEN ts END) FROM {stream}"
        ).fetchone()
        total, pending, oldest = row
        if stream == "readings" and self._held:
            held = list(self._held)
            waiting = [r for r in held if not r[-1]]
            total, pending = total + len(held), pending + len(waiting)
            if oldest is None and waiting:
                oldest = waiting[0][2]
        return {"total": total, "pending": pending, "acknowledged": total - pending, "oldest_pending_ts": oldest}

    def latest(self, sensors: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """The most recent reading of each quantity of each sensor: its newest row, walking back from the newest
        reading (a sensor that reads at all is found within its interval's rounds), then the rows of that round (a
        round's readings of one sensor are stored together). In the daemon's process, what the commit window holds
        is committed first."""
        self._commit_for_readers()
        result: dict[str, list[dict[str, Any]]] = {}
        for sensor in sensors:
            newest = self._db.execute(
                "SELECT epoch, seq, ts FROM readings WHERE sensor = ? ORDER BY epoch DESC, seq DESC LIMIT 1",
                (sensor,)).fetchone()
            result[sensor] = [] if newest is None else list(self._db.query(
                "SELECT * FROM readings WHERE epoch = ? AND seq BETWEEN ? AND ? + 1000 AND sensor = ? AND ts = ? "
                "ORDER BY quantity", (newest[0], newest[1] - 1000, newest[1], sensor, newest[2])))
        return result

    def readings(self, sensors: Iterable[str], since: float) -> Iterator[dict[str, Any]]:
        """Readings of ``sensors`` taken at or after ``since``, in time order."""
        self._commit_for_readers()
        sensors = list(sensors)
        if not sensors:
            return iter(())
        marks = ", ".join("?" for _ in sensors)
        return _rows(self._db.execute(
            f"SELECT * FROM readings WHERE sensor IN ({marks}) AND ts >= ? ORDER BY ts, epoch, seq",
            (*sensors, since),
        ))

    def series(self, sensors: Iterable[str], since: float, step: float) -> dict[tuple[str, str], dict[int, float]]:
        """Readings with a value since ``since``, averaged in buckets of ``step`` seconds: ``{(sensor, quantity):
        {bucket: mean}}``, bucket ``n`` covering ``[since + n*step, since + (n+1)*step)``. A bucket without a good
        or suspect reading is absent (a gap stays a gap). One grouped query over the (sensor, ts) index: a day of
        10 s readings is summed in SQLite, not carried into Python row by row (the web page's charts)."""
        sensors = list(sensors)
        if not sensors or step <= 0:
            return {}
        marks = ", ".join("?" for _ in sensors)
        cursor = self._db.execute(
            f"SELECT sensor, quantity, CAST((ts - ?) / ? AS INTEGER) AS bucket, AVG(value) FROM readings "
            f"WHERE sensor IN ({marks}) AND ts >= ? AND value IS NOT NULL AND quality != 'error' "
            f"GROUP BY sensor, quantity, bucket",
            (since, step, *sensors, since),
        )
        result: dict[tuple[str, str], dict[int, float]] = {}
        for sensor, quantity, bucket, mean in cursor:
            result.setdefault((sensor, quantity), {})[bucket] = mean
        return result

    def events(self, since: float = 0.0) -> Iterator[dict[str, Any]]:
        return _rows(self._db.execute("SELECT * FROM events WHERE ts >= ? ORDER BY epoch, seq", (since,)))

    def epochs(self) -> list[dict[str, Any]]:
        self._tables_or_unavailable()
        return list(self._db.query("SELECT * FROM epochs ORDER BY epoch"))

    def _tables_or_unavailable(self) -> None:
        """Before its epoch is on disk, a fresh file may not have the buffer's tables yet (the start that creates
        them was refused: no room, a read-only card, a lock): what reads them as it starts waits, as on a full disk."""
        if self._report is None and not self._reader and not self._own.exists("epochs"):
            raise BufferUnavailable(f"buffer {self.path} has no tables yet ({self.refusal or 'not started'})")


def _sound_readings(rows: list[tuple[Any, ...]]) -> list[PendingReading]:
    """Rows of ``_READING_COLUMNS`` as pending readings. When every cell of every row is what the schema promises
    (checked column by column, each check a loop in C), each row becomes its :class:`Reading` at once; otherwise
    each row is read cell by cell (:func:`_pending_reading`), which finds the garbled ones and says why."""
    if not rows or not _all_sound(rows):
        return [_pending_reading(row) for row in rows]
    new = tuple.__new__
    return [new(PendingReading, (row[0], row[1], new(Reading, row[1:]), None)) for row in rows]


_INT, _FLOAT, _TEXT = frozenset({int}), frozenset({float}), frozenset({str})
_FLOAT_OR_NULL, _TEXT_OR_NULL = frozenset({float, type(None)}), frozenset({str, type(None)})
_QUALITY_SET, _CLOCKS = frozenset(QUALITIES), frozenset({0, 1, 2})


def _all_sound(rows: list[tuple[Any, ...]]) -> bool:
    """Whether every row passes :func:`_pending_reading`'s check of the usual row: the same conditions, column by
    column. A False only sends the rows the slow way (a sum of finite values that overflows, say)."""
    _, seq, ts, sensor, quantity, value, unit, quality, reason, clock, boot_id, mono = _columns(rows)
    if not (set(map(type, seq)) <= _INT and set(map(type, ts)) <= _FLOAT and -1e15 < min(ts)
            and max(ts) < 1e15 and set(map(type, sensor)) <= _TEXT and set(map(type, quantity)) <= _TEXT
            and set(map(type, value)) <= _FLOAT_OR_NULL and set(map(type, unit)) <= _TEXT
            and set(quality) <= _QUALITY_SET and set(map(type, reason)) <= _TEXT_OR_NULL
            and set(map(type, clock)) <= _INT and set(clock) <= _CLOCKS
            and set(map(type, boot_id)) <= _TEXT_OR_NULL and set(map(type, mono)) <= _FLOAT_OR_NULL):
        return False
    values = list(filter(_is_number, value))
    monos = list(filter(_is_number, mono))
    return math.isfinite(sum(values)) and (not monos or -1e15 < min(monos) and max(monos) < 1e15)


_is_number = partial(is_not, None)
_CELL_GETTERS = tuple(itemgetter(i) for i in range(12))


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """The 12 columns of reading rows, each in one pass in C (``zip(*rows)`` is several times slower)."""
    return [list(map(getter, rows)) for getter in _CELL_GETTERS]


class _Garbled(Exception):
    """A cell of a reading row that is not what the schema promises."""


def _pending_reading(row: Sequence[Any]) -> PendingReading:
    """One row of ``_READING_COLUMNS`` read defensively: the one place where a stored reading becomes a
    :class:`Reading` again, and where a garbled one is found (the uplink sets it aside with this reason)."""
    epoch, seq, ts, sensor, quantity, value, unit, quality, reason, clock, boot_id, mono = row
    if (type(seq) is int and type(ts) is float and -1e15 < ts < 1e15 and type(sensor) is str  # the usual row, at once
            and type(quantity) is str and (value is None or type(value) is float and math.isfinite(value))
            and type(unit) is str and quality in QUALITIES and (reason is None or type(reason) is str)
            and type(clock) is int and 0 <= clock <= 2 and (boot_id is None or type(boot_id) is str)
            and (mono is None or type(mono) is float and -1e15 < mono < 1e15)):
        return PendingReading(epoch, seq, Reading(seq, ts, sensor, quantity, value, unit, quality, reason, clock,
                                                  boot_id, mono))
    try:
        if quality not in QUALITIES:
            raise _Garbled(f"quality {quality!r} is not one of {', '.join(QUALITIES)}")
        if clock not in (0, 1, 2):
            raise _Garbled(f"clock {clock!r} is not 0, 1 or 2")
        reading = Reading(_cell_int("seq", seq), _cell_number("ts", ts), _cell_text("sensor", sensor),
                          _cell_text("quantity", quantity),
                          None if value is None else _cell_number("value", value, None), _cell_text("unit", unit),
                          quality, _cell_text("reason", reason, True), clock, _cell_text("boot_id", boot_id, True),
                          None if mono is None else _cell_number("mono", mono))
    except _Garbled as exc:
        return PendingReading(epoch, seq, None, str(exc))
    return PendingReading(epoch, seq, reading)


def _cell_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Garbled(f"{name} {value!r} is not an integer")
    return value


def _cell_number(name: str, value: Any, bound: float | None = 1e15) -> float:
    """A number cell: finite, and for times within ``bound`` seconds of 1970 (a clock's nonsense, not a time)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            bound is not None and not -bound < value < bound):
        raise _Garbled(f"{name} {str(value)[:40]!r} is not a finite number" + ("" if bound is None else " of seconds"))
    return float(value)


def _cell_text(name: str, value: Any, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _Garbled(f"{name} {str(value)[:40]!r} is not text")
    return value


def _rows(cursor: sqlite3.Cursor) -> Iterator[dict[str, Any]]:
    """The rows of a cursor already executed (so its statement was checked for the buffer), as dicts."""
    keys = [d[0] for d in cursor.description]
    for row in cursor:
        yield dict(zip(keys, row))


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _check_stream(stream: str) -> None:
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r} (streams: {', '.join(STREAMS)})")


def _held_dict(row: list[Any]) -> dict[str, Any]:
    """A held reading row as :meth:`Buffer.pending` gives a row of the file."""
    return dict(zip((*_READING_COLUMNS.split(", "), "acked"), row))


def _merged(rows: list[Any], held: list[Any], key: Callable[[Any], tuple[int, int]], limit: int | None) -> list[Any]:
    """Rows read from the file and rows held for the commit window, in key order, each key once (a row committed
    between the two reads is in both), at most ``limit``."""
    if not held:
        return rows
    seen = {key(r) for r in rows}
    merged = sorted([*rows, *(r for r in held if key(r) not in seen)], key=key)
    return merged if limit is None else merged[:limit]
