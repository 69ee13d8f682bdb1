"""The control state's types: what the supervisor knows of each actuator, a manual override, and how an actuator is
shown (``edge status``, ``edge actuate``, the answer to a downlink command, the greenhouse page (``edge web``)).

Plain data and one pure function (:func:`describe_state`), no imports of the rest of the gateway, so that the
supervisor, the control state's persistence and the status report all speak of the same things.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict


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


class OverrideView(TypedDict):
    value: float
    until: float
    who: str


class ActuatorView(TypedDict):
    """One actuator as it is shown and answered. A JSON object by construction (``edge status --json`` and the
    answers of the control socket and the downlink are a contract for scripts), typed for the code that reads it."""

    actuator: str
    state: Literal["on", "off"]
    value: float
    reason: str
    since: float | None  # None: never switched (no record yet)
    until: float | None
    remaining_s: float | None
    override: OverrideView | None


def describe_state(actuator_id: str, st: ActuatorState | None, now: float,
                   override: Override | None = None) -> ActuatorView:
    """One actuator as shown: ``st`` as the supervisor holds or last recorded it, None when it was never switched."""
    since = None if st is None else st.since
    st = st or ActuatorState(reason="never switched")
    return {
        "actuator": actuator_id,
        "state": "on" if st.value > 0 else "off",
        "value": st.value,
        "reason": st.reason,
        "since": since,
        "until": st.until,
        "remaining_s": None if st.until is None else max(0.0, round(st.until - now, 1)),
        "override": None if override is None else {"value": override.value, "until": override.until,
                                                    "who": override.who},
    }
