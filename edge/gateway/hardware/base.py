"""What every sensor and actuator driver looks like, and the shapes they exchange.

Nothing here imports a hardware library. Driver modules define their config model beside the driver (a subclass of
:class:`SensorConfig` or :class:`ActuatorConfig`) and a ``from_config(cfg, ctx)`` constructor; the registry in
``edge.gateway.hardware`` maps a config ``type:`` to the driver, importing its module only when a config uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import AfterValidator, Field

from edge.config import DisplayName, Identifier, StrictModel
from edge.durations import Duration

if TYPE_CHECKING:
    from edge.gateway.hardware.pins import Claim

Quality = Literal["good", "error", "implausible"]

#: Canonical unit of each quantity. A driver converts to these before it returns a sample.
UNITS: dict[str, str] = {
    "temperature": "°C",
    "humidity": "%",
    "soil_moisture": "%",
    "light": "lx",
    "co2": "ppm",
    "pressure": "hPa",
    "flow": "l/min",
    "level": "bool",
    "par": "umol/m2/s",
    # derived quantities (edge/gateway/derived.py; docs/agronomy.md)
    "vpd": "kPa",
    "leaf_vpd": "kPa",
    "dew_point": "°C",
    "dew_margin": "K",
    "abs_humidity": "g/m3",
    "humidity_deficit": "g/m3",
    "dli": "mol/m2/d",
    "temperature_min": "°C",
    "temperature_mean": "°C",
    "temperature_max": "°C",
    "gdd": "°C·d",
    "et0": "mm/d",
}

#: Physically possible range of each quantity in a greenhouse. Values outside are flagged ``implausible``.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "temperature": (-40.0, 80.0),
    "humidity": (0.0, 100.0),
    "soil_moisture": (0.0, 100.0),
    "light": (0.0, 200_000.0),
    "co2": (0.0, 10_000.0),
    "pressure": (300.0, 1_100.0),
    "flow": (0.0, 1_000.0),
    "level": (0.0, 1.0),
    "par": (0.0, 3_000.0),  # full sun is about 2,000 umol/(m2 s)
    "vpd": (0.0, 10.0),  # dry air at 50 °C is about 12; a greenhouse crop lives below 3
    "leaf_vpd": (-5.0, 10.0),  # negative: the leaf is below the air's dew point
    "dew_point": (-60.0, 60.0),
    "dew_margin": (-40.0, 80.0),
    "abs_humidity": (0.0, 130.0),  # saturated air at 60 °C holds 130 g/m3
    "humidity_deficit": (0.0, 130.0),
    "dli": (0.0, 80.0),  # a clear midsummer day outside gives at most about 70
    "temperature_min": (-40.0, 80.0),
    "temperature_mean": (-40.0, 80.0),
    "temperature_max": (-40.0, 80.0),
    "gdd": (0.0, 50.0),
    "et0": (0.0, 20.0),
}

Quantity = Literal["temperature", "humidity", "soil_moisture", "light", "co2", "pressure", "flow", "level", "par",
                   "vpd", "leaf_vpd", "dew_point", "dew_margin", "abs_humidity", "humidity_deficit", "dli",
                   "temperature_min", "temperature_mean", "temperature_max", "gdd", "et0"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One quantity as a driver read it. A failed read has ``quality="error"``, no value and a reason."""

    quantity: str
    value: float | None
    unit: str
    quality: Quality = "good"
    reason: str | None = None

    @classmethod
    def error(cls, quantity: str, reason: str) -> "Sample":
        return cls(quantity, None, UNITS.get(quantity, ""), "error", reason)




class SensorConfig(StrictModel):
    """Keys every sensor has; a driver's config subclasses this and fixes ``type`` to a literal."""

    id: Identifier
    type: str
    name: DisplayName | None = Field(default=None, description="what the farmer calls the place it measures, "
                                     "used in every SMS (e.g. بستر ۱)")
    interval: Duration = Field(default=10.0, description="how often the sensor is read")
    #: Override the plausible range of a quantity, e.g. ``{temperature: [-10, 60]}``.
    plausible: dict[Quantity, tuple[float, float]] = Field(default_factory=dict)

    def quantities(self) -> tuple[str, ...]:  # pragma: no cover - every driver overrides
        raise NotImplementedError

    def claims(self) -> tuple["Claim", ...]:
        """The Pi's pins, bus addresses and ports this sensor occupies (``edge check`` refuses two users of one)."""
        return ()


class SensorInput(StrictModel):
    """A reference to one quantity of a configured sensor; ``edge check`` refuses references to unknown sensors."""

    sensor: Identifier
    quantity: Quantity


class SensorId(str):
    """An id that must name a configured sensor (made by the ``SensorRef`` field type)."""


#: A config field naming a sensor (any quantity); ``edge check`` refuses ids no sensor has.
SensorRef = Annotated[Identifier, AfterValidator(SensorId)]


class ActuatorId(str):
    """An id that must name a configured actuator (made by the ``ActuatorRef`` field type)."""


#: A config field naming an actuator; ``edge check`` refuses ids no actuator has.
ActuatorRef = Annotated[Identifier, AfterValidator(ActuatorId)]


ActuatorKind = Literal["fan", "heater", "pump", "vent", "light", "co2", "mister", "other"]

#: The longest manual or remote override (``on`` or ``off``) of each kind of actuator when its config gives no
#: ``max_manual``: long enough for the work a person does by hand, short enough that a forgotten override ends the
#: same shift. Water and CO2 are counted in minutes (a flooded bed, a CO2 level unsafe for people); heat, air and
#: light in hours. docs/control.md has the reasons.
MAX_MANUAL_BY_KIND: dict[str, float] = {
    "heater": 4 * 3600.0,
    "fan": 8 * 3600.0,
    "vent": 8 * 3600.0,
    "light": 12 * 3600.0,
    "pump": 30 * 60.0,
    "mister": 15 * 60.0,
    "co2": 60 * 60.0,
    "other": 60 * 60.0,
}


class ActuatorConfig(StrictModel):
    """Keys every actuator has; a driver's config subclasses this and fixes ``type`` to a literal."""

    id: Identifier
    type: str
    kind: ActuatorKind
    name: DisplayName | None = Field(default=None, description="what the farmer calls it, used in every SMS "
                                     "(e.g. بخاری ۱)")
    zone: str | None = Field(default=None, description="irrigation zone a pump waters")
    max_on: Duration | None = Field(
        default=None, description="longest continuous on-time, counted across daemon restarts; then forced off")
    min_on: Duration | None = Field(default=None, description="once on, stay on at least this long")
    min_off: Duration | None = Field(default=None, description="once off, stay off at least this long")
    max_manual: Duration | None = Field(
        default=None, description="longest manual or remote override, on or off (null: the default of its kind)")
    feedback: SensorInput | None = Field(
        default=None,
        description="a sensor quantity that shows this actuator working (a pump's flow meter, a fan's air "
        "temperature); alert rules use it to detect an actuator that does not respond",
    )

    def claims(self) -> tuple["Claim", ...]:
        """The Pi's pins this actuator occupies (``edge check`` refuses two users of one)."""
        return ()

    def manual_limit(self) -> float:
        """The longest override this actuator accepts: ``max_manual``, or the default of its kind."""
        return self.max_manual if self.max_manual is not None else MAX_MANUAL_BY_KIND[self.kind]


@runtime_checkable
class Sensor(Protocol):
    id: str

    def quantities(self) -> tuple[str, ...]: ...

    def read(self) -> list[Sample]:
        """Read every quantity once. Must not raise: a failure is a ``Sample.error``."""

    def close(self) -> None: ...


@runtime_checkable
class Actuator(Protocol):
    id: str
    kind: str
    zone: str | None

    @property
    def value(self) -> float:
        """Current output, 0.0 (off) .. 1.0 (fully on)."""

    def apply(self, value: float) -> None: ...

    def safe_state(self) -> None:
        """Drive the output to its safe state (off). Idempotent; never raises for a healthy pin."""

    def close(self) -> None: ...


@dataclass
class HardwareContext:
    """What drivers need from outside: injected so that tests and the simulation supply fakes."""

    clock: Any
    pin_factory: Any = None
    simulation: Any = None  # a sim.GreenhouseModel when the backend is ``simulated``
    extras: dict[str, Any] = field(default_factory=dict)
