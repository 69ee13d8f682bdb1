"""The environment file of the gateway's unit (``EnvironmentFile=-/etc/edge/gateway.env``), read as systemd reads it,
so that every ``edge`` command sees the config's ``${VAR}``s as the daemon does."""

from __future__ import annotations

import os
from pathlib import Path

#: The unit's optional EnvironmentFile=: what the config's ${VAR}s see when systemd runs the daemon.
ENV_FILE = Path("/etc/edge/gateway.env")


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``KEY=VALUE`` lines as systemd's EnvironmentFile= reads them (comments, blank lines, optional quotes)."""
    values = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values
