"""The local control socket: `edge actuate` and `edge status` talk to the running daemon through it.

A Unix stream socket (mode 0660), one JSON request per line, one JSON answer per line. Only root, the daemon's own
user and members of ``control.socket_group`` are served (checked with SO_PEERCRED, not just the file mode). A
malformed, oversized or unauthorised request gets a clear error and changes nothing.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_REQUEST = 16 * 1024
TIMEOUT = 5.0

Handler = Callable[[dict[str, Any], str], dict[str, Any]]


class RequestError(ValueError):
    """A request the daemon will not act on; the message is sent back as ``error``."""


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
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"malformed request: not JSON ({exc})") from None
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise RequestError('malformed request: expected a JSON object with "op"')
    return request


class ControlServer:
    """Serves requests on a Unix socket in a background thread; ``handle(request, who)`` does the work."""

    def __init__(self, path: str | os.PathLike[str], handle: Handler, group: str | None = None):
        self.path = Path(path)
        self.handle = handle
        self.group_id = _allowed_gid(group)
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_socket():
            self.path.unlink()  # left by a daemon that did not stop cleanly (one daemon per buffer is enforced)
        outer = self

        class _Handler(socketserver.StreamRequestHandler):
            timeout = TIMEOUT

            def handle(self) -> None:
                outer._serve(self)

        old_umask = os.umask(0o117)  # the socket is created 0660
        try:
            self._server = socketserver.ThreadingUnixStreamServer(str(self.path), _Handler)
        finally:
            os.umask(old_umask)
        self._server.daemon_threads = True
        if self.group_id is not None:
            os.chown(self.path, -1, self.group_id)
        self._thread = threading.Thread(target=self._server.serve_forever, name="control-socket", daemon=True)
        self._thread.start()
        log.info("control socket listening at %s", self.path)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def _serve(self, conn: socketserver.StreamRequestHandler) -> None:
        pid, uid, gid = peer_credentials(conn.connection)
        try:
            if not authorised(uid, gid, self.group_id):
                raise RequestError(f"unauthorised: uid {uid} may not use the control socket")
            line = conn.rfile.readline(MAX_REQUEST + 1)
            if len(line) > MAX_REQUEST:
                raise RequestError(f"request too large (limit {MAX_REQUEST} bytes)")
            request = parse_request(line)
            who = _user_name(uid)
            answer = {"ok": True, **self.handle(request, who)}
        except RequestError as exc:
            log.warning("control socket: refused a request from pid %d uid %d: %s", pid, uid, exc)
            answer = {"ok": False, "error": str(exc)}
        except (OSError, TimeoutError) as exc:
            log.warning("control socket: connection from pid %d failed: %s", pid, exc)
            return
        try:
            conn.wfile.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
        except OSError:
            pass


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def call(path: str | os.PathLike[str], request: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send one request to the daemon and return its answer. OSError if the daemon cannot be reached."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
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
