"""Every option is shown in the example config at its default, and every command is documented."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge.cli import main
from edge.config import (BufferConfig, ClockConfig, GatewayIdentity, HardwareConfig, LogConfig, load_config)
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
    assert_every_field_at_default(GatewayIdentity, doc["gateway"], "gateway")
    assert_every_field_at_default(HardwareConfig, doc["hardware"], "hardware", skip=("simulation",))
    assert_every_field_at_default(SimulationConfig, doc["hardware"]["simulation"], "hardware.simulation")
    assert_every_field_at_default(ClockConfig, doc["clock"], "clock")
    assert_every_field_at_default(BufferConfig, doc["buffer"], "buffer")
    assert_every_field_at_default(LogConfig, doc["log"], "log")


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
    from edge.gateway.control.config import (ControlConfig, CronSchedule, DutySchedule, Interlock, IrrigationRule,
                                             SunSchedule, ThresholdRule)

    doc = example()
    assert_every_field_at_default(ControlConfig, doc["control"], "control", skip=("interlocks",))
    assert set(Interlock.model_fields) <= set(doc["control"]["interlocks"][0])
    for section, models in (("schedules", (CronSchedule, DutySchedule, SunSchedule)),
                            ("rules", (ThresholdRule, IrrigationRule))):
        for model in models:
            type_name = model.model_fields["type"].annotation.__args__[0]
            shown = [item for item in doc[section] if item["type"] == type_name]
            assert shown, f"{section}: type {type_name!r} has no example"
            missing = set(model.model_fields) - set().union(*(item.keys() for item in shown))
            assert not missing, f"{section} type {type_name}: options missing from the example: {sorted(missing)}"


def test_every_command_is_documented_in_the_readme_or_docs():
    text = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    for name in main.commands:
        assert f"edge {name}" in text, f"`edge {name}` is not documented"


def test_every_command_has_an_example_in_its_help():
    for name, command in main.commands.items():
        assert "Example: edge " + name in (command.help or ""), f"`edge {name} --help` has no example"


def test_config_demo_is_the_embedded_demo():
    from edge.config import DEMO_CONFIG

    assert (ROOT / "config" / "demo.yaml").read_text() == DEMO_CONFIG.read_text()
