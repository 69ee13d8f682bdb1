"""The systemd units in systemd/: `systemd-analyze verify` accepts them, their sandbox scores stay where
docs/operations.md says, and the gateway unit agrees with the config defaults (buffer, control socket).

`systemd-analyze verify` refuses a unit whose ExecStart= binary does not exist, and the units name the installed
/opt/edge/venv/bin/edge. So each unit is verified as a copy whose commands point at this venv's `edge` instead: the
same unit otherwise, byte for byte. These tests run when systemd-analyze is installed (`bash scripts/test` installs
Debian's systemd package when it is missing); systemd need not be running.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.gateway.config import BufferConfig
from edge.gateway.control.config import ControlConfig

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
INSTALLED_EDGE = "/opt/edge/venv/bin/edge"
INSTALLED_NATS = "/opt/edge/venv/bin/nats-server"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is missing (apt-get install systemd)")

#: Highest `systemd-analyze security` exposure each unit may have (docs/operations.md lists the measured scores).
MAX_EXPOSURE = {"edge-gateway.service": 2.0, "edge-web.service": 1.5,
                "edge-collector.service": 2.5, "edge-collector@.service": 2.5,
                "edge-history.service": 2.5, "edge-nats.service": 2.5}


def unit_names() -> list[str]:
    return sorted(path.name for path in UNITS.glob("*.service"))


def test_every_unit_has_an_exposure_budget():
    assert unit_names() == sorted(MAX_EXPOSURE)


def directives(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def verifiable_copy(name: str, directory: Path) -> Path:
    """The unit with its commands pointing at this venv's `edge` (and `nats-server`, of the test extra); a template
    is verified as an instance."""
    edge = Path(sys.executable).parent / "edge"
    assert edge.exists(), f"{edge} is missing: the venv's console script is needed to verify the units"
    copy = directory / name.replace("@.", "@test.")
    copy.write_text((UNITS / name).read_text().replace(INSTALLED_EDGE, str(edge))
                    .replace(INSTALLED_NATS, str(Path(sys.executable).parent / "nats-server")))
    return copy


@needs_analyze
@pytest.mark.parametrize("name", unit_names())
def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(name, tmp_path):
    done = subprocess.run([ANALYZE, "verify", str(verifiable_copy(name, tmp_path))], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def exposure(unit: Path) -> float:
    done = subprocess.run([ANALYZE, "security", "--offline=true", str(unit)], capture_output=True, text=True,
                          timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert match, done.stdout + done.stderr
    return float(match.group(1))


@needs_analyze
@pytest.mark.parametrize("name", unit_names())
def test_the_sandbox_keeps_the_exposure_score_within_its_budget(name, tmp_path):
    if "--offline" not in subprocess.run([ANALYZE, "security", "--help"], capture_output=True, text=True).stdout:
        pytest.skip("this systemd-analyze cannot score unit files offline (systemd < 250)")
    assert exposure(verifiable_copy(name, tmp_path)) <= MAX_EXPOSURE[name]


def test_the_gateway_unit_runs_the_daemon_with_a_watchdog_and_makes_outputs_safe_after_any_stop():
    unit = directives("edge-gateway.service")
    assert unit["Type"] == ["notify"] and unit["Restart"] == ["on-failure"]
    assert unit["WatchdogSec"] and unit["User"] == ["edge"]
    assert unit["ExecStart"] == [f"{INSTALLED_EDGE} run -c /etc/edge/gateway.yaml"]
    assert unit["ExecStopPost"] == [f"{INSTALLED_EDGE} safe-state -c /etc/edge/gateway.yaml"]
    assert unit["CapabilityBoundingSet"] == [""] and unit["DevicePolicy"] == ["closed"]


def test_the_gateway_unit_provides_the_directories_the_config_defaults_use():
    unit = directives("edge-gateway.service")
    assert BufferConfig().path == Path("/var/lib", unit["StateDirectory"][0], "buffer.db")
    assert unit["WorkingDirectory"] == ["/var/lib/edge"]  # writable (lgpio's .lgd-nfy files)
    assert Path(ControlConfig().socket).parent == Path("/run", unit["RuntimeDirectory"][0])


def test_the_web_unit_serves_the_page_beside_the_daemon_without_owning_its_socket_directory():
    unit, gateway = directives("edge-web.service"), directives("edge-gateway.service")
    assert unit["ExecStart"] == [f"{INSTALLED_EDGE} web -c /etc/edge/gateway.yaml"]
    assert unit["User"] == gateway["User"] and unit["StateDirectory"] == gateway["StateDirectory"]
    assert "RuntimeDirectory" not in unit  # stopping the page must not remove /run/edge and the control socket
    assert "Requires" not in unit and "BindsTo" not in unit  # the page answers while the daemon is stopped
    assert unit["CapabilityBoundingSet"] == [""] and unit["PrivateDevices"] == ["yes"]


def test_the_data_center_units_run_their_commands_as_a_dynamic_user():
    for name, command in (("edge-collector.service", "dc collector"), ("edge-collector@.service", "dc collector"),
                          ("edge-history.service", "dc api")):
        unit = directives(name)
        assert unit["ExecStart"][0].startswith(f"{INSTALLED_EDGE} {command} -c /etc/edge/datacenter.yaml")
        assert unit["DynamicUser"] == ["yes"] and unit["PrivateDevices"] == ["yes"]


def test_the_systemd_check_script_parses():
    subprocess.run(["bash", "-n", ROOT / "scripts" / "systemd-check"], check=True)


def test_the_gateway_under_a_real_systemd(monkeypatch):
    """scripts/systemd-check: install, start, watchdog restart, kill -9, config error, stop and boot under systemd as
    PID 1 in a Debian 12 container. Root, a Debian mirror and minutes: only when asked for."""
    import os

    if os.environ.get("EDGE_SYSTEMD_CHECK") != "1":
        pytest.skip("boots Debian 12 under systemd-nspawn as root and takes minutes: bash scripts/systemd-check, "
                    "or EDGE_SYSTEMD_CHECK=1 to run it here")
    done = subprocess.run(["bash", ROOT / "scripts" / "systemd-check"], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
