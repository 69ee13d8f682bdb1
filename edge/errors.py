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
