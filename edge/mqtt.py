"""The one place an MQTT client is built: the gateway's uplink, ``edge doctor``'s login check and the collector.

Each caller says *where and who* (:class:`BrokerLogin`: the URL, the account, the TLS files) and *which session*
(:class:`Session`: client id, keepalive, clean start, session expiry, receive maximum, manual acks); this module turns
both into a paho client and the arguments of its ``connect``. TLS (``mqtts://``) takes the CA file and, for brokers
that require one, a client certificate and key, on both sides alike.

Secrets stay out of sight: a login holds the *path* of the password file, never the password; the password is read
when the client is built and handed to paho only. Neither :class:`BrokerLogin`'s repr nor anything this module logs
holds it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerLogin:
    """Where the broker is and who logs in. ``username`` None logs in without credentials."""

    url: str
    version: Literal["mqttv5", "mqttv311"] = "mqttv5"
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if urlsplit(self.url).scheme not in DEFAULT_PORTS:
            raise ValueError(f"broker url {self.url!r} must start with mqtt:// or mqtts://")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("a client key (key_file) needs its certificate (cert_file)")

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or DEFAULT_PORTS[parts.scheme]

    @property
    def where(self) -> str:
        """``host:port``, for messages (the URL may carry nothing secret, but this never does)."""
        return f"{self.host}:{self.port}"

    def password(self) -> str | None:
        """The password, read from its file now (OSError if it cannot be read); None without a file."""
        return Path(self.password_file).read_text().strip() if self.password_file else None


@dataclass(frozen=True)
class Session:
    """The MQTT session a client asks for. ``session_expiry`` and ``receive_maximum`` are MQTT 5 properties (None:
    the broker's default); with MQTT 3.1.1 a session that is not a clean start is kept by the broker."""

    client_id: str
    keepalive: float = 30.0
    clean_start: bool = False
    session_expiry: int | None = None
    receive_maximum: int | None = None
    manual_ack: bool = False


def build_client(login: BrokerLogin, session: Session, logger: logging.Logger | None = None) -> Any:
    """A paho client (callback API 2) for ``login`` and ``session``, credentials and TLS applied, not connected.
    Raises OSError when the password file cannot be read, ValueError for a TLS file paho refuses."""
    import paho.mqtt.client as paho

    v5 = login.version == "mqttv5"
    extra = {} if v5 else {"clean_session": session.clean_start}
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=session.client_id,
                         protocol=paho.MQTTv5 if v5 else paho.MQTTv311, manual_ack=session.manual_ack, **extra)
    if logger is not None:
        client.enable_logger(logger)
    if login.username is not None:
        client.username_pw_set(login.username, login.password())
    if login.tls:
        client.tls_set(ca_certs=str(login.ca_file) if login.ca_file else None,
                       certfile=str(login.cert_file) if login.cert_file else None,
                       keyfile=str(login.key_file) if login.key_file else None)
    return client


def connect_args(login: BrokerLogin, session: Session) -> dict[str, Any]:
    """The keyword arguments of ``client.connect()`` / ``connect_async()`` for ``session`` (host and port aside)."""
    args: dict[str, Any] = {"keepalive": int(session.keepalive)}
    if login.version != "mqttv5":
        return args  # 3.1.1: the clean session flag was given to the client
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    if session.session_expiry is not None:
        props.SessionExpiryInterval = int(session.session_expiry)
    if session.receive_maximum is not None:
        props.ReceiveMaximum = int(session.receive_maximum)
    args.update(clean_start=session.clean_start, properties=props)
    return args


def error_string(rc: int) -> str:
    """paho's words for a return code."""
    import paho.mqtt.client as paho

    return paho.error_string(rc)
