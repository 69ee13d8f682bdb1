"""The greenhouse page's configuration (the ``web:`` section), beside the code it configures.

Off unless ``listen`` is set. The login secret is a file (``pin_file`` or ``password_file``) holding either the
secret itself or its hash (``edge web --set-secret`` writes a scrypt hash); there is no default password, and
``edge check`` refuses ``listen`` without one. ``create_pin`` is for the simulated demo only: ``edge web`` then
writes a random PIN into ``pin_file`` when the file does not exist yet, and prints it once.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from edge.config import StrictModel
from edge.durations import Duration


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8090`` for IPv6) -> ``(host, port)``; ValueError naming what is wrong."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not host:port (for example 0.0.0.0:8090, or 127.0.0.1:8090 for this "
                         "machine alone)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} in {value!r} must be a number from 1 to 65535 (0: any free port, which "
                         "edge web prints)")
    return host, int(port)


class WebConfig(StrictModel):
    listen: str | None = Field(default=None, description="host:port the page is served on (0.0.0.0:8090 for the "
                               "greenhouse's LAN); null: no page")
    pin_file: Path | None = Field(default=None, description="file holding the PIN, or its hash (edge web "
                                  "--set-secret); mode 0640, owner root, group edge")
    password_file: Path | None = Field(default=None, description="file holding a password, or its hash (instead "
                                       "of pin_file)")
    create_pin: bool = Field(default=False, description="the simulated demo only: a missing pin_file is created "
                             "with a random 6-digit PIN by edge web, which prints it once")
    attempts: int = Field(default=5, ge=1, le=100, description="wrong logins allowed per client address within "
                          "attempts_window; past it the login answers 429 until the window has passed")
    attempts_window: Duration = 300.0
    session_ttl: Duration = Field(default=12 * 3600.0, description="how long a login lasts")
    stale_after: float = Field(default=3.0, ge=1.0, description="a sensor's latest value is shown as «بدون داده» "
                               "once older than this many of its sampling intervals")

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_listen(value)
        return value.strip()

    @model_validator(mode="after")
    def _one_secret(self) -> "WebConfig":
        if self.pin_file is not None and self.password_file is not None:
            raise ValueError("give pin_file or password_file, not both")
        if self.listen and self.pin_file is None and self.password_file is None:
            raise ValueError("web.listen needs web.pin_file or web.password_file: the page has no default "
                             "password (edge web --set-secret writes one)")
        if self.create_pin and self.pin_file is None:
            raise ValueError("create_pin needs pin_file (where the PIN is written)")
        return self

    @property
    def secret_file(self) -> Path | None:
        return self.pin_file if self.pin_file is not None else self.password_file

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen else None

    def files_created(self) -> frozenset[str]:
        """``*_file`` settings the program creates itself when missing (``edge check`` does not require them)."""
        return frozenset({"pin_file"}) if self.create_pin else frozenset()
