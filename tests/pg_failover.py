"""A PostgreSQL primary and standby with automated failover (pg_auto_failover, from Debian's packages), for tests.

A pytest plugin (``pytest_plugins = [..., "pg_failover"]`` in conftest.py). A monitor and two nodes, each a
``pg_autoctl run`` on free loopback ports in a temporary directory, run as the ``postgres`` user when the tests run as
root (``initdb`` refuses root). Each node runs in its own process group, so ``kill(node)`` is a machine dying: its
keeper and its PostgreSQL get SIGKILL together, and the monitor promotes the standby. The monitor's health checks are
made fast (a second instead of twenty) so a failover takes seconds. Replication is synchronous while both nodes are
healthy (pg_auto_failover's default with one standby), so a commit the primary confirmed is on the standby too.

Fixtures:

- ``pg_failover``: a started :class:`FailoverCluster` for one test; ``create_database()`` gives a database object
  like tests/services.py's (``.url`` is the libpq multi-host URL with ``target_session_attrs=read-write``).

Needs ``pg_autoctl`` (Debian: ``pg-auto-failover-cli`` and ``postgresql-15-auto-failover``; scripts/test installs
them).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services import _port_open, _postgres_bin, free_port

PG_AUTOCTL = Path(os.environ.get("EDGE_TEST_PG_AUTOCTL", "/usr/bin/pg_autoctl"))

#: The monitor's health checks, in milliseconds: a node is failed after about three seconds without an answer.
FAST_HEALTH_CHECKS = {
    "pgautofailover.health_check_period": 1000,
    "pgautofailover.health_check_timeout": 1000,
    "pgautofailover.health_check_retry_delay": 500,
    "pgautofailover.health_check_max_retries": 2,
    "pgautofailover.node_considered_unhealthy_timeout": 3000,
}


@dataclass
class Node:
    name: str
    port: int
    pgdata: Path
    log: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class FailoverDatabase:
    """One database on the cluster, reached through whichever node is primary."""

    def __init__(self, cluster: FailoverCluster, name: str):
        self.cluster = cluster
        self.name = name

    @property
    def url(self) -> str:
        return self.cluster.url(self.name)

    def connect(self, **kwargs):
        import psycopg

        return psycopg.connect(self.url, **kwargs)


class FailoverCluster:
    """A pg_auto_failover monitor, a primary and a standby on loopback."""

    def __init__(self) -> None:
        self.bindir = _postgres_bin()
        self.workdir = Path(tempfile.mkdtemp(prefix="edge-test-pgaf-"))
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self.workdir, account.pw_uid, account.pw_gid)
        self.monitor = Node("monitor", free_port(), self.workdir / "monitor", self.workdir / "monitor.log")
        self.nodes = [Node(f"node{i}", free_port(), self.workdir / f"node{i}", self.workdir / f"node{i}.log")
                      for i in (1, 2)]
        self._names = itertools.count(1)

    # -------------------------------------------------------------------------------------------- processes

    def _command(self, *args: str) -> list[str]:
        command = [str(PG_AUTOCTL), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return command

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.bindir}:{os.environ.get('PATH', '')}", "PG_CONFIG":
                str(self.bindir / "pg_config"), "XDG_CONFIG_HOME": str(self.workdir / "config"),
                "XDG_DATA_HOME": str(self.workdir / "data"), "XDG_RUNTIME_DIR": str(self.workdir / "run")}

    def _create(self, node: Node, *args: str) -> None:
        result = subprocess.run(self._command(*args), env=self._env(), capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"pg_autoctl create {node.name} failed:\n{result.stderr[-3000:]}")

    def _run(self, node: Node) -> None:
        log = open(node.log, "a")
        node.proc = subprocess.Popen(self._command("run", "--pgdata", str(node.pgdata)), env=self._env(),
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    @property
    def monitor_url(self) -> str:
        return f"postgres://autoctl_node@127.0.0.1:{self.monitor.port}/pg_auto_failover?sslmode=disable"

    def start(self) -> FailoverCluster:
        if not PG_AUTOCTL.exists():
            pytest.skip(f"{PG_AUTOCTL} is missing: as root, run  apt-get install -y pg-auto-failover-cli "
                        "postgresql-15-auto-failover  (scripts/test does it)")
        self._create(self.monitor, "create", "monitor", "--pgdata", str(self.monitor.pgdata), "--pgport",
                     str(self.monitor.port), "--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--auth", "trust",
                     "--no-ssl")
        self._run(self.monitor)
        self._wait(lambda: self._monitor_answers(), 60, "the monitor to start")
        with self._monitor_connection(user="postgres", dbname="pg_auto_failover") as conn:
            for name, value in FAST_HEALTH_CHECKS.items():
                conn.execute(f"ALTER SYSTEM SET {name} = {int(value)}")
            conn.execute("SELECT pg_reload_conf()")
        for node, goal in zip(self.nodes, ("single", "secondary")):  # alone, the first is "single"
            self._create(node, "create", "postgres", "--pgdata", str(node.pgdata), "--pgport", str(node.port),
                         "--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--name", node.name, "--auth", "trust",
                         "--no-ssl", "--monitor", self.monitor_url)
            self._run(node)
            self._wait(lambda: self.states().get(node.name) == (goal, goal), 120, f"{node.name} to be {goal}")
        first = self.nodes[0]
        self._wait(lambda: self.states().get(first.name) == ("primary", "primary"), 60, "node1 to be primary")
        return self

    def stop(self) -> None:
        for node in [*self.nodes, self.monitor]:
            self._kill_group(node)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _kill_group(self, node: Node) -> None:
        if node.proc is None:
            return
        try:
            os.killpg(node.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.proc.wait(30)
        # the group's PostgreSQL may outlive its keeper by a moment: wait until its port is closed
        self._wait(lambda: not _port_open(node.port), 30, f"{node.name}'s PostgreSQL to die")

    # -------------------------------------------------------------------------------------------- faults

    def kill(self, node: Node) -> None:
        """The machine dies: the node's keeper and PostgreSQL get SIGKILL together."""
        self._kill_group(node)

    def revive(self, node: Node, timeout: float = 120) -> None:
        """The machine comes back: its keeper rejoins, and the node becomes the standby of the new primary."""
        self._run(node)
        self._wait(lambda: self.states().get(node.name) == ("secondary", "secondary"), timeout,
                   f"{node.name} to rejoin as the standby")

    def failover_from(self, old: Node, timeout: float = 60) -> Node:
        """Wait until the monitor has promoted another node than ``old``, and return it."""
        self._wait(lambda: self.states().get(old.name, ("", ""))[1] not in ("primary", "wait_primary"), timeout,
                   f"the monitor to see that {old.name} is gone")
        new = self.primary(timeout)
        assert new is not old
        return new

    def primary(self, timeout: float = 60) -> Node:
        """The node the monitor has made primary (waiting for a failover in progress to finish)."""
        found: list[Node] = []

        def settled() -> bool:
            states = self.states()
            found[:] = [n for n in self.nodes if states.get(n.name, ("", ""))[0] in ("primary", "wait_primary")
                        and states[n.name][0] == states[n.name][1]]
            return len(found) == 1

        self._wait(settled, timeout, "one primary")
        return found[0]

    # -------------------------------------------------------------------------------------------- reading it

    def states(self) -> dict[str, tuple[str, str]]:
        """Each node's (reported state, goal state) as the monitor sees it."""
        try:
            with self._monitor_connection(user="autoctl_node", dbname="pg_auto_failover") as conn:
                rows = conn.execute("SELECT nodename, reportedstate::text, goalstate::text "
                                    "FROM pgautofailover.node").fetchall()
        except Exception:  # the monitor restarting: nothing known right now
            return {}
        return {name: (reported, goal) for name, reported, goal in rows}

    def url(self, dbname: str = "postgres") -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"postgresql://postgres@{hosts}/{dbname}?target_session_attrs=read-write&connect_timeout=5"

    def create_database(self) -> FailoverDatabase:
        import psycopg

        name = f"test_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return FailoverDatabase(self, name)

    def _monitor_connection(self, *, user: str, dbname: str):
        import psycopg

        return psycopg.connect(f"postgresql://{user}@127.0.0.1:{self.monitor.port}/{dbname}", autocommit=True,
                               connect_timeout=3)

    def _monitor_answers(self) -> bool:
        try:
            with self._monitor_connection(user="postgres", dbname="pg_auto_failover"):
                return True
        except Exception:
            return False

    def _wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        logs = "\n".join(f"--- {n.name}\n{n.log.read_text(errors='replace')[-1500:]}"
                         for n in [self.monitor, *self.nodes] if n.log.exists())
        raise RuntimeError(f"timed out after {timeout}s waiting for {what}; states {self.states()}\n{logs}")


@pytest.fixture
def pg_failover() -> Iterator[FailoverCluster]:
    """A monitor, a primary and a standby with automated failover, for this test."""
    cluster = FailoverCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
