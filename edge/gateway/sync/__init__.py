"""The uplink: buffered readings and events to the data center, removed from the buffer only by its acks.

``config.py`` holds its settings (what the gateway's config imports: no MQTT library is loaded to read a config),
``uplink.py`` the ``Sync`` thread, ``link.py`` the transport under it, ``state.py`` the tables it owns.
"""

from edge.gateway.sync.config import SyncConfig

__all__ = ["Sync", "SyncConfig"]


def __getattr__(name: str):
    if name == "Sync":  # the runtime, imported only by those that run the uplink
        from edge.gateway.sync.uplink import Sync

        return Sync
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
