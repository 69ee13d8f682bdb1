"""Control commands are read once, by one parser: every malformed request is refused with its reason, every valid one
becomes a typed command; the control socket and the downlink both go through it and refuse alike."""

from __future__ import annotations

import json
import math
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import wait_until
from edge.contract import protocol
from edge.gateway.config import load_config, parse_config
from edge.gateway.control.commands import (AckAlert, Actuate, AlreadyReceived, BadRequest, CommandError,
                                           CommandParser, Refused, Stale, Status, serve)

CONFIG = """\
gateway: {id: gh}
actuators:
  - {id: fan, type: pwm, kind: fan, pin: 18}
  - {id: heater, type: relay, kind: heater, pin: 17}
  - {id: pump, type: relay, kind: pump, pin: 27, max_on: 15m}
control:
  manual_default: 1h
"""


@pytest.fixture
def parser() -> CommandParser:
    return CommandParser.of(parse_config(CONFIG))


def actuate(**fields) -> dict:
    return {"op": "actuate", **fields}


# ------------------------------------------------------------------------------------ malformed or refused requests


@pytest.mark.parametrize("request_, kind, answer", [
    ({}, BadRequest, 'malformed request: expected a JSON object with "op"'),
    ({"op": 7}, BadRequest, 'malformed request: expected a JSON object with "op"'),
    ({"op": "format-disk"}, BadRequest, "unknown op 'format-disk' (ops: actuate, ack_alert, status, held)"),
    ({"op": "held"}, BadRequest, 'held needs "sensors", a list of at most 1000 sensor ids'),
    ({"op": "held", "sensors": "air"}, BadRequest, 'held needs "sensors", a list of at most 1000 sensor ids'),
    ({"op": "held", "sensors": [1]}, BadRequest, 'held needs "sensors", a list of at most 1000 sensor ids'),
    ({"op": "held", "sensors": ["a"] * 1001}, BadRequest, 'held needs "sensors", a list of at most 1000 sensor ids'),
    ({"op": "held", "sensors": ["air"], "since": "1h"}, BadRequest,
     'held: "since" must be a number of seconds (UTC)'),
    ({"op": "held", "sensors": ["air"], "since": float("nan")}, BadRequest,
     'held: "since" must be a number of seconds (UTC)'),
    (actuate(actuator="fan", action="on", sudo=True), BadRequest, "unknown field(s) sudo"),
    ({"op": "status", "verbose": 1, "all": 2}, BadRequest, "unknown field(s) all, verbose"),
    ({"op": "ack_alert", "code": "17", "by": "x"}, BadRequest, "unknown field(s) by"),
    (actuate(action="on"), BadRequest, 'actuate needs "actuator" and "action" strings'),
    (actuate(actuator=["fan"], action="on"), BadRequest, 'actuate needs "actuator" and "action" strings'),
    (actuate(actuator="fan", action=1), BadRequest, 'actuate needs "actuator" and "action" strings'),
    (actuate(actuator="nope", action="on"), Refused, "refused: unknown actuator 'nope' (actuators: fan, heater, pump)"),
    (actuate(actuator="\udc80", action="on"), Refused, "refused: unknown actuator '\\udc80' (actuators: fan, heater, "
                                                      "pump)"),
    (actuate(actuator="fan", action="toggle"), Refused, "refused: unknown action 'toggle': use on, off or auto"),
    (actuate(actuator="fan", action="on", **{"for": "forever"}), Refused,
     "refused: invalid duration 'forever': \"for\" must be a number of seconds, more than 0 and at most 366d"),
    (actuate(actuator="fan", action="on", **{"for": True}), Refused,
     "refused: invalid duration True: \"for\" must be a number of seconds, more than 0 and at most 366d"),
    (actuate(actuator="fan", action="on", **{"for": 0}), Refused,
     "refused: invalid duration 0: \"for\" must be a number of seconds, more than 0 and at most 366d"),
    (actuate(actuator="fan", action="off", **{"for": -5}), Refused,
     "refused: invalid duration -5: \"for\" must be a number of seconds, more than 0 and at most 366d"),
    (actuate(actuator="fan", action="on", **{"for": math.nan}), Refused,
     "refused: invalid duration nan: \"for\" must be a number of seconds, more than 0 and at most 366d"),
    (actuate(actuator="fan", action="on", **{"for": math.inf}), Refused,
     "refused: invalid duration inf: \"for\" must be a number of seconds, more than 0 and at most 366d"),
    (actuate(actuator="fan", action="auto", **{"for": 10**400}), Refused,  # shown shortened
     f"refused: invalid duration 1{'0' * 76}...: \"for\" must be a number of seconds, more than 0 and at most 366d"),
    (actuate(actuator="heater", action="on", **{"for": 1000 * 3600}), Refused,
     "refused: 1000h exceeds heater's max_manual 4h"),
    (actuate(actuator="heater", action="off", **{"for": 366 * 86400}), Refused,
     "refused: 366d exceeds heater's max_manual 4h"),
    (actuate(actuator="pump", action="on", **{"for": 3600}), Refused, "refused: 1h exceeds pump's max_on 15m"),
    (actuate(actuator="pump", action="off", **{"for": 3600}), Refused, "refused: 1h exceeds pump's max_manual 30m"),
    ({"op": "ack_alert"}, BadRequest, 'ack_alert needs a "code" string'),
    ({"op": "ack_alert", "code": "  "}, BadRequest, 'ack_alert needs a "code" string'),
    ({"op": "ack_alert", "code": 17}, BadRequest, 'ack_alert needs a "code" string'),
])
def test_every_malformed_or_impossible_request_is_refused_with_its_reason(parser, request_, kind, answer):
    with pytest.raises(kind) as refused:
        parser.parse(request_, "alice")
    assert refused.value.answer == answer
    assert isinstance(refused.value, CommandError)  # one type for every door to catch


def test_a_refusal_reads_refused_and_its_reason_while_a_malformed_request_names_only_what_is_wrong():
    assert (str(Refused("interlock with fan")), Refused("interlock with fan").answer) == \
        ("interlock with fan", "refused: interlock with fan")
    assert BadRequest("unknown field(s) x").answer == "unknown field(s) x"
    assert AlreadyReceived("command c-1 was already received").answer == "command c-1 was already received"
    assert Stale("command expired: issued 3600s ago").answer == "command expired: issued 3600s ago"


# ------------------------------------------------------------------------------------------------- typed commands


@pytest.mark.parametrize("request_, command", [
    (actuate(actuator="fan", action="on", **{"for": 600}), Actuate("fan", "on", 600.0, "alice")),
    (actuate(actuator="fan", action="on", **{"for": 90.5}, who="cli"), Actuate("fan", "on", 90.5, "cli:alice")),
    (actuate(actuator="fan", action="off", who="not an identifier"), Actuate("fan", "off", 3600.0, "alice")),
    (actuate(actuator="heater", action="off"), Actuate("heater", "off", 3600.0, "alice")),  # manual_default
    (actuate(actuator="pump", action="off"), Actuate("pump", "off", 1800.0, "alice")),  # bounded by max_manual
    (actuate(actuator="pump", action="on"), Actuate("pump", "on", 900.0, "alice")),  # bounded by max_on
    (actuate(actuator="heater", action="on", **{"for": 4 * 3600}), Actuate("heater", "on", 14400.0, "alice")),
    (actuate(actuator="fan", action="auto"), Actuate("fan", "auto", None, "alice")),
    (actuate(actuator="fan", action="auto", **{"for": 60}), Actuate("fan", "auto", None, "alice")),
    ({"op": "status"}, Status()),
    ({"op": "ack_alert", "code": " 17 "}, AckAlert("17", "cli:alice")),
    ({"op": "ack_alert", "code": "17", "who": "web"}, AckAlert("17", "web:alice")),
])
def test_every_valid_request_becomes_its_typed_command(parser, request_, command):
    assert parser.parse(request_, "alice") == command


def test_a_downlink_command_is_read_by_the_same_parser(parser):
    command = protocol.Command("c-7", time.time(), "actuate", {"actuator": "pump", "action": "on", "for": None})
    assert parser.remote(command) == Actuate("pump", "on", 900.0, "remote:c-7")
    with pytest.raises(Refused) as refused:
        parser.remote(protocol.Command("c-8", time.time(), "actuate",
                                       {"actuator": "heater", "action": "on", "for": 1000 * 3600.0}))
    assert refused.value.answer == "refused: 1000h exceeds heater's max_manual 4h"
    with pytest.raises(BadRequest, match=r"^unknown op 'ping' \(ops: actuate\)$"):  # the uplink answers pings
        parser.remote(protocol.Command("c-9", time.time(), "ping", {}))


def test_alert_acknowledgements_are_refused_while_the_alerts_are_not_running(parser):
    with pytest.raises(Refused) as refused:
        serve(AckAlert("17", "cli:alice"), supervisor=None, alerts=None)
    assert refused.value.answer == "refused: alerts are not running: the buffer has no room (see edge status)"


# --------------------------------------------------------------------------- both doors: the socket and the downlink


DOORS = """\
gateway: {{id: gh-doors}}
hardware: {{backend: simulated}}
buffer: {{path: {tmp}/buffer.db}}
clock: {{trust: synced}}
control:
  socket: {tmp}/control.sock
  interlocks:
    - {{actuators: [heater, fan], wait: 10s}}
sensors:
  - {{id: air, type: simulated, measures: [temperature], interval: 10s}}
actuators:
  - {{id: fan, type: pwm, kind: fan, pin: 18}}
  - {{id: heater, type: relay, kind: heater, pin: 17}}
  - {{id: pump, type: relay, kind: pump, pin: 27, max_on: 15m}}
sync: {{url: '{url}', interval: 0.2s}}
"""


@pytest.mark.slow
def test_the_control_socket_and_the_downlink_refuse_alike(tmp_path, broker):
    from edge.gateway.control_socket import call
    from edge.gateway.daemon import Daemon

    path = tmp_path / "gateway.yaml"
    path.write_text(DOORS.format(tmp=tmp_path, url=broker.url))
    daemon = Daemon(load_config(path, env={}))
    daemon.start()
    data_center = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-dc", protocol=mqtt.MQTTv5)
    births = []
    data_center.on_message = lambda *args: births.append(args[-1].payload)
    data_center.connect(broker.host, broker.port)
    data_center.subscribe(protocol.topic("gh-doors", protocol.STATUS), qos=1)
    data_center.loop_start()

    def by_socket(args: dict) -> dict:
        return call(tmp_path / "control.sock", {"op": "actuate", **args})

    def by_downlink(command_id: str, args: dict) -> dict:
        data_center.publish(protocol.topic("gh-doors", protocol.DOWN_CMD), protocol.encode_command(
            protocol.Command(command_id, time.time(), "actuate", {"for": None, **args})), qos=1)

        def result():
            for event in daemon.buffer.events():
                data = json.loads(event["data"])
                if event["kind"] == "command.result" and data.get("id") == command_id:
                    return data
            return None

        return wait_until(result, what=f"the result of {command_id}")

    try:
        wait_until(lambda: births, what="the gateway to come online")
        assert by_socket({"actuator": "fan", "action": "on", "for": 600})["ok"] is True  # the interlock holds now
        cases = {
            "unknown": {"actuator": "nope", "action": "on"},
            "max-manual": {"actuator": "heater", "action": "off", "for": 1000 * 3600},
            "max-on": {"actuator": "pump", "action": "on", "for": 3600},
            "interlock": {"actuator": "heater", "action": "on", "for": 600},  # the supervisor refuses, not the parser
        }
        for name, args in cases.items():
            local, remote = by_socket(args), by_downlink(f"c-{name}", args)
            assert local["ok"] is False and remote["ok"] is False
            assert local["error"] == remote["error"], name
        assert remote["error"] == "refused: interlock with fan"
        local, remote = by_socket({"actuator": "pump", "action": "on"}), by_downlink("c-ok", {"actuator": "fan",
                                                                                            "action": "auto"})
        assert (local["result"]["reason"], local["result"]["remaining_s"]) == ("manual:root", 900.0)
        assert remote["ok"] is True and set(remote["result"]) == set(local["result"])  # one description, both doors
        assert daemon.hardware.actuators["heater"].value == 0.0
    finally:
        data_center.loop_stop()
        data_center.disconnect()
        daemon.stop("test over")
