"""SMS alerts: rules -> engine (state in SQLite) -> messages -> durable outbox -> transports (HTTP gateways, GSM modem).

``build(config, buffer, clock)`` assembles an :class:`~edge.gateway.alerts.service.AlertService` for the daemon.
Importing this package imports nothing heavy: ``edge.gateway.config`` reads the config models from ``alerts.config``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.gateway.alerts.service import AlertService


def build(config: Any, buffer: Any, clock: Any, **overrides: Any) -> "AlertService":
    """The alert service of a gateway config, keeping its state in ``buffer``'s SQLite file."""
    from edge.gateway.alerts.service import build_service

    return build_service(config, buffer, clock, **overrides)
