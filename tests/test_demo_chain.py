"""`bash scripts/demo` runs the whole chain (edge/demo.py): it prints the console's address and a token that works
there, the simulated gateway's data reaches the console's fleet view, a command from the data center reaches the
gateway, and Ctrl-C stops every process it started (the broker and the database included) and removes its files."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from conftest import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def started_from(directory: str) -> list[psutil.Process]:
    """Every process whose command line names the demo's temporary directory (the broker, PostgreSQL's)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(directory in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def test_scripts_demo_runs_the_chain_prints_the_console_and_a_token_and_ctrl_c_stops_everything(tmp_path):
    env = {**os.environ, "EDGE_DEMO_DIR": str(tmp_path)}
    demo = subprocess.Popen(["bash", "scripts/demo", "--for", "5m"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(demo.stderr), daemon=True).start()
    try:
        wait_until(lambda: any("token " in line for line in lines) or demo.poll() is not None, 180, "the banner")
        text = "".join(lines)
        console = re.search(r"console\s+(http://127\.0\.0\.1:\d+)/console/", text).group(1)
        token = re.search(r"token\s+(edge_\S+)", text).group(1)
        logs = re.search(r"logs\s+(\S+)/", text).group(1)
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{console}/console/", timeout=10).status_code == 200
        fleet = wait_until(lambda: (body := httpx.get(f"{console}/v1/fleet", headers=headers, timeout=10).json())
                           ["gateways"] and body, 60, "the demo gateway in the fleet")
        assert fleet["gateways"][0][:3] == ["demo-khorramabad-01", "گلخانه نمونه", "online"]
        sent = httpx.post(f"{console}/v1/gateways/demo-khorramabad-01/commands", json={"op": "ping"},
                          headers=headers, timeout=30)
        assert sent.status_code == 200, sent.text
        url = f"{console}/v1/gateways/demo-khorramabad-01/commands/{sent.json()['id']}"
        wait_until(lambda: httpx.get(url, headers=headers, timeout=10).json()["state"] == "done", 60, "the pong")
        children = psutil.Process(demo.pid).children(recursive=True) + started_from(logs)
        assert len(children) >= 5  # gateway, collector, API, broker, PostgreSQL (and its workers)
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        code = demo.wait(90)
    assert code == 0, "".join(lines)[-3000:]
    wait_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children), 30,
               "every process the demo started to end")
    assert not started_from(logs) and not Path(logs).exists()
    assert "stopping everything it started" in "".join(lines)
