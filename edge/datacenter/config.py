"""The data-center config (``config/datacenter.example.yaml``): broker, database, collector tuning, logging.

Loaded like a gateway config (``${VAR}`` substitution, ``FILE:LINE: key: message`` errors). Secrets never sit in the
file: the broker password comes from a file, the database password from the URL in the environment or ``~/.pgpass``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge.config import StrictModel, load_model
from edge.durations import Duration


class BrokerConfig(StrictModel):
    url: str = Field(description="mqtt://host:1883 or mqtts://host:8883")
    username: str | None = Field(default=None, description="broker account of this instance (config/mosquitto/acl: "
                                 "collector, collector-2, ...; one per running collector)")
    password_file: Path | None = Field(default=None, description="file holding the broker password (not inline)")
    ca_file: Path | None = Field(default=None, description="CA certificate for mqtts:// (default: system CAs)")
    cert_file: Path | None = Field(default=None, description="client certificate, for brokers that require one")
    key_file: Path | None = Field(default=None, description="client certificate's private key (with cert_file)")
    client_id: str | None = Field(default=None, description="stable per collector instance; default "
                                  "edge-collector-<hostname>; two running collectors must differ (a broker that "
                                  "binds ids to accounts uses the account name instead)")
    share_group: str = Field(default="collectors", description="collectors in one group split the stream")
    session_expiry: Duration = Field(default=3600.0, description="how long the broker keeps our queue while away")
    receive_maximum: int = Field(default=1000, ge=1, le=65535, description="unacknowledged messages in flight to us")
    keepalive: Duration = 30.0
    reconnect_min: Duration = 1.0
    reconnect_max: Duration = 60.0

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        from edge.contract.protocol import check_broker_url

        return check_broker_url(value)

    @model_validator(mode="after")
    def _key_with_certificate(self) -> BrokerConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate it belongs to)")
        return self

    @field_validator("share_group")
    @classmethod
    def _valid_group(cls, value: str) -> str:
        if not value or any(c in value for c in "/+#"):
            raise ValueError("a share group name must be non-empty and contain no /, + or #")
        return value


_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class NatsConfig(StrictModel):
    """The NATS JetStream cluster the collectors read from (``source: nats``; docs/datacenter.md, config/nats/)."""

    servers: list[str] = Field(min_length=1, description="nats://host:4222 (or tls://) of every node; the client "
                               "connects to one and moves to another when it dies")
    username: str | None = Field(default=None, description="this collector's account (config/nats/: collector, "
                                 "collector-2, ...)")
    password_file: Path | None = Field(default=None, description="file holding the account's password (not inline)")
    credentials_file: Path | None = Field(default=None, description="a NATS .creds file (JWT and seed), instead "
                                          "of username and password_file")
    ca_file: Path | None = Field(default=None, description="CA certificate for tls:// servers (default: system CAs)")
    stream: str = Field(default="GREENHOUSE_UP", description="the replicated stream of the uplink subjects (created "
                        "when missing)")
    consumer: str = Field(default="collectors", description="the durable pull consumer every collector shares: "
                          "they split the stream")
    replicas: int = Field(default=3, ge=1, le=5, description="copies of the stream (3 on a three-node cluster; 1 on "
                          "a single node); used when the stream is created")
    max_age: Duration = Field(default=7 * 86400.0, gt=0, description="an uplink message not collected by then is "
                              "dropped from the stream (the gateway still holds it and sends it again)")
    ack_wait: Duration = Field(default=30.0, gt=0, description="a message taken by a collector that died is given "
                               "to another after this long; used when the consumer is created")
    max_pending: int = Field(default=1000, ge=1, description="messages this collector holds at once, taken and not "
                             "yet settled")
    connect_timeout: Duration = 5.0
    reconnect_wait: Duration = Field(default=1.0, description="wait between attempts to reach a node")

    @field_validator("servers")
    @classmethod
    def _valid_servers(cls, value: list[str]) -> list[str]:
        out = []
        for server in value:
            parts = urlsplit(server.strip())
            if parts.scheme not in ("nats", "tls") or not parts.hostname:
                raise ValueError(f"{server!r}: a NATS server is nats://host:port or tls://host:port")
            if parts.username or parts.password:
                raise ValueError(f"{parts.scheme}://{parts.hostname}...: no credentials in a server URL (use "
                                 "username and password_file, or credentials_file)")
            out.append(server.strip())
        return out

    @field_validator("stream", "consumer")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r}: use 1-64 letters, digits, '-' or '_'")
        return value

    @model_validator(mode="after")
    def _one_login(self) -> NatsConfig:
        if self.credentials_file is not None and (self.username is not None or self.password_file is not None):
            raise ValueError("credentials_file replaces username and password_file: give one or the other")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs username (the account it is the password of)")
        return self


class DatabaseConfig(StrictModel):
    url: str = Field(description="postgresql://user@host:5432/dbname (a password here comes from the environment)")
    retry_min: Duration = Field(default=0.5, description="first wait after a database error")
    retry_max: Duration = Field(default=30.0, description="longest wait between retries")
    round_timeout: Duration = Field(default=60.0, gt=0, description="a round's writing and commit at most; past it the "
                                    "connection is abandoned and the round retried (a database machine that froze, "
                                    "or a primary replaced by its standby, never answers)")

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        if urlsplit(value.strip()).scheme not in ("postgresql", "postgres"):
            raise ValueError("the database url must start with postgresql://")
        return value.strip()


class CollectorConfig(StrictModel):
    batch_messages: int = Field(default=50, ge=1, description="MQTT messages written in one transaction at most")
    batch_wait: Duration = Field(default=0.1, description="how long to gather messages before writing")
    round_rows: int = Field(default=20_000, ge=1, description="rows (readings, events) written in one transaction "
                            "at most (one message more may cross it): bounds how long another gateway waits")
    gateway_rate: int = Field(default=20_000, ge=1, description="rows a second one gateway may send before its "
                              "messages wait until every other gateway's are written (slowed, never dropped)")
    writers: int = Field(default=4, ge=1, le=64, description="writers, each with its own database connection, "
                         "working on disjoint gateways at once (a gateway's messages stay with one writer, in order)")


class ApiConfig(StrictModel):
    """Bounds of the history API (``edge dc api``), so that no request can tie it up."""

    max_range: Duration = Field(default=3660 * 86400.0, gt=0, description="longest from..to of one request "
                                "(longer: a 400 problem naming this limit)")
    max_rows: int = Field(default=10_000_000, ge=1, description="rows one response carries at most: a longer "
                          "export is cut there and resumed by the client; coverage planned larger is a 413")
    max_duration: Duration = Field(default=600.0, gt=0, description="seconds of database work one response may "
                                   "take; a longer export is cut there and resumed by the client")
    statement_timeout: Duration = Field(default=30.0, gt=0, description="one database query at most")
    max_exports: int = Field(default=8, ge=1, description="exports reading the database at once (each on its own "
                             "connection); more wait their turn, so other requests always find a thread")


class CommandsConfig(StrictModel):
    """Commands to gateways (``edge dc command``, the console): the broker account meant for them
    (config/mosquitto/acl: ``commander`` may publish commands and nothing else) on the ``mqtt`` section's broker,
    and their bounds."""

    username: str | None = Field(default="commander", description="broker account that may publish commands")
    password_file: Path | None = Field(default=None, description="file holding that account's password")
    expiry: Duration = Field(default=300.0, gt=0, description="a command not answered within this long is expired "
                             "(the broker drops it too); the gateway refuses one issued longer ago than its "
                             "sync.command_max_age (5m by default) anyway")
    max_expiry: Duration = Field(default=86400.0, gt=0, description="longest expiry a command may ask for")
    max_duration: Duration = Field(default=7 * 86400.0, gt=0, description="longest manual override (--for) a "
                                   "command may ask for; the gateway refuses past each output's max_manual too")
    wait: Duration = Field(default=30.0, gt=0, description="how long edge dc command waits for the answer at most")


class StorageConfig(StrictModel):
    """What the data center keeps and for how long (docs/datacenter.md, "Storage"): raw readings in the hot table for
    ``raw_days``, then compacted per series and day; roll-ups (minute, hour, day) for ever."""

    raw_days: int = Field(default=30, ge=1, le=3660, description="whole days a reading stays a row of the hot table "
                          "(older days are compacted); a re-send of a key held either way is never stored twice")
    compacted_days: int | None = Field(default=None, ge=1, description="whole days compacted readings are kept "
                                       "(older months are dropped whole); null: for ever. Roll-ups stay for ever")
    maintain: bool = Field(default=True, description="this collector takes its turn at the maintenance (roll-ups, "
                           "compaction, retention); one collector at a time does it")
    maintain_every: Duration = Field(default=60.0, gt=0, description="how often the maintenance runs")

    @model_validator(mode="after")
    def _compacted_outlive_raw(self) -> StorageConfig:
        if self.compacted_days is not None and self.compacted_days <= self.raw_days:
            raise ValueError(f"compacted_days ({self.compacted_days}) must be longer than raw_days "
                             f"({self.raw_days}): readings are compacted only once raw_days have passed")
        return self


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"


class DataCenterConfig(StrictModel):
    source: Literal["mqtt", "nats"] = Field(default="mqtt", description="where the collector reads the uplink: "
                                            "mqtt (one Mosquitto) or nats (a NATS JetStream cluster)")
    mqtt: BrokerConfig | None = None
    nats: NatsConfig | None = None
    database: DatabaseConfig
    collector: CollectorConfig = CollectorConfig()
    api: ApiConfig = ApiConfig()
    commands: CommandsConfig = CommandsConfig()
    storage: StorageConfig = StorageConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _source_configured(self) -> DataCenterConfig:
        if getattr(self, self.source) is None:
            raise ValueError(f"source is {self.source}, but there is no {self.source}: section")
        return self

    @property
    def client_id(self) -> str | None:
        """The collector's configured client id (MQTT); None: the default, from the host name."""
        return self.mqtt.client_id if self.mqtt is not None else None


def load_datacenter_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> DataCenterConfig:
    """Load and validate a data-center config; raises :class:`edge.errors.ConfigError` listing every problem."""
    return load_model(DataCenterConfig, path, env)
