"""Every manual and remote override is bounded: `edge actuate` and a downlink command against a real daemon.

The supervisor's rules (max_manual per kind, safety rules beating a manual off) are in tests/test_supervisor.py; here
the same refusals travel the real paths: the CLI over the control socket, and a command through Mosquitto.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import wait_until
from edge.contract import protocol
from edge.gateway.hardware.mockpins import STATE_DIR_ENV, read_lines

pytestmark = pytest.mark.slow

HEATER = "  - id: heater\n    type: relay\n    kind: heater\n    pin: 17\n"


def edge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def heated(gateway_config, tmp_path):
    """The small gateway with a heater, its pins recorded, running."""
    gateway_config.write_text(gateway_config.read_text() + HEATER)
    return gateway_config, tmp_path / "gpio"


def command_results(buffer_path) -> dict[str, dict]:
    with sqlite3.connect(f"file:{buffer_path}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute("SELECT data FROM events WHERE kind = 'command.result'").fetchall()
    return {data["id"]: data for data in (json.loads(row[0]) for row in rows)}


def test_edge_actuate_refuses_a_1000_hour_override_with_its_reason(heated, tmp_path, start_daemon):
    config, lines = heated
    start_daemon(config, env={STATE_DIR_ENV: str(lines)})
    wait_until(lambda: (tmp_path / "control.sock").exists(), what="the control socket")
    out = edge("actuate", "-c", str(config), "heater", "on", "--for", "1000h")
    assert (out.returncode, out.stderr.strip()) == (1, "refused: 1000h exceeds heater's max_manual 4h")
    out = edge("actuate", "-c", str(config), "heater", "off", "--for", "366d")  # off is bounded too
    assert (out.returncode, out.stderr.strip()) == (1, "refused: 366d exceeds heater's max_manual 4h")
    out = edge("actuate", "-c", str(config), "pump", "on", "--for", "2h")  # water is counted in minutes
    assert (out.returncode, out.stderr.strip()) == (1, "refused: 2h exceeds pump's max_manual 30m")
    assert read_lines(lines)["GPIO17"] == "output 0"
    out = edge("actuate", "-c", str(config), "heater", "on", "--for", "4h")
    assert out.returncode == 0 and out.stdout.startswith("heater: on ")
    assert read_lines(lines)["GPIO17"] == "output 1"


def test_a_remote_1000_hour_override_is_refused_with_its_reason(heated, tmp_path, start_daemon, broker):
    config, lines = heated
    config.write_text(config.read_text() + f"sync: {{url: '{broker.url}', interval: 0.2s}}\n")
    start_daemon(config, env={STATE_DIR_ENV: str(lines)})
    data_center = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-dc", protocol=mqtt.MQTTv5)
    statuses = []
    data_center.on_message = lambda *args: statuses.append(args[-1].payload)
    data_center.connect(broker.host, broker.port)
    data_center.subscribe("greenhouse/v1/gh-test/status", qos=1)
    data_center.loop_start()
    try:
        wait_until(lambda: statuses, what="the gateway to come online")
        now = time.time()
        for command_id, args in (("c-1000h", {"actuator": "heater", "action": "on", "for": 1000 * 3600}),
                                 ("c-true", {"actuator": "heater", "action": "on", "for": True}),
                                 ("c-ok", {"actuator": "heater", "action": "on", "for": 600})):
            data_center.publish(protocol.topic("gh-test", protocol.DOWN_CMD),
                                protocol.encode_command(protocol.Command(command_id, now, "actuate", args)), qos=1)
        buffer = tmp_path / "buffer.db"
        wait_until(lambda: len(command_results(buffer)) == 3, what="three command results")
        results = command_results(buffer)
        assert results["c-1000h"] == {"id": "c-1000h", "op": "actuate", "ok": False,
                                      "error": "refused: 1000h exceeds heater's max_manual 4h"}
        assert results["c-true"]["ok"] is False
        assert results["c-true"]["error"].startswith('command actuate: "for" must be a number of seconds')
        assert results["c-ok"]["ok"] is True and results["c-ok"]["result"]["reason"] == "manual:remote:c-ok"
        assert read_lines(lines)["GPIO17"] == "output 1"
    finally:
        data_center.loop_stop()
        data_center.disconnect()
