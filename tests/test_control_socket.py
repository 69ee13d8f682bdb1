"""The control socket and `edge actuate` against a real daemon; `edge safe-state` after a kill -9."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import wait_until
from edge.gateway.control_socket import call
from edge.gateway.hardware.mockpins import STATE_DIR_ENV, read_lines

pytestmark = pytest.mark.slow


def edge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def daemon(gateway_config, tmp_path, start_daemon):
    lines = tmp_path / "gpio"
    proc = start_daemon(gateway_config, env={STATE_DIR_ENV: str(lines)})
    wait_until(lambda: (tmp_path / "control.sock").exists(), what="the control socket")
    return proc, tmp_path / "control.sock", lines


def actuators(gateway_config) -> dict:
    out = edge("status", "-c", str(gateway_config), "--json")
    return json.loads(out.stdout)["actuators"]


def test_edge_actuate_switches_and_reports_the_resulting_state(gateway_config, daemon):
    proc, _, lines = daemon
    out = edge("actuate", "-c", str(gateway_config), "pump", "on", "--for", "10m")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("pump: on   manual:cli:") and out.stdout.rstrip().endswith("10m left")
    assert read_lines(lines)["GPIO27"] == "output 1"
    status = actuators(gateway_config)["pump"]
    assert status["state"] == "on" and status["reason"].startswith("manual:cli:") and status["remaining_s"] > 590
    out = edge("actuate", "-c", str(gateway_config), "pump", "auto")
    assert out.returncode == 0 and out.stdout.startswith("pump: off")
    assert read_lines(lines)["GPIO27"] == "output 0"


def test_edge_actuate_reports_a_refusal_and_exits_1(gateway_config, tmp_path, start_daemon):
    config = gateway_config.read_text().replace("    pin: 27\n", "    pin: 27\n    max_on: 15m\n")
    gateway_config.write_text(config)
    start_daemon(gateway_config)
    wait_until(lambda: (tmp_path / "control.sock").exists(), what="the control socket")
    out = edge("actuate", "-c", str(gateway_config), "pump", "on", "--for", "1h")
    assert out.returncode == 1
    assert out.stderr.strip() == "refused: 1h exceeds pump's max_on 15m"


def test_edge_actuate_without_a_daemon_says_so(gateway_config):
    out = edge("actuate", "-c", str(gateway_config), "pump", "on")
    assert out.returncode == 1 and "is `edge run` running?" in out.stderr


def test_the_socket_appears_at_its_path_only_once_it_listens(tmp_path, monkeypatch):
    """A client that finds the socket file is served, never refused: a script may run `edge actuate` as soon as the
    file is there (between bind and listen, a connect is refused with ECONNREFUSED)."""
    import socket

    from edge.gateway.control_socket import ControlServer

    path = tmp_path / "control.sock"
    at_listen: list[bool] = []
    listen = socket.socket.listen
    monkeypatch.setattr(socket.socket, "listen", lambda self, *a: at_listen.append(path.exists()) or listen(self, *a))
    server = ControlServer(path, lambda request, who: {"echo": request["op"]})
    server.start()
    try:
        assert at_listen == [False] and path.is_socket()
        assert not path.with_name("control.sock.new").exists()
        assert oct(path.stat().st_mode & 0o777) == "0o660"
        assert call(path, {"op": "status"})["echo"] == "status"
    finally:
        server.stop()
    assert not path.exists()


@pytest.mark.parametrize("payload, error", [
    (b"this is not json\n", "malformed request: not JSON"),
    (b'["op"]\n', 'malformed request: expected a JSON object with "op"'),
    (b'{"op": "format-disk"}\n', "unknown op 'format-disk'"),
    (b'{"op": "actuate", "actuator": "pump", "action": "on", "for": "forever"}\n', '"for" must be a number'),
    (b'{"op": "actuate", "actuator": "pump", "action": "on", "sudo": true}\n', "unknown field(s) sudo"),
    (b'{"op": "actuate", "actuator": "pump; rm -rf /", "action": "on"}\n', "refused: unknown actuator"),
    (b"{" + b" " * 20000 + b"}\n", "request too large"),
    (b'{"op": "\xff\xfe"}\n', "malformed request: not JSON (UnicodeDecodeError"),
    (b"[" * 8000 + b"]" * 8000 + b"\n", "malformed request: not JSON (RecursionError"),
    (b'{"op": "actuate", "actuator": "pump", "action": "on", "for": 1' + b"0" * 5000 + b"}\n",
     "malformed request: not JSON (ValueError: Exceeds the limit"),
    (b"{}\n", 'malformed request: expected a JSON object with "op"'),
    (b"\n", "malformed request: empty"),
    (b'{"op": "actuate", "actuator": "pump", "action": "on"}', None),  # no newline, then EOF: still a request
    (b'{"op": "actuate", "actuator": "pump", "action": "on", "for": true}\n', '"for" must be a number'),
    (b'{"op": "actuate", "actuator": "\\udc80", "action": "on"}\n', "refused: unknown actuator '\\udc80'"),
])
def test_malformed_requests_get_a_clear_error_and_change_nothing(gateway_config, daemon, payload, error):
    import socket

    _, path, lines = daemon
    before = (read_lines(lines), actuators(gateway_config))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(payload)
        if not payload.endswith(b"\n"):
            sock.shutdown(socket.SHUT_WR)
        answer = json.loads(sock.makefile("rb").readline())
    if error is None:  # the one well-formed request of the list
        assert answer["ok"] is True and answer["result"]["state"] == "on"
        return
    assert answer["ok"] is False and error in answer["error"]
    assert (read_lines(lines), actuators(gateway_config)) == before
    assert call(path, {"op": "status"})["ok"] is True  # the daemon is still serving


def as_user(uid: int, gid: int, request: dict, path) -> dict:
    """Send ``request`` from a forked child running as ``uid`` (no exec, so it needs no access to the venv)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            answer = call(path, request)
        except BaseException as exc:  # report anything to the parent, never return into pytest
            answer = {"child_error": repr(exc)}
        os.write(write_end, json.dumps(answer).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_the_socket_is_not_world_writable_and_refuses_other_users(gateway_config, daemon):
    _, path, lines = daemon
    assert oct(path.stat().st_mode & 0o777) == "0o660"
    nobody = pwd.getpwnam("nobody")
    denied = as_user(nobody.pw_uid, nobody.pw_gid, {"op": "status"}, path)
    assert "Permission denied" in denied["child_error"]  # the file mode keeps others out
    os.chmod(path, 0o666)  # even if someone loosens the file mode, the peer check holds
    for directory in path.parents:  # let nobody reach the socket through pytest's private temp dirs
        if str(directory).startswith("/tmp/"):
            directory.chmod(directory.stat().st_mode | 0o005)
    answer = as_user(nobody.pw_uid, nobody.pw_gid, {"op": "actuate", "actuator": "pump", "action": "on"}, path)
    assert answer == {"ok": False, "error": f"unauthorised: uid {nobody.pw_uid} may not use the control socket"}
    assert read_lines(lines)["GPIO27"] == "output 0"


def test_safe_state_after_kill_9_leaves_every_pin_at_its_safe_level(gateway_config, daemon):
    proc, _, lines = daemon
    gateway_config.write_text(gateway_config.read_text().replace("    pin: 27\n",
                                                                 "    pin: 27\n    active_high: false\n"))
    assert edge("actuate", "-c", str(gateway_config), "fan", "on").returncode == 0
    assert edge("actuate", "-c", str(gateway_config), "pump", "on").returncode == 0
    assert read_lines(lines) == {"GPIO18": "output 1", "GPIO27": "output 1"}
    proc.proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_lines(lines) == {"GPIO18": "output 1", "GPIO27": "output 1"}  # the lines stay driven after a crash

    out = edge("safe-state", "-c", str(gateway_config), env={STATE_DIR_ENV: str(lines)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["fan: off", "pump: off"]
    # driven at their off levels and left driven (the pump's relay board is active-low)
    assert read_lines(lines) == {"GPIO18": "output 0", "GPIO27": "output 1"}


# ------------------------------------------------------------------------------------------ no client ties it up


def daemon_threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_a_client_that_sends_nothing_is_closed_after_the_timeout_with_a_log_line(gateway_config, daemon):
    import socket

    proc, path, _ = daemon
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.settimeout(30)
        silent.connect(str(path))
        began = time.monotonic()
        assert call(path, {"op": "status"})["ok"] is True  # others are served meanwhile
        assert silent.recv(100) == b""  # a clean close, no answer owed
        assert 4 < time.monotonic() - began < 15
    _, err = proc.stop()
    assert "control socket: closed the connection of pid " in err and "no request within 5s" in err


def test_ten_concurrent_edge_actuate_clients_are_all_served(gateway_config, daemon):
    proc, path, _ = daemon
    answers: list = []

    def client(i: int) -> None:
        try:
            answers.append(call(path, {"op": "actuate", "actuator": "fan", "action": "on", "for": 60 + i}))
        except OSError as exc:
            answers.append(exc)

    proc.proc.send_signal(signal.SIGSTOP)  # a busy daemon: nobody is accepted until it runs again
    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(10)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # every client has connected (into the backlog) or failed by now
    finally:
        proc.proc.send_signal(signal.SIGCONT)
    for thread in threads:
        thread.join(30)
    assert [a for a in answers if not isinstance(a, dict)] == []  # no EAGAIN
    assert len(answers) == 10 and all(a["ok"] for a in answers)


def test_a_thousand_idle_connections_make_no_thousand_threads_and_lock_nobody_out(gateway_config, daemon):
    import resource
    import socket

    proc, path, _ = daemon
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    wait_until(lambda: call(path, {"op": "status"})["ok"], what="the daemon to answer")
    before = daemon_threads(proc.proc.pid)
    idle = []
    try:
        while len(idle) < 1000:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            try:
                sock.connect(str(path))
            except BlockingIOError:  # the backlog is full for a moment: the daemon accepts as fast as it can
                sock.close()
                time.sleep(0.01)
                continue
            idle.append(sock)
        time.sleep(0.5)
        assert daemon_threads(proc.proc.pid) <= before + 5
        began = time.monotonic()
        assert call(path, {"op": "status"})["ok"] is True
        assert time.monotonic() - began < 2
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert proc.proc.poll() is None
    _, err = proc.stop()
    assert "idle ones to make room" in err
