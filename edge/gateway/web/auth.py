"""The page's login: the secret file, sessions, CSRF tokens and the attempts limit. Pure but for the file read, and
on an injected clock (``now`` arguments), so the tests need no sleeps.

The secret file holds one line: the PIN or password itself, or its hash as ``edge web --set-secret`` writes it
(``scrypt$N$r$p$salt$hash``, base64 without padding; ``pbkdf2_sha256$iterations$salt$hash`` is read too). Either
way the comparison is constant-time (:func:`hmac.compare_digest` over digests of equal length). The file is read at
each login, so a technician changes the PIN without restarting anything; its content is never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgeError

SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
MAX_SECRET = 1024


class SecretError(EdgeError):
    """The secret file cannot be used: missing, unreadable, empty or malformed (the message names the file only)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """The line to store instead of the secret: ``scrypt$16384$8$1$<salt>$<hash>``."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, maxmem=64 * 1024 * 1024, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def verify(stored: str, given: str) -> bool:
    """Whether ``given`` is the secret ``stored`` holds (a hash, or the secret itself). Constant-time in the secret.
    ValueError when ``stored`` looks like a hash but is malformed."""
    given_bytes = given.encode()[:MAX_SECRET]
    if stored.startswith("scrypt$"):
        parts = stored.split("$")
        if len(parts) != 6:
            raise ValueError("a scrypt line has 6 fields: scrypt$N$r$p$salt$hash")
        n, r, p = (int(x) for x in parts[1:4])
        salt, expected = _unb64(parts[4]), _unb64(parts[5])
        digest = hashlib.scrypt(given_bytes, salt=salt, n=n, r=r, p=p, dklen=len(expected),
                                maxmem=256 * 1024 * 1024)
        return hmac.compare_digest(digest, expected)
    if stored.startswith("pbkdf2_sha256$"):
        parts = stored.split("$")
        if len(parts) != 4:
            raise ValueError("a pbkdf2_sha256 line has 4 fields: pbkdf2_sha256$iterations$salt$hash")
        salt, expected = _unb64(parts[2]), _unb64(parts[3])
        digest = hashlib.pbkdf2_hmac("sha256", given_bytes, salt, int(parts[1]), dklen=len(expected))
        return hmac.compare_digest(digest, expected)
    return hmac.compare_digest(hashlib.sha256(given_bytes).digest(), hashlib.sha256(stored.encode()).digest())


def read_secret(path: Path) -> str:
    """The stored line of the secret file. SecretError names the file and what is wrong, never its content."""
    try:
        text = path.read_text(encoding="utf-8")[:MAX_SECRET * 4]
    except FileNotFoundError:
        raise SecretError(f"{path} does not exist: write the PIN with  edge web --set-secret") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc.__class__.__name__}") \
            from None
    line = text.strip()
    if not line:
        raise SecretError(f"{path} is empty: write the PIN with  edge web --set-secret")
    return line


def write_secret(path: Path, line: str) -> None:
    """Write the secret file (mode 0640) in one rename, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(line + "\n")
    os.replace(temporary, path)


def create_pin(path: Path) -> str | None:
    """The demo's PIN: a random 6-digit one written to ``path`` when it does not exist yet; None when it does."""
    if path.exists():
        return None
    pin = f"{secrets.randbelow(10 ** 6):06d}"
    write_secret(path, pin)
    return pin


# ------------------------------------------------------------------------------------------------- attempts


class Attempts:
    """Wrong logins per client address: at most ``limit`` within ``window`` seconds; then the address waits until
    the oldest of them leaves the window. Bounded memory: at most ``max_clients`` addresses are remembered (the
    oldest forgotten first)."""

    def __init__(self, limit: int, window: float, max_clients: int = 4096):
        self.limit, self.window, self.max_clients = limit, window, max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def wait(self, client: str, now: float) -> float:
        """Seconds ``client`` must wait before trying again (0: it may try now)."""
        with self._lock:
            failures = self._recent(client, now)
            if len(failures) < self.limit:
                return 0.0
            return max(0.0, failures[0] + self.window - now)

    def failed(self, client: str, now: float) -> None:
        with self._lock:
            failures = self._recent(client, now)
            failures.append(now)
            self._failures.pop(client, None)
            self._failures[client] = failures  # most recent last: the first is the one to forget
            while len(self._failures) > self.max_clients:
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


# ------------------------------------------------------------------------------------------------- sessions


@dataclass
class Session:
    token: str
    csrf: str
    expires: float


class Sessions:
    """Logged-in browsers, in memory (a restart of ``edge web`` logs everyone out). The cookie carries the random
    token; each session has its own CSRF token, which every form posts back."""

    def __init__(self, ttl: float, max_sessions: int = 256):
        self.ttl, self.max_sessions = ttl, max_sessions
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, now: float) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(24), now + self.ttl)
        with self._lock:
            self._sessions[session.token] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.pop(next(iter(self._sessions)))
        return session

    def get(self, token: str | None, now: float) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is not None and session.expires <= now:
                del self._sessions[token]
                return None
            return session

    def end(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)


def same_token(given: str | None, expected: str) -> bool:
    """A posted CSRF token against the expected one, constant-time."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
