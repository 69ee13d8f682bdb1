"""Remote commands from the data center, end to end with real processes (tests/console_kit.py): `edge dc command`
publishes through the secure broker's commander account, the `edge run` gateway obeys and answers, the collector
settles the command in PostgreSQL, and the CLI prints the answer; bounds and scopes are enforced before anything is
sent; an offline gateway leaves the command pending until it expires."""

from __future__ import annotations

import re

import httpx
import pytest
from click.testing import CliRunner

from conftest import wait_until
from console_kit import GATEWAY, Chain
from edge.cli import main

pytestmark = pytest.mark.slow


def command(chain: Chain, *args: str):
    return chain.cli("dc", "command", "-c", str(chain.config), *args)


def test_edge_dc_command_switches_the_gateways_output_and_prints_its_answer(chain):
    assert chain.heater() == "off"
    done = command(chain, GATEWAY, "actuate", "heater-1", "on", "--for", "10m", "--expires", "1m")
    assert done.returncode == 0, done.stdout + done.stderr + chain.log("collector")
    assert "done: heater-1: on" in done.stdout and "manual" in done.stdout
    assert chain.heater() == "on"
    command_id = done.stdout.split()[1].rstrip(":")
    row = chain.sql("SELECT row_to_json(c) FROM commands c WHERE id = %s", command_id)
    assert row["state"] == "done" and row["issued_by"].startswith("cli:") and row["result"]["ok"] is True
    assert row["args"] == {"actuator": "heater-1", "action": "on", "for": 600.0}
    back = command(chain, GATEWAY, "actuate", "heater-1", "auto")
    assert back.returncode == 0, back.stdout + back.stderr


def test_a_ping_is_answered_and_the_gateways_refusal_is_printed(chain):
    done = command(chain, GATEWAY, "ping")
    assert (done.returncode, done.stdout.split(": ", 1)[1].strip()) == (0, "done: pong")
    refused = command(chain, GATEWAY, "actuate", "heater-1", "on", "--for", "2h")  # past its max_manual of 30m
    assert refused.returncode == 1
    assert "refused by the gateway" in refused.stdout and "30m" in refused.stdout, refused.stdout


def test_bounds_and_unknown_gateways_are_refused_before_anything_is_sent(chain):
    before = chain.sql("SELECT count(*) FROM commands")
    for args, words in (((GATEWAY, "actuate", "heater-1", "on", "--for", "30d"), "commands.max_duration"),
                        ((GATEWAY, "actuate", "heater-1", "on", "--expires", "2d"), "commands.max_expiry"),
                        ((GATEWAY, "actuate", "heater-1", "sideways"), "action"),
                        ((GATEWAY, "actuate", "heater 1", "on"), "output"),
                        ((GATEWAY, "actuate", "heater-1", "auto", "--for", "1m"), "auto"),
                        ((GATEWAY, "ping", "extra"), "ping takes nothing")):
        done = CliRunner().invoke(main, ["dc", "command", "-c", str(chain.config), *args])
        assert done.exit_code == 2 and words in done.output, (args, done.output)
    unknown = command(chain, "gh-nowhere", "ping")
    assert unknown.returncode == 1 and "no gateway 'gh-nowhere'" in unknown.stderr
    assert chain.sql("SELECT count(*) FROM commands") == before


def test_a_read_only_token_is_refused_a_command_and_a_control_token_is_not(chain):
    reader = chain.token("reader", "gh-*")
    operator = chain.token("operator", "gh-*", scope="control")
    body = {"op": "ping"}
    url = f"{chain.url}/v1/gateways/{GATEWAY}/commands"
    refused = httpx.post(url, json=body, headers={"Authorization": f"Bearer {reader}"}, timeout=30)
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert "read-only" in refused.json()["detail"] and "--scope control" in refused.json()["detail"]
    sent = httpx.post(url, json=body, headers={"Authorization": f"Bearer {operator}"}, timeout=30)
    assert sent.status_code == 200, sent.text
    command_id = sent.json()["id"]
    assert sent.json()["state"] == "pending" and sent.json()["by"] == "token:operator"
    answered = wait_until(lambda: (c := httpx.get(f"{url}/{command_id}", headers={
        "Authorization": f"Bearer {reader}"}, timeout=30).json())["state"] != "pending" and c, 30, "the answer")
    assert answered["state"] == "done" and answered["result"]["result"]["pong"] > 0
    bad = httpx.post(url, json={"op": "actuate", "actuator": "heater-1", "action": "on", "for": "1y"},
                     headers={"Authorization": f"Bearer {operator}"}, timeout=30)
    assert bad.status_code == 400 and "for:" in bad.json()["detail"]


def test_a_command_to_an_offline_gateway_stays_pending_then_expires(chain):
    chain.stop_gateway()
    try:
        done = command(chain, GATEWAY, "actuate", "heater-1", "on", "--for", "5m", "--no-wait")
        assert done.returncode == 0, done.stderr
        # the line the CLI prints, wherever it is among the warnings a loaded machine may log first
        command_id = re.search(rf"^command (\S+) to {GATEWAY}:", done.stderr, re.M).group(1)
        assert chain.sql("SELECT state FROM commands WHERE id = %s", command_id) == "pending"
        waited = command(chain, GATEWAY, "ping")  # 4 s expiry: waits that long at most, then says expired
        assert waited.returncode == 1 and "expired" in waited.stdout, waited.stdout + waited.stderr
        # the first one expired too: still pending in its row, expired to whoever reads it
        assert chain.sql("SELECT CASE WHEN expires_at <= now() THEN state END FROM commands WHERE id = %s",
                         command_id) == "pending"
        operator = chain.token("late", GATEWAY, scope="control")
        listed = httpx.get(f"{chain.url}/v1/gateways/{GATEWAY}/commands",
                           headers={"Authorization": f"Bearer {operator}"}, timeout=30).json()
        assert {c["id"]: c["state"] for c in listed}[command_id] == "expired"
    finally:
        chain.start_gateway()
    # back online after the expiry: the broker dropped it, so the heater stays off
    ping = command(chain, GATEWAY, "ping")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert chain.heater() == "off"
