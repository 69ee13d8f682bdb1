"""The uplink: buffered readings and events to the data center, removed from the buffer only by its acks."""

from edge.gateway.sync.config import SyncConfig
from edge.gateway.sync.uplink import Sync

__all__ = ["Sync", "SyncConfig"]
