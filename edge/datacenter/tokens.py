"""Agronomist tokens for the history API: random, shown once, stored as a SHA-256 hash, scoped to gateway globs.

A token is ``edge_`` followed by 32 random bytes (``secrets.token_urlsafe``); the prefix lets secret scanners and
people recognise one. The database keeps only ``sha256(token)``, so a leaked table grants nothing.

**Why SHA-256 and not bcrypt or argon2.** A slow hash protects *low-entropy* secrets (passwords a person chose)
against guessing once the hashes leak: it makes each guess expensive. A token here carries 256 random bits; no
number of guesses finds one from its hash, with a fast hash or a slow one. A fast, unsalted hash also lets the API
find the token with one index lookup per request, where a salted slow hash would have to be tried against every
stored token.

A token sees the gateways whose id matches one of its patterns (``fnmatch`` globs: ``gh-lorestan-*``,
``gh-0[1-5]``, ``gh-khorramabad-042``) and nothing else: the API answers 404 for any other gateway, exactly as for
one that does not exist.

A token has a scope: ``read`` (the default, and what every token made before scopes existed is) reads the history
and the console; ``control`` may also send commands to the gateways it sees (``edge/datacenter/commands.py``). A
read-only token asking for a command gets a 403.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase

import psycopg

from edge.errors import EdgeError

TOKEN_PREFIX = "edge_"
#: Longer than any token we issue; a longer Authorization value is refused without a database lookup.
MAX_TOKEN_LENGTH = 128

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]!-]{1,128}$")
SCOPES = ("read", "control")


class TokenError(EdgeError, ValueError):
    """A token name or pattern is invalid, or the token named does not exist."""


@dataclass(frozen=True)
class Token:
    """What the database knows about a token (never the token itself)."""

    name: str
    gateways: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    scope: str = "read"

    @property
    def controls(self) -> bool:
        """True when the token may send commands (scope ``control``) to the gateways it sees."""
        return self.scope == "control"

    def sees(self, gateway_id: str) -> bool:
        """True when the gateway id matches one of the token's patterns."""
        return any(fnmatchcase(gateway_id, pattern) for pattern in self.gateways)

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        now = now or datetime.now(timezone.utc)
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def digest(secret: str) -> str:
    """The hex SHA-256 under which a token is stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise TokenError(f"invalid token name {name!r}: use 1-64 letters, digits, '.', '@', '-' or '_', "
                         "starting with a letter or digit")
    return name


def check_patterns(patterns: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Gateway id globs: letters, digits, ``- _ .`` and the glob characters ``* ? [ ] !``."""
    if not patterns:
        raise TokenError("a token needs at least one gateway pattern (e.g. --gateways 'gh-lorestan-*')")
    for pattern in patterns:
        if not _PATTERN.match(pattern):
            raise TokenError(f"invalid gateway pattern {pattern!r}: use gateway id characters and the globs "
                             "* ? [...] (e.g. gh-lorestan-*)")
    return tuple(dict.fromkeys(patterns))


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise TokenError(f"invalid scope {scope!r}: one of {', '.join(SCOPES)} (read: history and console only; "
                         "control: also commands to the gateways it sees)")
    return scope


_COLUMNS = "name, gateways, created_at, expires_at, revoked_at, scope"


def _token(row) -> Token:
    name, gateways, created_at, expires_at, revoked_at, scope = row
    return Token(name, tuple(gateways), created_at, expires_at, revoked_at, scope)


def create(conn: psycopg.Connection, name: str, patterns: list[str] | tuple[str, ...],
           expires_in: float | None = None, scope: str = "read") -> str:
    """Store a new token and return it: the only time it is ever available in clear."""
    check_name(name)
    check_scope(scope)
    patterns = check_patterns(patterns)
    secret = new_secret()
    expires_at = datetime.now(timezone.utc) + timedelta(seconds=expires_in) if expires_in else None
    try:
        with conn.transaction():
            conn.execute("INSERT INTO api_tokens (name, token_hash, gateways, expires_at, scope) "
                         "VALUES (%s, %s, %s, %s, %s)", (name, digest(secret), list(patterns), expires_at, scope))
    except psycopg.errors.UniqueViolation:
        raise TokenError(f"an active token named {name!r} exists: revoke it first or choose another name") from None
    return secret


def list_tokens(conn: psycopg.Connection) -> list[Token]:
    """Every token, active or not, oldest first."""
    return [_token(row) for row in conn.execute(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY created_at, id")]


def revoke(conn: psycopg.Connection, name: str) -> Token:
    """Revoke the active token of that name; it is kept (revoked) so that list shows it and the API says why."""
    with conn.transaction():
        row = conn.execute(f"UPDATE api_tokens SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL "
                           f"RETURNING {_COLUMNS}", (name,)).fetchone()
    if row is None:
        raise TokenError(f"no active token named {name!r} (edge dc token list shows them)")
    return _token(row)


def lookup(conn: psycopg.Connection, secret: str) -> Token | None:
    """The token a request presents, whatever its state; None for an unknown one."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > MAX_TOKEN_LENGTH:
        return None
    row = conn.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = %s", (digest(secret),)).fetchone()
    return _token(row) if row else None
