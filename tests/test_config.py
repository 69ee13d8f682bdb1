"""`edge check`: every kind of bad config gets one `FILE:LINE: key.path: message` line and exit 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from edge.cli import main
from edge.gateway.config import load_config, parse_config
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
    assert problems(result) == [f"{path}:10: sensors[0].intervall: unknown key (did you mean 'interval'?)"]


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
    path, result = check(tmp_path, GOOD.replace("type: simulated\n    measures: [temp", "type: x9\n    measures: [temp"))
    assert result.exit_code == 2
    [line] = problems(result)
    assert line.startswith(f"{path}:7: sensors[0].type: unknown sensor type 'x9' (known: ")


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
    assert line.startswith(f"{path}:8: yaml: the [ list that starts here is not closed with ]")


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
    code = ("import sys; from edge.gateway.config import load_config; load_config(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gpiozero', 'lgpio', 'RPi', 'smbus2')))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_reading_a_config_loads_no_runtime_part_of_the_gateway(tmp_path):
    """The config's models are the parts' settings, not their runtime: reading one starts no uplink module, no MQTT
    client library, no scheduler and no supervisor."""
    path = tmp_path / "gateway.yaml"
    path.write_text(GOOD)
    code = ("import sys; from edge.gateway.config import load_config; load_config(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('paho', 'apscheduler') or m in "
            "('edge.gateway.sync.uplink', 'edge.gateway.sync.link', 'edge.gateway.control.supervisor', "
            "'edge.gateway.buffer', 'edge.gateway.daemon')))")
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


# ------------------------------------------------------------------------ files that are not plain YAML configs


def check_bytes(tmp_path, data: bytes, name: str = "gateway.yaml"):
    path = tmp_path / name
    path.write_bytes(data)
    return path, CliRunner().invoke(main, ["check", "-c", str(path)])


@pytest.mark.parametrize("char", ["\x01", "\x00", "\x1b", "\x7f"])
def test_a_control_character_is_named_with_its_line_not_a_traceback(tmp_path, char):
    path, result = check_bytes(tmp_path, GOOD.replace("id: air", f"id: a{char}ir").encode())
    assert result.exit_code == 2
    assert problems(result) == [f"{path}:6: yaml: control character U+{ord(char):04X} in column 10 is not allowed "
                                "(only tab, newline and printable characters)"]


@pytest.mark.parametrize("data, expected", [
    (GOOD.replace("kind: fan", "kind: f\xe4n").encode("latin-1"), "{path}:18: not valid UTF-8 (byte 0xe4 in column "
                                                                   "12): save the file as UTF-8"),
    (GOOD.encode("utf-16"), "{path}:1: the file is UTF-16: save it as UTF-8"),
    (GOOD.encode("utf-16-le"), "{path}:1: the file is UTF-16: save it as UTF-8"),
    (GOOD.encode("utf-32"), "{path}:1: the file is UTF-32: save it as UTF-8"),
    (b"", "{path}:1: the file is empty (or holds only comments)"),
    (b"# nothing yet\n", "{path}:1: the file is empty (or holds only comments)"),
    (b"# " + b"x" * 2_000_000 + b"\n", "{path}: larger than 1024 kB: not a config file (a config is a few kB); is it "
                                      "the right file?"),
])
def test_files_in_the_wrong_encoding_empty_or_huge_get_one_clear_line(tmp_path, data, expected):
    path, result = check_bytes(tmp_path, data)
    assert result.exit_code == 2
    assert problems(result) == [expected.format(path=path)]


def test_a_byte_order_mark_is_accepted(tmp_path):
    path, result = check_bytes(tmp_path, b"\xef\xbb\xbf" + GOOD.encode())
    assert result.exit_code == 0, result.output


def test_a_directory_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.problems == [f"{tmp_path}: cannot read: Is a directory"]


BILLION_LAUGHS = "\n".join(['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'] + [
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)]) + "\n" + GOOD


def test_a_yaml_alias_bomb_is_refused_at_once_in_bounded_memory(tmp_path):
    import resource

    path = tmp_path / "gateway.yaml"
    path.write_text(BILLION_LAUGHS)  # 11 lines that expand to 387 million strings

    def small_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (1024 ** 3, 1024 ** 3))

    done = subprocess.run([sys.executable, "-m", "edge", "check", "-c", str(path)], capture_output=True, text=True,
                          timeout=60, preexec_fn=small_address_space)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"{path}:6: yaml: the document expands to more than 100000 values (aliases such as *name "
                           "repeat all that their anchor holds): not a config file\n")


def test_a_merge_key_bomb_is_refused_too(tmp_path):
    lines = ["m0: &m0 {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1}"]
    lines += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}]}}" for i in range(1, 10)]
    with pytest.raises(ConfigError) as caught:
        parse_config("\n".join(lines) + "\n" + GOOD, "bomb.yaml")
    assert caught.value.problems[0].startswith("bomb.yaml:5: yaml: the document expands to more than 100000 values")


@pytest.mark.parametrize("text, line, detail", [
    ("x: " + "[" * 5000 + "]" * 5000 + "\n", 21, ""),
    ("x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", 21, ""),
    ("x:\n" + "".join("  " * i + "- \n" for i in range(60)), 61, ""),  # block style, one level per line
    ("d0: &d0 " + "[" * 30 + "]" * 30 + "\nd1: &d1 " + "[" * 5 + "*d0" + "]" * 5 + "\nd2: [[[[[[*d1]]]]]]\n", 23,
     " (through *d1)"),
])
def test_deep_nesting_is_refused_even_through_aliases(tmp_path, text, line, detail):
    with pytest.raises(ConfigError) as caught:
        parse_config(GOOD + text, "deep.yaml")
    assert caught.value.problems == [f"deep.yaml:{line}: yaml: nested more than 40 levels deep{detail}"]


def test_an_alias_inside_its_own_anchor_is_refused():
    with pytest.raises(ConfigError) as caught:
        parse_config("loop: &loop [1, *loop]\n" + GOOD, "loop.yaml")
    assert caught.value.problems == ["loop.yaml:1: yaml: alias *loop refers to a collection that contains it (it "
                                     "would never end)"]


def test_anchors_aliases_and_merge_keys_within_the_bounds_still_work():
    config = parse_config("""\
gateway: {id: gh-1}
sensors:
  - {id: air, type: simulated, measures: [temperature], interval: &every 10s}
  - {id: soil, type: simulated, measures: [soil_moisture], zone: bed-1, interval: *every}
actuators:
  - &fan {id: fan, type: pwm, kind: fan, pin: 18}
  - {<<: *fan, id: fan-2, pin: 19}
  - {<<: *fan, id: fan-3, pin: 20}
""")
    assert [s.interval for s in config.sensors] == [10.0, 10.0]
    assert [(a.id, a.kind, a.pin) for a in config.actuators] == [("fan", "fan", 18), ("fan-2", "fan", 19),
                                                                  ("fan-3", "fan", 20)]


def test_a_key_given_twice_beside_a_merge_key_is_still_a_duplicate():
    with pytest.raises(ConfigError) as caught:
        parse_config("gateway: {id: gh-1}\nx: &x {a: 1}\ny: {<<: *x, b: 1, b: 2}\n", "dup.yaml")
    assert caught.value.problems == ["dup.yaml:2: x: unknown key", "dup.yaml:3: y.b: duplicate key (first on line 3)",
                                     "dup.yaml:3: y: unknown key"]  # all in one pass


def test_the_data_center_config_gets_the_same_checks(tmp_path):
    from edge.datacenter.config import load_datacenter_config

    path = tmp_path / "datacenter.yaml"
    path.write_text(BILLION_LAUGHS.replace(GOOD, "mqtt: {url: 'mqtt://b:1883'}\n"))
    with pytest.raises(ConfigError) as caught:
        load_datacenter_config(path, env={})
    assert caught.value.problems[0].startswith(f"{path}:6: yaml: the document expands to more than")
    path.write_bytes(b"mqtt:\n  url: mqtt://b\x01:1883\n")
    with pytest.raises(ConfigError) as caught:
        load_datacenter_config(path, env={})
    assert caught.value.problems == [f"{path}:2: yaml: control character U+0001 in column 16 is not allowed (only "
                                     "tab, newline and printable characters)"]


# ------------------------------------------------------------------------------- every problem in one pass


def test_a_missing_variable_hides_no_other_problem_and_is_not_reported_twice(tmp_path):
    text = (GOOD.replace("id: gh-1", "id: ${GATEWAY_ID}").replace("interval: 10s", "interval: ten")
            .replace("kind: fan", "kind: fann") + "sync:\n  url: ${BROKER_URL}\n")
    path, result = check(tmp_path, text, env={})
    assert result.exit_code == 2
    assert problems(result) == [
        f"{path}:2: gateway.id: environment variable GATEWAY_ID is not set (write ${{GATEWAY_ID:-default}} for a "
        "default)",
        f"{path}:9: sensors[0].interval: invalid duration 'ten': use a number and a unit, such as 10s, 5m, 2h or 1d",
        f"{path}:18: actuators[0].kind: Input should be 'fan', 'heater', 'pump', 'vent', 'light', 'co2', 'mister' or "
        "'other' (did you mean 'fan'?)",
        f"{path}:22: sync.url: environment variable BROKER_URL is not set (write ${{BROKER_URL:-default}} for a "
        "default)",
    ]


def test_a_bad_section_does_not_hide_unknown_references_in_another(tmp_path):
    text = GOOD + """log: {level: loud}
rules:
  - {id: cooling, type: threshold, input: {sensor: nope, quantity: temperature}, actuator: fan, on_above: 30,
     off_below: 27}
"""
    path, result = check(tmp_path, text)
    assert problems(result) == [
        f"{path}:21: log.level: Input should be 'debug', 'info', 'warning' or 'error'",
        f"{path}:23: rules[0].input.sensor: unknown sensor 'nope' (sensors: air, soil)",
    ]


def test_whole_config_checks_still_run_beside_a_missing_variable(tmp_path):
    text = GOOD.replace("  id: gh-1\n", "  id: gh-1\n  name: ${GREENHOUSE_NAME}\n") + """alerts:
  recipients:
    - {name: Farmer, number: "09120000000"}
"""
    path, result = check(tmp_path, text, env={})
    assert [line.split(": ")[1] for line in problems(result)] == ["gateway.name", "alerts.recipients"]


def test_a_mistyped_sensor_type_gets_a_suggestion_besides_the_list(tmp_path):
    path, result = check(tmp_path, GOOD.replace("type: simulated\n    measures: [temp", "type: sht31\n    measures: [temp"))
    [line] = problems(result)
    assert line.startswith(f"{path}:7: sensors[0].type: unknown sensor type 'sht31': did you mean 'sht3x'? (known: "
                           "ads1115, bh1750, bme280, dht22, ")


def test_a_mistyped_key_or_choice_anywhere_gets_a_suggestion(tmp_path):
    text = GOOD.replace("hardware:\n  backend: simulated", "hardware:\n  backend: gpoi") + """sync:
  batch_sise: 100
sms:
  transports:
    - {type: kavenegar, api_kye: x, sender: "2000"}
"""
    path, result = check(tmp_path, text)
    assert problems(result) == [
        f"{path}:4: hardware.backend: Input should be 'simulated' or 'gpio' (did you mean 'gpio'?)",
        f"{path}:22: sync.batch_sise: unknown key (did you mean 'batch_size'?)",
        f"{path}:25: sms.transports[0].api_kye: unknown key (did you mean 'api_key'?)",
    ]


@pytest.mark.parametrize("mistake, line, message", [
    (("id: gh-1", 'id: "gh-1'), 2, "a quoted value that starts here is never closed: add the closing quote"),
    (("zone: bed-1", "zone: 'bed-1"), 13, "a quoted value that starts here is never closed: add the closing quote"),
    (("    measures: [temperature, humidity]", "  measures: [temperature, humidity]"), 8,
     "this line is indented wrongly"),
    (("    measures: [temperature, humidity]", "     measures: [temperature, humidity]"), 8,
     "this line is indented wrongly"),
    (("  - id: soil", "   - id: soil"), 10, "this line is indented wrongly"),
    (("    measures: [temperature, humidity]", "\tmeasures: [temperature, humidity]"), 8,
     "a tab in column 1: YAML indents with spaces, never tabs"),
    (("type: pwm", "type pwm"), 17, "no ':' after the key on this line: write key: value (a space after the colon)"),
    (("type: pwm", "type:pwm"), 17, "no ':' after the key on this line"),
    (("feedback: {sensor: air, quantity: temperature}", "feedback: {sensor: air, quantity: temperature"), 20,
     "the { mapping that starts here is not closed with }"),
])
def test_yaml_syntax_errors_point_at_the_line_of_the_mistake(tmp_path, mistake, line, message):
    path, result = check(tmp_path, GOOD.replace(*mistake) + "control: {interval: 5s}\n")
    assert result.exit_code == 2
    [problem] = problems(result)
    assert problem.startswith(f"{path}:{line}: yaml: {message}")


# ------------------------------------------------------------------------------------ files the config names

SECRETS = """\
sync:
  url: mqtts://broker.example:8883
  password_file: PASSWORD
  ca_file: CA
sms:
  transports:
    - {type: kavenegar, api_key_file: KEY, sender: "2000660110"}
"""


def secrets_config(tmp_path, password="s3cret-password", ca="-----BEGIN CERTIFICATE-----\n", key=None):
    files = {"PASSWORD": (tmp_path / "mqtt-password", password), "CA": (tmp_path / "ca.pem", ca),
             "KEY": (tmp_path / "kavenegar.key", key)}
    text = GOOD + SECRETS
    for name, (path, content) in files.items():
        if content is not None:
            path.write_text(content)
        text = text.replace(name, str(path))
    return text


def test_check_names_each_missing_secret_file_with_its_line(tmp_path):
    path, result = check(tmp_path, secrets_config(tmp_path))
    assert result.exit_code == 2
    assert problems(result) == [f"{path}:27: sms.transports[0].api_key_file: {tmp_path / 'kavenegar.key'} does not "
                                "exist: create it (owner root, group edge, mode 0640)"]


def test_empty_files_and_directories_are_not_secret_files(tmp_path):
    (tmp_path / "kavenegar.key").mkdir()
    path, result = check(tmp_path, secrets_config(tmp_path, password=""))
    assert problems(result) == [f"{path}:23: sync.password_file: {tmp_path / 'mqtt-password'} is empty",
                                f"{path}:27: sms.transports[0].api_key_file: {tmp_path / 'kavenegar.key'} is a "
                                "directory, not a file"]


def test_secret_files_pass_and_their_contents_are_never_printed(tmp_path):
    path, result = check(tmp_path, secrets_config(tmp_path, key="k3y-s3cret") + "colour: red\n")
    assert problems(result) == [f"{path}:28: colour: unknown key"]
    path, result = check(tmp_path, secrets_config(tmp_path, key="k3y-s3cret"))
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output


def _without_privileges() -> None:
    """In a child process before exec: as root, give up every capability (CAP_DAC_OVERRIDE above all), so file modes
    apply to it as to the service user."""
    import ctypes
    import os

    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in range(64):
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP; fails past the last capability
                break


def test_a_secret_file_this_user_cannot_read_is_a_problem(tmp_path):
    import getpass

    config = tmp_path / "gateway.yaml"
    config.write_text(secrets_config(tmp_path, key="k3y-s3cret"))
    (tmp_path / "kavenegar.key").chmod(0o000)
    done = subprocess.run([sys.executable, "-m", "edge", "check", "-c", str(config)], capture_output=True,
                          text=True, preexec_fn=_without_privileges, env={})
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line == (f"{config}:27: sms.transports[0].api_key_file: {tmp_path / 'kavenegar.key'} is not readable by "
                    f"this user ({getpass.getuser()}): the service user edge must read it (owner root, group edge, "
                    "mode 0640); run edge check as root or as edge")
    assert "s3cret" not in done.stdout + done.stderr


def test_the_daemon_does_not_start_without_its_secret_files(tmp_path):
    text = secrets_config(tmp_path).replace("url: mqtts://broker.example:8883", "url: ''") + (
        f"buffer: {{path: {tmp_path / 'buffer.db'}}}\ncontrol: {{socket: {tmp_path / 'control.sock'}}}\n")
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    done = subprocess.run([sys.executable, "-m", "edge", "run", "-c", str(path), "--for", "1s"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"{path}:27: sms.transports[0].api_key_file: {tmp_path / 'kavenegar.key'} does "
                                   "not exist: create it (owner root, group edge, mode 0640)")
    assert not (tmp_path / "buffer.db").exists()  # nothing started: no epoch used up


def test_commands_that_only_read_do_not_need_the_secret_files(tmp_path):
    config = parse_config(secrets_config(tmp_path))
    assert str(config.sms.transports[0].api_key_file) == str(tmp_path / "kavenegar.key")
