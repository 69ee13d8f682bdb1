"""The whole chain on one machine, for ``bash scripts/demo``: the simulated greenhouse (``edge run`` on
config/demo.yaml), a private Mosquitto and PostgreSQL on free loopback ports (from Debian's binaries, in a temporary
directory removed at the end), ``edge dc collector``, and ``edge dc api`` serving the console, with a token made for
the demo (scoped to control, so the console's command form works). When ``edge web`` exists, the greenhouse page too.

Ctrl-C (SIGINT) or SIGTERM stops everything it started, in order: the gateway first (its outputs go safe), then the
pages, the collector, the broker and the database. Every process runs in a session of its own, so a Ctrl-C reaches
only this runner, which stops them one by one. The demo also ends when the gateway does (``--for 2m``).

Run with ``python -m edge.demo [EDGE RUN ARGUMENTS]``; the arguments go to ``edge run`` (``--for 2m``,
``--log-level info``). ``EDGE_DEMO_DIR`` sets the directory the gateway runs in (its buffer is ./var/ there;
default: the current directory).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MOSQUITTO = Path(os.environ.get("EDGE_DEMO_MOSQUITTO", "/usr/sbin/mosquitto"))
CONSOLE_PORT = 8080  # when free; another free port otherwise
GREENHOUSE_PAGE = "http://127.0.0.1:8090/"  # config/demo.yaml's web.listen (the greenhouse page, `edge web`)


def free_port(preferred: int | None = None) -> int:
    if preferred is not None:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-1500:] if log is not None and log.exists() else ""
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}\n{tail}")


class Demo:
    def __init__(self, run_args: list[str]):
        self.run_args = run_args
        self.tmp = Path(tempfile.mkdtemp(prefix="edge-demo-"))
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.pg_bin: Path | None = None
        self.pg_data = self.tmp / "postgres"
        self.as_postgres = os.geteuid() == 0
        self.stopping = threading.Event()

    # ------------------------------------------------------------------------------------------------- services

    def start_broker(self) -> str:
        if not MOSQUITTO.exists():
            raise RuntimeError(f"{MOSQUITTO} is missing: as root, run  apt-get install -y mosquitto")
        port = free_port()
        config = self.tmp / "mosquitto.conf"
        config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                          f"persistence_location {self.tmp}/\nlog_dest stderr\n"
                          f"user {pwd.getpwuid(os.geteuid()).pw_name}\n")
        self.spawn("mosquitto", [str(MOSQUITTO), "-c", str(config)])
        wait_for(lambda: port_open(port), 15, "the broker", self.tmp / "mosquitto.log")
        return f"mqtt://127.0.0.1:{port}"

    def _pg(self, *args: str) -> None:
        command = [str(self.pg_bin / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True)

    def start_database(self) -> str:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
        if not found:
            raise RuntimeError("PostgreSQL is missing: as root, run  apt-get install -y postgresql")
        self.pg_bin = found[-1].parent
        if self.as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self.tmp, account.pw_uid, account.pw_gid)
            os.chmod(self.tmp, 0o755)
        port = free_port()
        self._pg("initdb", "-D", str(self.pg_data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8",
                 "--locale=C")
        options = (f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.tmp} "
                   "-c fsync=off -c synchronous_commit=off")
        self._pg("pg_ctl", "-D", str(self.pg_data), "-l", str(self.tmp / "postgres.log"), "-o", options, "-w",
                 "-t", "60", "start")
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE edge")
        return f"postgresql://postgres@127.0.0.1:{port}/edge"

    def spawn(self, name: str, command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
              log: bool = True) -> subprocess.Popen:
        out = (self.tmp / f"{name}.log").open("wb") if log else None
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT if log else None,
                                start_new_session=True)
        self.procs.append((name, proc))
        return proc

    # ------------------------------------------------------------------------------------------------------ run

    def run(self) -> int:
        broker = self.start_broker()
        database = self.start_database()
        config = self.tmp / "datacenter.yaml"
        config.write_text(f"mqtt: {{url: {broker}}}\ndatabase: {{url: {database}}}\n"
                          "commands: {username: commander}\n")
        edge = [sys.executable, "-m", "edge"]
        from edge.datacenter import tokens
        from edge.datacenter.store import migrate
        import psycopg

        with psycopg.connect(database, autocommit=True) as conn:
            migrate(conn)
            token = tokens.create(conn, "demo", ["*"], scope="control")
        self.spawn("collector", [*edge, "dc", "collector", "-c", str(config)])
        port = free_port(CONSOLE_PORT)
        self.spawn("api", [*edge, "dc", "api", "-c", str(config), "--listen", f"127.0.0.1:{port}"])
        console = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{console}/openapi.json"), 60, "the API", self.tmp / "api.log")
        here = Path(os.environ.get("EDGE_DEMO_DIR") or Path.cwd())
        env = {**os.environ, "EDGE_MQTT_URL": broker}
        demo_config = str(ROOT / "config" / "demo.yaml")
        gateway = self.spawn("gateway", [*edge, "run", "-c", demo_config, *self.run_args], cwd=here, env=env,
                             log=False)
        page = None
        if subprocess.run([*edge, "web", "--help"], capture_output=True).returncode == 0:
            self.spawn("web", [*edge, "web", "-c", demo_config], cwd=here, env=env)
            page = GREENHOUSE_PAGE
            pin_file = here / "var" / "web.pin"  # config/demo.yaml's web.pin_file, made up by edge web at its first run
            try:
                wait_for(lambda: pin_file.exists() and pin_file.read_text().strip(), 15, "the greenhouse page's PIN",
                         self.tmp / "web.log")
                pin = pin_file.read_text().strip()
                shown = f"PIN {pin}" if pin.isdigit() else "the PIN set for it"  # not a hash someone set meanwhile
                page = f"{GREENHOUSE_PAGE}   ({shown}, kept in {pin_file})"
            except (RuntimeError, OSError):
                pass  # the page says why in its log; the rest of the chain runs on
        lines = ["", "The whole chain is running (Ctrl-C stops everything):",
                 f"  console       {console}/console/   (log in with the token below)",
                 f"  API docs      {console}/docs",
                 f"  greenhouse    {page}" if page else
                 "  greenhouse    (the greenhouse page needs `edge web`, not in this version)",
                 f"  token         {token}",
                 f"  broker        {broker}   database {database}",
                 f"  logs          {self.tmp}/", ""]
        print("\n".join(lines), file=sys.stderr, flush=True)
        told = set()
        while not self.stopping.is_set():
            if gateway.poll() is not None:
                return gateway.returncode
            for name, proc in self.procs:
                if proc.poll() is None or name == "gateway" or name in told:
                    continue
                if name == "web":  # the greenhouse page is its own process: the chain goes on without it
                    told.add(name)
                    print(f"demo: the greenhouse page (edge web) exited with {proc.returncode}; the rest runs on",
                          file=sys.stderr)
                    continue
                print(f"demo: {name} exited with {proc.returncode}; see {self.tmp}/{name}.log", file=sys.stderr)
                return 1
            self.stopping.wait(0.5)
        return 0

    def stop(self) -> None:
        """Stop every process started, the gateway first, then the database; remove the temporary directory."""
        for name, proc in self.procs:  # started in order: the gateway after the services it uses
            if name == "gateway" and proc.poll() is None:
                _terminate(proc, 30)
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                _terminate(proc, 15)
        if self.pg_bin is not None and (self.pg_data / "postmaster.pid").exists():
            try:
                self._pg("pg_ctl", "-D", str(self.pg_data), "-m", "fast", "-w", "stop")
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def _terminate(proc: subprocess.Popen, timeout: float) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def main(argv: list[str] | None = None) -> int:
    demo = Demo(list(sys.argv[1:] if argv is None else argv))

    def stop(_signum, _frame) -> None:
        demo.stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        return demo.run()
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        print("demo: stopping everything it started...", file=sys.stderr, flush=True)
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
