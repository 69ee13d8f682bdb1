"""Every ``edge`` command reads the unit's environment file (/etc/edge/gateway.env) for the config's ${VAR}s, as the
daemon gets it from systemd, not only ``edge doctor``: ``edge status`` works with ``api_key: ${KAVENEGAR_API_KEY}``
set only there, and sees the broker the daemon syncs to."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import edge.envfile
from edge.cli import main
from edge.gateway.buffer import Buffer

CONFIG = """\
gateway: {{id: gh-env}}
buffer: {{path: {buffer}}}
control: {{socket: {socket}}}
sync: {{url: "${{EDGE_MQTT_URL:-}}"}}
sensors:
  - {{id: air, type: simulated, measures: [temperature]}}
alerts:
  recipients: [{{name: farmer, number: "09121234567"}}]
sms:
  transports:
    - {{type: kavenegar, api_key: "${{KAVENEGAR_API_KEY}}", sender: "2000660110"}}
"""

#: Commands that read the gateway config, each with arguments that reach ``_load`` (and what follows it).
COMMANDS = ["check", "run", "status", "readings", "actuate", "safe-state", "simulate", "probe", "doctor", "alerts",
            "alerts ack", "sms test"]


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.format(buffer=tmp_path / "buffer.db", socket=tmp_path / "control.sock"))
    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=time.time(), boot_id="b")  # as a daemon left it
    buffer.close()
    return path


@pytest.fixture
def env_file(tmp_path, monkeypatch):
    """The unit's environment file, where the installed one would be; nothing of it in the process environment."""
    path = tmp_path / "gateway.env"
    path.write_text("# as /etc/edge/gateway.env\nKAVENEGAR_API_KEY='k-123'\nEDGE_MQTT_URL=mqtt://127.0.0.1:1\n")
    monkeypatch.setattr(edge.envfile, "ENV_FILE", path)
    for name in ("KAVENEGAR_API_KEY", "EDGE_MQTT_URL", "EDGE_ENV_FILE"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_status_reads_the_units_environment_file_by_default(config, env_file):
    result = CliRunner().invoke(main, ["status", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "no broker configured" not in result.output
    assert "link     daemon not running" in result.output


def test_without_the_file_the_unset_variable_is_the_config_error_it_was(config, env_file, tmp_path):
    result = CliRunner().invoke(main, ["status", "-c", str(config), "--env-file", "/dev/null"])
    assert result.exit_code == 2
    assert "KAVENEGAR_API_KEY" in result.output


def test_every_command_that_reads_the_config_takes_env_file():
    for name in COMMANDS:
        command = main
        for part in name.split():
            command = command.commands[part]
        assert "--env-file" in [opt for p in command.params for opt in p.opts], name


@pytest.mark.parametrize("args", [["check"], ["status"], ["alerts"], ["readings"], ["sms", "test", "0912"]])
def test_commands_alike_read_the_file_given(config, tmp_path, monkeypatch, args):
    monkeypatch.setattr(edge.envfile, "ENV_FILE", tmp_path / "none.env")
    given = tmp_path / "other.env"
    given.write_text("KAVENEGAR_API_KEY=k\n")
    without = CliRunner().invoke(main, [*args, "-c", str(config)])
    assert without.exit_code == 2 and "KAVENEGAR_API_KEY" in without.output
    with_file = CliRunner().invoke(main, [*args, "-c", str(config), "--env-file", str(given)])
    assert "KAVENEGAR_API_KEY" not in with_file.output, with_file.output


def test_the_file_wins_over_the_process_environment_as_in_the_unit(config, env_file, monkeypatch):
    monkeypatch.setenv("EDGE_MQTT_URL", "")  # empty in the shell; the unit's file names the broker
    result = CliRunner().invoke(main, ["status", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert "no broker configured" not in result.output


def test_an_unreadable_env_file_is_named(config, tmp_path):
    result = CliRunner().invoke(main, ["status", "-c", str(config), "--env-file", str(tmp_path / "missing.env")])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: cannot read {tmp_path / 'missing.env'}: No such file or directory")


def test_status_explains_an_unsynced_clock(config, env_file):
    text = config.read_text().replace("gateway: {id: gh-env}", "gateway: {id: gh-env}\nclock: {trust: unsynced}")
    config.write_text(text)
    result = CliRunner().invoke(main, ["status", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "clock    NOT synced: clock.trust is unsynced in the config, so every reading is flagged" in result.output
    config.write_text(text.replace("trust: unsynced", "trust: auto"))
    lines = CliRunner().invoke(main, ["status", "-c", str(config)]).output.splitlines()
    clock = next(i for i, line in enumerate(lines) if line.startswith("clock"))
    if "NOT synced" in lines[clock]:  # this machine's clock may be synced or not
        assert "re-timed once it syncs" in lines[clock] and "NTP server" in lines[clock + 1]
        assert len(lines[clock]) <= 100 and len(lines[clock + 1]) <= 100


def test_run_with_a_missing_key_file_exits_2_before_using_an_epoch(tmp_path, monkeypatch):
    """What systemd sees on a config error at start: exit status 2 (RestartPreventExitStatus=2 in the unit: no
    restart every 5 s), the problem on stderr for the journal, and no buffer or epoch used."""
    import subprocess
    import sys

    monkeypatch.setattr(edge.envfile, "ENV_FILE", tmp_path / "none.env")
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG.format(buffer=tmp_path / "buffer.db", socket=tmp_path / "control.sock").replace(
        'api_key: "${KAVENEGAR_API_KEY}"', f"api_key_file: {tmp_path / 'kavenegar.key'}"))
    done = subprocess.run([sys.executable, "-m", "edge", "run", "-c", str(config), "--for", "5s"], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "EDGE_ENV_FILE": "/dev/null"})
    assert done.returncode == 2, done.stderr
    assert f"api_key_file: {tmp_path / 'kavenegar.key'} does not exist" in done.stderr
    assert not (tmp_path / "buffer.db").exists()
    unit = (Path(__file__).resolve().parent.parent / "systemd" / "edge-gateway.service").read_text()
    assert "RestartPreventExitStatus=2" in unit.splitlines()
