"""The ``alerts:`` and ``sms:`` config sections, beside the code they configure.

Sensor inputs (:class:`SensorInput`) and actuator ids (``ActuatorRef``) anywhere in these models are checked against
the configured sensors and actuators by ``edge.gateway.config`` like every other reference. Secrets (API keys) come from
``${VAR}`` or from a ``*_file``, read when the daemon starts; they are :class:`SecretStr`: no repr or dump shows them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, SecretStr, field_validator, model_validator

from edge.durations import Duration
from edge.gateway.alerts.numbers import canonical
from edge.config import Identifier, StrictModel
from edge.gateway.hardware.base import ActuatorRef, SensorInput, SensorRef

Severity = Literal["warning", "critical"]
Language = Literal["fa", "en"]

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


# ------------------------------------------------------------------------------------------------------- alerts


class Recipient(StrictModel):
    name: str = Field(description="who this is, as events and logs name them")
    number: str = Field(description="mobile number: 09121234567 or +989121234567")
    role: Literal["owner", "escalation"] = Field(
        default="owner", description="owner: gets every alert; escalation: gets unacknowledged criticals")
    language: Language | None = Field(default=None, description="fa or en; null: alerts.language")

    @field_validator("number")
    @classmethod
    def _phone(cls, value: str) -> str:
        canonical(value)  # raises ValueError with a clear message
        return value


class QuietHours(StrictModel):
    start: str = Field(default="22:00", description="local time HH:MM")
    end: str = Field(default="06:00", description="local time HH:MM")

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"invalid time {value!r}: use HH:MM, for example 22:00")
        return value


class Caps(StrictModel):
    per_hour: int = Field(default=6, ge=1, description="messages per recipient in any hour; the excess becomes "
                                                       "one summary message")
    per_day: int = Field(default=30, ge=1, description="messages per recipient in any 24 hours")


class Replies(StrictModel):
    """How the gateway answers a recipient's SMS: an acknowledgement is confirmed, «وضعیت» gets the greenhouse
    now, anything else a one-line help. Answers never count against the alerts' caps; these limits keep a chatty
    farmer, or a loop with an auto-responder, from costing a fortune."""

    help_every: Duration = Field(default=3600.0, gt=0, description="at most one help answer (to a text that is "
                                 "neither a code nor وضعیت) per number in this time")
    per_hour: int = Field(default=6, ge=1, description="answers of any kind (status, confirmation, help) per number "
                                                      "per hour; past it, texts are read and acted on, not answered")


class _Rule(StrictModel):
    id: Identifier
    name: str | None = Field(default=None, description="the words the farmer reads, e.g. دمای گلخانه")
    severity: Severity = "warning"


class ThresholdRule(_Rule):
    """``above``: value > threshold; ``below``: value < threshold. Clears past ``clear`` (hysteresis)."""

    type: Literal["above", "below"]
    input: SensorInput
    threshold: float
    clear: float | None = Field(default=None, description="clears only beyond this value; null: the threshold")
    for_: Duration | None = Field(default=None, alias="for",
                                  description="must hold this long before it fires; null: at once")

    @model_validator(mode="after")
    def _clear_on_the_right_side(self) -> "ThresholdRule":
        if self.clear is None:
            return self
        if self.type == "above" and self.clear > self.threshold:
            raise ValueError(f"clear ({self.clear:g}) must not be above the threshold ({self.threshold:g})")
        if self.type == "below" and self.clear < self.threshold:
            raise ValueError(f"clear ({self.clear:g}) must not be below the threshold ({self.threshold:g})")
        return self

    @property
    def clear_level(self) -> float:
        return self.threshold if self.clear is None else self.clear


class RateRule(_Rule):
    """The value rose (or fell) by at least ``rise`` (``fall``) within ``window``."""

    type: Literal["rate"]
    input: SensorInput
    rise: float | None = Field(default=None, gt=0)
    fall: float | None = Field(default=None, gt=0)
    window: Duration = 600.0
    for_: Duration | None = Field(default=None, alias="for")

    @model_validator(mode="after")
    def _one_direction(self) -> "RateRule":
        if (self.rise is None) == (self.fall is None):
            raise ValueError("give exactly one of rise or fall")
        return self


class StaleRule(_Rule):
    """A sensor gave no good reading within ``after`` of its intervals."""

    type: Literal["stale"]
    sensors: list[SensorRef] | None = Field(default=None, description="null: every sensor")
    after: int = Field(default=3, ge=1, description="intervals without a good reading")


class ActuatorFaultRule(_Rule):
    """An actuator is on but its feedback input does not respond within ``after``."""

    type: Literal["actuator_fault"]
    actuator: ActuatorRef
    feedback: SensorInput | None = Field(default=None, description="null: the actuator's own feedback")
    expect: Literal["rise", "fall", "positive"] | None = Field(
        default=None, description="null: positive for flow/level, rise for heaters and pumps, fall for fans/vents")
    by: float = Field(default=0.0, ge=0, description="least change (rise/fall) or value (positive) that counts")
    after: Duration = 300.0


class LinkDownRule(_Rule):
    type: Literal["link_down"]
    after: Duration = 600.0


class BufferRule(_Rule):
    """The buffer file nears its disk budget (``buffer.max_size``)."""

    type: Literal["buffer"]
    above: float = Field(default=0.9, gt=0, le=1, description="share of buffer.max_size that raises the alert")


class ClockRule(_Rule):
    type: Literal["clock_unsynced"]
    after: Duration = 3600.0


class RestartRule(_Rule):
    type: Literal["unclean_restart"]


#: Every alert rule model; the ``type:`` of a rule picks one.
RULE_MODELS = (ThresholdRule, RateRule, StaleRule, ActuatorFaultRule, LinkDownRule, BufferRule, ClockRule, RestartRule)
AlertRule = Annotated[Union[RULE_MODELS], Field(discriminator="type")]


class AlertsConfig(StrictModel):
    language: Language = Field(default="fa", description="fa (Persian, Jalali dates) or en")
    recipients: list[Recipient] = Field(default_factory=list)
    rules: list[AlertRule] = Field(default_factory=list)
    group_window: Duration = Field(default=60.0, description="warnings wait this long to share one message")
    repeat: list[Duration] = Field(default_factory=lambda: [900.0, 1800.0, 3600.0, 7200.0], min_length=1,
                                   description="gaps between repeats of an unacknowledged critical; the last "
                                               "one repeats")
    escalate_after: Duration | None = Field(default=1800.0, description="unacknowledged criticals then go to the "
                                                                       "escalation recipients; null: never")
    quiet_hours: QuietHours | None = Field(default=None, description="warnings wait for a digest; criticals go")
    caps: Caps = Caps()
    max_segments: int = Field(default=4, ge=1, le=10, description="longest message about several alerts, and "
                              "longest status answer")
    replies: Replies = Replies()

    def check_whole(self, config: Any) -> list[tuple[tuple[str | int, ...], str]]:
        """What only the whole config can tell (``edge check`` runs it): the same compilation the daemon does."""
        from edge.gateway.alerts.conditions import ActuatorInfo, SensorInfo, compile_watches
        from edge.gateway.hardware.base import UNITS

        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.recipients and not config.sms.transports:
            problems.append((("recipients",), "there are recipients but no sms.transports"))
        sensors = {s.id: SensorInfo(s.interval, s.quantities, s.name) for s in config.sources()}
        actuators = {a.id: ActuatorInfo(a.kind, (a.feedback.sensor, a.feedback.quantity) if a.feedback else None,
                                        a.name) for a in config.actuators}
        try:
            compile_watches(self.rules, sensors, actuators, UNITS, restart_key="check",
                            buffer_budget=getattr(config.buffer, "max_size", None))
        except ValueError as exc:
            problems.append((("rules",), str(exc)))
        return problems

    @model_validator(mode="after")
    def _unique(self) -> "AlertsConfig":
        _no_duplicates([r.id for r in self.rules], "rule id")
        _no_duplicates([canonical(r.number) for r in self.recipients], "recipient number")
        if self.recipients and not any(r.role == "owner" for r in self.recipients):
            raise ValueError("recipients need at least one owner (escalation contacts only get what owners ignore)")
        return self


def _no_duplicates(values: list[str], what: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


# ---------------------------------------------------------------------------------------------------------- sms


class _Secret(StrictModel):
    """A secret given inline (only from ``${VAR}``, please) or as a file holding it."""

    @staticmethod
    def _one_of(value: SecretStr | None, file: Path | None, name: str) -> None:
        if (value is None) == (file is None):
            raise ValueError(f"give exactly one of {name} (from ${{VAR}}) or {name}_file")


class KavenegarConfig(_Secret):
    type: Literal["kavenegar"]
    name: Identifier = "kavenegar"
    api_key: SecretStr | None = Field(default=None, description="write ${KAVENEGAR_API_KEY}; never inline")
    api_key_file: Path | None = Field(default=None, description="a file holding the key (mode 0600)")
    sender: str | None = Field(default=None, description="your line number; alerts need a service line")
    base_url: str = "https://api.kavenegar.com"
    timeout: Duration = 10.0
    receive: bool = Field(default=True, description="poll sms/receive.json for replies to the sender line")

    @model_validator(mode="after")
    def _key(self) -> "KavenegarConfig":
        self._one_of(self.api_key, self.api_key_file, "api_key")
        if self.receive and not self.sender:
            raise ValueError("receive needs the sender line number")
        return self


class HttpSuccess(StrictModel):
    status: list[int] = Field(default_factory=lambda: [200], description="HTTP statuses that may mean success")
    json_: dict[str, Any] = Field(default_factory=dict, alias="json",
                                  description="dotted path -> value the JSON answer must have, e.g. RetStatus: 1")


class HttpConfig(_Secret):
    type: Literal["http"]
    name: Identifier
    url: str = Field(description="may use {secret}")
    method: Literal["GET", "POST"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict, description="values may use {secret}")
    params: dict[str, Any] = Field(default_factory=dict, description="query string; values may use placeholders")
    body: dict[str, Any] | None = Field(default=None, description="string leaves may use {number}, "
                                        "{number_national}, {text}, {local_id}, {secret}")
    body_format: Literal["json", "form"] = "json"
    secret: SecretStr | None = None
    secret_file: Path | None = None
    success: HttpSuccess = HttpSuccess()
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _secret(self) -> "HttpConfig":
        if self.secret is not None and self.secret_file is not None:
            raise ValueError("give secret or secret_file, not both")
        return self


class ModemConfig(StrictModel):
    type: Literal["modem"]
    name: Identifier = "modem"
    port: str = Field(description="serial device of the modem, e.g. /dev/ttyUSB2")
    baudrate: int = 115200
    timeout: Duration = Field(default=30.0, description="longest wait for one AT command (sending takes seconds)")


class ConsoleConfig(StrictModel):
    type: Literal["console"]
    name: Identifier = "console"


#: Every transport model; the ``type:`` of a transport picks one.
TRANSPORT_MODELS = (KavenegarConfig, HttpConfig, ModemConfig, ConsoleConfig)
TransportConfig = Annotated[Union[TRANSPORT_MODELS], Field(discriminator="type")]


class SmsConfig(StrictModel):
    transports: list[TransportConfig] = Field(default_factory=list, description="tried in this order")
    country_code: str = Field(default="98", pattern=r"^\d{1,3}$", description="for numbers written 09...")
    retry_initial: Duration = Field(default=30.0, description="first retry after a failed round")
    retry_max: Duration = Field(default=600.0, description="longest wait between retries")
    same_provider_for: Duration = Field(default=1800.0, description="after a timeout or busy answer, retry only "
                                        "that provider (same local id) this long before failing over")
    expire_after: Duration = Field(default=86400.0, description="give up on an SMS not sent by then")
    receive_every: Duration = Field(default=30.0, description="how often replies are read")

    @model_validator(mode="after")
    def _unique_names(self) -> "SmsConfig":
        _no_duplicates([t.name for t in self.transports], "transport name")
        return self
