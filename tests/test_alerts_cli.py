"""`edge alerts`, `edge alerts ack` and `edge sms test` as an installer or a farmer's helper uses them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import wait_until

pytestmark = pytest.mark.slow

ALERTING = """
alerts:
  recipients:
    - {name: Farmer, number: "09120000000"}
  group_window: 1s
  rules:
    - {id: warm, type: above, severity: critical, input: {sensor: air, quantity: temperature}, threshold: -30,
       clear: -35, for: 1s}
sms:
  transports:
    - {type: console}
"""


def edge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=60)


def test_alerts_are_listed_and_acknowledged_through_the_running_daemon(gateway_config, tmp_path, start_daemon):
    gateway_config.write_text(gateway_config.read_text() + ALERTING)
    daemon = start_daemon(gateway_config)
    listing = wait_until(lambda: (out := edge("alerts", "-c", str(gateway_config), "--active").stdout)
                         and "FIRING" in out and out, what="the alert to fire")
    code = listing.split()[0]
    assert "critical" in listing and "warm" in listing
    out = edge("alerts", "ack", code, "-c", str(gateway_config))
    assert out.returncode == 0 and out.stdout.strip() == f"alert {code} acknowledged"
    after = edge("alerts", "-c", str(gateway_config)).stdout
    assert "acknowledged by cli:" in after and "FIRING" not in after
    again = edge("alerts", "ack", code, "-c", str(gateway_config))
    assert again.returncode == 1 and f"no open, unacknowledged alert has code '{code}'" in again.stderr
    assert daemon.stop()[0] == 0


def test_sms_test_reports_each_transport(tmp_path):
    from services import free_port

    config = tmp_path / "gateway.yaml"
    config.write_text(f"""gateway: {{id: gh}}
sms:
  transports:
    - {{type: console}}
    - {{type: http, name: local-gateway, url: "http://127.0.0.1:{free_port()}/send", timeout: 2s,
       body: {{to: "{{number}}", text: "{{text}}"}}}}
""")
    out = edge("sms", "test", "-c", str(config), "09121234567")
    lines = out.stdout.splitlines()
    assert lines[0] == "console: accepted (logged)"
    assert lines[1].startswith("local-gateway: retryable")  # nothing listens there
    assert out.returncode == 1


def test_sms_test_refuses_a_bad_number(tmp_path):
    out = edge("sms", "test", "-c", "config/demo.yaml", "not-a-number")
    assert out.returncode == 2 and "NUMBER" in out.stderr
