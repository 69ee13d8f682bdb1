"""One error root for the whole package (in the style of gpiozero/exc.py)."""


class EdgeError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(EdgeError, ValueError):
    """A configuration file is invalid. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class BufferUnavailable(EdgeError):
    """The local SQLite buffer cannot be used."""


class SensorError(EdgeError, IOError):
    """A sensor did not answer or answered nonsense."""


class HardwareError(EdgeError, RuntimeError):
    """An actuator or bus could not be opened or driven."""


class BufferWriteError(BufferUnavailable):
    """The file system refused a write to the buffer (read-only, I/O error, locked): nothing of that write was stored,
    and the rest of the gateway goes on without it."""


class BufferFull(BufferWriteError):
    """The buffer's file system has no room: nothing more can be stored until space is freed. A degraded state, not a
    fault a restart would cure."""
