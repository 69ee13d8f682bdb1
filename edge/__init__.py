"""edge: the smart-greenhouse edge service (gateway daemon, data-center collector, history tools)."""

__version__ = "0.1.0"
