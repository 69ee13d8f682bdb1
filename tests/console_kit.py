"""The whole chain for the console's and the remote commands' tests, as real processes: the project's secure
Mosquitto (ACL, accounts), PostgreSQL, `edge dc collector`, `edge run` on a simulated greenhouse under the account
gh-a, and `edge dc api` serving the console; tokens made by `edge dc token create`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import wait_until
from services import Broker, free_port

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = "gh-a"  # an account of the secure broker (tests/services.py SECURE_USERS)

GATEWAY_CONFIG = """\
gateway: {{id: {gateway}, name: گلخانه آزمون}}
hardware: {{backend: simulated}}
clock: {{trust: synced}}
buffer: {{path: {buffer}}}
control: {{socket: {socket}}}
sync: {{url: {url}, password_file: {password}, interval: 0.3s, reconnect_min: 0.5s, reconnect_max: 1s,
        status_interval: 2s}}
sensors:
  - {{id: air, type: simulated, measures: [temperature, humidity], interval: 1s}}
actuators:
  - {{id: heater-1, name: بخاری, type: relay, kind: heater, pin: 17, max_manual: 30m}}
"""

DC_CONFIG = """\
mqtt: {{url: {url}, username: collector, password_file: {collector}, reconnect_min: 0.5s, reconnect_max: 1s}}
database: {{url: {database}, retry_min: 0.1s, retry_max: 0.5s}}
collector: {{batch_wait: 0.05s}}
commands: {{password_file: {commander}, expiry: {expiry}, wait: 20s}}
"""


def _secret_file(path: Path, secret: str) -> Path:
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


class Chain:
    """Start with :meth:`start`; :meth:`stop` ends every process it started."""

    def __init__(self, tmp: Path, postgres_server, expiry: str = "5m"):
        self.tmp = tmp
        self.broker = Broker(tmp / "broker", acl=True)
        self.database = postgres_server.create_database()
        self.expiry = expiry
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "datacenter.yaml"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start(self, gateway: bool = True) -> Chain:
        self.broker.start()
        users = self.broker.users
        self.config.write_text(DC_CONFIG.format(
            url=self.broker.url, database=self.database.url, expiry=self.expiry,
            collector=_secret_file(self.tmp / "collector.pw", users["collector"]),
            commander=_secret_file(self.tmp / "commander.pw", users["commander"])))
        self._spawn("collector", "dc", "collector", "-c", str(self.config), "--log-level", "info")
        self._spawn("api", "dc", "api", "-c", str(self.config), "--listen", f"127.0.0.1:{self.port}",
                    "--log-level", "warning")
        wait_until(self._api_answers, 60, "the API to answer")
        if gateway:
            self.start_gateway()
        return self

    def start_gateway(self) -> None:
        config = self.tmp / "gateway.yaml"
        config.write_text(GATEWAY_CONFIG.format(
            gateway=GATEWAY, buffer=self.tmp / "gateway.db", socket=self.tmp / "control.sock", url=self.broker.url,
            password=_secret_file(self.tmp / "gateway.pw", self.broker.users[GATEWAY])))
        self._spawn("gateway", "run", "-c", str(config))
        # online: the status it publishes once subscribed to its downlink (after stop_gateway the row says offline,
        # and the readings of the run before are already there)
        wait_until(lambda: self.sql("SELECT state FROM gateway_status WHERE gateway_id = %s", GATEWAY) == "online"
                   and self.sql("SELECT count(*) FROM readings WHERE gateway_id = %s", GATEWAY) > 0, 60,
                   "the gateway online and its first readings in PostgreSQL")

    def stop_gateway(self) -> None:
        proc = self.procs.pop("gateway")
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        wait_until(lambda: self.sql("SELECT state FROM gateway_status WHERE gateway_id = %s", GATEWAY) == "offline",
                   30, "the gateway to show offline")

    def _spawn(self, name: str, *args: str) -> None:
        log = (self.tmp / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "edge", *args], env=self.env, cwd=self.tmp,
                                            stdout=log, stderr=subprocess.STDOUT)

    def _api_answers(self) -> bool:
        assert self.procs["api"].poll() is None, self.log("api")
        try:
            return httpx.get(f"{self.url}/openapi.json", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def sql(self, query: str, *params):
        with self.database.connect() as conn:
            row = conn.execute(query, params).fetchone()
            return row[0] if row else None

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edge", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def token(self, name: str, *patterns: str, scope: str = "read") -> str:
        done = self.cli("dc", "token", "create", "-c", str(self.config), "--name", name, "--scope", scope,
                        *[a for p in patterns for a in ("--gateways", p)])
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def heater(self) -> str:
        """The heater's state as the gateway's own `edge status --json` reports it."""
        import json

        done = self.cli("status", "-c", str(self.tmp / "gateway.yaml"), "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        return report["actuators"]["heater-1"]["state"]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.broker.kill()


@pytest.fixture(scope="session")
def chain(tmp_path_factory, postgres_server):
    """The whole chain, once for the session (the commands' and the console's tests share it); commands expire
    after 4 s, so an offline gateway's command expires within a test."""
    chain = Chain(tmp_path_factory.mktemp("chain"), postgres_server, expiry="4s")
    try:
        yield chain.start()
    finally:
        chain.stop()
