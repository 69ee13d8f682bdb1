"""A province on one data center: N simulated gateways against a private broker, collector(s) and PostgreSQL.

Every gateway is its own MQTT connection with its own account, speaking the real protocol (tests/fleet_kit.py says
how it behaves and why it is cheap). The run connects them all, samples for S seconds, stops sampling, waits until
everything produced is acknowledged, and compares every key produced with the database. The last line printed is
one JSON object: gateways, readings, lost, duplicated, unexpected, altered, readings_per_s (acknowledged per second
while sampling), ack_p50_s / ack_p99_s / ack_max_s (a batch's oldest reading to its ack), drain_s, and the CPU
seconds and memory of each part.

Usage:
  .venv/bin/python bench/fleet.py --gateways 1000 --seconds 60 [--collectors 2] [--writers 4]
  .venv/bin/python bench/fleet.py --scenarios [--quick]    # every scenario of docs/benchmarks.md, with the baseline
  .venv/bin/python bench/fleet.py --engines                # what one simulated connection costs, two ways
  .venv/bin/python bench/fleet.py --gateways 1000 --seconds 60 --broker mqtt://127.0.0.1:1883 \\
      --database postgresql://... --no-collector           # against running ones (accounts must exist there)

Needs Debian's mosquitto and postgresql (scripts/test installs them). Raises the open-files limit to what N
connections need (the broker is a child process and inherits it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fleet_kit import Fleet, Settings, accounts, check  # noqa: E402
from services import SECURE_USERS, Broker, PostgresServer, _postgres_bin  # noqa: E402

COLLECTORS = ("collector", "collector-2")
PROBE = ("fleet-probe", "pw-fleet-probe")


# --------------------------------------------------------------------------------------------- processes' costs


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def _rss_mb(pid: int, key: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(parent: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    out.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return out


class Meter:
    """CPU seconds of the parts between ``start()`` and ``stop()``, and the broker's and collectors' peak memory
    (sampled every second meanwhile)."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()

    def _pids(self) -> dict[str, list[int]]:
        s = self.stack
        pg = [s.postmaster] + _children(s.postmaster) if s.postmaster else []
        return {"broker": [s.broker.proc.pid] if s.broker and s.broker.running else [],
                "collectors": [p.pid for p in s.collectors if p.poll() is None], "postgres": pg,
                "simulator": [os.getpid()]}

    def _total(self) -> dict[str, float]:
        return {part: sum(_cpu(pid) for pid in pids) for part, pids in self._pids().items()}

    def start(self) -> Meter:
        self.load0 = os.getloadavg()[0]
        self.began, self.cpu0 = time.monotonic(), self._total()
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            for part, pids in self._pids().items():
                if part in ("broker", "collectors", "simulator"):
                    self.peaks[part] = max(self.peaks.get(part, 0.0), sum(_rss_mb(p) for p in pids))

    def stop(self) -> dict[str, float]:
        self._stop.set()
        elapsed, cpu1 = time.monotonic() - self.began, self._total()
        out = {f"cpu_{part}_pct": round(100 * (cpu1[part] - self.cpu0.get(part, 0.0)) / elapsed, 1)
               for part in cpu1}
        out.update({f"rss_{part}_mb": round(mb, 1) for part, mb in self.peaks.items()})
        # the machine's 1-minute load average before and after: on 2 cores, anything much above 2 means the parts
        # waited for CPU that other work took
        out.update({"load_before": round(self.load0, 1), "load_after": round(os.getloadavg()[0], 1)})
        return out


# --------------------------------------------------------------------------------------------------- the stack


class Stack:
    """A private broker from config/mosquitto/ (the project's queue limit, every account), PostgreSQL and
    collector processes; or running ones (``broker_url`` / ``database_url``)."""

    def __init__(self, workdir: Path, fleet_accounts: list[tuple[str, str]], *, collectors: int = 1,
                 writers: int | None = None, server: PostgresServer | None = None, broker_url: str | None = None,
                 database_url: str | None = None, run_collectors: bool = True):
        self.workdir = workdir
        self.accounts = fleet_accounts
        self.collector_count = collectors if run_collectors else 0
        self.writers = writers
        self.server = server
        self.broker: Broker | None = None
        self.broker_url = broker_url
        self.database_url = database_url
        self.collectors: list[subprocess.Popen] = []
        self.postmaster = 0

    def start(self) -> Stack:
        if self.broker_url is None:
            users = {**SECURE_USERS, PROBE[0]: PROBE[1], **dict(self.accounts)}
            self.broker = Broker(self.workdir / "broker", acl=True, users=users, max_queued_messages=None,
                                 log_type="notice").start()
            self.broker_url = self.broker.url
        if self.database_url is None:
            self.database_url = self.server.create_database().url
        if self.server is not None:
            pid_file = self.server.datadir / "postmaster.pid"
            self.postmaster = int(pid_file.read_text().split()[0]) if pid_file.exists() else 0
        for i in range(self.collector_count):
            self.collectors.append(self._collector(COLLECTORS[i]))
        if self.collector_count:
            self.wait_for_collectors()
        return self

    def _collector(self, account: str) -> subprocess.Popen:
        password = self.workdir / f"{account}.password"
        password.write_text(SECURE_USERS[account])
        password.chmod(0o600)
        config = self.workdir / f"{account}.yaml"
        writers = f"\n  writers: {self.writers}" if self.writers else ""
        config.write_text(f"mqtt:\n  url: {self.broker_url}\n  username: {account}\n  password_file: {password}\n"
                          f"database:\n  url: {self.database_url}\ncollector:\n  batch_wait: 0.1s{writers}\n"
                          f"log:\n  level: warning\n")
        log = (self.workdir / f"{account}.log").open("ab")
        return subprocess.Popen([sys.executable, "-m", "edge", "dc", "collector", "-c", str(config), "--client-id",
                                 account], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_for_collectors(self, timeout: float = 60.0) -> None:
        """Until every collector announced itself (a live presence after its subscriptions)."""
        import paho.mqtt.client as mqtt

        from edge.contract import protocol

        seen: set[str] = set()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=PROBE[0])
        client.username_pw_set(*PROBE)
        client.on_connect = lambda c, *a: c.subscribe(protocol.PRESENCE_TOPIC, 1)
        client.on_message = lambda c, u, m: seen.add(str(protocol.decode_presence(m.payload).get("client")))
        host, port = self.broker_url.split("//", 1)[1].rsplit(":", 1)
        client.connect(host, int(port))
        client.loop_start()
        deadline = time.monotonic() + timeout
        wanted = set(COLLECTORS[:self.collector_count])
        while not wanted <= seen:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.collectors):
                raise RuntimeError(f"collectors did not come up (saw {sorted(seen)}); see {self.workdir}/*.log")
            time.sleep(0.1)
        client.loop_stop()
        client.disconnect()

    def host_port(self) -> tuple[str, int]:
        host, port = self.broker_url.split("//", 1)[1].rsplit(":", 1)
        return host, int(port)

    def stop(self) -> None:
        for proc in self.collectors:
            proc.terminate()
        for proc in self.collectors:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.broker is not None:
            self.broker.kill()


# ------------------------------------------------------------------------------------------------------ one run


async def run(stack: Stack, seconds: float, settings: Settings | None = None, drain: float = 300.0,
              during=None) -> dict:
    """Connect the fleet, sample for ``seconds`` (``during(fleet)``, a coroutine, runs meanwhile: a scenario's
    outage), drain, check. One dict of figures."""
    import psycopg

    host, port = stack.host_port()
    fleet = Fleet(host, port, stack.accounts, settings)
    await fleet.start()
    meter = Meter(stack).start()
    fleet.producing = True
    began, acked0 = time.monotonic(), fleet.acked_readings
    extra = {}
    if during is not None:
        extra = await during(fleet, stack) or {}
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - began)))
    else:
        await asyncio.sleep(seconds)
    fleet.producing = False
    window = time.monotonic() - began
    acked_in_window = fleet.acked_readings - acked0
    drained = await fleet.drain(drain)
    figures = meter.stop()
    summary = fleet.summary(window)
    await fleet.stop()
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        counts = await asyncio.to_thread(check, conn, fleet)
    drops = stack.broker.log_text().count("Outgoing messages are being dropped") if stack.broker else None
    return {**summary, "readings_per_s": round(acked_in_window / window, 1),
            "drain_s": None if drained is None else round(drained, 2), **counts, "broker_drops": drops, **figures,
            **extra}


def raise_file_limit(gateways: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, gateways + 1000))  # each of the broker and this process holds one per gateway
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < gateways + 100:
        print(f"warning: open files limited to {wanted}; {gateways} gateways may not all connect", file=sys.stderr)


def single(args: argparse.Namespace) -> dict:
    raise_file_limit(args.gateways)
    settings = Settings(sensors=args.sensors, interval=args.interval)
    with tempfile.TemporaryDirectory(prefix="edge-fleet-") as tmp:
        server = None if args.database else PostgresServer(_postgres_bin()).start()
        stack = Stack(Path(tmp), accounts(args.gateways), collectors=args.collectors, writers=args.writers,
                      server=server, broker_url=args.broker, database_url=args.database,
                      run_collectors=not args.no_collector)
        try:
            stack.start()
            return asyncio.run(run(stack, args.seconds, settings, drain=args.drain))
        finally:
            stack.stop()
            if server is not None:
                server.stop()


# --------------------------------------------------------------------------------------------------- scenarios


def baseline(server: PostgresServer, rows: int) -> float:
    """Raw ``COPY`` of ``rows`` readings shaped like the fleet's (40 sensors a gateway, binary, one transaction) into
    a table of the readings' columns: the most this PostgreSQL takes, in readings a second."""
    from datetime import datetime, timezone

    database = server.create_database()
    now = time.time()
    with database.connect() as conn:
        conn.execute("CREATE TABLE raw_readings (gateway_id text, epoch bigint, seq bigint, ts timestamptz, "
                     "sensor text, quantity text, value double precision, unit text, quality text, reason text, "
                     "clock smallint, boot_id text, mono double precision, PRIMARY KEY (gateway_id, epoch, seq))")
        conn.commit()
        began = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY raw_readings FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "int8", "int8", "timestamptz", "text", "text", "float8", "text", "text", "text",
                            "int2", "text", "float8"])
            for i in range(rows):
                gateway, seq = divmod(i, 400)
                copy.write_row((f"fleet-{gateway:05d}", 1, seq + 1, datetime.fromtimestamp(now + i, timezone.utc),
                                f"s{i % 40:02d}", "temperature", 20.0 + i % 50 / 10, "°C", "good", None, 1, None,
                                None))
        conn.commit()
        return rows / (time.perf_counter() - began)


def _outage(stop, start, after: float, down: float):
    """A ``during`` for :func:`run`: after ``after`` seconds ``stop()``, ``down`` seconds later ``start()``; then
    the time until every row taken before the restart is acknowledged, and the worst latency of live rows
    meanwhile."""

    async def during(fleet: Fleet, stack: Stack) -> dict:
        await asyncio.sleep(after)
        await asyncio.to_thread(stop, stack)
        await asyncio.sleep(down)
        await asyncio.to_thread(start, stack)
        back = time.monotonic()
        while (oldest := fleet.oldest()) is not None and oldest < back and time.monotonic() - back < 3600:
            await asyncio.sleep(1.0)
        done = time.monotonic()
        live = [latency for at, latency in fleet.live_latencies if back <= at <= done]
        return {"outage_s": down, "backlog_drained_s": round(done - back, 1),
                "live_ack_max_during_drain_s": round(max(live), 2) if live else None,
                "live_batches_during_drain": len(live)}

    return during


def _broker_down(stack: Stack) -> None:
    stack.broker.stop()  # SIGTERM: sessions and queues saved


def _broker_up(stack: Stack) -> None:
    stack.broker.start()


def _postgres_signal(sig: int):
    def send(stack: Stack) -> None:
        for pid in [stack.postmaster, *_children(stack.postmaster)]:
            os.kill(pid, sig)
    return send


def scenarios(args: argparse.Namespace) -> None:
    """Every scenario of docs/benchmarks.md in one run, each a JSON line, the baseline first."""
    quick = args.quick
    steady_seconds = 30 if quick else 120
    sizes = (1000, 5000, 10000)
    raise_file_limit(max(sizes))
    server = PostgresServer(_postgres_bin()).start()

    def wanted(name: str) -> bool:
        return not args.only or args.only in name

    def emit(name: str, figures: dict) -> None:
        print(json.dumps({"scenario": name, **figures}), flush=True)

    try:
        rows = 400_000
        emit("baseline: raw COPY", {"rows": rows, "readings_per_s": round(baseline(server, rows))})
        for gateways in sizes:
            for collectors in (1, 2):
                name = f"steady {gateways} gateways, {collectors} collector(s)"
                if wanted(name):
                    emit(name, _scenario(server, gateways, collectors, steady_seconds, args))
        storm_gateways, down = (1000, 60) if quick else (5000, 600)
        storm_gateways, down = args.storm_gateways or storm_gateways, args.storm_down or down
        name = f"reconnect storm: {storm_gateways} gateways, broker down {down} s"
        if wanted(name):  # sampling goes on until every backlog is drained, then 30 s more
            emit(name, _scenario(server, storm_gateways, 2, 20 + down + 30, args,
                                 during=_outage(_broker_down, _broker_up, 20, down)))
        slow_gateways = 1000 if quick else 5000
        name = f"slow database: {slow_gateways} gateways, PostgreSQL stopped (SIGSTOP) 30 s"
        if wanted(name):
            emit(name, _scenario(server, slow_gateways, 1, 90, args, during=_outage(
                _postgres_signal(signal.SIGSTOP), _postgres_signal(signal.SIGCONT), 20, 30)))
    finally:
        server.stop()


def _scenario(server: PostgresServer, gateways: int, collectors: int, seconds: float, args: argparse.Namespace,
              during=None) -> dict:
    with tempfile.TemporaryDirectory(prefix="edge-fleet-") as tmp:
        stack = Stack(Path(tmp), accounts(gateways), collectors=collectors, writers=args.writers, server=server)
        try:
            stack.start()
            return asyncio.run(run(stack, seconds, Settings(sensors=args.sensors, interval=args.interval),
                                   drain=args.drain, during=during))
        except Exception as exc:  # one scenario failing says so and the others still run
            return {"gateways": gateways, "failed": f"{type(exc).__name__}: {exc}"}
        finally:
            stack.stop()


# --------------------------------------------------------------------------------------- simulator engines


def engines(clients: int = 500, messages: int = 20) -> None:
    """What one simulated gateway costs in each way of driving many MQTT connections from Python: ``clients``
    connections each publishing ``messages`` real 40-reading batches at QoS 1 and waiting for the PUBACKs, against
    a private anonymous broker. Prints CPU seconds of this process per 1,000 messages and the wall time."""
    import selectors

    import paho.mqtt.client as mqtt

    from edge.contract import protocol
    from fleet_kit import CONNACK, PUBACK, connect_packet, publish_packet, read_packets

    now = time.time()
    payload = protocol.encode_readings("gw", 1, [protocol.Reading(i + 1, now + i, f"s{i:02d}", "temperature",
                                                                  20.0 + i / 10, "°C") for i in range(40)])
    total = clients * messages

    def measure(name: str, body) -> None:
        cpu, wall = time.process_time(), time.monotonic()
        body()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        print(json.dumps({"engine": name, "clients": clients, "messages": total,
                          "cpu_s_per_1000_messages": round(cpu / total * 1000, 4), "wall_s": round(wall, 2),
                          "threads": threading.active_count()}), flush=True)

    def asyncio_engine() -> None:
        async def main() -> None:
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            left = [total]

            class Client(asyncio.Protocol):
                def connection_made(self, transport):
                    self.t, self.buf = transport, bytearray()
                    transport.write(connect_packet(f"a-{id(self)}", "u", "p", 60, "w", b"x", clean=True))

                def data_received(self, data):
                    self.buf += data
                    for kind, _, _ in read_packets(self.buf):
                        if kind == CONNACK:
                            self.t.write(b"".join(publish_packet(f"e/{id(self)}", payload, pid + 1)
                                                  for pid in range(messages)))
                        elif kind == PUBACK:
                            left[0] -= 1
                            if not left[0]:
                                done.set_result(None)

            conns = [await loop.create_connection(Client, broker.host, broker.port) for _ in range(clients)]
            await done
            for transport, _ in conns:
                transport.close()

        asyncio.run(main())

    def paho_clients(prefix: str) -> list:
        out = []
        for i in range(clients):
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-{i}")
            client.max_inflight_messages_set(messages)
            out.append(client)
        return out

    def paho_selector() -> None:
        acked = [0]
        sel = selectors.DefaultSelector()
        clients_ = paho_clients("s")
        for client in clients_:
            client.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
            client.connect(broker.host, broker.port)
            sel.register(client.socket(), selectors.EVENT_READ, client)
        for client in clients_:
            for _ in range(messages):
                client.publish("e/s", payload, qos=1)
        while acked[0] < total:
            for key, _ in sel.select(1.0):
                key.data.loop_read()
            for client in clients_:
                if client.want_write():
                    client.loop_write()
        for client in clients_:
            client.disconnect()

    with tempfile.TemporaryDirectory(prefix="edge-fleet-") as tmp:
        raise_file_limit(clients)
        broker = Broker(Path(tmp) / "broker", log_type="error").start()
        try:
            measure("asyncio + MQTT 3.1.1 on asyncio.Protocol (tests/fleet_kit.py)", asyncio_engine)
            measure("paho, every client in one selector thread (loop_read / loop_write)", paho_selector)
        finally:
            broker.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sensors", type=int, default=40)
    parser.add_argument("--interval", type=float, default=None,
                        help="every gateway's sampling interval (default: each its own, 10 s on average)")
    parser.add_argument("--collectors", type=int, default=1, choices=(1, 2))
    parser.add_argument("--writers", type=int, default=None, help="collector.writers (default: the config's)")
    parser.add_argument("--drain", type=float, default=300.0, help="longest wait for the last acks")
    parser.add_argument("--broker", help="a running broker's mqtt:// URL (its accounts must match fleet_kit's)")
    parser.add_argument("--database", help="a running database's postgresql:// URL")
    parser.add_argument("--no-collector", action="store_true", help="collectors are already running")
    parser.add_argument("--scenarios", action="store_true", help="every scenario, with the baseline")
    parser.add_argument("--quick", action="store_true", help="with --scenarios: short runs (a busy machine)")
    parser.add_argument("--storm-gateways", type=int, help="gateways of the reconnect storm (1,000 quick, 5,000)")
    parser.add_argument("--storm-down", type=float, help="seconds the broker is down in the storm (60 quick, 600)")
    parser.add_argument("--only", help="with --scenarios: only those whose name contains this (e.g. storm)")
    parser.add_argument("--engines", action="store_true", help="what a simulated connection costs, two ways")
    args = parser.parse_args()
    if args.engines:
        engines()
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the cleanup
    if args.scenarios:
        scenarios(args)
        return
    print(json.dumps(single(args)), flush=True)


if __name__ == "__main__":
    main()
