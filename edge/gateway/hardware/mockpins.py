"""Mock pins whose levels outlive the process, as a Raspberry Pi's GPIO lines do.

The Pi kernel keeps an output line driven after the process that drove it dies (kill -9, a crash), and gpiozero's
``close()`` turns a pin into an undriven input. gpiozero's ``MockFactory`` forgets everything when its process exits,
so it cannot show either. ``LineStateFactory`` writes each pin's function and level to ``<directory>/GPIO<n>``
whenever it changes: after a ``kill -9`` the file still says what the line is driven at, exactly what ``edge
safe-state`` must put right. Selected for the simulated backend when ``$EDGE_GPIO_STATE_DIR`` is set.

A line can also be marked broken (:func:`break_line`, a ``GPIO<n>.broken`` file beside its state): from then on,
driving it raises ``OSError(EBUSY)``, as a line another process has claimed does on a Pi (lgpio: "GPIO busy"). The
tests use it for an output that fails to switch, at start or on the way down.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from gpiozero.pins.mock import MockFactory, MockPWMPin

STATE_DIR_ENV = "EDGE_GPIO_STATE_DIR"


class LineStatePin(MockPWMPin):
    def _line_file(self) -> Path:
        return Path(self.factory.state_dir) / self.info.name

    def _refuse_if_broken(self) -> None:
        if self._line_file().with_suffix(".broken").exists():
            raise OSError(errno.EBUSY, f"{self.info.name}: GPIO busy")

    def _write_line(self) -> None:
        level = f"{float(self._state):g}" if self._function == "output" else "floating"
        tmp = self._line_file().with_suffix(".tmp")
        tmp.write_text(f"{self._function} {level}\n")
        os.replace(tmp, self._line_file())

    def _change_state(self, value):
        self._refuse_if_broken()
        changed = super()._change_state(value)
        if getattr(self, "_function", None) is not None:
            self._write_line()
        return changed

    def _set_function(self, value):
        self._refuse_if_broken()
        super()._set_function(value)
        self._write_line()


class LineStateFactory(MockFactory):
    def __init__(self, state_dir: str | os.PathLike[str]):
        super().__init__(pin_class=LineStatePin)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)


def read_lines(state_dir: str | os.PathLike[str]) -> dict[str, str]:
    """``{"GPIO17": "output 0", ...}``: what each line was last left at."""
    return {p.name: p.read_text().strip() for p in Path(state_dir).iterdir()
            if p.name.startswith("GPIO") and not p.suffix}


def break_line(state_dir: str | os.PathLike[str], pin: int) -> None:
    """Mark ``GPIO<pin>`` broken: driving it raises from now on, in this process and any other."""
    Path(state_dir, f"GPIO{pin}.broken").touch()
