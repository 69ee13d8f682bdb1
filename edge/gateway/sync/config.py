"""The uplink's configuration (the ``sync:`` section), beside the code it configures."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from edge.config import StrictModel
from edge.contract import protocol
from edge.durations import Duration


class SyncConfig(StrictModel):
    url: str | list[str] = Field(default="", description="mqtt://host:1883 or mqtts://host:8883, or a list of "
                                 "brokers (the nodes of a NATS cluster) tried in turn: on a failure or a lost link "
                                 "the gateway moves to the next; empty: no uplink, buffer only")
    mqtt_version: Literal["mqttv5", "mqttv311"] = Field(default="mqttv5",
                                                        description="MQTT 5, or 3.1.1 for old brokers")
    username: str | None = Field(default=None, description="broker user; default: the gateway id")
    password_file: Path | None = Field(default=None, description="file holding the broker password (not inline)")
    ca_file: Path | None = Field(default=None, description="CA certificate for mqtts:// (default: system CAs)")
    cert_file: Path | None = Field(default=None, description="client certificate, for brokers that require one")
    key_file: Path | None = Field(default=None, description="client certificate's private key")
    keepalive: Duration = 30.0
    interval: Duration = Field(default=1.0, description="how often new readings and events are sent")
    batch_size: int = Field(default=1000, ge=1, le=protocol.MAX_ROWS, description="readings per batch")
    max_inflight: int = Field(default=8, ge=1, description="batches awaiting the data center's ack")
    ack_timeout: Duration = Field(default=30.0, description="re-send a batch whose ack has not come by then")
    backlog_rate: int = Field(default=20_000, ge=1, description="backlog readings sent per second at most")
    reconnect_min: Duration = Field(default=1.0, description="shortest wait between two connection attempts")
    reconnect_max: Duration = Field(default=120.0, description="longest wait between two connection attempts")
    reconnect_share: float = Field(
        default=0.1, gt=0, le=1, description="a reconnect waits at most this share of the outage so far (between "
        "reconnect_min and reconnect_max, jitter in the upper half): a young outage is retried within seconds, an "
        "old one gently; each retry first probes the broker's port (a TCP connect) before a whole MQTT session")
    status_interval: Duration = Field(default=60.0, description="how often the retained status (backlog) is renewed")
    command_max_age: Duration = Field(default=300.0, description="commands issued longer ago than this are refused")
    stall_after: Duration = Field(
        default=120.0, description="the uplink thread counts as stalled after no progress this long: edge status "
        "says so and the watchdog restarts the daemon")

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list of brokers: leave url empty for no uplink")
            return [protocol.check_broker_url(url) for url in value]
        return protocol.check_broker_url(value) if value.strip() else ""

    @property
    def urls(self) -> list[str]:
        """Every broker, in the order they are tried (none: no uplink)."""
        return list(self.url) if isinstance(self.url, list) else [self.url] if self.url else []
