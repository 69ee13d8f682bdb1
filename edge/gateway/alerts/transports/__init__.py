"""SMS transports. The registry maps a config ``type:`` to its class, imported only when a config uses it."""

from __future__ import annotations

import importlib
from typing import Any

TRANSPORT_TYPES: dict[str, str] = {
    "kavenegar": "edge.gateway.alerts.transports.kavenegar:KavenegarTransport",
    "http": "edge.gateway.alerts.transports.http:HttpTransport",
    "modem": "edge.gateway.alerts.transports.modem:ModemTransport",
    "console": "edge.gateway.alerts.transports.console:ConsoleTransport",
}


def transport_class(type_name: str) -> Any:
    module_name, _, class_name = TRANSPORT_TYPES[type_name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
