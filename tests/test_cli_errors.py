"""The CLI turns every error a user can act on into one clear line on stderr and an exit code, in one place; and
`edge sms test` writes its message as the alerts do."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click
import pytest
from click.testing import CliRunner

from conftest import wait_until
from edge.cli import DaemonRefused, error_lines, main
from edge.errors import BufferUnavailable, ConfigError, EdgeError
from services import free_port


def edge(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def one_line(result) -> str:
    [line] = result.stderr.splitlines()
    return line


# ------------------------------------------------------------------------------------------------ the one handler


def test_any_edge_error_is_one_line_error_what_and_exit_1():
    @main.command("fail-for-test", hidden=True)
    @click.argument("message")
    def fail(message: str) -> None:
        raise BufferUnavailable(message)

    try:
        result = edge("fail-for-test", "the card\nis read-only")
        assert (result.exit_code, one_line(result), result.stdout) == (1, "error: the card; is read-only", "")
    finally:
        main.commands.pop("fail-for-test")


def test_error_lines_keep_a_daemons_refusal_as_it_answered_and_a_configs_problems_one_per_line():
    assert error_lines(DaemonRefused("refused: interlock with fan")) == ["refused: interlock with fan"]
    assert error_lines(ConfigError(["gw.yaml:3: gateway.id: missing required key",
                                    "gw.yaml:9: sensors[0].type: unknown sensor type 'x'"])) == [
        "gw.yaml:3: gateway.id: missing required key", "gw.yaml:9: sensors[0].type: unknown sensor type 'x'"]
    assert error_lines(EdgeError()) == ["error: EdgeError"]


def test_a_command_without_its_daemon_says_so_in_one_line(gateway_config):
    result = edge("actuate", "-c", str(gateway_config), "pump", "on")
    assert result.exit_code == 1
    assert one_line(result).startswith("error: cannot reach the daemon at ")
    assert one_line(result).endswith("; is `edge run` running?")
    result = edge("alerts", "ack", "17", "-c", str(gateway_config))
    assert result.exit_code == 1 and one_line(result).startswith("error: cannot reach the daemon at ")


def test_reading_a_buffer_that_does_not_exist_is_one_line(gateway_config):
    result = edge("status", "-c", str(gateway_config))
    assert result.exit_code == 1 and one_line(result).startswith("error: no buffer at ")
    result = edge("alerts", "-c", str(gateway_config))
    assert result.exit_code == 1 and one_line(result).startswith("error: no buffer at ")


def test_no_sms_transport_to_test_is_an_error_line(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text("gateway: {id: gh}\n")
    result = edge("sms", "test", "-c", str(config), "09121234567")
    assert (result.exit_code, one_line(result)) == (1, "error: no SMS transports are configured (sms.transports)")


def test_an_unreadable_token_file_is_one_line(tmp_path):
    result = edge("history", "gateways", "--server", f"http://127.0.0.1:{free_port()}",
                  "--token-file", str(tmp_path / "missing"))
    assert result.exit_code == 1 and one_line(result).startswith("error: cannot read the token file")


def test_a_database_that_cannot_be_reached_is_one_line(tmp_path):
    pytest.importorskip("psycopg")
    config = tmp_path / "datacenter.yaml"
    config.write_text(f"mqtt: {{url: 'mqtt://127.0.0.1:{free_port()}'}}\n"
                      f"database: {{url: 'postgresql://nobody@127.0.0.1:{free_port()}/nothing'}}\n")
    result = edge("dc", "token", "list", "-c", str(config))
    assert result.exit_code == 1 and one_line(result).startswith("error: cannot use the database: ")


def test_a_bad_config_is_one_line_per_problem_and_exit_2(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text("gateway: {name: no id}\ncolour: green\n")
    for command in (["check"], ["status"], ["actuate", "fan", "on"], ["sms", "test", "09121234567"]):
        result = edge(*command, "-c", str(config))
        assert result.exit_code == 2, command
        assert result.stderr.splitlines() == [f"{config}:1: gateway.id: missing required key",
                                              f"{config}:2: colour: unknown key"]


@pytest.mark.slow
def test_a_second_daemon_on_the_same_buffer_ends_with_one_error_line_and_exit_1(gateway_config, tmp_path,
                                                                                start_daemon):
    first = start_daemon(gateway_config)
    wait_until(lambda: (tmp_path / "control.sock").exists(), what="the first daemon")
    second = start_daemon(gateway_config)
    second.proc.wait(60)  # it ends by itself
    code, err = second.stop()
    assert code == 1
    assert err.splitlines()[-1].startswith(f"error: buffer {tmp_path / 'buffer.db'} is in use by another edge "
                                           f"process (pid {first.proc.pid})")


# ------------------------------------------------------------------------------------------------------ sms test


class SmsGateway(BaseHTTPRequestHandler):
    """An HTTP SMS gateway that takes every message (the generic transport's default success: HTTP 200)."""

    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def sms_gateway():
    SmsGateway.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), SmsGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("language, start", [
    ("fa", "Greenhouse ۷: پیام آزمایشی "),
    ("en", "Test message from Greenhouse 7, "),
])
def test_sms_test_writes_its_message_in_the_alerts_language(tmp_path, sms_gateway, language, start):
    config = tmp_path / "gateway.yaml"
    config.write_text(f"""gateway: {{id: gh, name: Greenhouse 7}}
alerts: {{language: {language}}}
sms:
  transports:
    - {{type: http, name: local-gateway, url: "http://127.0.0.1:{sms_gateway.server_port}/send", timeout: 5s,
       body: {{to: "{{number}}", text: "{{text}}"}}}}
""")
    result = edge("sms", "test", "-c", str(config), "09121234567")
    assert (result.exit_code, result.stdout) == (0, "local-gateway: accepted (HTTP 200)\n")
    [sent] = SmsGateway.received
    assert sent["to"] == "+989121234567" and sent["text"].startswith(start)
