"""`edge check`: every kind of bad config gets one `FILE:LINE: key.path: message` line and exit 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from edge.cli import main
from edge.config import load_config, parse_config
from edge.errors import ConfigError

GOOD = """\
gateway:
  id: gh-1
hardware:
  backend: simulated
sensors:
  - id: air
    type: simulated
    measures: [temperature, humidity]
    interval: 10s
  - id: soil
    type: simulated
    measures: [soil_moisture]
    zone: bed-1
    interval: 5m
actuators:
  - id: fan
    type: pwm
    kind: fan
    pin: 18
    feedback: {sensor: air, quantity: temperature}
"""


def check(tmp_path, text: str, env: dict[str, str] | None = None):
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(text))
    result = CliRunner().invoke(main, ["check", "-c", str(path)], env=env or {})
    return path, result


def problems(result) -> list[str]:
    return [line for line in result.output.splitlines() if line]


def test_a_good_config_passes_with_exit_0(tmp_path):
    path, result = check(tmp_path, GOOD)
    assert result.exit_code == 0, result.output
    assert f"{path}: ok" in result.output


def test_unknown_top_level_key_names_its_line(tmp_path):
    path, result = check(tmp_path, GOOD + "colour: green\n")
    assert result.exit_code == 2
    assert problems(result) == [f"{path}:21: colour: unknown key"]


def test_unknown_key_inside_a_sensor_names_the_sensor_path(tmp_path):
    path, result = check(tmp_path, GOOD.replace("    interval: 10s\n", "    interval: 10s\n    intervall: 5s\n"))
    assert result.exit_code == 2
    assert problems(result) == [f"{path}:10: sensors[0].intervall: unknown key"]


@pytest.mark.parametrize("bad", ["10", "10 minutes", "-5s", "0s", "5 m s", "1w"])
def test_bad_durations_are_refused(tmp_path, bad):
    path, result = check(tmp_path, GOOD.replace("interval: 5m", f"interval: {bad}"))
    assert result.exit_code == 2
    [line] = problems(result)
    assert line.startswith(f"{path}:14: sensors[1].interval: ")
    assert "10s, 5m" in line or "greater than zero" in line


def test_accepted_duration_forms(tmp_path):
    for text, seconds in [("10s", 10), ("5m", 300), ("2h", 7200), ("1d", 86400)]:
        config = parse_config(GOOD.replace("interval: 5m", f"interval: {text}"))
        assert config.sensor("soil").interval == seconds


def test_duplicate_ids_are_refused(tmp_path):
    path, result = check(tmp_path, GOOD.replace("id: soil", "id: air"))
    assert result.exit_code == 2
    assert problems(result) == [f"{path}:10: sensors[1].id: duplicate id 'air' (also sensors[0])"]


def test_an_actuator_may_not_reuse_a_sensor_id(tmp_path):
    path, result = check(tmp_path, GOOD.replace("id: fan", "id: soil"))
    assert problems(result) == [f"{path}:16: actuators[0].id: duplicate id 'soil' (also sensors[1])"]


def test_missing_required_keys_name_the_enclosing_line(tmp_path):
    text = GOOD.replace("  id: gh-1\n", "  name: no id\n").replace("    measures: [soil_moisture]\n", "")
    path, result = check(tmp_path, text)
    assert result.exit_code == 2
    assert problems(result) == [
        f"{path}:1: gateway.id: missing required key",
        f"{path}:10: sensors[1].measures: missing required key",
    ]


def test_reference_to_an_unknown_sensor_is_refused(tmp_path):
    path, result = check(tmp_path, GOOD.replace("{sensor: air,", "{sensor: air-2,"))
    assert result.exit_code == 2
    assert problems(result) == [
        f"{path}:20: actuators[0].feedback.sensor: unknown sensor 'air-2' (sensors: air, soil)"]


def test_reference_to_a_quantity_the_sensor_does_not_measure_is_refused(tmp_path):
    path, result = check(tmp_path, GOOD.replace("quantity: temperature}", "quantity: co2}"))
    assert problems(result) == [f"{path}:20: actuators[0].feedback.quantity: sensor 'air' does not measure co2"]


def test_unknown_sensor_type_lists_the_known_ones(tmp_path):
    path, result = check(tmp_path, GOOD.replace("type: simulated\n    measures: [temp", "type: sht99\n    measures: [temp"))
    assert result.exit_code == 2
    [line] = problems(result)
    assert line.startswith(f"{path}:7: sensors[0].type: unknown sensor type 'sht99' (known: ")


def test_wrong_value_types_are_refused(tmp_path):
    path, result = check(tmp_path, GOOD.replace("pin: 18", "pin: [18]").replace("kind: fan", "kind: blower"))
    lines = problems(result)
    assert result.exit_code == 2
    assert lines[0].startswith(f"{path}:18: actuators[0].kind: Input should be 'fan', 'heater'")
    assert lines[1].startswith(f"{path}:19: actuators[0].pin: ")
    assert len(lines) == 2


def test_invalid_ids_are_explained(tmp_path):
    path, result = check(tmp_path, GOOD.replace("id: gh-1", "id: 'gh 1/../x'"))
    assert problems(result) == [f"{path}:2: gateway.id: invalid id 'gh 1/../x': use 1-64 letters, digits, '-' "
                                "or '_', starting with a letter or digit"]


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path, result = check(tmp_path, GOOD.replace("  id: gh-1\n", "  id: gh-1\n  id: gh-2\n"))
    assert problems(result) == [f"{path}:3: gateway.id: duplicate key (first on line 2)"]


def test_yaml_syntax_error_names_its_line(tmp_path):
    path, result = check(tmp_path, GOOD.replace("measures: [temperature, humidity]", "measures: [temperature"))
    assert result.exit_code == 2
    [line] = problems(result)
    assert line.startswith(f"{path}:9: yaml: ")


def test_all_problems_are_reported_at_once_in_line_order(tmp_path):
    text = GOOD.replace("interval: 10s", "interval: ten").replace("pin: 18", "pin: 18\n    colour: red") + "x: 1\n"
    path, result = check(tmp_path, text)
    assert [line.split(": ")[0] for line in problems(result)] == [f"{path}:9", f"{path}:20", f"{path}:22"]


def test_environment_variables_fill_in_values(tmp_path):
    text = GOOD.replace("id: gh-1", "id: ${GATEWAY_ID}\n  name: ${GATEWAY_NAME:-Greenhouse}")
    config = parse_config(text, env={"GATEWAY_ID": "gh-from-env"})
    assert (config.gateway.id, config.gateway.name) == ("gh-from-env", "Greenhouse")
    config = parse_config(text, env={"GATEWAY_ID": "x", "GATEWAY_NAME": ""})
    assert config.gateway.name == "Greenhouse"  # empty counts as unset when a default is given


def test_missing_environment_variable_is_refused(tmp_path):
    path, result = check(tmp_path, GOOD.replace("id: gh-1", "id: ${GATEWAY_ID}"), env={})
    assert problems(result) == [f"{path}:2: gateway.id: environment variable GATEWAY_ID is not set "
                                "(write ${GATEWAY_ID:-default} for a default)"]


def test_a_missing_file_is_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["check", "-c", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert problems(result) == [f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory"]


def test_the_real_command_prints_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("interval: 10s", "interval: 10"))
    proc = subprocess.run([sys.executable, "-m", "edge", "check", "-c", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"{path}:9: sensors[0].interval: duration must be a string such as 10s, 5m or 2h, "
                                   "not 10")


def test_soil_moisture_needs_a_zone():
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD.replace("    zone: bed-1\n", ""), "f.yaml")
    assert err.value.problems[0].startswith("f.yaml:10: sensors[1]: ")
    assert "zone" in err.value.problems[0]


def test_check_does_not_import_gpio_libraries_for_a_simulated_config(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(GOOD)
    code = ("import sys; from edge.config import load_config; load_config(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gpiozero', 'lgpio', 'RPi', 'smbus2')))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_the_embedded_demo_config_is_valid():
    config = load_config(None)
    assert config.hardware.backend == "simulated"
    assert {s.id for s in config.sensors} >= {"air", "soil-bed-1"}


def test_alert_rules_are_checked_against_the_whole_config(tmp_path):
    text = GOOD + """alerts:
  recipients:
    - {name: Farmer, number: "09120000000"}
  rules:
    - {id: silent, type: stale, sensors: [air, nope]}
"""
    path, result = check(tmp_path, text)
    assert problems(result) == [f"{path}:25: alerts.rules[0].sensors[1]: unknown sensor 'nope' (sensors: air, soil)"]
    path, result = check(tmp_path, text.replace(", nope]", "]"))
    assert problems(result) == [f"{path}:22: alerts.recipients: there are recipients but no sms.transports"]
