"""What `edge run` keeps out of its process (issue 19: a smaller daemon): libraries a config does not use are not
imported. Checked in a subprocess that starts a daemon on a simulated greenhouse without outputs, alerts or uplink,
and reads its sys.modules while it runs."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

CHECK = textwrap.dedent("""
    import json, sys, threading
    from edge.cli import main
    out = sys.argv[1]

    def look():
        import time
        time.sleep(3)
        with open(out, "w") as handle:
            json.dump(sorted(name for name, module in list(sys.modules.items()) if module is not None), handle)

    threading.Thread(target=look, daemon=True).start()
    sys.argv = ["edge", "run", "-c", sys.argv[2], "--for", "4s"]
    main()
""")


def test_pydantics_plugin_loader_still_answers_none_when_plugins_are_off(monkeypatch):
    """`edge run` stands in for pydantic's plugin loader with plugins off (edge/cli.py): the loader must still be
    asked by that name, and answer no plugins, for the stand-in to change nothing."""
    import pydantic
    from pydantic.plugin import _loader, _schema_validator

    assert "from ._loader import get_plugins" in inspect.getsource(_schema_validator.create_schema_validator)
    asked = {line.strip() for source in Path(pydantic.__file__).parent.rglob("*.py")
             for line in source.read_text(encoding="utf-8").splitlines() if "_loader import" in line}
    assert asked == {"from ._loader import get_plugins"}  # the stand-in has nothing else to offer
    for off in ("__all__", "1", "true"):
        monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", off)
        assert tuple(_loader.get_plugins()) == ()


def test_a_daemon_loads_only_what_its_config_uses(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(f"gateway: {{id: small}}\nhardware: {{backend: simulated}}\nclock: {{trust: synced}}\n"
                      f"buffer: {{path: {tmp_path / 'buffer.db'}}}\ncontrol: {{socket: {tmp_path / 'c.sock'}}}\n"
                      "sensors:\n  - {id: air, type: simulated, measures: [temperature], interval: 1s}\n")
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", CHECK, str(out), str(config)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    modules = set(json.loads(out.read_text()))
    loaded = {name.split(".")[0] for name in modules}
    assert "edge.gateway.scheduler" in modules  # it ran
    # the daemon's own scheduler, not APScheduler's (and the asyncio, ssl, multiprocessing, pickle and tzlocal it
    # brought); APScheduler reads only cron lines with names, `last` or a mistake (control/cron.py)
    assert loaded & {"apscheduler", "asyncio", "ssl", "multiprocessing", "pickle", "tzlocal"} == set()
    # pydantic's plugin loader, with plugins off, without importlib.metadata and email, zipfile, csv, bz2, lzma; the
    # clock asks the kernel through ctypes only when its trust is auto, and never through ctypes.util (which imports
    # subprocess, shutil and tempfile, and runs ldconfig)
    assert modules & {"importlib.metadata", "email", "zipfile", "csv", "bz2", "lzma", "ctypes", "ctypes.util",
                      "subprocess", "shutil", "tempfile"} == set()
    # sqlite-utils (and pluggy, dateutil) replaced by a few lines in the buffer; gpiozero only for pins; Persian
    # dates only for a Persian text; MQTT and TLS only with an uplink; numpy never
    assert loaded & {"sqlite_utils", "pluggy", "dateutil", "gpiozero", "colorzero", "jdatetime", "paho",
                         "numpy", "httpx", "serial", "astral"} == set()
