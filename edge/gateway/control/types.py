"""The control state's types: what the supervisor knows of each actuator, and a manual override.

Plain data, no behaviour and no imports of the rest of the gateway, so that the supervisor, the control state's
persistence and the status report all speak of the same things.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ActuatorState:
    """One actuator as the supervisor last switched it, and why."""

    value: float = 0.0
    reason: str = "startup"
    since: float = 0.0
    on_since: float | None = None  # start of the current (or last, if stopped by shutdown) continuous on-time
    until: float | None = None  # when the current reason ends, if known
    latched: bool = False  # cut by max_on: stays off until nothing requests it
    off_at: float | None = None  # when it last went from on to off (for interlock waits); not persisted
    refused: str | None = None  # the last refusal, so it is reported once, not at every evaluation


@dataclass(frozen=True)
class Override:
    """A manual or remote ``on``/``off`` that holds an actuator until ``until`` (UTC seconds; every override is
    bounded by the actuator's ``max_manual``), issued by ``who`` (``cli:alice``, ``remote:c-17``) at ``issued``."""

    actuator: str
    value: float
    until: float
    who: str
    issued: float

    @property
    def reason(self) -> str:
        """The reason an output switched by this override records: ``manual:<who>``."""
        return f"manual:{self.who}"
