"""`edge doctor`: one line per check, OK / WARN / FAIL / SKIP with a hint, exit 1 only when something FAILs; the
broker is tried for real (private Mosquitto) with the configured credentials, and the password never shows."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conftest import wait_until
from dc_kit import Login
from edge.contract import protocol
from edge.cli import main
from edge.gateway.sync.state import SyncState
from edge.gateway.buffer import Buffer, NewReading
from edge.gateway.doctor import Check, check_service, diagnose, format_report
from services import free_port
from sms_fakes import KEY, FakeKavenegar

GATEWAY = """\
gateway: {id: GATEWAY}
hardware: {backend: simulated}
buffer: {path: BUFFER, max_size: MAX_SIZE}
clock: {trust: synced}
control: {socket: SOCKET}
sync: SYNC
sms: SMS
sensors:
  - {id: air, type: simulated, measures: [temperature, humidity], interval: 10s}
"""


@pytest.fixture
def write_config(tmp_path):
    def write(sync: str = "{}", sms: str = "{}", gateway: str = "gh-a", max_size: str = "2GB"):
        path = tmp_path / "gateway.yaml"
        path.write_text(GATEWAY.replace("GATEWAY", gateway).replace("BUFFER", str(tmp_path / "buffer.db"))
                        .replace("SOCKET", str(tmp_path / "control.sock")).replace("SYNC", sync)
                        .replace("SMS", sms).replace("MAX_SIZE", max_size))
        return path
    return write


def doctor(path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["doctor", "-c", str(path), "--timeout", "3s"])
    return result.exit_code, result.output


def line(output: str, name: str) -> str:
    [found] = [text for text in output.splitlines() if text[6:].startswith(name + " ")]
    return found


def test_a_reachable_broker_and_answering_sensors_pass(write_config, broker):
    code, output = doctor(write_config(sync=f"{{url: {broker.url}}}"))
    assert code == 0, output
    assert line(output, "config").startswith("OK    config   gateway gh-a: 1 sensor, 0 actuators, ")
    assert line(output, "broker") == f"OK    broker   127.0.0.1:{broker.port}: connected as 'gh-a' (mqttv5)"
    assert line(output, "sensors").startswith("OK    sensors  1 of 1 answer (probed")
    assert line(output, "buffer").startswith("WARN  buffer")  # no buffer before the first start
    assert line(output, "sms") == "SKIP  sms      no SMS transport configured"
    assert output.splitlines()[-1] == "0 failed, 1 warning"


def test_an_unreachable_broker_fails_with_a_hint(write_config):
    code, output = doctor(write_config(sync=f"{{url: 'mqtt://127.0.0.1:{free_port()}'}}"))
    assert code == 1
    failed = output.splitlines().index(line(output, "broker"))
    assert output.splitlines()[failed].endswith(": connection refused")
    assert output.splitlines()[failed + 1].strip().startswith("-> is the broker running and listening on port")


def test_wrong_credentials_fail_and_the_password_is_never_shown(write_config, secure_broker, tmp_path):
    secret = tmp_path / "mqtt-password"
    secret.write_text("not-the-password-of-gh-a\n")
    config = write_config(sync=f"{{url: {secure_broker.url}, password_file: {secret}}}")
    code, output = doctor(config)
    assert code == 1
    assert line(output, "broker") == f"FAIL  broker   127.0.0.1:{secure_broker.port}: the broker refused 'gh-a': " \
                                     "Not authorized"
    assert "not-the-password-of-gh-a" not in output

    secret.write_text(secure_broker.users["gh-a"] + "\n")
    code, output = doctor(config)
    assert line(output, "broker").startswith("OK    broker")
    assert secure_broker.users["gh-a"] not in output


COMMAND = protocol.encode_command(protocol.Command(id="c-1", issued=1_760_000_000.0, op="ping", args={}))


@pytest.mark.parametrize("version", ["mqttv5", "mqttv311"])
def test_the_broker_login_leaves_a_command_queued_for_the_stopped_daemon(write_config, secure_broker, tmp_path,
                                                                         version):
    # The broker names sessions by account, so the doctor's login resumes the daemon's own session: it must leave
    # it as it found it, with what was queued for the gateway meanwhile.
    daemon = Login(secure_broker, "gh-a", clean_start=False, session_expiry=86400)  # as the uplink connects
    daemon.subscribe(protocol.topic("gh-a", protocol.DOWN_CMD))
    daemon.close()  # the daemon stopped
    commander = Login(secure_broker, "commander")
    assert commander.publish(protocol.topic("gh-a", protocol.DOWN_CMD), COMMAND) == 0
    commander.close()
    secret = tmp_path / "mqtt-password"
    secret.write_text(secure_broker.users["gh-a"] + "\n")
    code, output = doctor(write_config(sync=f"{{url: {secure_broker.url}, password_file: {secret}, "
                                            f"mqtt_version: {version}}}"))
    assert line(output, "broker") == f"OK    broker   127.0.0.1:{secure_broker.port}: connected as 'gh-a' ({version})"
    back = Login(secure_broker, "gh-a", clean_start=False, session_expiry=86400)  # the daemon starts again
    try:
        wait_until(lambda: back.messages, 5, "the command queued while the daemon was stopped")
        assert back.messages == [(protocol.topic("gh-a", protocol.DOWN_CMD), COMMAND)]
    finally:
        back.close()


def test_while_the_daemon_runs_the_broker_line_is_its_link_and_no_second_login(write_config, secure_broker,
                                                                               tmp_path):
    secret = tmp_path / "mqtt-password"
    secret.write_text(secure_broker.users["gh-a"] + "\n")
    config = write_config(sync=f"{{url: {secure_broker.url}, password_file: {secret}}}")
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=1.0, boot_id="b")  # holds the owner lock like a daemon
    state = SyncState(buffer)
    daemon = Login(secure_broker, "gh-a")  # the daemon's connection
    where = f"127.0.0.1:{secure_broker.port}"

    def broker_line(link: str, error: str | None) -> Check:
        state.record_link(link=link, error=error)
        [check] = [c for c in diagnose(config, systemctl=lambda verb, unit: "").checks if c.name == "broker"]
        return check

    try:
        assert broker_line("up", None) == Check(
            "broker", "OK", f"{where}: the running daemon is connected as 'gh-a' (not logged in a second time)")
        refused = broker_line("down", "broker refused the connection: Not authorized")
        assert (refused.status, refused.summary) == (
            "FAIL", f"{where}: the running daemon is refused: broker refused the connection: Not authorized")
        assert "mosquitto_passwd" in refused.hint
        down = broker_line("down", "disconnected: keepalive timeout")
        assert (down.status, down.summary) == (
            "WARN", f"{where}: answers, but the running daemon is not connected (disconnected: keepalive timeout)")
        assert daemon.publish(protocol.topic("gh-a", protocol.STATUS)) < 0x80  # still connected, never kicked
        assert "already connected" not in secure_broker.log_text()
    finally:
        daemon.close()
        buffer.close()


def test_an_invalid_config_is_the_only_line_and_fails(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text("gateway: {id: x}\nsensors: 3\n")
    code, output = doctor(path)
    assert code == 1
    assert output.splitlines()[1] == "FAIL  config   1 problem"
    assert output.splitlines()[2].startswith(f"{'':15}{path}:2:")  # the problem under it, wrapped at 100 columns
    assert " ".join(output.split()).endswith(f"FAIL config 1 problem {path}:2: sensors: must be a list -> fix them, "
                                             f"then: edge check -c {path} 1 failed, 0 warnings")


def test_a_buffer_near_its_budget_warns_and_a_damaged_one_fails(write_config, tmp_path):
    config = write_config(max_size="1MB")
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=1.0, boot_id="b")
    buffer.append_readings([NewReading(ts=float(i), sensor="air", quantity="temperature", value=20.0, unit="°C")
                            for i in range(20_000)])
    buffer.close()
    code, output = doctor(config)
    assert code == 0
    assert line(output, "buffer").startswith(f"WARN  buffer   {tmp_path / 'buffer.db'}:")
    flat = " ".join(output.split())  # long lines are wrapped at 100 columns (where, depends on the path's length)
    assert f"WARN buffer {tmp_path / 'buffer.db'}: intact, " in flat
    assert "of its 1.0 MB budget" in flat and "20000 readings not yet acknowledged" in flat

    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"buffer.db{suffix}").unlink(missing_ok=True)
    (tmp_path / "buffer.db").write_bytes(b"this is not an SQLite file" * 100)
    code, output = doctor(config)
    assert code == 1
    assert line(output, "buffer").startswith("FAIL  buffer")


def test_while_the_daemon_runs_sensors_are_judged_from_its_readings_not_probed(write_config, tmp_path):
    config = write_config()
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=1.0, boot_id="b")  # holds the owner lock like a daemon
    try:
        buffer.append_readings([NewReading(ts=1000.0, sensor="air", quantity="temperature", value=None, unit="°C",
                                           quality="error", reason="I2C bus 1, address 0x44: no answer")])
        report = diagnose(config, now=1005.0, systemctl=lambda verb, unit: "")
        [sensors] = [check for check in report.checks if check.name == "sensors"]
        assert sensors == Check("sensors", "FAIL", "0 of 1 report fresh readings (read by the running daemon)",
                                sensors.hint, ("air: error (I2C bus 1, address 0x44: no answer)",))
        report = diagnose(config, now=1070.0, systemctl=lambda verb, unit: "")
        assert [c.lines for c in report.checks if c.name == "sensors"] == [("air: last reading 1m old",)]
    finally:
        buffer.close()


def sms_checks(report) -> list[Check]:
    return [check for check in report.checks if check.name == "sms"]


def kavenegar_config(write_config, tmp_path, key: str, extra: str = "") -> object:
    key_file = tmp_path / "kavenegar.key"
    key_file.write_text(key + "\n")
    return write_config(sms=f"{{transports: [{{type: kavenegar, api_key_file: {key_file}, sender: '2000660110', "
                            f"receive: false}}{extra}]}}")


def test_sms_transports_are_checked_without_sending_anything(write_config, tmp_path):
    fake = FakeKavenegar()
    config = kavenegar_config(write_config, tmp_path, KEY, f", {{type: modem, port: {tmp_path / 'ttyUSB9'}}}")
    report = diagnose(config, systemctl=lambda verb, unit: "", http=fake.transport)
    assert [(c.status, c.summary) for c in sms_checks(report)] == [
        ("OK", "kavenegar: api.kavenegar.com accepts the API key, 5,000,000 rials of credit (nothing sent)"),
        ("FAIL", f"modem: no device {tmp_path / 'ttyUSB9'}")]
    assert fake.sent == [] and [r.url.path for r in fake.requests] == [f"/v1/{KEY}/account/info.json"]
    assert KEY not in "\n".join(format_report(report))


def test_a_wrong_kavenegar_key_fails_the_doctor_with_a_hint_and_is_never_shown(write_config, tmp_path):
    fake = FakeKavenegar(key="the-key-in-the-panel")
    report = diagnose(kavenegar_config(write_config, tmp_path, KEY), systemctl=lambda verb, unit: "",
                      http=fake.transport)
    [check] = sms_checks(report)
    assert (check.status, check.summary) == (
        "FAIL", "kavenegar: api.kavenegar.com refuses the API key: 403 invalid API key (کد شناسائی API-Key معتبر "
                "نمی‌باشد)")
    assert check.hint.startswith(f"copy the API key from the Kavenegar panel into {tmp_path / 'kavenegar.key'}")
    assert not report.ok and KEY not in "\n".join(format_report(report))


def test_a_kavenegar_account_without_credit_fails_the_doctor(write_config, tmp_path):
    fake = FakeKavenegar(credit=0)
    [check] = sms_checks(diagnose(kavenegar_config(write_config, tmp_path, KEY), systemctl=lambda verb, unit: "",
                                  http=fake.transport))
    assert (check.status, check.summary) == ("FAIL", "kavenegar: no credit left (remaincredit 0)")
    assert check.hint.startswith("top up the Kavenegar account")


def test_what_the_daemon_found_about_an_account_fails_the_doctor(write_config, tmp_path):
    from edge.gateway.alerts.outbox import Outbox
    from edge.gateway.alerts.transports.kavenegar import KavenegarTransport

    fake = FakeKavenegar(lines={"3000123"})  # the key works, the configured sender line does not
    config = kavenegar_config(write_config, tmp_path, KEY)
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=1_760_000_000.0, boot_id="b")
    outbox = Outbox(buffer, [KavenegarTransport(KEY, "2000660110", http=fake.transport, receive=False)])
    outbox.submit(recipient="Ali", number="+989121234567", text="hello", critical=True, now=1_760_000_000.0)
    outbox.flush(1_760_000_000.0)  # as the daemon's outbox did
    outbox.close()
    buffer.close()
    [check] = sms_checks(diagnose(config, systemctl=lambda verb, unit: "", http=fake.transport))
    assert (check.status, check.summary) == (
        "FAIL", "kavenegar: the daemon's sending is refused since 2025-10-09 08:53 UTC: 412 invalid sender line "
                "(ارسال کننده نامعتبر است)")
    assert "sms.transports[].sender" in check.hint
    assert check.lines == ("doctor's own check: api.kavenegar.com accepts the API key, 5,000,000 rials of credit "
                           "(nothing sent)",)


@pytest.mark.parametrize("active, enabled, status", [
    ("active", "enabled", "OK"), ("active", "disabled", "WARN"), ("inactive", "enabled", "WARN"),
    ("failed", "enabled", "FAIL"), ("inactive", "not-found", "WARN"),
])
def test_the_service_line_follows_systemctl(active, enabled, status):
    answers = {"is-active": active, "is-enabled": enabled}
    check = check_service(lambda verb, unit: answers[verb])
    assert check.status == status and (check.hint is None) == (status == "OK")


def test_without_systemd_the_service_is_not_managed(monkeypatch):
    monkeypatch.setattr("edge.gateway.doctor.Path.is_dir", lambda self: False)
    assert check_service() == Check("service", "SKIP", "not managed by systemd (systemd is not running here)")


def test_format_puts_hints_under_warnings_and_failures_only():
    from edge.gateway.doctor import Report

    report = Report("f.yaml", (Check("clock", "OK", "synced", "unused"), Check("disk", "WARN", "low", "free it")))
    assert format_report(report) == ["edge doctor: f.yaml", "OK    clock    synced", "WARN  disk     low",
                                     f"{'':15}-> free it", "0 failed, 1 warning"]


def test_the_env_file_gives_the_config_its_variables_as_systemd_would(write_config, broker, tmp_path):
    env_file = tmp_path / "gateway.env"
    env_file.write_text(f"# as /etc/edge/gateway.env\nEDGE_MQTT_URL=\"{broker.url}\"\n")
    config = write_config(sync="{url: '${EDGE_MQTT_URL}'}")
    result = CliRunner().invoke(main, ["doctor", "-c", str(config), "--env-file", str(env_file)])
    assert line(result.output, "broker").startswith("OK    broker")


def test_an_env_file_that_is_not_utf8_is_named_not_a_traceback(write_config, tmp_path):
    env_file = tmp_path / "gateway.env"
    env_file.write_bytes(b"EDGE_MQTT_URL=mqtt://b\xe4:1883\n")
    result = CliRunner().invoke(main, ["doctor", "-c", str(write_config()), "--env-file", str(env_file)])
    assert result.exit_code == 1 and not isinstance(result.exception, UnicodeDecodeError)
    assert result.output.strip() == f"error: cannot read {env_file}: not valid UTF-8"


def test_every_line_fits_100_columns_with_long_hints_wrapped_under_their_check():
    from edge.gateway.doctor import FULL_HINT, Report

    long_path = "/var/lib/edge/" + "a-very-long-directory-name/" * 2 + "buffer.db"
    report = Report("/etc/edge/gateway.yaml", (
        Check("disk", "FAIL", f"{long_path}: 12.0 MB free of 15.9 GB, and the buffer may still grow by 1.9 GB "
                              "before it reaches its budget", FULL_HINT),
        Check("sensors", "WARN", "1 of 2 answer", "edge probe shows every reading; docs/operations.md, Wiring",
              (f"pipe (ds18b20): temperature error (no 1-Wire bus ({long_path} does not exist): add "
               "dtoverlay=w1-gpio to config.txt)",)),
    ))
    lines = format_report(report)
    assert max(map(len, lines)) <= 100, "\n".join(lines)
    assert lines[1].startswith("FAIL  disk     /var/lib/edge/") and lines[2].startswith(" " * 15 + "MB free")
    hint = [i for i, text in enumerate(lines) if text.startswith(" " * 15 + "-> the disk is full")][0]
    assert lines[hint + 1].startswith(" " * 18) and not lines[hint + 1].startswith(" " * 19)
    assert " ".join(" ".join(lines).split()) == " ".join(" ".join([
        "edge doctor: /etc/edge/gateway.yaml", "FAIL disk", report.checks[0].summary, "->", FULL_HINT,
        "WARN sensors", report.checks[1].summary, report.checks[1].lines[0], "->", report.checks[1].hint,
        "1 failed, 1 warning"]).split())  # wrapped, not cut


def test_a_path_too_long_for_a_line_stays_on_the_line_of_its_check():
    """A technician's long home directory, or pytest's temp root under a long user name: the path runs past the
    line rather than leaving a line that says "WARN  buffer" and nothing else."""
    from edge.gateway.doctor import Report

    long_path = "/home/a-technician-with-a-long-name/" + "gateway-configs-of-the-province/" * 3 + "buffer.db"
    lines = format_report(Report("/etc/edge/gateway.yaml", (
        Check("buffer", "WARN", f"{long_path}: no buffer yet", "the daemon creates it at its first start"),)))
    assert lines[1] == f"WARN  buffer   {long_path}:"
    assert lines[2] == " " * 15 + "no buffer yet"


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """``python -m edge ARGS`` with its stdout on a pseudo-terminal, as a technician's shell gives it."""
    import os
    import pty
    import subprocess
    import sys

    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "edge", *args], stdout=terminal, stderr=subprocess.DEVNULL,
                            env={**os.environ, **env})
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    proc.wait(timeout=60)
    return output.decode()


def test_fail_and_warn_are_coloured_on_a_terminal_only_and_never_with_no_color(write_config):
    path = write_config(sms="{transports: [{type: modem, port: /dev/nonexistent-modem}]}")
    on_terminal = run_on_a_terminal(["doctor", "-c", str(path), "--timeout", "3s"], {"NO_COLOR": ""})
    assert "\x1b[1;31mFAIL\x1b[0m  sms " in on_terminal
    assert "\x1b[33mWARN\x1b[0m  buffer " in on_terminal
    assert "\x1b[" not in "".join(line for line in on_terminal.splitlines() if line.startswith(("OK", "SKIP")))
    assert "\x1b[" not in run_on_a_terminal(["doctor", "-c", str(path), "--timeout", "3s"], {"NO_COLOR": "1"})
    import subprocess
    import sys

    piped = subprocess.run([sys.executable, "-m", "edge", "doctor", "-c", str(path), "--timeout", "3s"],
                           capture_output=True, text=True, timeout=60)
    assert "FAIL  sms " in piped.stdout and "\x1b[" not in piped.stdout
