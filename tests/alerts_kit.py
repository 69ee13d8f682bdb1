"""A greenhouse's alert service on a fake clock, fed readings by hand: the fixture of the alert tests.

    gh = Greenhouse(tmp_path, RULES)
    gh.run(minutes=10, air_temperature=41)       # a reading every 10 s, then tick and flush, for 10 minutes
    gh.texts()                                   # every SMS handed to a transport
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.contract.events import ActuatorChange
from edge.gateway.config import parse_config
from edge.gateway.alerts import build
from edge.gateway.alerts.transports.console import ConsoleTransport
from edge.gateway.buffer import Buffer, NewReading
from edge.gateway.clock import FakeClock

OWNER = "09121234567"
OWNER_E164 = "+989121234567"
BOSS = "09127654321"
STRANGER = "09350000000"

#: Tuesday 15 July 2025, 10:30 in Khorramabad (24 Tir 1404).
MORNING = datetime.fromisoformat("2025-07-15T10:30:00+03:30").timestamp()

SENSORS = """\
sensors:
  - {id: air, type: simulated, measures: [temperature, humidity], interval: 10s}
  - {id: soil, type: simulated, measures: [soil_moisture], zone: bed-1, interval: 10s}
actuators:
  - {id: pump, type: relay, kind: pump, zone: bed-1, pin: 27, feedback: {sensor: soil, quantity: soil_moisture}}
"""

RECIPIENTS = f"""\
  recipients:
    - {{name: Ali, number: "{OWNER}"}}
"""

Value = float | None | str | Callable[[float], float | None]  # "silent": no reading at all
NORMAL = {"temperature": 25.0, "humidity": 50.0, "soil_moisture": 35.0}


def config_text(rules: str, *, alerts: str = "", sensors: str = SENSORS, recipients: str = RECIPIENTS,
                sms: str = "sms:\n  transports:\n    - {type: console}\n", buffer: Path, language: str = "en",
                gateway: str = "{id: gh-test, name: Demo, timezone: Asia/Tehran}") -> str:
    return (f"gateway: {gateway}\nbuffer: {{path: {buffer}}}\n{sensors}"
            f"alerts:\n  language: {language}\n{textwrap.indent(textwrap.dedent(alerts), '  ')}{recipients}"
            f"  rules:{textwrap.indent(chr(10) + textwrap.dedent(rules), '    ') if rules else ' []'}\n{sms}")


class Greenhouse:
    def __init__(self, tmp_path: Path, rules: str, *, alerts: str = "", sensors: str = SENSORS,
                 recipients: str = RECIPIENTS, transports: list[Any] | None = None, start: float = MORNING,
                 sms: str = "sms:\n  transports:\n    - {type: console}\n", language: str = "en",
                 gateway: str = "{id: gh-test, name: Demo, timezone: Asia/Tehran}", **build_args: Any):
        self.path = tmp_path / "buffer.db"
        self.config = parse_config(config_text(rules, alerts=alerts, sensors=sensors, recipients=recipients,
                                               sms=sms, buffer=self.path, language=language, gateway=gateway))
        self.clock = FakeClock(start=start)
        self.start = start
        self.console = ConsoleTransport()
        self.transports = transports if transports is not None else [self.console]
        self.build_args = {"send_at_once": False, **build_args}  # the test drives the outbox job itself
        self.buffer, _ = Buffer.open(self.path, now=self.clock.time(), boot_id="test-boot")
        self.service = build(self.config, self.buffer, self.clock, transports=self.transports, **self.build_args)
        #: Every configured quantity reads a normal value until a test says otherwise.
        self.values: dict[str, Value] = {f"{sensor.id}_{quantity}": NORMAL.get(quantity, 20.0)
                                         for sensor in self.config.sensors for quantity in sensor.quantities()}

    # ------------------------------------------------------------------------------------------------- driving

    def readings(self, values: dict[str, Value]) -> list[NewReading]:
        """``{"air_temperature": 41, "soil_soil_moisture": None}``: None is a failed read; absent is silence."""
        now, out = self.clock.time(), []
        for name, value in values.items():
            sensor, quantity = name.split("_", 1)
            value = value(now) if callable(value) else value
            if value is None:
                out.append(NewReading(now, sensor, quantity, None, "", "error", "no answer"))
            else:
                out.append(NewReading(now, sensor, quantity, float(value), ""))
        return out

    def step(self, **values: Value) -> None:
        """One sampling round (the given values), then the service's jobs, then 10 s pass."""
        self.values.update(values)
        self.service.listener(self.readings({k: v for k, v in self.values.items() if v != "silent"}))
        self.jobs()
        self.clock.advance(10)

    def jobs(self) -> None:
        self.service.tick()
        self.service.flush()

    def run(self, minutes: float = 0, seconds: float = 0, **values: Value) -> None:
        for _ in range(round((minutes * 60 + seconds) / 10)):
            self.step(**values)

    def idle(self, minutes: float) -> None:
        """Time passes with no readings at all (every sensor silent), the jobs still run."""
        for _ in range(round(minutes * 6)):
            self.jobs()
            self.clock.advance(10)

    def restart(self) -> None:
        """Stop without a clean-stop mark (as a crash would) and start again on the same buffer file."""
        self.service.close()
        self.buffer.close()
        self.buffer, _ = Buffer.open(self.path, now=self.clock.time(), boot_id="test-boot")
        self.service = build(self.config, self.buffer, self.clock, transports=self.transports, **self.build_args)

    def reply(self, number: str, text: str) -> str:
        return self.service.handle_reply(number, text)

    def switched(self, actuator: str, value: float, reason: str) -> None:
        """An output switched, as the supervisor tells its ``on_switch`` listeners (and records it)."""
        change = ActuatorChange(value, 0.0, reason)
        self.buffer.append_event(change.KIND, actuator, change.to_data(), ts=self.clock.time())
        self.service.observe_switch(actuator, change, self.clock.time())

    def after_earlier_alerts(self, count: int) -> None:
        """``count`` earlier alerts, all resolved long ago (so the next code is 10 + count)."""
        store = self.service.engine.store
        for _ in range(count):
            with store.transaction():
                incident_id, _ = store.new_incident(key="old", rule_id="old", severity="warning", kind="above",
                                                    fact={}, fired_ts=self.clock.time() - 86400, value=None)
                store.resolve(incident_id, self.clock.time() - 86000, None)

    # ---------------------------------------------------------------------------------------------- observing

    def sent(self) -> list[tuple[float, str, str]]:
        """``(minutes since start, number, text)`` of every SMS a transport took, in order."""
        return [((row["done_ts"] - self.start) / 60, row["number"], row["text"])
                for row in self.service.outbox.messages("sent")]

    def texts(self, to: str | None = None) -> list[str]:
        return [s.text for s in self.console.sent if to is None or s.number == to]

    def events(self, prefix: str = "") -> list[dict[str, Any]]:
        return [{**e, "data": json.loads(e["data"])} for e in self.buffer.events() if e["kind"].startswith(prefix)]

    def close(self) -> None:
        self.service.close()
        self.buffer.close()
