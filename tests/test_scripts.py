"""The newcomer's scripts: scripts/demo and scripts/test share one .venv (scripts/_venv.sh) and switching between them
installs nothing again; their hints for a missing Debian package say what to run as root, never `sudo` (a fresh
Debian 12 has none); the test command installs every Debian package whose absence would skip tests."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"

FAKE_PYTHON = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/../pip.log"
"""


def ensure(project: Path, spec: str) -> list[str]:
    """Run ensure_venv SPEC in ``project``, whose .venv's python only logs what it is asked: the pip installs run."""
    log = project / ".venv" / "pip.log"
    log.unlink(missing_ok=True)
    subprocess.run(["bash", "-c", f'. "{SCRIPTS / "_venv.sh"}" && ensure_venv "{spec}"'], cwd=project, check=True,
                   capture_output=True, text=True, timeout=30)
    return [line for line in (log.read_text().splitlines() if log.exists() else []) if "-e" in line.split()]


def test_switching_between_the_demo_and_the_tests_installs_once(tmp_path):
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = edge\n")
    (tmp_path / "pyproject.toml").write_text("[build-system]\n")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)

    assert ensure(tmp_path, ".[test,datacenter,plot]") == ["-m pip install -q --disable-pip-version-check -e "
                                                           ".[datacenter,plot,test]"]
    assert ensure(tmp_path, ".") == []                         # the demo after the tests
    assert ensure(tmp_path, ".[test,datacenter,plot]") == []   # and the tests again
    assert ensure(tmp_path, ".[plot]") == []
    assert ensure(tmp_path, ".[extra]") == ["-m pip install -q --disable-pip-version-check -e "
                                            ".[datacenter,extra,plot,test]"]  # a new extra: the union
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = edge\nversion = 2\n")
    assert ensure(tmp_path, ".") == ["-m pip install -q --disable-pip-version-check -e ."]  # new dependencies


def test_a_stamp_written_before_keeps_its_extras(tmp_path):
    (tmp_path / "setup.cfg").write_text("x")
    (tmp_path / "pyproject.toml").write_text("y")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    digest = subprocess.run(["bash", "-c", "cat setup.cfg pyproject.toml | sha256sum | cut -c1-16"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / ".venv" / ".edge-installed").write_text(f"{digest} .[test,datacenter,plot]\n")
    assert ensure(tmp_path, ".") == []


def test_hints_say_as_root_not_sudo():
    for name in ("_venv.sh", "test", "demo", "install-gateway.sh", "systemd-check"):
        for line in (SCRIPTS / name).read_text().splitlines():
            if "echo" in line and "sudo" in line:
                assert "where it is installed" in line, f"scripts/{name}: {line.strip()}"


def test_the_test_command_installs_what_the_install_tests_need_and_their_skip_says_so():
    script = (SCRIPTS / "test").read_text()
    packages = re.search(r'SYSTEM_PACKAGES="([^"]+)"', script).group(1).split()
    assert {"python3-venv", "python3-setuptools", "python3-wheel"} <= set(packages)
    assert "import venv, ensurepip, setuptools, wheel" in script
    skip = (ROOT / "tests" / "test_install_gateway.py").read_text()
    assert "python3-venv python3-setuptools python3-wheel" in skip.replace('"\n           "', "")
