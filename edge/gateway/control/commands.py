"""Control commands: every request to switch an output, to read the outputs or to acknowledge an alert, parsed and
validated once into a typed command.

Three doors lead here: the control socket (``edge actuate``, ``edge alerts ack``; the socket itself only frames,
authorises and bounds requests), the downlink (a data center's command, whose wire form ``edge.contract.protocol``
has already checked) and the greenhouse page (``edge web``). Each hands what it received to a
:class:`CommandParser` and gets a typed command back, or a :class:`CommandError` whose ``answer`` is the line its
sender reads; :func:`serve` then carries the command out (the supervisor executes an :class:`Actuate` and adds the
refusals that depend on the moment: interlocks, ``min_off``, a latch, the power budget).

Checked here, once, for every door: the op and its fields, their types, the actuator id, the action, and the
duration of an override: a number of seconds, more than 0, at most the actuator's ``max_manual`` (and, to switch on,
its ``max_on``). Without a duration an override lasts ``control.manual_default``, within the same bounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, Union

from edge.contract.protocol import ACTIONS, MAX_COMMAND_DURATION
from edge.durations import format_duration
from edge.errors import EdgeError

if TYPE_CHECKING:
    from edge.contract.protocol import Command as RemoteCommand
    from edge.gateway.config import GatewayConfig
    from edge.gateway.hardware.base import ActuatorConfig

Action = Literal["on", "off", "auto"]

#: The fields each op of a local request (control socket, web page) may carry besides ``op``.
FIELDS: dict[str, frozenset[str]] = {
    "actuate": frozenset({"actuator", "action", "for", "who"}),
    "ack_alert": frozenset({"code", "who"}),
    "status": frozenset({"who"}),
    "held": frozenset({"who", "sensors", "since"}),
}

#: Sensors a ``held`` request may name at most.
MAX_HELD_SENSORS = 1000


# ------------------------------------------------------------------------------------------------------ refusals


class CommandError(EdgeError, ValueError):
    """A command that is not carried out; nothing changed. ``str()`` says why, ``answer`` is what its sender reads."""

    @property
    def answer(self) -> str:
        return str(self)


class BadRequest(CommandError):
    """The request itself is malformed: not an object, an unknown op or field, a field of the wrong type."""


class Unauthorised(CommandError):
    """The sender may not give commands at all."""


class Refused(CommandError):
    """A well-formed command the gateway will not carry out: an unknown actuator or action, a duration past its
    bounds, a safety limit, an alert that is not open. Its sender reads ``refused: <why>``."""

    @property
    def answer(self) -> str:
        return f"refused: {self}"


class AlreadyReceived(CommandError):
    """A downlink command whose id was received before: carried out once, never again (replay protection)."""


class Stale(CommandError):
    """A downlink command issued too long ago, or in the future (the clocks disagree): not carried out."""


# ------------------------------------------------------------------------------------------------------ commands


@dataclass(frozen=True)
class Actuate:
    """Hold an actuator ``on`` or ``off`` for ``duration`` seconds (already bounded), or hand it back (``auto``, no
    duration). ``who`` issued it (``cli:alice``, ``remote:c-17``): the output's reason becomes ``manual:<who>``."""

    actuator: str
    action: Action
    duration: float | None
    who: str


@dataclass(frozen=True)
class AckAlert:
    """Acknowledge the open alert of this code, as a farmer's SMS reply would."""

    code: str
    who: str


@dataclass(frozen=True)
class Status:
    """Every actuator as the supervisor holds it now."""


@dataclass(frozen=True)
class Held:
    """The readings the daemon holds in memory for its commit window (not in the file yet) of these sensors, taken at
    or after ``since``: what ``edge readings`` adds to the file's."""

    sensors: tuple[str, ...]
    since: float


Command = Union[Actuate, AckAlert, Status, Held]


class CommandParser:
    """Reads requests into typed commands for one gateway: its actuators and their bounds come from the config."""

    def __init__(self, actuators: Sequence[ActuatorConfig], manual_default: float):
        self.limits = {a.id: a for a in actuators}
        self.manual_default = manual_default

    @classmethod
    def of(cls, config: GatewayConfig) -> CommandParser:
        return cls(config.actuators, config.control.manual_default)

    def parse(self, request: Mapping[str, Any], user: str) -> Command:
        """A local request (a JSON object from the control socket or the web page) sent by the account ``user``.
        An optional ``who`` label (an identifier, e.g. ``cli``) is put in front of the account: ``cli:alice``."""
        op = request.get("op")
        if not isinstance(op, str):
            raise BadRequest('malformed request: expected a JSON object with "op"')
        if op not in FIELDS:
            raise BadRequest(f"unknown op {_quote(op)} (ops: {', '.join(FIELDS)})")
        unknown = set(request) - FIELDS[op] - {"op"}
        if unknown:
            raise BadRequest(f"unknown field(s) {', '.join(_quote(f, bare=True) for f in sorted(unknown))}")
        label = request.get("who")
        label = label if isinstance(label, str) and label.isidentifier() else None
        if op == "status":
            return Status()
        if op == "held":
            sensors, since = request.get("sensors"), request.get("since", 0.0)
            if (not isinstance(sensors, list) or len(sensors) > MAX_HELD_SENSORS
                    or not all(isinstance(x, str) for x in sensors)):
                raise BadRequest(f'held needs "sensors", a list of at most {MAX_HELD_SENSORS} sensor ids')
            if isinstance(since, bool) or not isinstance(since, (int, float)) or since != since:
                raise BadRequest('held: "since" must be a number of seconds (UTC)')
            return Held(tuple(sensors), float(since))
        if op == "ack_alert":
            code = request.get("code")
            if not isinstance(code, str) or not code.strip():
                raise BadRequest('ack_alert needs a "code" string')
            return AckAlert(code.strip(), f"{label or 'cli'}:{user}")
        return self.actuate(request.get("actuator"), request.get("action"), request.get("for"),
                            f"{label}:{user}" if label else user)

    def remote(self, command: RemoteCommand) -> Actuate:
        """A downlink command, its wire form already strictly typed by ``protocol.decode_command``; the same
        meaning, bounds and refusals as a local one. (``ping`` is the uplink's own and never comes here.)"""
        if command.op != "actuate":
            raise BadRequest(f"unknown op {_quote(command.op)} (ops: actuate)")
        args = command.args
        return self.actuate(args.get("actuator"), args.get("action"), args.get("for"), f"remote:{command.id}")

    def actuate(self, actuator: Any, action: Any, duration: Any, who: str) -> Actuate:
        """An ``actuate`` command from its parts, whatever their types; see the module's docstring for the checks."""
        if not isinstance(actuator, str) or not isinstance(action, str):
            raise BadRequest('actuate needs "actuator" and "action" strings')
        if actuator not in self.limits:
            raise Refused(f"unknown actuator {_quote(actuator)} (actuators: {', '.join(self.limits)})")
        if action not in ACTIONS:
            raise Refused(f"unknown action {_quote(action)}: use {', '.join(ACTIONS[:-1])} or {ACTIONS[-1]}")
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                     or not 0 < duration <= MAX_COMMAND_DURATION):
            raise Refused(f'invalid duration {_quote(duration)}: "for" must be a number of seconds, more than 0 and '
                          f"at most {format_duration(MAX_COMMAND_DURATION)}")
        if action == "auto":
            return Actuate(actuator, "auto", None, who)
        return Actuate(actuator, action, self._bounded(actuator, action, duration), who)

    def _bounded(self, actuator: str, action: str, duration: float | None) -> float:
        """How long an ``on``/``off`` override lasts: as asked, or ``manual_default``; never longer than the
        actuator's ``max_manual`` (nor, for ``on``, its ``max_on``). An explicit duration past a bound is refused."""
        limits = self.limits[actuator]
        bounds = [("max_manual", limits.manual_limit())]
        if action == "on" and limits.max_on is not None:
            bounds.insert(0, ("max_on", limits.max_on))
        if duration is None:
            return min(self.manual_default, *(bound for _, bound in bounds))
        for name, bound in bounds:
            if duration > bound:
                raise Refused(f"{format_duration(duration)} exceeds {actuator}'s {name} {format_duration(bound)}")
        return float(duration)


class Executor(Protocol):
    """What carries out control commands: the supervisor (``edge.gateway.control.supervisor.Supervisor``)."""

    def execute(self, command: Actuate) -> Any: ...

    def snapshot(self) -> Any: ...


class AlertEngine(Protocol):
    def acknowledge(self, code: str, who: str) -> bool: ...


class Alerts(Protocol):
    """What acknowledges alerts: the alert service (``edge.gateway.alerts.service.AlertService``)."""

    engine: AlertEngine


def serve(command: Command, supervisor: Executor, alerts: Alerts | None) -> dict[str, Any]:
    """Carry out a typed command; the answer its sender gets (JSON-ready). Raises :class:`Refused`."""
    if isinstance(command, Status):
        return {"actuators": supervisor.snapshot()}
    if isinstance(command, Actuate):
        return {"result": supervisor.execute(command)}
    if isinstance(command, Held):
        raise Refused("held readings are the daemon's buffer's to give")  # the daemon answers it (daemon.py)
    if alerts is None:
        raise Refused("alerts are not running: the buffer has no room (see edge status)")
    if not alerts.engine.acknowledge(command.code, command.who):
        raise Refused(f"no open, unacknowledged alert has code {_quote(command.code)}")
    return {"acked": command.code}


def _quote(value: Any, bare: bool = False, limit: int = 80) -> str:
    """A value from a request as a refusal shows it: ``repr`` (so a hostile string stays printable and visibly
    quoted), cut to ``limit`` characters; ``bare`` shows a string without its quotes (field names)."""
    text = repr(value)
    if bare and isinstance(value, str) and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text if len(text) <= limit else text[:limit - 3] + "..."
