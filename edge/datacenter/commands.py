"""Commands from the data center to a gateway (``edge dc command``, the console's command form): recorded, published
through the broker account meant for commands, and settled by the gateway's answer.

A command is a row of the ``commands`` table first (id, gateway, op and arguments, who sent it, when, until when),
then one MQTT v5 publish (QoS 1) of the protocol's :class:`~edge.contract.protocol.Command` on the gateway's
``down/cmd`` topic, under the ``commander`` account (config/mosquitto/acl: it may publish commands and nothing
else) and with a message expiry: a gateway that is offline finds it in its broker session when it comes back, if it
comes back in time, and never after. The gateway answers with a ``command.result`` event (events stream, collector,
PostgreSQL); the collector settles the row (``store._ANSWER_COMMANDS``): ``done`` or ``refused``, with the answer.
A row still pending past its expiry reads as ``expired`` (:func:`effective_state`).

The gateway bounds a command again (each output's ``max_manual``, replay protection, its ``sync.command_max_age``):
what is checked here is what the data center can know, so that an operator hears at once of a duration out of
bounds or an expiry the gateway would refuse anyway.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from edge import mqtt
from edge.contract import protocol
from edge.datacenter.config import BrokerConfig, CommandsConfig
from edge.errors import EdgeError

log = logging.getLogger(__name__)

UTC = timezone.utc
STATES = ("pending", "done", "refused", "expired")
_ACTUATOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: One commander session at a time per process: the broker names each session after its account
#: (use_username_as_clientid), so two at once would take each other over.
_PUBLISH_LOCK = threading.Lock()


class CommandError(EdgeError, ValueError):
    """A command that cannot be sent: a bad argument (said what and why), or the broker refused or is away."""


@dataclass(frozen=True)
class Sent:
    """A command as the data center keeps it."""

    id: str
    gateway_id: str
    op: str
    args: dict[str, Any]
    issued_by: str
    sent_at: datetime
    expires_at: datetime
    state: str
    answered_at: datetime | None = None
    result: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        from edge.datacenter.queries import iso

        return {"id": self.id, "gateway": self.gateway_id, "op": self.op, "args": self.args, "by": self.issued_by,
                "sent": iso(self.sent_at), "expires": iso(self.expires_at), "state": self.state,
                "answered": iso(self.answered_at), "result": self.result}

    def describe(self) -> str:
        """``heater-1 on for 10m`` / ``ping``: what was asked, for people."""
        if self.op != "actuate":
            return self.op
        text = f"{self.args.get('actuator')} {self.args.get('action')}"
        duration = self.args.get("for")
        return text + (f" for {_span(duration)}" if duration else "")

    def answer(self) -> str:
        """What the gateway said, for people."""
        if self.state == "pending":
            return f"pending: not answered yet (expires {self.expires_at.astimezone(UTC):%H:%M:%S}Z)"
        if self.state == "expired":
            return "expired: the gateway did not answer in time (offline?); it will not carry it out"
        result = self.result or {}
        if self.state == "refused":
            return f"refused by the gateway: {result.get('error', 'no reason given')}"
        value = result.get("result")
        if self.op == "ping" and isinstance(value, dict) and "pong" in value:
            return "done: pong"
        if isinstance(value, dict) and value.get("actuator"):
            parts = [f"{value.get('actuator')}: {value.get('state', '?')}"]
            if value.get("reason"):
                parts.append(str(value["reason"]))
            return "done: " + "  ".join(parts)
        return "done" + (f": {json.dumps(value, ensure_ascii=False)}" if value is not None else "")


def _span(seconds: float) -> str:
    seconds = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


# -------------------------------------------------------------------------------------------------- the request


def build(op: str, actuator: str | None, action: str | None, duration: float | None, expiry: float | None,
          config: CommandsConfig) -> tuple[dict[str, Any], float]:
    """The command's arguments and its expiry in seconds, bounded, or a :class:`CommandError` naming what is
    wrong."""
    expiry = config.expiry if expiry is None else expiry
    if not 0 < expiry <= config.max_expiry:
        raise CommandError(f"expiry: {_span(expiry)} is out of bounds: more than 0 and at most "
                           f"{_span(config.max_expiry)} (commands.max_expiry)")
    if op == "ping":
        if actuator or action or duration:
            raise CommandError("ping takes no output, action or duration")
        return {}, expiry
    if op != "actuate":
        raise CommandError(f"op: {op!r} is not a command (one of: {', '.join(protocol.COMMAND_OPS)})")
    if not actuator or not _ACTUATOR.match(actuator):
        raise CommandError(f"output: {actuator!r} is not an output id (letters, digits, '-' and '_', as in the "
                           "gateway's config, e.g. heater-1)")
    if action not in protocol.ACTIONS:
        raise CommandError(f"action: {action!r} is not one of {', '.join(protocol.ACTIONS)}")
    if duration is not None:
        if action == "auto":
            raise CommandError("a duration (--for) goes with on or off; auto hands the output back to its "
                               "schedule and rules")
        if not 0 < duration <= config.max_duration:
            raise CommandError(f"for: {_span(duration)} is out of bounds: more than 0 and at most "
                               f"{_span(config.max_duration)} (commands.max_duration; the gateway refuses past the "
                               "output's max_manual too)")
    return {"actuator": actuator, "action": action, "for": duration}, expiry


def new_id() -> str:
    return "dc-" + secrets.token_hex(8)


# ------------------------------------------------------------------------------------------------ the database

_COLUMNS = "id, gateway_id, op, args, issued_by, sent_at, expires_at, state, answered_at, result"
#: The state as people should read it: a command still pending past its expiry is expired.
_STATE = "CASE WHEN state = 'pending' AND expires_at <= now() THEN 'expired' ELSE state END"
_SELECT = f"SELECT id, gateway_id, op, args, issued_by, sent_at, expires_at, {_STATE}, answered_at, result " \
          "FROM commands"


def _sent(row) -> Sent:
    return Sent(*row)


@contextmanager
def _write(conn: psycopg.Connection) -> Iterator[None]:
    """A read-write transaction of its own: the reads before it end first (the API's connections are read-only by
    default, and a transaction cannot turn read-write once it has read)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.commit()
    with conn.transaction():
        conn.execute("SET TRANSACTION READ WRITE")
        yield


def record(conn: psycopg.Connection, gateway_id: str, op: str, args: dict[str, Any], issued_by: str,
           expiry: float, command_id: str | None = None) -> Sent:
    """Store the command (pending) in its own transaction; the row exists before anything is published."""
    command_id = command_id or new_id()
    with _write(conn):
        row = conn.execute(f"INSERT INTO commands (id, gateway_id, op, args, issued_by, expires_at) "
                           f"VALUES (%s, %s, %s, %s::jsonb, %s, now() + %s) RETURNING {_COLUMNS}",
                           (command_id, gateway_id, op, json.dumps(args), issued_by,
                            timedelta(seconds=expiry))).fetchone()
    return _sent(row)


def forget(conn: psycopg.Connection, command_id: str, reason: str) -> None:
    """A command that could not be published: settled as refused here, with the reason (nothing reached the
    gateway)."""
    with _write(conn):
        conn.execute("UPDATE commands SET state = 'refused', answered_at = now(), result = %s::jsonb "
                     "WHERE id = %s AND state = 'pending'",
                     (json.dumps({"ok": False, "error": f"not sent: {reason}"}), command_id))


def get(conn: psycopg.Connection, command_id: str) -> Sent | None:
    row = conn.execute(_SELECT + " WHERE id = %s", (command_id,)).fetchone()
    return _sent(row) if row else None


def recent(conn: psycopg.Connection, gateway_id: str, limit: int = 20) -> list[Sent]:
    """The gateway's latest commands, newest first."""
    return [_sent(row) for row in conn.execute(_SELECT + " WHERE gateway_id = %s ORDER BY sent_at DESC, id "
                                                          "LIMIT %s", (gateway_id, limit))]


def wait(conn: psycopg.Connection, command_id: str, timeout: float, poll: float = 0.25) -> Sent:
    """The command once answered or expired, or as it stands after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.commit()  # a fresh snapshot each time
        sent = get(conn, command_id)
        if sent is None or sent.state != "pending" or time.monotonic() >= deadline:
            if sent is not None and sent.state == "expired":
                settle_expired(conn, command_id)
            return sent
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))


def settle_expired(conn: psycopg.Connection, command_id: str | None = None) -> None:
    """Record as expired what is pending past its expiry (one command, or all)."""
    where = " AND id = %s" if command_id else ""
    with _write(conn):
        conn.execute("UPDATE commands SET state = 'expired' WHERE state = 'pending' AND expires_at <= now()" + where,
                     (command_id,) if command_id else ())


# ---------------------------------------------------------------------------------------------------- the wire


def publish(broker: BrokerConfig, commands: CommandsConfig, sent: Sent, timeout: float = 10.0) -> None:
    """Publish the command once (QoS 1, MQTT v5 message expiry = what is left of its expiry) as the commander and
    wait for the broker's PUBACK; a :class:`CommandError` if the broker cannot be reached or refuses it."""
    left = max(1, int((sent.expires_at - datetime.now(UTC)).total_seconds()))
    payload = protocol.encode_command(protocol.Command(sent.id, sent.sent_at.timestamp(), sent.op, sent.args))
    login = mqtt.BrokerLogin(broker.url, "mqttv5", commands.username, commands.password_file, broker.ca_file,
                             broker.cert_file, broker.key_file)
    try:
        login.password()
    except OSError as exc:
        raise CommandError(f"cannot read commands.password_file {commands.password_file}: {exc.strerror}") from None
    last = "no attempt"
    with _PUBLISH_LOCK:
        for attempt in range(3):
            try:
                _publish_once(login, protocol.topic(sent.gateway_id, protocol.DOWN_CMD), payload, left, timeout)
                log.info("command %s (%s) to %s sent by %s, expires in %ds", sent.id, sent.describe(),
                         sent.gateway_id, sent.issued_by, left)
                return
            except _Refused as exc:
                raise CommandError(f"the broker refused the command: {exc} (is {commands.username!r} the "
                                   "account meant for commands in config/mosquitto/acl?)") from None
            except (OSError, _Unreachable) as exc:
                last = str(exc)
                time.sleep(0.2 * (attempt + 1))
    raise CommandError(f"could not send the command through the broker at {login.where} as "
                       f"{commands.username!r}: {last}")


class _Refused(Exception):
    pass


class _Unreachable(Exception):
    pass


def _publish_once(login: mqtt.BrokerLogin, topic: str, payload: bytes, expiry: int, timeout: float) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    session = mqtt.Session(client_id=f"edge-commander-{secrets.token_hex(4)}", clean_start=True, session_expiry=0)
    client = mqtt.build_client(login, session, log)
    connected, acked = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(_client, _userdata, _flags, reason_code, _properties=None) -> None:
        outcome["connect"] = reason_code
        connected.set()

    def on_publish(_client, _userdata, _mid, reason_code, _properties=None) -> None:
        outcome["puback"] = reason_code
        acked.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect(login.host, login.port, **mqtt.connect_args(login, session))
    except OSError as exc:
        raise _Unreachable(str(exc)) from None
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise _Unreachable(f"no answer from the broker within {timeout:g}s")
        code = outcome["connect"]
        if code.is_failure:
            raise _Refused(f"login refused ({code})") if code.value in (0x86, 0x87, 0x8C) else _Unreachable(str(code))
        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = expiry
        client.publish(topic, payload, qos=1, properties=properties)
        if not acked.wait(timeout):
            raise _Unreachable(f"the broker did not acknowledge the command within {timeout:g}s")
        code = outcome["puback"]
        if code.is_failure:
            raise _Refused(str(code))
    finally:
        client.disconnect()
        client.loop_stop()


def send(conn: psycopg.Connection, broker: BrokerConfig, commands: CommandsConfig, gateway_id: str, op: str,
         args: dict[str, Any], issued_by: str, expiry: float) -> Sent:
    """Record, then publish; a command that could not be published is settled as refused (and raised)."""
    sent = record(conn, gateway_id, op, args, issued_by, expiry)
    try:
        publish(broker, commands, sent)
    except CommandError as exc:
        forget(conn, sent.id, str(exc))
        raise
    return sent
