"""Private Mosquitto and PostgreSQL servers for tests, from the Debian binaries, on free loopback ports.

A pytest plugin (``pytest_plugins = ["services"]`` in conftest.py). Nothing here touches the machine's own broker
(1883) or database (5432): every server gets a temporary directory and a free port of its own.

Fixtures:

- ``broker``: a fresh anonymous Mosquitto for one test (persistence on, queue limit raised).
- ``secure_broker``: one started from the project's real ``config/mosquitto/`` (no anonymous, ACL), with the users
  of :data:`SECURE_USERS`.
- ``broker_factory(acl=False, users=None, max_queued_messages=...)``: more brokers in one test; all are killed at its
  end. ``max_queued_messages=None`` keeps the project's own queue limit (with ``acl=True``: what production runs).
- ``postgres_server``: one PostgreSQL per test session, started on first use and stopped at session end.
- ``postgres``: a fresh, empty database on that server for one test.
- ``store``: the collector's ``Store`` on such a database.

The classes work without pytest too (``bench/`` scripts may import this module).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MOSQUITTO = Path(os.environ.get("EDGE_TEST_MOSQUITTO", "/usr/sbin/mosquitto"))
MOSQUITTO_PASSWD = Path("/usr/bin/mosquitto_passwd")
PROJECT_BROKER_CONFIG = ROOT / "config" / "mosquitto"

#: Accounts of the secure broker: two gateways, two collectors and the commander (test-only passwords).
SECURE_USERS = {"gh-a": "pw-gh-a", "gh-b": "pw-gh-b", "collector": "pw-collector", "collector-2": "pw-collector-2",
                "commander": "pw-commander"}

#: High enough that no test is ever hit by Mosquitto's silent drop past the queue limit.
TEST_MAX_QUEUED = 1_000_000

#: Settings a test broker replaces in the project's mosquitto.conf (ports, paths, privileges).
_OVERRIDDEN = {"listener", "port", "bind_address", "persistence_location", "persistence_file", "password_file",
               "acl_file", "log_dest", "pid_file", "user", "include_dir", "max_queued_messages"}


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and never one this process handed out before:
    a cluster takes a dozen before its servers bind any, and the kernel may pick a just-closed port again."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_for(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}\n{tail}")


def _require(binary: Path, package: str) -> None:
    if not binary.exists():
        pytest.skip(f"{binary} is missing: run  sudo apt-get install -y {package}  (scripts/test does it as root)")


# ----------------------------------------------------------------------------------------------------------- Mosquitto


class Broker:
    """One private Mosquitto. ``stop()`` (SIGTERM) saves its persistence file; ``kill()`` (SIGKILL) does not;
    ``start()`` brings it back on the same port with the same persistence directory."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, *, acl: bool = False, users: dict[str, str] | None = None,
                 max_queued_messages: int | None = TEST_MAX_QUEUED, log_type: str = "all"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.acl = acl
        self.users = dict(SECURE_USERS if acl and users is None else users or {})
        self.max_queued_messages = max_queued_messages
        self.log_type = log_type
        self.log = self.workdir / "mosquitto.log"
        self.config = self.workdir / "mosquitto.conf"
        self.proc: subprocess.Popen | None = None
        self._write_config()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        """What the broker logged so far (log_type all: connections, subscriptions, denials)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, timeout: float = 10.0) -> Broker:
        if self.running:
            return self
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.config)], stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.workdir)
        _wait_for(lambda: _port_open(self.port) or not self.running, timeout, f"mosquitto on {self.port}", self.log)
        if not self.running:
            raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: Mosquitto writes its persistence file and exits."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: whatever was queued since the last autosave is forgotten."""
        self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: int, timeout: float) -> None:
        if not self.running:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        _wait_for(lambda: not _port_open(self.port), 5.0, f"port {self.port} to close")

    def _write_config(self) -> None:
        # the listener first: listener settings written before any `listener` line (use_username_as_clientid)
        # would make Mosquitto open its default listener on port 1883 as well
        lines = [f"listener {self.port} 127.0.0.1"]
        keep_queue = self.acl and self.max_queued_messages is None
        lines += self._project_settings(keep_queue) if self.acl else ["allow_anonymous true", "persistence true",
                                                                     "autosave_interval 1800"]
        lines += [
            f"persistence_location {self.workdir}/",
            "persistence_file mosquitto.db",
            *([] if keep_queue else [f"max_queued_messages {self.max_queued_messages or TEST_MAX_QUEUED}"]),
            "log_dest stderr",
            f"log_type {self.log_type}",
            # as root, stay root (the private files stay readable); as anyone else, ignored
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
        ]
        if self.acl:
            lines += [f"password_file {self._password_file()}", f"acl_file {PROJECT_BROKER_CONFIG / 'acl'}"]
        self.config.write_text("\n".join(lines) + "\n")

    @staticmethod
    def _project_settings(keep_queue: bool = False) -> list[str]:
        """The project's mosquitto.conf without the settings that name ports, paths or privileges (and without its
        queue limit unless ``keep_queue``)."""
        overridden = _OVERRIDDEN - {"max_queued_messages"} if keep_queue else _OVERRIDDEN
        kept = []
        for line in (PROJECT_BROKER_CONFIG / "mosquitto.conf").read_text().splitlines():
            words = line.split()
            if words and not words[0].startswith("#") and words[0] not in overridden:
                kept.append(line.strip())
        return kept

    def _password_file(self) -> Path:
        # every account in plain text, then hashed in place in one go (`mosquitto_passwd -U`): thousands of accounts
        # (bench/fleet.py) take seconds, not one process each
        path = self.workdir / "passwd"
        path.touch(0o600)
        path.write_text("".join(f"{user}:{password}\n" for user, password in self.users.items()))
        subprocess.run([str(MOSQUITTO_PASSWD), "-U", str(path)], check=True, capture_output=True)
        path.chmod(0o600)
        return path


@pytest.fixture
def broker_factory(tmp_path) -> Iterator:
    """``broker_factory(acl=False, users=None, max_queued_messages=...)`` starts one more private broker."""
    _require(MOSQUITTO, "mosquitto")
    brokers: list[Broker] = []
    counter = itertools.count(1)

    def start(**kwargs) -> Broker:
        broker = Broker(tmp_path / f"mosquitto-{next(counter)}", **kwargs)
        brokers.append(broker)
        return broker.start()

    yield start
    for broker in brokers:
        broker.kill()


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A private anonymous Mosquitto for this test (persistence on, queue limit raised)."""
    return broker_factory()


@pytest.fixture
def secure_broker(broker_factory) -> Broker:
    """Mosquitto with the project's config/mosquitto/ settings and ACL; users and passwords in ``.users``."""
    _require(MOSQUITTO_PASSWD, "mosquitto")
    return broker_factory(acl=True)


# ---------------------------------------------------------------------------------------------------------- PostgreSQL


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        pytest.skip("PostgreSQL is missing: run  sudo apt-get install -y postgresql  (scripts/test does it as root)")
    return found[-1].parent


class Database:
    """One database on the test server."""

    def __init__(self, server: PostgresServer, name: str):
        self.server = server
        self.name = name

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.server.port}/{self.name}"

    def connect(self, **kwargs):
        import psycopg

        return psycopg.connect(self.url, **kwargs)


class PostgresServer:
    """A throwaway PostgreSQL cluster: initdb in a temp dir (as the ``postgres`` user when run as root), fsync off."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="edge-test-pg-"))
        self.datadir = self.workdir / "data"
        self.log = self.workdir / "postgres.log"
        self._names = itertools.count(1)
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self.workdir, account.pw_uid, account.pw_gid)

    def _run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)

    def start(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8",
                  "--locale=C")
        options = (f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.workdir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.workdir, ignore_errors=True)

    def connect(self, dbname: str = "postgres", **kwargs):
        """A superuser connection (autocommit) to the server's maintenance database, for what tests do to it."""
        import psycopg

        return psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}", autocommit=True, **kwargs)

    def create_database(self) -> Database:
        name = f"test_{next(self._names)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return Database(self, name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL for the whole session (started on first use)."""
    server = PostgresServer(_postgres_bin()).start()
    yield server
    server.stop()


@pytest.fixture
def postgres(postgres_server) -> Database:
    """A fresh, empty database for this test: ``.url``, ``.name``, ``.connect()``."""
    return postgres_server.create_database()


@pytest.fixture
def store(postgres):
    """The collector's ``Store`` on a fresh database (migrated)."""
    from edge.datacenter.store import Store

    store = Store.connect(postgres.url)
    yield store
    store.close()
