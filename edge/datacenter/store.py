"""PostgreSQL storage of the data center: schema, tracked migrations, and the one write the collector makes.

Everything a gateway sends is keyed by ``(gateway_id, epoch, seq)``, so writing a batch again (a re-send after a
lost ack, a redelivery after a collector crash) changes nothing. A round's readings of keys never seen go straight
into ``readings`` with one binary ``COPY``; a round that meets a key already held, and events always, go in through
``COPY`` into temporary staging tables and one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` each (gaps in one
statement too); all of a collector's work for one round is a single transaction. ``docs/datacenter.md`` explains
the schema.

The data center has one reading type, the contract's :class:`~edge.contract.protocol.Reading` in a
:class:`~edge.contract.protocol.ReadingBatch`: the collector decodes it, and :meth:`Store.write` takes it (in a
:class:`Work`). The rows written by ``COPY`` (:func:`copy_readings`, :func:`staged_readings`) are a private detail
of this writer: no other module builds or reads one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple

import psycopg
from psycopg import errors

from edge.contract.events import BufferGap, CommandResult, DaemonStart
from edge.contract.protocol import EventBatch, ReadingBatch, seq_ranges

log = logging.getLogger(__name__)

READING_PARTITIONS = 16
REJECTED_PAYLOAD_LIMIT = 64 * 1024
_MIGRATION_LOCK = 0x65646765  # pg_advisory_xact_lock key ("edge"): collectors starting together migrate once


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


def _readings_partitions() -> str:
    return "\n".join(
        f"CREATE TABLE readings_p{i:02d} PARTITION OF readings FOR VALUES WITH (MODULUS {READING_PARTITIONS}, "
        f"REMAINDER {i});" for i in range(READING_PARTITIONS))


def _rollup_tables() -> str:
    return "\n".join(f"""
        CREATE TABLE rollup_{width} (
            gateway_id  text             NOT NULL,
            sensor      text             NOT NULL,
            quantity    text             NOT NULL,
            unit        text             NOT NULL,
            bucket      timestamptz      NOT NULL,
            readings    integer          NOT NULL,
            good        integer          NOT NULL,
            min         double precision,
            max         double precision,
            sum         double precision,
            PRIMARY KEY (gateway_id, bucket, sensor, quantity, unit)
        );""" for width in ("1m", "1h", "1d"))


MIGRATIONS = [
    Migration(1, "readings, events, gateway status, gaps, rejected messages", f"""
        CREATE TABLE readings (
            gateway_id  text             NOT NULL,
            epoch       bigint           NOT NULL,
            seq         bigint           NOT NULL,
            ts          timestamptz      NOT NULL,
            sensor      text             NOT NULL,
            quantity    text             NOT NULL,
            value       double precision,
            unit        text             NOT NULL,
            quality     text             NOT NULL,
            reason      text,
            clock       smallint         NOT NULL,
            boot_id     text,
            mono        double precision,
            received_at timestamptz      NOT NULL DEFAULT now(),
            PRIMARY KEY (gateway_id, epoch, seq)
        ) PARTITION BY HASH (gateway_id);
        {_readings_partitions()}
        CREATE INDEX readings_series_ts ON readings (gateway_id, sensor, quantity, ts);

        CREATE TABLE events (
            gateway_id  text        NOT NULL,
            epoch       bigint      NOT NULL,
            seq         bigint      NOT NULL,
            ts          timestamptz NOT NULL,
            kind        text        NOT NULL,
            source      text        NOT NULL,
            data        jsonb       NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (gateway_id, epoch, seq)
        );
        CREATE INDEX events_gateway_ts ON events (gateway_id, ts);
        CREATE INDEX events_kind_ts ON events (kind, ts);

        CREATE TABLE gateway_status (
            gateway_id    text        PRIMARY KEY,
            state         text        NOT NULL CHECK (state IN ('online', 'offline')),
            state_since   timestamptz NOT NULL,
            last_seen     timestamptz NOT NULL,
            version       text,
            epoch         bigint,
            backlog       bigint,
            updated_at    timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE gaps (
            gateway_id  text        NOT NULL,
            stream      text        NOT NULL,
            epoch       bigint      NOT NULL,
            first_seq   bigint      NOT NULL,
            last_seq    bigint      NOT NULL,
            count       bigint      NOT NULL,
            first_ts    timestamptz,
            last_ts     timestamptz,
            reported_at timestamptz NOT NULL,
            PRIMARY KEY (gateway_id, stream, epoch, first_seq)
        );

        CREATE TABLE rejected_messages (
            id           bigserial   PRIMARY KEY,
            received_at  timestamptz NOT NULL DEFAULT now(),
            topic        text        NOT NULL,
            reason       text        NOT NULL,
            payload      bytea       NOT NULL,
            payload_size integer     NOT NULL
        );
        CREATE INDEX rejected_messages_received ON rejected_messages (received_at);
    """),
    # edge/datacenter/tokens.py: history API tokens, stored as SHA-256 hashes (never the token itself)
    Migration(2, "history API tokens", """
        CREATE TABLE api_tokens (
            id          bigserial   PRIMARY KEY,
            name        text        NOT NULL,
            token_hash  text        NOT NULL UNIQUE,
            gateways    text[]      NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            expires_at  timestamptz,
            revoked_at  timestamptz
        );
        CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;
    """),
    # A key that arrives again with other content is a key the gateway used in an earlier life (a lost buffer):
    # never silently dropped, recorded here and sent back as a conflict so the gateway re-keys it.
    Migration(3, "epoch conflicts and the highest epoch held per gateway", """
        CREATE TABLE conflicts (
            id          bigserial   PRIMARY KEY,
            gateway_id  text        NOT NULL,
            stream      text        NOT NULL,
            epoch       bigint      NOT NULL,
            first_seq   bigint      NOT NULL,
            last_seq    bigint      NOT NULL,
            count       bigint      NOT NULL,
            detected_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX conflicts_gateway ON conflicts (gateway_id, detected_at);
        ALTER TABLE gateway_status ADD COLUMN max_epoch bigint;
        UPDATE gateway_status AS g SET max_epoch = greatest(
            (SELECT max(epoch) FROM readings AS r WHERE r.gateway_id = g.gateway_id),
            (SELECT max(epoch) FROM events AS e WHERE e.gateway_id = g.gateway_id));
    """),
    # The greenhouse's and its devices' display names, as its latest daemon.start (by epoch) gave them.
    Migration(4, "display names per gateway", """
        ALTER TABLE gateway_status ADD COLUMN name text, ADD COLUMN names jsonb, ADD COLUMN names_epoch bigint;
    """),
    # The console (edge/datacenter/console.py) and remote commands (edge/datacenter/commands.py): a token's scope
    # (every token made before is read-only), the commands sent and their answers, and readings received per gateway
    # and hour, kept by the collector, so the fleet's 24 h coverage is one small query for 5,000 gateways. The
    # hours of the last two days are counted from the readings already held.
    Migration(5, "token scopes, remote commands, readings per gateway and hour", """
        ALTER TABLE api_tokens ADD COLUMN scope text NOT NULL DEFAULT 'read' CHECK (scope IN ('read', 'control'));
        CREATE TABLE commands (
            id          text        PRIMARY KEY,
            gateway_id  text        NOT NULL,
            op          text        NOT NULL,
            args        jsonb       NOT NULL,
            issued_by   text        NOT NULL,
            sent_at     timestamptz NOT NULL DEFAULT now(),
            expires_at  timestamptz NOT NULL,
            state       text        NOT NULL DEFAULT 'pending'
                                    CHECK (state IN ('pending', 'done', 'refused', 'expired')),
            answered_at timestamptz,
            result      jsonb
        );
        CREATE INDEX commands_gateway_sent ON commands (gateway_id, sent_at);
        CREATE TABLE gateway_hours (
            gateway_id  text        NOT NULL,
            hour        timestamptz NOT NULL,
            readings    bigint      NOT NULL,
            good        bigint      NOT NULL,
            PRIMARY KEY (gateway_id, hour)
        );
        CREATE INDEX gateway_hours_hour ON gateway_hours (hour);
        INSERT INTO gateway_hours (gateway_id, hour, readings, good)
        SELECT gateway_id, date_bin('1 hour', ts, '2000-01-01 00:00:00+00'), count(*),
               count(*) FILTER (WHERE quality = 'good')
        FROM readings WHERE ts >= now() - interval '2 days' AND ts < now() + interval '1 day' GROUP BY 1, 2;
    """),
    # Roll-ups (edge/datacenter/storage.py): per series (gateway, sensor, quantity, unit) and minute, hour and UTC day,
    # every reading counted, and count, min, max and sum of the good ones within the physical range of their
    # quantity; kept for ever. The collector marks a gateway-hour dirty (roll-ups stale) and raw (rows in the hot
    # table) in the upsert that counts its readings; the maintenance recomputes dirty hours that have ended. Every
    # hour already held is counted and marked here, so the first maintenance rolls the whole history up.
    Migration(20, "roll-ups per minute, hour and day; dirty and raw gateway-hours", f"""
        ALTER TABLE gateway_hours ADD COLUMN dirty boolean NOT NULL DEFAULT true,
                                  ADD COLUMN raw boolean NOT NULL DEFAULT true;
        CREATE INDEX gateway_hours_dirty ON gateway_hours (hour) WHERE dirty;
        CREATE INDEX gateway_hours_raw ON gateway_hours (hour) WHERE raw;
        INSERT INTO gateway_hours AS h (gateway_id, hour, readings, good)
        SELECT gateway_id, date_bin('1 hour', ts, '2000-01-01 00:00:00+00'), count(*),
               count(*) FILTER (WHERE quality = 'good')
        FROM readings GROUP BY 1, 2
        ON CONFLICT (gateway_id, hour) DO UPDATE SET dirty = true, raw = true;
        {_rollup_tables()}
        -- Every reading of a gateway in [first, last) held in the hot table: one index probe per series of the
        -- gateway (a loose scan of (gateway_id, sensor, quantity, ts)), then each series' rows in the range.
        CREATE FUNCTION readings_hot(in_gateway text, in_first timestamptz, in_last timestamptz)
        RETURNS SETOF readings LANGUAGE sql STABLE AS $$
            WITH RECURSIVE s AS (
                (SELECT r.sensor, r.quantity FROM readings r WHERE r.gateway_id = in_gateway
                 ORDER BY r.sensor, r.quantity LIMIT 1)
                UNION ALL
                SELECT n.sensor, n.quantity FROM s CROSS JOIN LATERAL (
                    SELECT r.sensor, r.quantity FROM readings r
                    WHERE r.gateway_id = in_gateway AND (r.sensor, r.quantity) > (s.sensor, s.quantity)
                    ORDER BY r.sensor, r.quantity LIMIT 1) n
            )
            SELECT r.* FROM s CROSS JOIN LATERAL (
                SELECT * FROM readings r WHERE r.gateway_id = in_gateway AND r.sensor = s.sensor
                AND r.quantity = s.quantity AND r.ts >= in_first AND r.ts < in_last) r
        $$;
    """),
    # Compaction (edge/datacenter/storage.py): raw readings older than storage.raw_days leave the hot table for one
    # row per series and UTC day, partitioned by month, whose columns are delta-encoded lists and arrays that
    # PostgreSQL compresses (TOAST). readings_compacted holds the keys compacted, as seq ranges per gateway and
    # epoch: the collector stores no key found there again. readings_cold() reads the chunks back as rows.
    Migration(21, "compacted readings: chunks per series and day, partitioned by month; compacted key ranges", """
        CREATE TABLE readings_compact (
            gateway_id  text        NOT NULL,
            sensor      text        NOT NULL,
            quantity    text        NOT NULL,
            day         date        NOT NULL,
            unit        text        NOT NULL,
            n           integer     NOT NULL,
            first_ts    timestamptz NOT NULL,
            last_ts     timestamptz NOT NULL,
            epochs      bigint[]    NOT NULL,
            seqs        text        NOT NULL,
            times       text        NOT NULL,
            time_unit   integer     NOT NULL,
            vals        text        NOT NULL,
            value_scale smallint,
            qualities   text[]      NOT NULL,
            reasons     text[],
            clocks      smallint[]  NOT NULL,
            boot_ids    text[],
            monos       double precision[],
            PRIMARY KEY (gateway_id, day, sensor, quantity, unit)
        ) PARTITION BY RANGE (day);
        -- Each series' first and last compacted time per unit (the history API's series list, one row each).
        CREATE TABLE compacted_series (
            gateway_id  text        NOT NULL,
            sensor      text        NOT NULL,
            quantity    text        NOT NULL,
            unit        text        NOT NULL,
            first_ts    timestamptz NOT NULL,
            last_ts     timestamptz NOT NULL,
            PRIMARY KEY (gateway_id, sensor, quantity, unit)
        );
        CREATE TABLE readings_compacted (
            gateway_id  text   NOT NULL,
            epoch       bigint NOT NULL,
            first_seq   bigint NOT NULL,
            last_seq    bigint NOT NULL,
            PRIMARY KEY (gateway_id, epoch, first_seq)
        );
        -- Every compacted reading is older than this (UTC seconds; the end of the latest day compacted): the
        -- collector looks up the compacted keys only for readings older than it, or re-timed (clock 2).
        CREATE TABLE compaction_horizon (before double precision NOT NULL);
        INSERT INTO compaction_horizon VALUES ('-Infinity');
        -- Running sums of a list of deltas (a NULL stays NULL and adds nothing).
        CREATE FUNCTION edge_cumsum(deltas bigint[]) RETURNS bigint[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT array_agg(CASE WHEN d IS NOT NULL THEN s END ORDER BY i)
            FROM (SELECT d, i, (sum(d) OVER (ORDER BY i))::bigint AS s
                  FROM unnest(deltas) WITH ORDINALITY AS u(d, i)) AS t
        $$;
        -- The compacted readings of a gateway on the UTC days from in_first to in_last (the caller filters ts),
        -- of the sensors and quantities given (NULL: all), as the hot table's rows (received_at is not kept).
        CREATE FUNCTION readings_cold(in_gateway text, in_sensors text[], in_quantities text[],
                                      in_first timestamptz, in_last timestamptz)
        RETURNS TABLE (gateway_id text, epoch bigint, seq bigint, ts timestamptz, sensor text, quantity text,
                       value double precision, unit text, quality text, reason text, clock smallint, boot_id text,
                       mono double precision)
        LANGUAGE sql STABLE AS $$
            SELECT c.gateway_id, u.epoch, u.seq,
                   timestamptz 'epoch' + (u.t * c.time_unit / 1000000) * interval '1 second'
                                       + (u.t * c.time_unit % 1000000) * interval '1 microsecond',
                   c.sensor, c.quantity, u.v, c.unit, u.q, u.why, u.clock, u.boot, u.mono
            FROM readings_compact c CROSS JOIN LATERAL unnest(
                c.epochs,
                edge_cumsum(edge_cumsum(string_to_array(c.seqs, ',')::bigint[])),
                edge_cumsum(edge_cumsum(string_to_array(c.times, ',')::bigint[])),
                CASE WHEN c.value_scale IS NULL THEN string_to_array(c.vals, ',', '')::float8[]
                     ELSE (SELECT array_agg(m / 10::float8 ^ c.value_scale ORDER BY i)
                           FROM unnest(edge_cumsum(string_to_array(c.vals, ',', '')::bigint[]))
                                WITH ORDINALITY AS x(m, i)) END,
                c.qualities, c.reasons, c.clocks, c.boot_ids, c.monos) AS u(epoch, seq, t, v, q, why, clock, boot, mono)
            WHERE c.gateway_id = in_gateway
              AND (in_sensors IS NULL OR c.sensor = ANY(in_sensors))
              AND (in_quantities IS NULL OR c.quantity = ANY(in_quantities))
              AND c.day >= (in_first AT TIME ZONE 'UTC')::date AND c.day <= (in_last AT TIME ZONE 'UTC')::date
        $$;
    """),
]


def migrate(conn: psycopg.Connection, migrations: Iterable[Migration] = MIGRATIONS) -> list[int]:
    """Apply the migrations this database lacks, in order, each in its own transaction; return their versions."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))  # CREATE ... IF NOT EXISTS races
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
    applied = []
    for migration in sorted(migrations):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)).fetchone():
                continue
            conn.execute(migration.sql)
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                         (migration.version, migration.name))
            applied.append(migration.version)
            log.info("database: applied migration %d (%s)", migration.version, migration.name)
    return applied


# ----------------------------------------------------------------------------------------------- what gets written


@dataclass(frozen=True)
class StatusUpdate:
    """A gateway's birth (``online``) or last-will (``offline``) status message."""

    gateway_id: str
    state: str
    live: bool  # False for a retained message replayed on subscribing: it says nothing about *now*
    version: str | None = None
    epoch: int | None = None
    backlog: int | None = None

    @classmethod
    def from_message(cls, gateway_id: str, body: dict[str, Any], live: bool) -> StatusUpdate:
        version = body.get("version")
        return cls(gateway_id, body["state"], live, version if isinstance(version, str) else None,
                   _whole(body.get("epoch")), _whole(body.get("backlog")))


@dataclass(frozen=True)
class Rejected:
    """A message that could not be stored as what it claims to be, with the reason."""

    topic: str
    reason: str
    payload: bytes


@dataclass
class Work:
    """Everything one collector round writes, in one transaction."""

    readings: list[ReadingBatch] = field(default_factory=list)
    events: list[EventBatch] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    #: the readings' rows for the direct ``COPY`` (:func:`copy_readings`), when made ahead of the transaction
    #: (:meth:`with_copy`); None: :meth:`Store.write` makes them
    copy: tuple[bytes, int, dict[tuple[str, int], list[int]]] | None = None

    def __bool__(self) -> bool:
        return bool(self.readings or self.events or self.statuses or self.rejected)

    def with_copy(self) -> Work:
        """This work with its readings' ``COPY`` rows made now, outside the transaction: the collector makes them
        while the round before is written, so the writer only waits for the database."""
        if self.readings and self.copy is None:
            self.copy = copy_readings(_in_key_order(self.readings))
        return self


@dataclass
class Written:
    readings_new: int = 0
    readings_duplicate: int = 0
    events_new: int = 0
    gaps_new: int = 0
    #: per batch of the round (by identity), the seqs whose key the database holds with other content: not stored
    conflicts: dict[int, tuple[ReadingBatch | EventBatch, list[int]]] = field(default_factory=dict)
    #: the highest epoch the database holds for each gateway of the round
    max_epochs: dict[str, int] = field(default_factory=dict)
    #: per gateway, the display names its newest daemon.start of the round gave: (epoch, name, names)
    names: dict[str, tuple[int, str | None, dict[str, str]]] = field(default_factory=dict)

    def conflict(self, batch: ReadingBatch | EventBatch, seq: int) -> None:
        self.conflicts.setdefault(id(batch), (batch, []))[1].append(seq)

    def conflicting(self, batch: ReadingBatch | EventBatch) -> list[int]:
        """The seqs of ``batch`` that were not stored because their keys hold other content."""
        return self.conflicts.get(id(batch), (batch, []))[1]

    def __add__(self, other: Written) -> Written:
        counts = [getattr(self, name) + getattr(other, name)
                  for name in ("readings_new", "readings_duplicate", "events_new", "gaps_new")]
        max_epochs = dict(self.max_epochs)
        for gateway_id, epoch in other.max_epochs.items():
            max_epochs[gateway_id] = max(epoch, max_epochs.get(gateway_id, epoch))
        return Written(*counts, {**self.conflicts, **other.conflicts}, max_epochs)


# ------------------------------------------------------------------------------------------------------- the store

#: The data center's one reading type is the protocol's :class:`Reading`, in a :class:`ReadingBatch`. A staged row
#: is the batch's gateway and epoch, every field of the reading (in the order of :data:`READING_FIELDS`, which is
#: the dataclass's: a test holds them equal) and the batch's number in the round, so that a conflict is told to the
#: batch that carried it; :func:`staged_readings` builds them, and nothing else does.
READING_FIELDS = ("seq", "ts", "sensor", "quantity", "value", "unit", "quality", "reason", "clock", "boot_id", "mono")
_STAGE_COLUMNS = ("gateway_id", "epoch", *READING_FIELDS)
_STAGE = """CREATE TEMPORARY TABLE IF NOT EXISTS readings_stage (
    gateway_id text, epoch bigint, seq bigint, ts double precision, sensor text, quantity text,
    value double precision, unit text, quality text, reason text, clock smallint, boot_id text,
    mono double precision, batch integer) ON COMMIT DELETE ROWS"""
_COPY = f"COPY readings_stage ({', '.join(_STAGE_COLUMNS)}, batch) FROM STDIN (FORMAT BINARY)"
_STAGE_TYPES = ["text", "int8", "int8", "float8", "text", "text", "float8", "text", "text", "text", "int2", "text",
                "float8", "int4"]

#: The new readings are counted per gateway and hour in the same statement (``gateway_hours``: the fleet's coverage),
#: in key order, the same for every collector, so that two rounds never wait on each other's rows; the hour is
#: marked ``dirty`` (its roll-ups are stale) and ``raw`` (it has rows in this table) for the maintenance
#: (``edge/datacenter/storage.py``). A key already compacted (``readings_compacted``) is not stored again; only
#: readings older than every day not compacted yet (``compaction_horizon``), or re-timed ones, need the look-up.
_INSERT_STAGED = f"""
    WITH new AS (
        INSERT INTO readings ({', '.join(_STAGE_COLUMNS)})
        SELECT gateway_id, epoch, seq, to_timestamp(ts), sensor, quantity, value, unit, quality, reason, clock,
               boot_id, mono
        FROM readings_stage AS s
        WHERE (s.ts >= (SELECT before FROM compaction_horizon) AND s.clock <> 2)
           OR NOT EXISTS (SELECT FROM readings_compacted AS k WHERE k.gateway_id = s.gateway_id
                          AND k.epoch = s.epoch AND k.first_seq <= s.seq AND k.last_seq >= s.seq)
        ORDER BY gateway_id, epoch, seq, batch
        ON CONFLICT (gateway_id, epoch, seq) DO NOTHING
        RETURNING gateway_id, ts, quality
    ), hours AS (
        INSERT INTO gateway_hours AS h (gateway_id, hour, readings, good)
        SELECT gateway_id, date_bin('1 hour', ts, '2000-01-01 00:00:00+00'), count(*),
               count(*) FILTER (WHERE quality = 'good')
        FROM new GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (gateway_id, hour) DO UPDATE SET readings = h.readings + excluded.readings,
                                                     good = h.good + excluded.good, dirty = true, raw = true
    )
    SELECT count(*) FROM new"""
#: The same reading sent again: same series and value, and the same time, except that a reading first stored
#: unsynced (clock 0) may come back with the time the gateway corrected once its clock synced (clock 2). Not the
#: quality: the collector's own judgement of it (``protocol.flag_implausible``) may change between two sendings.
_SAME_READING = """
    (r.sensor, r.quantity, r.unit) IS NOT DISTINCT FROM (s.sensor, s.quantity, s.unit)
    AND r.value IS NOT DISTINCT FROM s.value
    AND (r.ts = to_timestamp(s.ts)
         OR (r.clock = 0 AND s.clock = 2 AND r.boot_id IS NOT DISTINCT FROM s.boot_id
             AND r.mono IS NOT DISTINCT FROM s.mono))"""
#: A re-send may carry a timestamp the gateway corrected after its clock synced (clock 2) for a reading first stored
#: unsynced (clock 0): the key stays, the better time wins, and with it the quality the collector judged for it (a
#: reading flagged for its unsynced 1970 time is good again at its corrected time). Runs only for batches holding
#: corrected readings, and only for the same reading; the hours it left and the hours it came to are marked dirty.
_RETIME_STAGED = f"""
    WITH before AS (
        SELECT r.gateway_id, r.ts FROM readings_stage AS s
        CROSS JOIN LATERAL (SELECT * FROM readings AS r
                            WHERE r.gateway_id = s.gateway_id AND r.epoch = s.epoch AND r.seq = s.seq LIMIT 1) AS r
        WHERE s.clock = 2 AND r.clock = 0 AND {_SAME_READING}
    ), moved AS (
        UPDATE readings AS r SET ts = to_timestamp(s.ts), clock = s.clock, quality = s.quality, reason = s.reason
        FROM readings_stage AS s
        WHERE s.clock = 2 AND r.clock = 0
          AND r.gateway_id = s.gateway_id AND r.epoch = s.epoch AND r.seq = s.seq AND {_SAME_READING}
        RETURNING r.gateway_id, r.ts
    )
    INSERT INTO gateway_hours AS h (gateway_id, hour, readings, good)
    SELECT DISTINCT gateway_id, date_bin('1 hour', ts, '2000-01-01 00:00:00+00'), 0, 0
    FROM (SELECT * FROM before UNION ALL SELECT * FROM moved) AS t ORDER BY 1, 2
    ON CONFLICT (gateway_id, hour) DO UPDATE SET dirty = true, raw = true"""
#: Staged rows whose key is held with other content. Runs only for rounds that met keys already stored. Each staged
#: row looks its key up in the primary key's index (``LATERAL ... LIMIT 1`` keeps the planner from it): a plain join
#: was planned as a hash join over every stored reading, seconds at a few million rows and growing with the table
#: (a reconnect storm's rounds are nearly all re-sends).
_CONFLICTING_STAGED = f"""
    SELECT s.batch, s.seq FROM readings_stage AS s
    CROSS JOIN LATERAL (SELECT * FROM readings AS r
                        WHERE r.gateway_id = s.gateway_id AND r.epoch = s.epoch AND r.seq = s.seq LIMIT 1) AS r
    WHERE NOT ({_SAME_READING})"""
_INSERT_CONFLICT = """
    INSERT INTO conflicts (gateway_id, stream, epoch, first_seq, last_seq, count)
    VALUES (%s, %s, %s, %s, %s, %s)"""
_EVENT_COLUMNS = ("gateway_id", "epoch", "seq", "ts", "kind", "source", "data")
_EVENT_STAGE = """CREATE TEMPORARY TABLE IF NOT EXISTS events_stage (
    gateway_id text, epoch bigint, seq bigint, ts double precision, kind text, source text, data text,
    batch integer) ON COMMIT DELETE ROWS"""
_EVENT_COPY = f"COPY events_stage ({', '.join(_EVENT_COLUMNS)}, batch) FROM STDIN (FORMAT BINARY)"
_EVENT_STAGE_TYPES = ["text", "int8", "int8", "float8", "text", "text", "text", "int4"]
_INSERT_STAGED_EVENTS = f"""
    INSERT INTO events ({', '.join(_EVENT_COLUMNS)})
    SELECT gateway_id, epoch, seq, to_timestamp(ts), kind, source, data::jsonb FROM events_stage
    ORDER BY gateway_id, epoch, seq, batch
    ON CONFLICT (gateway_id, epoch, seq) DO NOTHING"""
#: Staged events whose key is held with another event. Runs only for rounds that met keys already stored.
_CONFLICTING_STAGED_EVENTS = """
    SELECT s.batch, s.seq FROM events_stage AS s
    CROSS JOIN LATERAL (SELECT * FROM events AS e
                        WHERE e.gateway_id = s.gateway_id AND e.epoch = s.epoch AND e.seq = s.seq LIMIT 1) AS e
    WHERE NOT (e.kind = s.kind AND e.source = s.source AND e.data = s.data::jsonb AND e.ts = to_timestamp(s.ts))"""
#: A gateway's answer to a command from the data center settles it (``edge/datacenter/commands.py``): done or
#: refused, with the answer, even after it expired here (the gateway did carry it out). A later answer to the same
#: id (a replay refused as already received) changes nothing.
_ANSWER_COMMANDS = """
    UPDATE commands AS c SET state = CASE WHEN a.data -> 'ok' = 'true'::jsonb THEN 'done' ELSE 'refused' END,
                             result = a.data, answered_at = a.ts
    FROM (SELECT DISTINCT ON (gateway_id, data::jsonb ->> 'id') gateway_id, data::jsonb AS data,
                 to_timestamp(ts) AS ts
          FROM events_stage WHERE kind = %s ORDER BY gateway_id, data::jsonb ->> 'id', ts) AS a
    WHERE c.gateway_id = a.gateway_id AND c.id = a.data ->> 'id' AND c.state IN ('pending', 'expired')"""
_INSERT_GAPS = """
    INSERT INTO gaps (gateway_id, stream, epoch, first_seq, last_seq, count, first_ts, last_ts, reported_at)
    SELECT g, s, e, f, l, n, to_timestamp(ft), to_timestamp(lt), to_timestamp(r)
    FROM unnest(%s::text[], %s::text[], %s::int8[], %s::int8[], %s::int8[], %s::int8[], %s::float8[], %s::float8[],
                %s::float8[]) AS x(g, s, e, f, l, n, ft, lt, r)
    ON CONFLICT (gateway_id, stream, epoch, first_seq) DO NOTHING"""
#: In gateway order, the same for every collector, so that two rounds never wait on each other's rows.
_SEEN = """
    INSERT INTO gateway_status AS g (gateway_id, state, state_since, last_seen, max_epoch)
    SELECT gateway_id, 'online', now(), now(), max_epoch
    FROM unnest(%s::text[], %s::bigint[]) AS t(gateway_id, max_epoch) ORDER BY gateway_id
    ON CONFLICT (gateway_id) DO UPDATE SET last_seen = greatest(g.last_seen, excluded.last_seen),
        max_epoch = greatest(g.max_epoch, excluded.max_epoch)
    RETURNING gateway_id, max_epoch"""
#: Status messages apply in arrival order (MQTT keeps one topic's order; a retained one is always the latest). Gateway
#: clocks are not compared with ours: a Pi without RTC may be years off until it syncs.
_STATUS = """
    INSERT INTO gateway_status AS g (gateway_id, state, state_since, last_seen, version, epoch, backlog)
    VALUES (%(gateway_id)s, %(state)s, now(), now(), %(version)s, %(epoch)s, %(backlog)s)
    ON CONFLICT (gateway_id) DO UPDATE SET
        state = excluded.state,
        state_since = CASE WHEN g.state = excluded.state THEN g.state_since ELSE now() END,
        last_seen = CASE WHEN %(live)s AND excluded.state = 'online' THEN now() ELSE g.last_seen END,
        version = coalesce(excluded.version, g.version),
        epoch = coalesce(excluded.epoch, g.epoch),
        backlog = coalesce(excluded.backlog, g.backlog),
        updated_at = now()"""
#: Names from a later start replace those of an earlier one, whatever order the re-sends come in.
_NAMES = """
    UPDATE gateway_status SET name = %s, names = %s::jsonb, names_epoch = %s
    WHERE gateway_id = %s AND (names_epoch IS NULL OR names_epoch <= %s)"""
_REJECT = "INSERT INTO rejected_messages (topic, reason, payload, payload_size) VALUES (%s, %s, %s, %s)"


class Store:
    """One connection to the data-center database, migrated, with its staging table ready."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        migrate(conn)
        with conn.transaction():
            conn.execute(_STAGE)
            conn.execute(_EVENT_STAGE)

    @classmethod
    def connect(cls, url: str, **kwargs: Any) -> Store:
        return cls(psycopg.connect(url, **kwargs))

    def close(self) -> None:
        self.conn.close()

    def abandon(self) -> None:
        """From another thread: shut the connection's socket down, so a call waiting on a database that never answers
        fails at once (as on a lost connection) instead of waiting for ever. The connection is unusable afterwards."""
        try:
            fd = self.conn.pgconn.socket
        except psycopg.Error:
            return  # already closed
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed meanwhile

    @property
    def broken(self) -> bool:
        return self.conn.closed or self.conn.broken

    def write(self, work: Work) -> Written:
        """Write one round in one transaction: committed when this returns, nothing written if it raises."""
        written = Written()
        with self.conn.transaction():
            if work.readings:
                self._write_readings(work.readings, written, work.copy)
            if work.events:
                self._write_events(work.events, written)
            if written.conflicts:
                self._record_conflicts(written)
            self._touch(work, written)
            # executemany: one round trip for all of them (psycopg pipelines it), in this order
            if written.names:
                with self.conn.cursor() as cur:
                    cur.executemany(_NAMES, [(name, json.dumps(names, ensure_ascii=False), epoch, gateway_id, epoch)
                                             for gateway_id, (epoch, name, names) in sorted(written.names.items())])
            if work.statuses:
                with self.conn.cursor() as cur:
                    cur.executemany(_STATUS, [status.__dict__ for status in work.statuses])
            for item in work.rejected:
                self.conn.execute(_REJECT, (storable_text(item.topic), storable_text(item.reason),
                                            item.payload[:REJECTED_PAYLOAD_LIMIT], len(item.payload)))
        return written

    def _write_readings(self, batches: list[ReadingBatch], written: Written,
                        made: tuple[bytes, int, dict[tuple[str, int], list[int]]] | None = None) -> None:
        """Every reading of the round. The usual round holds only keys the database has never seen: its rows go
        straight into ``readings`` in one binary ``COPY`` (:func:`copy_readings`), in a savepoint, and the hours
        they fall in are counted from the batches. A ``COPY`` that meets a key already held (a re-send after a lost
        ack, a redelivery, another collector's write, a batch twice in the round) fails as a whole on the primary
        key, is rolled back to the savepoint, and the round takes the staged path, which sorts out duplicates,
        conflicts and re-timed readings (:meth:`_write_readings_staged`). With every key new there is nothing to
        sort out: no duplicate, no conflict, and no stored reading to re-time. ``made``: the rows of the ``COPY``,
        made ahead (:meth:`Work.with_copy`)."""
        batches = _in_key_order(batches)
        # Only readings newer than every compacted day, none re-timed: an older key may be held compacted (no longer
        # a row here, so the COPY would not fail on it), which the staged insert looks up (``readings_compacted``).
        horizon = self.conn.execute(_HORIZON).fetchone()[0]
        if any(batch.readings and (min(map(_TS, batch.readings)) < horizon or 2 in map(_CLOCK_OF, batch.readings))
               for batch in batches):
            self._write_readings_staged(batches, written)
            return
        data, count, hours = made if made is not None else copy_readings(batches)
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                with cur.copy(_COPY_DIRECT) as copy:
                    copy.write(data)
                if hours:
                    cur.execute(_COUNT_HOURS, [list(column) for column in zip(*sorted(
                        (gateway_id, hour, n, good) for (gateway_id, hour), (n, good) in hours.items()))])
        except errors.UniqueViolation:
            self._write_readings_staged(batches, written)
            return
        written.readings_new += count

    def _write_readings_staged(self, batches: list[ReadingBatch], written: Written) -> None:
        """The round's readings through the staging table: one insert that skips the keys already held (counted as
        duplicates), then the conflicts among them and the re-timed readings."""
        staged, retimed = 0, False
        with self.conn.cursor() as cur:
            with cur.copy(_COPY) as copy:
                copy.set_types(_STAGE_TYPES)
                for number, batch in enumerate(batches):
                    for row in staged_readings(batch, number):
                        copy.write_row(row)
                    retimed = retimed or any(r.clock == 2 for r in batch.readings)
                    staged += len(batch.readings)
            new = cur.execute(_INSERT_STAGED).fetchone()[0]
            written.readings_new += new
            written.readings_duplicate += staged - new
            if staged > new:
                for number, seq in cur.execute(_CONFLICTING_STAGED).fetchall():
                    written.conflict(batches[number], seq)
            if retimed:
                cur.execute(_RETIME_STAGED)

    def _write_events(self, batches: list[EventBatch], written: Written) -> None:
        """Every event of the round in one ``COPY`` and one insert; the gaps they report in one more statement."""
        gaps: list[tuple[int, int, tuple[Any, ...]]] = []  # batch number, event seq, gap row
        starts: list[tuple[int, int, str, int, Any]] = []  # batch number, event seq, gateway, epoch, data
        with self.conn.cursor() as cur:
            with cur.copy(_EVENT_COPY) as copy:
                copy.set_types(_EVENT_STAGE_TYPES)
                for number, batch in enumerate(batches):
                    for event in batch.events:
                        copy.write_row((batch.gateway_id, batch.epoch, event.seq, event.ts, event.kind, event.source,
                                        json.dumps(event.data, ensure_ascii=False), number))
                        if event.kind == DaemonStart.KIND:
                            starts.append((number, event.seq, batch.gateway_id, batch.epoch, event.data))
                        if event.kind == BufferGap.KIND:
                            gap = _gap_row(batch.gateway_id, event.ts, event.data)
                            if gap is not None:
                                gaps.append((number, event.seq, gap))
            staged = sum(len(batch.events) for batch in batches)
            cur.execute(_INSERT_STAGED_EVENTS)
            written.events_new += cur.rowcount
            if staged > cur.rowcount:
                clashes = set(cur.execute(_CONFLICTING_STAGED_EVENTS).fetchall())
                for number, seq in sorted(clashes):
                    written.conflict(batches[number], seq)
                gaps = [g for g in gaps if (g[0], g[1]) not in clashes]  # a gap another life reported is not ours
                starts = [s for s in starts if (s[0], s[1]) not in clashes]
            for _, _, gateway_id, epoch, data in starts:
                start = DaemonStart.from_data(data)
                if start is not None and epoch >= written.names.get(gateway_id, (-1,))[0]:
                    written.names[gateway_id] = (epoch, start.name, start.names)
            if any(event.kind == CommandResult.KIND for batch in batches for event in batch.events):
                cur.execute(_ANSWER_COMMANDS, (CommandResult.KIND,))
            if gaps:
                cur.execute(_INSERT_GAPS, [list(column) for column in zip(*(gap for _, _, gap in gaps))])
                written.gaps_new += cur.rowcount

    def _touch(self, work: Work, written: Written) -> None:
        """Every gateway that sent data was seen now (its online/offline state comes only from status messages), and
        the highest epoch held for it is brought up to date and read back for the acks."""
        epochs: dict[str, int] = {}
        for batch in [*work.readings, *work.events]:
            epochs[batch.gateway_id] = max(batch.epoch, epochs.get(batch.gateway_id, batch.epoch))
        if epochs:
            rows = self.conn.execute(_SEEN, (list(epochs), list(epochs.values()))).fetchall()
            written.max_epochs.update(dict(rows))

    def _record_conflicts(self, written: Written) -> None:
        """Rows that were not stored because their key holds other content, as ranges in the ``conflicts`` table."""
        with self.conn.cursor() as cur:
            for batch, seqs in written.conflicts.values():
                stream = "readings" if isinstance(batch, ReadingBatch) else "events"
                for first, last in seq_ranges(sorted(set(seqs))):
                    cur.execute(_INSERT_CONFLICT, (batch.gateway_id, stream, batch.epoch, first, last,
                                                   last - first + 1))
                    log.error("gateway %s sent %s %d..%d of epoch %d with other content than the data center holds "
                              "under those keys (a lost buffer?); not stored, the gateway is told to re-key them",
                              batch.gateway_id, stream, first, last, batch.epoch)


#: The direct write's ``COPY``: the columns in the order :func:`copy_readings` writes them (the batch's and the
#: series' constant cells first); ``received_at`` takes its default.
_DIRECT_COLUMNS = ("gateway_id", "epoch", "sensor", "quantity", "unit", "seq", "ts", "value", "quality", "reason",
                   "clock", "boot_id", "mono")
_COPY_DIRECT = f"COPY readings ({', '.join(_DIRECT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
#: The hours of the direct write's readings, counted by :func:`copy_readings`: the same upsert as
#: ``_INSERT_STAGED``'s, in the same order.
_COUNT_HOURS = """
    INSERT INTO gateway_hours AS h (gateway_id, hour, readings, good)
    SELECT g, to_timestamp(t), n, o FROM unnest(%s::text[], %s::int8[], %s::int8[], %s::int8[]) AS x(g, t, n, o)
    ORDER BY 1, 2
    ON CONFLICT (gateway_id, hour) DO UPDATE SET readings = h.readings + excluded.readings,
                                                 good = h.good + excluded.good, dirty = true, raw = true"""
#: Readings older than this (Unix seconds) may have their keys compacted (``edge/datacenter/storage.py``).
_HORIZON = "SELECT before FROM compaction_horizon"
#: PostgreSQL's binary ``COPY``: signature, flags and header extension (none), then the rows, then -1.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_BINARY_TRAILER = b"\xff\xff"
_NULL = struct.pack(">i", -1)
_KEY_TS_VALUE = struct.Struct(">iqiqid")  # seq, ts, value: each an int32 length and the big-endian value
_KEY_TS = struct.Struct(">iqiq")
_CLOCK = [struct.pack(">ih", 2, clock) for clock in range(3)]
_FLOAT = struct.Struct(">id")
#: A binary ``timestamptz`` counts microseconds from 2000-01-01 UTC; ``to_timestamp()`` converts seconds the same
#: way (subtract this in floating point, then round to the microsecond), so both paths store the same instant.
_PG_EPOCH = 946_684_800.0
_HOUR = 3600
_HOUR_US = _HOUR * 1_000_000
_PG_EPOCH_HOURS = 946_684_800 // _HOUR  # 2000-01-01 is a whole hour: date_bin's origin in the staged path


def _text(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">i", len(data)) + data


def _tail(quality: str, reason: str | None, clock: int, boot_id: str | None, mono: float | None) -> bytes:
    """The cells after the value: quality, reason, clock, boot id, monotonic time."""
    return b"".join((_text(quality), _NULL if reason is None else _text(reason), _CLOCK[clock],
                     _NULL if boot_id is None else _text(boot_id), _NULL if mono is None else _FLOAT.pack(8, mono)))


_GOOD_SYNCED = _tail("good", None, 1, None, None)


def copy_readings(batches: Iterable[ReadingBatch]) -> tuple[bytes, int, dict[tuple[str, int], list[int]]]:
    """The binary ``COPY`` data of every reading of ``batches`` (columns of ``_DIRECT_COLUMNS``), their count, and
    per gateway and hour (Unix seconds of its start, as ``date_bin('1 hour', ts, '2000-01-01')`` gives it) the
    readings and the good ones among them. The collector's hot path: the cells every row of a series shares are
    encoded once, and the usual row (good, from a synced clock) is three numbers between them."""
    out = [_BINARY_HEADER]
    append = out.append
    count = 0
    hours: dict[tuple[str, int], list[int]] = {}
    for batch in batches:
        head = b"\x00\x0d" + _text(batch.gateway_id) + struct.pack(">iq", 8, batch.epoch)
        prefixes: dict[tuple[str, str, str], bytes] = {}
        counts: dict[int, list[int]] = {}
        for r in batch.readings:
            prefix = prefixes.get((r.sensor, r.quantity, r.unit))
            if prefix is None:
                prefix = prefixes[(r.sensor, r.quantity, r.unit)] = b"".join(
                    (head, _text(r.sensor), _text(r.quantity), _text(r.unit)))
            ts = round((r.ts - _PG_EPOCH) * 1_000_000)
            if r.quality == "good" and r.clock == 1 and r.reason is None and r.boot_id is None and r.mono is None:
                tail = _GOOD_SYNCED
            else:
                tail = _tail(r.quality, r.reason, r.clock, r.boot_id, r.mono)
            if r.value is None:
                append(prefix + _KEY_TS.pack(8, r.seq, 8, ts) + _NULL + tail)
            else:
                append(prefix + _KEY_TS_VALUE.pack(8, r.seq, 8, ts, 8, r.value) + tail)
            hour = counts.get(ts // _HOUR_US)
            if hour is None:
                hour = counts[ts // _HOUR_US] = [0, 0]
            hour[0] += 1
            if r.quality == "good":
                hour[1] += 1
        count += len(batch.readings)
        for hour, (n, good) in counts.items():
            total = hours.setdefault((batch.gateway_id, (hour + _PG_EPOCH_HOURS) * _HOUR), [0, 0])
            total[0] += n
            total[1] += good
    append(_BINARY_TRAILER)
    return b"".join(out), count, hours


def _in_key_order(batches: list[ReadingBatch]) -> list[ReadingBatch]:
    """A round's reading batches in the order of their keys, the order they are written in."""
    return sorted(batches, key=lambda b: (b.gateway_id, b.epoch, b.readings[0].seq if b.readings else 0))


_TS, _CLOCK_OF = itemgetter(1), itemgetter(8)  # a Reading's ts and clock


def staged_readings(batch: ReadingBatch, number: int) -> Iterator[tuple[Any, ...]]:
    """The staging rows of ``batch``, the ``number``-th batch of the round: its gateway and epoch, then every field
    of each reading in the order of ``READING_FIELDS`` (spelt out: this loop is the collector's hot path)."""
    gateway_id, epoch = batch.gateway_id, batch.epoch
    for r in batch.readings:
        yield (gateway_id, epoch, r.seq, r.ts, r.sensor, r.quantity, r.value, r.unit, r.quality, r.reason, r.clock,
               r.boot_id, r.mono, number)


def _gap_row(gateway_id: str, reported: float, data: dict[str, Any]) -> tuple[Any, ...] | None:
    """The ``gaps`` row a ``buffer.gap`` event reports (read through the contract), or None when it is malformed."""
    gap = BufferGap.from_data(data)
    if gap is None:
        log.warning("gateway %s sent a %s event without a valid epoch/first_seq/last_seq/count (or an unknown "
                    "stream); stored as an event only", gateway_id, BufferGap.KIND)
        return None
    return (gateway_id, gap.stream, gap.epoch, gap.first_seq, gap.last_seq, gap.count, gap.first_ts, gap.last_ts,
            reported)


def storable_text(text: str) -> str:
    """A text PostgreSQL stores whatever it holds: NUL and lone surrogates replaced (for reasons and topics, which
    may quote hostile input)."""
    return _UNSTORABLE.sub("\ufffd", text)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _whole(value: Any) -> int | None:
    """A non-negative integer that fits a bigint, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None
