"""Every option is shown in the example config at its default, and every command is documented."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge.cli import main
from edge.gateway.config import (BufferConfig, ClockConfig, GatewayIdentity, HardwareConfig, LogConfig, load_config)
from edge.gateway.alerts.config import RULE_MODELS, TRANSPORT_MODELS, AlertsConfig, Caps, Recipient, SmsConfig
from edge.gateway import hardware
from edge.gateway.hardware.sim import SimulationConfig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "gateway.example.yaml"


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_the_example_config_is_valid():
    config = load_config(EXAMPLE, env={})
    assert config.gateway.id == "gh-example-01"


def assert_every_field_at_default(model, section: dict, where: str, skip=()):
    missing = set(model.model_fields) - set(section) - set(skip)
    assert not missing, f"{where}: options missing from the example: {sorted(missing)}"
    parsed = model.model_validate({k: v for k, v in section.items() if k not in skip})
    for name, field in model.model_fields.items():
        if name in skip or field.is_required():
            continue
        assert getattr(parsed, name) == field.get_default(call_default_factory=True), \
            f"{where}.{name} is not shown at its default"


def test_every_section_option_is_shown_at_its_default():
    doc = example()
    doc["gateway"]["id"] = "gh-example-01"  # shown as ${EDGE_GATEWAY_ID:-...} to demonstrate the environment
    assert doc["gateway"]["name"]  # an example name (default null: «گلخانه»), so the SMS of the example read right
    doc["gateway"]["name"] = None
    assert_every_field_at_default(GatewayIdentity, doc["gateway"], "gateway")
    assert_every_field_at_default(HardwareConfig, doc["hardware"], "hardware", skip=("simulation",))
    assert_every_field_at_default(SimulationConfig, doc["hardware"]["simulation"], "hardware.simulation")
    assert_every_field_at_default(ClockConfig, doc["clock"], "clock")
    assert_every_field_at_default(BufferConfig, doc["buffer"], "buffer")
    assert_every_field_at_default(LogConfig, doc["log"], "log")
    from edge.gateway.sync import SyncConfig

    assert_every_field_at_default(SyncConfig, {**doc["sync"], "url": ""}, "sync")
    from edge.gateway.web.config import WebConfig

    assert_every_field_at_default(WebConfig, doc["web"], "web")


def test_the_alerts_and_sms_sections_show_every_option_at_its_default():
    doc = example()
    assert_every_field_at_default(AlertsConfig, doc["alerts"], "alerts", skip=("recipients", "rules"))
    assert_every_field_at_default(Caps, doc["alerts"]["caps"], "alerts.caps")
    assert_every_field_at_default(Recipient, doc["alerts"]["recipients"][0], "alerts.recipients[0]")
    assert_every_field_at_default(SmsConfig, doc["sms"], "sms", skip=("transports",))


def test_every_alert_rule_and_sms_transport_type_is_shown_with_every_option():
    doc = example()
    common = {"id", "name", "severity"}  # keys every rule has: documented once, shown on the first rule
    assert common <= set(doc["alerts"]["rules"][0])
    for section, items, models in (("alerts.rules", doc["alerts"]["rules"], RULE_MODELS),
                                   ("sms.transports", doc["sms"]["transports"], TRANSPORT_MODELS)):
        for model in models:
            for type_name in model.model_fields["type"].annotation.__args__:
                shown = [item for item in items if item["type"] == type_name]
                assert shown, f"{section}: type {type_name!r} has no example"
                keys = set().union(*(item.keys() for item in shown), common)
                options = {field.alias or name for name, field in model.model_fields.items()}
                assert not options - keys, f"{section} type {type_name}: options missing: {sorted(options - keys)}"


def test_every_driver_is_shown_with_every_option():
    doc = example()
    for section, types, lookup in (("sensors", hardware.SENSOR_TYPES, hardware.sensor_driver),
                                   ("actuators", hardware.ACTUATOR_TYPES, hardware.actuator_driver)):
        for type_name in types:
            shown = [item for item in doc[section] if item["type"] == type_name]
            assert shown, f"{section}: driver type {type_name!r} has no example"
            keys = set().union(*(item.keys() for item in shown))
            missing = set(lookup(type_name).Config.model_fields) - keys
            assert not missing, f"{section} type {type_name}: options missing from the example: {sorted(missing)}"


def test_control_options_schedules_and_rules_are_all_shown():
    from edge.gateway.control.config import (Co2Rule, ControlConfig, CronSchedule, DutySchedule, HumidityRule,
                                             Interlock, IrrigationRule, LightIrrigationRule, Profile, SetpointRule,
                                             SunSchedule, ThresholdRule)

    doc = example()
    assert_every_field_at_default(ControlConfig, doc["control"], "control", skip=("interlocks", "profiles"))
    assert set(Interlock.model_fields) <= set(doc["control"]["interlocks"][0])
    assert set(Profile.model_fields) <= set(doc["control"]["profiles"][0])
    for section, models in (("schedules", (CronSchedule, DutySchedule, SunSchedule)),
                            ("rules", (ThresholdRule, IrrigationRule, SetpointRule, HumidityRule,
                                       LightIrrigationRule, Co2Rule))):
        for model in models:
            type_name = model.model_fields["type"].annotation.__args__[0]
            shown = [item for item in doc[section] if item["type"] == type_name]
            assert shown, f"{section}: type {type_name!r} has no example"
            missing = set(model.model_fields) - set().union(*(item.keys() for item in shown))
            assert not missing, f"{section} type {type_name}: options missing from the example: {sorted(missing)}"


def test_the_derived_section_shows_every_option_at_its_default():
    from edge.gateway.derived import DerivedConfig

    derived = example()["derived"][0]
    assert_every_field_at_default(DerivedConfig, derived, "derived[0]", skip=("light",))


def test_every_command_is_documented_in_the_readme_or_docs():
    text = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    for name in main.commands:
        assert f"edge {name}" in text, f"`edge {name}` is not documented"


def test_every_command_has_an_example_in_its_help():
    for name, command in main.commands.items():
        assert "Example: edge " + name in (command.help or ""), f"`edge {name} --help` has no example"


def test_config_demo_is_the_embedded_demo():
    from edge.gateway.config import DEMO_CONFIG

    assert (ROOT / "config" / "demo.yaml").read_text() == DEMO_CONFIG.read_text()


def test_the_sms_table_in_the_alert_docs_is_what_the_code_sends():
    from edge.gateway.alerts.catalog import BEGIN, END, markdown

    text = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == markdown(), "docs/alerts.md is out of date: python -m edge.gateway.alerts.catalog --write"
