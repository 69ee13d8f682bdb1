"""The local control socket: `edge actuate` and `edge alerts ack` talk to the running daemon through it.

A Unix stream socket (mode 0660), one JSON object per line in, one JSON answer per line out. This module frames,
authorises and bounds requests; what a request means is ``edge.gateway.control.commands``' business (the handler).
Only root, the daemon's own user and members of ``control.socket_group`` are served (checked with SO_PEERCRED, not
just the file mode). A malformed, oversized or unauthorised request gets a clear error (``{"ok": false, "error":
...}``, the refusal's ``answer``) and changes nothing; the request is always read before the answer is written, so
a client is never cut off in mid-send.

No client can tie the daemon up: one thread waits on every connection (``selectors``) and a few workers handle
complete requests. A client has ``TIMEOUT`` seconds to send its line, then it is closed with a log line; at most
``MAX_CONNECTIONS`` are open at once (past that the oldest idle one is closed to make room, so a flood of idle
connections costs file descriptors, not threads, and never locks out a real request); the listen backlog holds
``BACKLOG`` clients waiting to be accepted.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.gateway.control.commands import BadRequest, CommandError, Unauthorised

log = logging.getLogger(__name__)

MAX_REQUEST = 16 * 1024
TIMEOUT = 5.0
MAX_CONNECTIONS = 64
BACKLOG = 128
UNIX_PATH_MAX = 108  # a socket path's bytes on Linux, its terminating NUL included
WORKERS = 4

#: ``handle(request, user)``: a decoded JSON object and the sender's account name -> the answer's fields; raises
#: CommandError to refuse.
Handler = Callable[[dict[str, Any], str], dict[str, Any]]


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", data)


def _allowed_gid(group: str | None) -> int | None:
    if group is None:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        log.warning("control.socket_group %r does not exist; only root and the daemon's user are served", group)
        return None


def authorised(uid: int, gid: int, group_id: int | None) -> bool:
    if uid in (0, os.getuid()):
        return True
    if group_id is None:
        return False
    if gid == group_id:
        return True
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return False
    return group_id in os.getgrouplist(name, gid)


def parse_request(line: bytes) -> dict[str, Any]:
    """One line as a JSON object (its fields are the handler's to check)."""
    if not line.strip():
        raise BadRequest("malformed request: empty")
    try:
        request = json.loads(line)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep, a number too long
        raise BadRequest(f"malformed request: not JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(request, dict):
        raise BadRequest('malformed request: expected a JSON object with "op"')
    return request


@dataclass
class _Client:
    """One open connection: who is at the other end, and what it has sent so far."""

    sock: socket.socket
    pid: int
    uid: int
    gid: int
    deadline: float
    data: bytearray = field(default_factory=bytearray)


class ControlServer:
    """Serves requests on a Unix socket in background threads; ``handle(request, who)`` does the work."""

    def __init__(self, path: str | os.PathLike[str], handle: Handler, group: str | None = None):
        self.path = Path(path)
        self.handle = handle
        self.group_id = _allowed_gid(group)
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._clients: dict[int, _Client] = {}  # by fd: connections still sending their request
        self._busy = 0  # requests being handled by the workers
        self._lock = threading.Lock()
        self._requests: queue.Queue[_Client | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._evicted = 0
        self._next_eviction_log = 0.0

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_socket():
            self.path.unlink()  # left by a daemon that did not stop cleanly (one daemon per buffer is enforced)
        # The socket appears at its path only once it listens, with its group set: a client that finds the file (a
        # script running `edge actuate` right after the start) is never refused. It is made under a name of its own
        # and renamed into place; a path too long for that name is bound where it is.
        staged = self.path.with_name(self.path.name + ".new")
        if len(os.fsencode(staged)) >= UNIX_PATH_MAX:
            staged = self.path
        if staged.is_socket():
            staged.unlink()  # left by a start that did not finish
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)  # the socket is created 0660
        try:
            listener.bind(str(staged))
        finally:
            os.umask(old_umask)
        listener.listen(BACKLOG)
        listener.setblocking(False)
        if self.group_id is not None:
            os.chown(staged, -1, self.group_id)
        if staged != self.path:
            os.rename(staged, self.path)
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._threads = [threading.Thread(target=self._loop, name="control-socket", daemon=True)]
        self._threads += [threading.Thread(target=self._work, name=f"control-worker-{i}", daemon=True)
                          for i in range(WORKERS)]
        for thread in self._threads:
            thread.start()
        log.info("control socket listening at %s", self.path)

    def stop(self) -> None:
        if self._listener is not None:
            self._stopping.set()
            self._wake_w.send(b"x")
            for _ in range(WORKERS):
                self._requests.put(None)
            for thread in self._threads:
                thread.join(2.0)  # a worker stuck in a handler is a daemon thread: it does not hold the exit
            for client in list(self._clients.values()):
                self._close(client)
            self._selector.close()
            for sock in (self._listener, self._wake_r, self._wake_w):
                sock.close()
            self._listener = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ the connection thread: accept and read

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                for key, _ in self._selector.select(timeout=0.5):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._wake_r.recv(64)
                    else:
                        self._receive(key.data)
                self._expire(time.monotonic())
            except Exception:  # never the end of the socket: log and go on
                log.exception("control socket: unexpected error; carrying on")
                self._stopping.wait(0.1)

    def _accept(self) -> None:
        for _ in range(BACKLOG):  # everyone waiting, in one go
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of file descriptors: leave the rest in the backlog for a moment
                log.warning("control socket: cannot accept a connection: %s", exc)
                self._stopping.wait(0.1)
                return
            sock.setblocking(False)
            try:
                pid, uid, gid = peer_credentials(sock)
            except OSError:
                sock.close()
                continue
            with self._lock:
                full = len(self._clients) + self._busy >= MAX_CONNECTIONS
            if full and not self._evict_oldest():
                self._refuse_busy(sock, pid)
                continue
            client = _Client(sock, pid, uid, gid, time.monotonic() + TIMEOUT)
            self._clients[sock.fileno()] = client
            self._selector.register(sock, selectors.EVENT_READ, client)

    def _receive(self, client: _Client) -> None:
        try:
            chunk = client.sock.recv(MAX_REQUEST + 1 - len(client.data))
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("control socket: connection from pid %d failed: %s", client.pid, exc)
            self._drop(client)
            return
        if not chunk and not client.data:
            log.info("control socket: pid %d uid %d closed the connection without a request", client.pid, client.uid)
            self._drop(client)
            return
        client.data += chunk
        if not chunk or b"\n" in client.data or len(client.data) > MAX_REQUEST:
            self._selector.unregister(client.sock)
            del self._clients[client.sock.fileno()]
            with self._lock:
                self._busy += 1
            self._requests.put(client)

    def _expire(self, now: float) -> None:
        late = [c for c in self._clients.values() if c.deadline <= now]
        for client in late:
            self._drop(client)
        if len(late) == 1:
            log.warning("control socket: closed the connection of pid %d uid %d: no request within %gs",
                        late[0].pid, late[0].uid, TIMEOUT)
        elif late:
            log.warning("control socket: closed %d connections that sent no request within %gs (pids %s)",
                        len(late), TIMEOUT, ", ".join(str(p) for p in sorted({c.pid for c in late})[:10]))

    def _evict_oldest(self) -> bool:
        """Close the oldest connection still waiting for its request, to make room for a new one."""
        if not self._clients:
            return False
        self._drop(min(self._clients.values(), key=lambda c: c.deadline))
        self._evicted += 1
        now = time.monotonic()
        if now >= self._next_eviction_log:
            log.warning("control socket: %d connections open at once (limit %d): closed %d idle ones to make room",
                        MAX_CONNECTIONS, MAX_CONNECTIONS, self._evicted)
            self._evicted, self._next_eviction_log = 0, now + 10.0
        return True

    @staticmethod
    def _refuse_busy(sock: socket.socket, pid: int) -> None:
        log.warning("control socket: refused pid %d: %d requests in progress", pid, MAX_CONNECTIONS)
        try:
            sock.send(b'{"ok": false, "error": "busy: too many requests in progress, try again"}\n')
        except OSError:
            pass
        sock.close()

    def _drop(self, client: _Client) -> None:
        try:
            self._selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        self._clients.pop(client.sock.fileno(), None)
        self._close(client)

    @staticmethod
    def _close(client: _Client) -> None:
        try:
            client.sock.close()
        except OSError:
            pass

    # ------------------------------------------------------------------------- the workers: one request each

    def _work(self) -> None:
        while True:
            client = self._requests.get()
            if client is None:
                return
            try:
                self._serve(client)
            finally:
                self._close(client)
                with self._lock:
                    self._busy -= 1

    def _serve(self, client: _Client) -> None:
        """Answer one complete request (authorisation first, but only once the request has been read)."""
        pid, uid = client.pid, client.uid
        line = bytes(client.data).split(b"\n", 1)[0]
        try:
            if not authorised(uid, client.gid, self.group_id):
                raise Unauthorised(f"unauthorised: uid {uid} may not use the control socket")
            if len(line) > MAX_REQUEST:
                raise BadRequest(f"request too large (limit {MAX_REQUEST} bytes)")
            request = parse_request(line)
            answer = {"ok": True, **self.handle(request, _user_name(uid))}
        except CommandError as exc:
            log.warning("control socket: refused a request from pid %d uid %d: %s", pid, uid, exc.answer)
            answer = {"ok": False, "error": exc.answer}
        except Exception as exc:  # a bug, not the client's fault: it still gets an answer
            log.exception("control socket: a request from pid %d uid %d failed", pid, uid)
            answer = {"ok": False, "error": f"internal error ({type(exc).__name__}); see the daemon's log"}
        try:
            client.sock.settimeout(TIMEOUT)
            client.sock.sendall(json.dumps(answer, ensure_ascii=True).encode() + b"\n")
        except OSError as exc:
            log.warning("control socket: could not answer pid %d: %s", pid, exc)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def call(path: str | os.PathLike[str], request: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send one request to the daemon and return its answer. OSError if the daemon cannot be reached."""
    with _connect(path, timeout) as sock:
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise OSError("the daemon closed the connection without answering")
    return json.loads(data)


def _connect(path: str | os.PathLike[str], timeout: float) -> socket.socket:
    """A connected socket. A full listen backlog (EAGAIN on a Unix socket) is retried until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
        except BaseException:
            sock.close()
            raise
