"""The alerts: and sms: config sections: clear FILE:LINE errors, references checked, secrets never inline or shown."""

from __future__ import annotations

import textwrap

import pytest

from alerts_kit import config_text
from edge.gateway.config import parse_config
from edge.errors import ConfigError
from edge.gateway.alerts import build
from edge.gateway.buffer import Buffer
from edge.gateway.clock import FakeClock
from sms_fakes import KEY


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "gh.yaml", env=env or {})
    return caught.value.problems


def config(tmp_path, rules: str = "", sms: str = "sms:\n  transports:\n    - {type: console}\n", **kw) -> str:
    return config_text(rules, sms=sms, buffer=tmp_path / "b.db", **kw)


def test_an_alert_on_an_unknown_sensor_names_its_line(tmp_path):
    text = config(tmp_path, "- {id: hot, type: above, input: {sensor: attic, quantity: temperature}, threshold: 40}\n")
    line = text.splitlines().index(next(l for l in text.splitlines() if "attic" in l)) + 1
    assert problems(text) == [f"gh.yaml:{line}: alerts.rules[0].input.sensor: unknown sensor 'attic' "
                              f"(sensors: air, soil)"]


def test_a_fault_rule_on_an_unknown_actuator_names_its_line(tmp_path):
    text = config(tmp_path, "- {id: dry-run, type: actuator_fault, actuator: pump-9}\n")
    assert problems(text)[0].endswith("alerts.rules[0].actuator: unknown actuator 'pump-9' (actuators: pump)")


def test_a_clear_level_on_the_wrong_side_of_the_threshold_is_refused(tmp_path):
    text = config(tmp_path, "- {id: hot, type: above, input: {sensor: air, quantity: temperature}, threshold: 40, "
                            "clear: 42}\n")
    [problem] = problems(text)
    assert problem.endswith("alerts.rules[0]: clear (42) must not be above the threshold (40)")


def test_an_unknown_rule_type_and_a_bad_number_are_reported(tmp_path):
    text = config(tmp_path, "- {id: x, type: sometimes}\n",
                  recipients='  recipients:\n    - {name: Ali, number: "12ab"}\n')
    found = problems(text)
    assert any("alerts.recipients[0].number: not a phone number: '12ab'" in p for p in found)
    assert any("alerts.rules[0]" in p and "sometimes" in p for p in found)


def test_a_kavenegar_transport_needs_its_key_from_the_environment_or_a_file(tmp_path):
    sms = "sms:\n  transports:\n    - {type: kavenegar, sender: '2000660110'}\n"
    [problem] = problems(config(tmp_path, sms=sms))
    assert "give exactly one of api_key (from ${VAR}) or api_key_file" in problem


def test_an_api_key_from_the_environment_is_never_shown(tmp_path):
    sms = "sms:\n  transports:\n    - {type: kavenegar, sender: '2000660110', api_key: '${KAVENEGAR_API_KEY}'}\n"
    parsed = parse_config(config(tmp_path, sms=sms), env={"KAVENEGAR_API_KEY": KEY})
    assert parsed.sms.transports[0].api_key.get_secret_value() == KEY
    assert KEY not in repr(parsed) and KEY not in parsed.model_dump_json()


def test_an_api_key_file_is_read_when_the_service_is_built(tmp_path):
    key_file = tmp_path / "kavenegar.key"
    sms = f"sms:\n  transports:\n    - {{type: kavenegar, sender: '2000660110', api_key_file: {key_file}}}\n"
    parsed = parse_config(config(tmp_path, sms=sms))
    buffer, _ = Buffer.open(tmp_path / "b.db", now=0, boot_id="b")
    try:
        with pytest.raises(ConfigError, match=r"sms.transports\[0\].api_key_file: cannot read .*kavenegar.key"):
            build(parsed, buffer, FakeClock())
        key_file.write_text(KEY + "\n")
        service = build(parsed, buffer, FakeClock())
        assert service.outbox.transports[0].name == "kavenegar"
        service.close()
    finally:
        buffer.close()


def test_recipients_without_any_transport_are_refused_by_edge_check(tmp_path):
    assert any("alerts.recipients: there are recipients but no sms.transports" in p
               for p in problems(config(tmp_path, sms="")))


def test_a_stale_rule_naming_an_unknown_sensor_is_refused_by_edge_check(tmp_path):
    found = problems(config(tmp_path, "- {id: quiet, type: stale, sensors: [air, attic]}\n"))
    assert any("alerts.rules[0].sensors[1]: unknown sensor 'attic'" in p for p in found)


def test_escalation_contacts_alone_are_not_enough(tmp_path):
    recipients = '  recipients:\n    - {name: Reza, number: "09127654321", role: escalation}\n'
    assert any("at least one owner" in p for p in problems(config(tmp_path, recipients=recipients)))


def test_quiet_hours_are_local_hh_mm(tmp_path):
    found = problems(config(tmp_path, alerts="quiet_hours: {start: '10pm', end: '06:00'}\n"))
    assert any("alerts.quiet_hours.start: invalid time '10pm'" in p for p in found)


def test_a_gateway_without_alerts_has_no_alert_jobs(tmp_path):
    parsed = parse_config(textwrap.dedent(f"""\
        gateway: {{id: gh-1}}
        buffer: {{path: {tmp_path / 'b.db'}}}
        """))
    buffer, _ = Buffer.open(tmp_path / "b.db", now=0, boot_id="b")
    service = build(parsed, buffer, FakeClock())
    assert service.jobs() == []
    service.close()
    buffer.close()


# ------------------------------------------------------------------------------------------ numbers a farmer writes


@pytest.mark.parametrize("number, why", [
    ("0912 123 456", "is one digit short"),
    ("912123456", "is one digit short"),
    ("+98 912 123 45", "is 2 digits short"),
    ("091212345678", "has one digit too many"),
    ("۰۹۱۲ ۱۲۳ ۴۵۶", "is one digit short"),
    ("021 8888 1234", "is not a mobile number"),
])
def test_an_iranian_number_that_is_not_a_whole_mobile_number_is_refused_with_the_reason(tmp_path, number, why):
    text = config(tmp_path, recipients=f'  recipients:\n    - {{name: Hasan, number: "{number}"}}\n')
    [problem] = problems(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if number in l)
    assert problem.startswith(f"gh.yaml:{line}: alerts.recipients[0].number: '{number}' {why}")
    assert "09xx xxx xxxx" in problem


@pytest.mark.parametrize("number", ["09121234567", "0912 123 4567", "+98 912 123 4567", "00989121234567",
                                    "989121234567", "۰۹۱۲۱۲۳۴۵۶۷", "٠٩١٢١٢٣٤٥٦٧", "0912-123-4567",
                                    "\u200f+98 912 123 4567\u200f"])
def test_every_way_a_farmer_writes_a_mobile_number_is_one_number(tmp_path, number):
    from edge.gateway.alerts.numbers import canonical

    parse_config(config(tmp_path, recipients=f'  recipients:\n    - {{name: Hasan, number: "{number}"}}\n'))
    assert canonical(number) == "+989121234567"


# ------------------------------------------------------------------------------------------------- display names


def test_display_names_are_one_line_of_at_most_30_characters(tmp_path):
    long_name = "گلخانه بزرگ آقای حسن رضایی در خرم‌آباد"
    sensors = ('sensors:\n  - {id: air, type: simulated, measures: [temperature], name: "هوا\\nسالن"}\n'
               '  - {id: soil, type: simulated, measures: [soil_moisture], zone: bed-1, name: "  "}\n')
    text = config(tmp_path, sensors=sensors).replace("name: Demo", f"name: {long_name}")
    found = problems(text)
    assert any("gateway.name: name 'گلخانه بزرگ آقای حسن رضایی در خرم‌آباد' has 38 characters, at most 30" in p
               for p in found)
    assert any("sensors[0].name: name 'هوا\\nسالن' holds a line break" in p for p in found)
    assert any("sensors[1].name: name is empty" in p for p in found)


def test_two_sensors_of_one_quantity_or_two_outputs_with_one_name_are_refused(tmp_path):
    sensors = ("sensors:\n  - {id: air, type: simulated, measures: [temperature, humidity], name: سالن}\n"
               "  - {id: air-2, type: simulated, measures: [temperature], name: سالن}\n"
               "  - {id: soil, type: simulated, measures: [soil_moisture], zone: bed-1, name: سالن}\n"
               "actuators:\n  - {id: h1, type: relay, kind: heater, pin: 17, name: بخاری}\n"
               "  - {id: h2, type: relay, kind: heater, pin: 18, name: بخاری}\n")
    found = problems(config(tmp_path, sensors=sensors))
    assert [p.split(": ", 1)[1] for p in found] == [
        "sensors[1].name: sensors 'air' and 'air-2' both measure temperature and are both named 'سالن': an SMS "
        "could not tell them apart",
        "actuators[1].name: actuators 'h1' and 'h2' are both named 'بخاری': an SMS could not tell them apart"]
