"""The data-center config (``config/datacenter.example.yaml``): broker, database, collector tuning, logging.

Loaded like a gateway config (``${VAR}`` substitution, ``FILE:LINE: key: message`` errors). Secrets never sit in the
file: the broker password comes from a file, the database password from the URL in the environment or ``~/.pgpass``.
"""

from __future__ import annotations

import os
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


class DatabaseConfig(StrictModel):
    url: str = Field(description="postgresql://user@host:5432/dbname (a password here comes from the environment)")
    retry_min: Duration = Field(default=0.5, description="first wait after a database error")
    retry_max: Duration = Field(default=30.0, description="longest wait between retries")

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


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"


class DataCenterConfig(StrictModel):
    mqtt: BrokerConfig
    database: DatabaseConfig
    collector: CollectorConfig = CollectorConfig()
    api: ApiConfig = ApiConfig()
    log: LogConfig = LogConfig()


def load_datacenter_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> DataCenterConfig:
    """Load and validate a data-center config; raises :class:`edge.errors.ConfigError` listing every problem."""
    return load_model(DataCenterConfig, path, env)
