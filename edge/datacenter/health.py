"""`edge dc status`: the data center's state as an operator asks for it first.

Which database node is primary and which are standbys (every host of a multi-host ``database.url`` is asked on its
own), how far each standby is behind and whether it is synchronous, which collectors and APIs are connected to the
primary, whether the broker answers, and how many gateways are online. Read-only: nothing is changed anywhere.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from edge.datacenter.config import DataCenterConfig

APPLICATION = "edge-dc-status"


@dataclass
class Standby:
    name: str
    state: str  # streaming, catchup, ...
    sync: str  # sync, quorum, potential, async
    behind_bytes: int | None


@dataclass
class Node:
    host: str
    port: int
    role: str  # primary, standby, unreachable
    error: str | None = None
    standbys: list[Standby] = field(default_factory=list)


@dataclass
class ClusterReport:
    nodes: list[Node]
    sessions: dict[str, int]  # application name -> connections to the primary's database
    gateways: dict[str, int]  # online, offline
    broker: str  # where
    broker_reachable: bool

    @property
    def primary(self) -> Node | None:
        primaries = [node for node in self.nodes if node.role == "primary"]
        return primaries[0] if len(primaries) == 1 else None

    @property
    def ok(self) -> bool:
        return self.primary is not None and self.broker_reachable

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}

    def render_text(self) -> list[str]:
        lines = []
        for node in self.nodes:
            where = f"{node.host}:{node.port}"
            if node.role == "unreachable":
                lines.append(f"database  {where:<24} UNREACHABLE  {node.error}")
                continue
            lines.append(f"database  {where:<24} {node.role}")
            for standby in node.standbys:
                behind = "?" if standby.behind_bytes is None else f"{standby.behind_bytes} bytes behind"
                lines.append(f"          standby {standby.name}: {standby.state}, {standby.sync}, {behind}")
        primaries = sum(node.role == "primary" for node in self.nodes)
        if primaries == 0:
            lines.append("database  NO PRIMARY: collectors acknowledge nothing until one is (gateways keep buffering)")
        elif primaries > 1:
            lines.append("database  MORE THAN ONE PRIMARY: a split brain; stop the one the monitor demoted")
        if self.sessions:
            lines.append("clients   " + ", ".join(f"{name} ({count})" if count > 1 else name
                                                  for name, count in sorted(self.sessions.items())))
        lines.append(f"broker    {self.broker:<24} {'answers' if self.broker_reachable else 'UNREACHABLE'}")
        if self.gateways:
            lines.append(f"gateways  {self.gateways.get('online', 0)} online, {self.gateways.get('offline', 0)} "
                         "offline")
        return lines


def database_hosts(url: str) -> list[tuple[str, int]]:
    """Every (host, port) of a libpq URL, multi-host URLs included."""
    info = conninfo_to_dict(url)
    hosts = (info.get("host") or "localhost").split(",")
    ports = (info.get("port") or "5432").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    return [(host, int(port or 5432)) for host, port in zip(hosts, ports)]


def read_node(url: str, host: str, port: int, timeout: float = 3.0) -> tuple[Node, psycopg.Connection | None]:
    """Ask one node what it is; the connection is returned open for a primary (the caller closes it)."""
    try:
        conn = psycopg.connect(url, host=host, port=port, target_session_attrs="any", connect_timeout=timeout,
                               application_name=APPLICATION, autocommit=True)
    except psycopg.Error as exc:
        return Node(host, port, "unreachable", _first_line(exc)), None
    try:
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        if in_recovery:
            conn.close()
            return Node(host, port, "standby"), None
        standbys = [Standby(name, state, sync, behind) for name, state, sync, behind in conn.execute(
            "SELECT application_name, state, sync_state, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint FROM pg_stat_replication "
            "ORDER BY application_name")]
        return Node(host, port, "primary", standbys=standbys), conn
    except psycopg.Error as exc:
        conn.close()
        return Node(host, port, "unreachable", _first_line(exc)), None


def read_cluster(config: DataCenterConfig, timeout: float = 3.0) -> ClusterReport:
    nodes, sessions, gateways = [], {}, {}
    for host, port in database_hosts(config.database.url):
        node, conn = read_node(config.database.url, host, port, timeout)
        nodes.append(node)
        if conn is None:
            continue
        with conn:
            sessions = {name: count for name, count in conn.execute(
                "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name NOT IN ('', %s) AND pid <> pg_backend_pid() GROUP BY 1", (APPLICATION,))}
            try:
                gateways = {state: count for state, count in conn.execute(
                    "SELECT state, count(*) FROM gateway_status GROUP BY 1")}
            except psycopg.errors.UndefinedTable:
                gateways = {}  # no collector has run yet
    broker = urlsplit(config.mqtt.url)
    host, port = broker.hostname or "localhost", broker.port or (8883 if broker.scheme == "mqtts" else 1883)
    return ClusterReport(nodes, sessions, gateways, f"{host}:{port}", _answers(host, port, timeout))


def _answers(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
