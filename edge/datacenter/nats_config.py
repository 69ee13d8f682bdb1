"""The NATS server config of the high-availability data center: accounts, per-gateway permissions, a cluster node.

NATS has no ACL patterns such as Mosquitto's ``%u``: every gateway gets its own user with its own permissions, so the
config is generated from the list of accounts (``edge dc nats-config``, ``config/nats/``). What each account may do
is the same as ``config/mosquitto/acl``, in NATS subjects (MQTT topic ``a/b/c`` is subject ``a.b.c``):

- a gateway (its user name is its gateway id) publishes its own uplink and status and subscribes to its own
  downlink and to the collectors' presence: nothing of another gateway. NATS drops a forbidden publish silently, and
  answers a forbidden MQTT subscription with a failure in the SUBACK.
- a collector reads the uplink stream through the shared durable consumer (JetStream API subjects of that stream and
  consumer only, its own reply inbox), publishes acks into the gateways' MQTT sessions and the presence. It cannot
  command a gateway nor publish as one.
- the commander publishes commands only.

The uplink stream (``GREENHOUSE_UP``) holds ``greenhouse.v1.*.up.>`` and ``greenhouse.v1.*.status``. NATS' MQTT
listener keeps QoS 1 sessions in JetStream: a QoS 1 message for an MQTT subscriber is stored in the ``$MQTT_msgs``
stream under ``$MQTT.msgs.<subject>`` (with the ``Nmqtt-Pub`` header), which is where a collector publishes an ack
so that the gateway's session receives it even while the gateway is away.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from edge.contract import protocol

ROOT = protocol.TOPIC_ROOT.replace("/", ".")  # greenhouse.v1
STREAM = "GREENHOUSE_UP"
CONSUMER = "collectors"
UPLINK_SUBJECTS = (f"{ROOT}.*.up.>", f"{ROOT}.*.status")
#: Where the NATS MQTT listener stores QoS 1 messages for MQTT sessions (its ``$MQTT_msgs`` stream).
MQTT_MSGS = "$MQTT.msgs."
#: The header NATS' MQTT listener puts on what an MQTT client published (its value: the QoS).
MQTT_HEADER = "Nmqtt-Pub"
ACCOUNT = "GREENHOUSE"


def subject_of(topic: str) -> str:
    """The NATS subject of an MQTT topic (our topics have no ``.``, ``+``, ``#`` inside a level)."""
    return topic.replace("/", ".")


def topic_of(subject: str) -> str:
    """The MQTT topic of a NATS subject."""
    return subject.replace(".", "/")


def inbox_of(user: str) -> str:
    """The reply inbox prefix of a service account: its own, so no account reads another's replies."""
    return f"_INBOX_{user}"


def gateway_permissions(gateway_id: str) -> dict:
    own = f"{ROOT}.{gateway_id}"
    return {"publish": {"allow": [f"{own}.up.>", f"{own}.status"]},
            "subscribe": {"allow": [f"{own}.down", f"{own}.down.>", subject_of(protocol.PRESENCE_TOPIC)]}}


def collector_permissions(user: str, stream: str = STREAM, consumer: str = CONSUMER) -> dict:
    api = "$JS.API"
    return {"publish": {"allow": [
        f"{api}.INFO",
        f"{api}.STREAM.INFO.{stream}", f"{api}.STREAM.CREATE.{stream}",
        f"{api}.CONSUMER.INFO.{stream}.{consumer}", f"{api}.CONSUMER.CREATE.{stream}.{consumer}",
        f"{api}.CONSUMER.CREATE.{stream}.{consumer}.>", f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
        f"{api}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
        f"{MQTT_MSGS}{ROOT}.*.down.ack",
        subject_of(protocol.PRESENCE_TOPIC)]},
        "subscribe": {"allow": [f"{inbox_of(user)}.>"]}}


def commander_permissions() -> dict:
    return {"publish": {"allow": [f"{ROOT}.*.down.cmd"]}, "subscribe": {"deny": [">"]}}


@dataclass(frozen=True)
class Accounts:
    """Who logs in: gateway ids, collector accounts, commander accounts; ``passwords`` by user (a bcrypt hash
    ``$2a$...`` or, in tests, the password itself)."""

    gateways: Sequence[str] = ()
    collectors: Sequence[str] = ("collector",)
    commanders: Sequence[str] = ("commander",)
    passwords: dict[str, str] = field(default_factory=dict)

    def users(self) -> list[dict]:
        names = [*self.gateways, *self.collectors, *self.commanders]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ValueError(f"an account name is used twice: {', '.join(clash)} (a service account must never "
                             "be named like a gateway)")
        missing = [n for n in names if n not in self.passwords]
        if missing:
            raise ValueError(f"no password for {', '.join(missing)}")
        out = [{"user": g, "password": self.passwords[g], "permissions": gateway_permissions(g)}
               for g in self.gateways]
        out += [{"user": c, "password": self.passwords[c], "permissions": collector_permissions(c)}
                for c in self.collectors]
        out += [{"user": c, "password": self.passwords[c], "permissions": commander_permissions()}
                for c in self.commanders]
        return out


@dataclass(frozen=True)
class Node:
    """One server of the cluster: its name, where it listens (clients, MQTT, cluster routes) and its store."""

    name: str
    host: str = "127.0.0.1"
    client_port: int = 4222
    mqtt_port: int = 1883
    cluster_port: int = 6222
    store_dir: str = "/var/lib/nats"

    @property
    def route(self) -> str:
        return f"nats-route://{self.host}:{self.cluster_port}"


def render(node: Node, peers: Iterable[Node], accounts: Accounts, *, cluster_name: str = "greenhouse",
           max_file_store: str = "10G", extra: Sequence[str] = ()) -> str:
    """The nats-server config of ``node`` in a cluster with ``peers`` (none: a single node, no cluster block)."""
    q = json.dumps  # NATS config strings accept JSON quoting
    lines = [
        "# Generated by `edge dc nats-config` (edge/datacenter/nats_config.py): regenerate, do not edit by hand.",
        f"server_name: {q(node.name)}",
        f"listen: {q(f'{node.host}:{node.client_port}')}",
        f"jetstream {{ store_dir: {q(node.store_dir)}, max_file_store: {max_file_store} }}",
    ]
    peers = list(peers)
    routes = [p.route for p in peers if p.name != node.name]
    # The MQTT sessions, their QoS 1 messages and retained messages live in JetStream streams of their own: give
    # them 3 copies, as the uplink has (left to itself, the server picks from the nodes it sees at the first MQTT
    # login, and 2 copies stall as soon as one of those two nodes dies)
    replicas = f", stream_replicas: {min(3, len(peers))}" if routes else ""
    lines.append(f"mqtt {{ listen: {q(f'{node.host}:{node.mqtt_port}')}{replicas} }}")
    if routes:
        lines.append(f"cluster {{ name: {q(cluster_name)}, listen: {q(f'{node.host}:{node.cluster_port}')}, "
                     f"routes: [{', '.join(q(r) for r in routes)}] }}")
    lines.append(f"accounts {{ {ACCOUNT}: {{ jetstream: enabled, users: {json.dumps(accounts.users(), indent=1)} }} }}")
    lines += list(extra)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the cluster file (config/nats/)


def _cluster_models():
    """The models of ``config/nats/cluster.example.yaml`` (pydantic is imported only when a file is read)."""
    from pathlib import Path

    from pydantic import Field

    from edge.config import Identifier, StrictModel

    class NodeModel(StrictModel):
        name: Identifier
        host: str = Field(description="address this node listens on and its peers reach it at")
        client_port: int = Field(default=4222, ge=1, le=65535, description="NATS clients (the collectors)")
        mqtt_port: int = Field(default=1883, ge=1, le=65535, description="MQTT 3.1.1 (the gateways)")
        cluster_port: int = Field(default=6222, ge=1, le=65535, description="routes between the nodes")
        store_dir: str = Field(default="/var/lib/nats", description="JetStream's files on this node")

    class ClusterFile(StrictModel):
        cluster: Identifier = "greenhouse"
        nodes: list[NodeModel] = Field(min_length=1)
        gateways: list[Identifier] = Field(default_factory=list, description="one account per gateway, named by "
                                           "its id")
        collectors: list[Identifier] = Field(default_factory=lambda: ["collector"])
        commanders: list[Identifier] = Field(default_factory=lambda: ["commander"])
        passwords_file: Path = Field(description="`user bcrypt-hash` lines, one per account (mode 0600)")
        max_file_store: str = "10G"

    return NodeModel, ClusterFile


def read_passwords(path) -> dict[str, str]:
    """``user hash`` lines (blank lines and ``#`` comments skipped); ValueError naming the line that is wrong."""
    from pathlib import Path

    out: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if len(words) != 2:
            raise ValueError(f"{path}:{number}: expected `user bcrypt-hash`")
        out[words[0]] = words[1]
    return out


def render_from_file(path, node_name: str) -> str:
    """The config of node ``node_name`` of the cluster file at ``path`` (``edge dc nats-config``)."""
    from edge.config import load_model

    _, cluster_file = _cluster_models()
    spec = load_model(cluster_file, path)
    nodes = [Node(n.name, n.host, n.client_port, n.mqtt_port, n.cluster_port, n.store_dir) for n in spec.nodes]
    chosen = [n for n in nodes if n.name == node_name]
    if not chosen:
        raise ValueError(f"no node {node_name!r} in {path} (nodes: {', '.join(n.name for n in nodes)})")
    accounts = Accounts(spec.gateways, spec.collectors, spec.commanders, read_passwords(spec.passwords_file))
    return render(chosen[0], nodes if len(nodes) > 1 else [], accounts, cluster_name=spec.cluster,
                  max_file_store=spec.max_file_store)
