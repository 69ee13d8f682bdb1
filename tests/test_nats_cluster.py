"""The high-availability data center, end to end: `edge run` gateways speaking MQTT 3.1.1 to a three-node NATS
JetStream cluster (stream replicas 3), two `edge dc collector` processes sharing the durable consumer, PostgreSQL.
After each fault the gateway is drained and the checker of tests/test_end_to_end.py compares every key the gateway
committed with the database: lost, duplicated and unexpected must all be 0."""

from __future__ import annotations

import sys
import subprocess

import pytest

from conftest import wait_until
from dc_kit import nats_datacenter_config
from test_end_to_end import GATEWAY, GATEWAY_CONFIG, System, assert_exactly_once, sensors
from services import ROOT

pytestmark = pytest.mark.slow

NATS_GATEWAY_CONFIG = GATEWAY_CONFIG.replace(
    "sync: {{url: {url},", "sync: {{url: {url}, mqtt_version: mqttv311, password_file: {password_file},")


class NatsSystem(System):
    """The system of tests/test_end_to_end.py on a NATS cluster: the gateway is given ``gateway_nodes``'s MQTT
    listeners (in that order), the collectors every node."""

    def __init__(self, tmp_path, cluster, postgres, gateway_nodes=(0, 1)):
        super().__init__(tmp_path, cluster.nodes[0], postgres)
        self.cluster = cluster
        self.gateway_nodes = gateway_nodes
        self.dc_config = tmp_path / "datacenter.yaml"
        self.dc_config.write_text(nats_datacenter_config(cluster, postgres).model_dump_json())

    def write_gateway_config(self, sensor_count: int = 30, max_size: str = "2GB"):
        path = self.tmp / "gateway.yaml"
        urls = "[" + ", ".join(self.cluster.nodes[i].mqtt_url for i in self.gateway_nodes) + "]"
        path.write_text(NATS_GATEWAY_CONFIG.format(
            gateway=GATEWAY, buffer=self.buffer, socket=self.tmp / "control.sock", url=urls,
            password_file=self.cluster.password_file(GATEWAY), sensors=sensors(sensor_count), max_size=max_size))
        return path

    def start_collector(self, name: str = "c1") -> None:
        self.collectors[name] = subprocess.Popen(
            [sys.executable, "-m", "edge", "dc", "collector", "-c", str(self.dc_config), "--client-id", name],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def acked(self) -> int:
        total, pending = self.gateway_counts()
        return total - pending

    def wait_for_acks(self, more: int, timeout: float = 40) -> None:
        """``more`` readings acknowledged beyond what was acknowledged now: the stream flows."""
        target = self.acked() + more
        wait_until(lambda: self.acked() >= target, timeout=timeout, what=f"{more} more readings acknowledged")


@pytest.fixture
def system(tmp_path, nats_cluster, postgres):
    from edge.datacenter.store import migrate

    with postgres.connect() as conn:
        migrate(conn)
    system = NatsSystem(tmp_path, nats_cluster, postgres)
    yield system
    system.stop_all()


def test_a_node_killed_mid_stream_and_back_then_another_loses_and_duplicates_nothing(system, nats_cluster):
    """The gateway knows two nodes: each kill takes the one it is connected to, and it moves to the other."""
    system.start_collector("c1")
    system.start_collector("c2")
    system.start_gateway()
    system.wait_for_acks(200)
    for node in (0, 1):  # first the node the gateway starts on; then the one it moved to
        nats_cluster.kill(node)
        system.wait_for_acks(200)  # flowing again, through the other node
        status = subprocess.run([sys.executable, "-m", "edge", "dc", "nats-status", "-c", str(system.dc_config)],
                                cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status.stderr
        assert "3 copies" in status.stdout and f"leader n{node + 1}" not in status.stdout  # leaders moved
        nats_cluster.start_node(node)
    system.wait_for_acks(100)
    system.drain()
    assert_exactly_once(system.check(), 600)


def test_a_collector_killed_mid_stream_while_the_other_goes_on(system):
    system.start_collector("c1")
    system.start_collector("c2")
    system.start_gateway()
    system.wait_for_acks(200)
    system.kill_collector("c1")
    system.wait_for_acks(300)  # c2 alone; what c1 held comes back to c2 after ack_wait
    system.drain()
    assert_exactly_once(system.check(), 500)
