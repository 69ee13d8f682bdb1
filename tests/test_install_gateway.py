"""scripts/install-gateway.sh, run against a temporary root: what it installs, that a second run changes nothing (and
never overwrites the config), and that uninstalling keeps the buffer and the config unless asked to purge.

The root gets copies of this machine's user database, as an image would have its own. Nothing is downloaded: the
package is built from the checkout with the dependencies left out (``--pip-args "--no-index --no-deps
--no-build-isolation"``), which needs the distribution's Python with venv, setuptools and wheel (python3-venv,
python3-setuptools and python3-wheel: ``bash scripts/test`` installs them).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge import __version__

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install-gateway.sh"
SYSTEM_PYTHON = Path("/usr/bin/python3")
OFFLINE = "--no-index --no-deps --no-build-isolation"

pytestmark = pytest.mark.skipif(
    not SYSTEM_PYTHON.exists() or subprocess.run(
        [SYSTEM_PYTHON, "-c", "import venv, ensurepip, setuptools, wheel"], capture_output=True).returncode != 0,
    reason="needs /usr/bin/python3 with venv, setuptools and wheel: as root, apt-get install python3-venv "
           "python3-setuptools python3-wheel (bash scripts/test does)")

AS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A still copy of the checkout: others may be editing this one between the two installs of a test."""
    copy = tmp_path_factory.mktemp("checkout") / "edge"
    shutil.copytree(ROOT, copy, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "tests", "bench"))
    return copy


def install(checkout: Path, root: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", str(checkout / "scripts/install-gateway.sh"), "--root", str(root),
                           "--pip-args", OFFLINE, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content hash (or link target). Inside the venv, compiled files and the
    record of where the wheel came from (a temporary directory) are left out: they differ from run to run."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if "__pycache__" in rel or (".dist-info/" in rel and rel.endswith(("/RECORD", "/direct_url.json"))):
            continue
        if path.is_symlink():
            files[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            files[rel] = "dir"
    return files


def group_members(root: Path) -> dict[str, list[str]]:
    members = {}
    for line in (root / "etc" / "group").read_text().splitlines():
        name, _, _, users = line.split(":")
        members[name] = [u for u in users.split(",") if u]
    return members


@pytest.fixture
def image(tmp_path) -> Path:
    """An empty root with this machine's user database, plus a `gpio` group as Raspberry Pi OS has."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        if os.access(Path("/etc") / name, os.R_OK):  # shadow files: root only (an ordinary user adds no users)
            shutil.copy2(Path("/etc") / name, root / "etc" / name)
    with open(root / "etc" / "group", "a") as groups:
        groups.write("gpio:x:997:\n")
    return root


def test_install_twice_then_uninstall_then_purge(checkout, image):
    host_passwd = Path("/etc/passwd").read_bytes()
    install(checkout, image)

    unit = image / "etc/systemd/system/edge-gateway.service"
    assert unit.read_text() == (checkout / "systemd/edge-gateway.service").read_text()
    web_unit = image / "etc/systemd/system/edge-web.service"  # installed, left for the technician to enable
    assert web_unit.read_text() == (checkout / "systemd/edge-web.service").read_text()
    assert not (image / "etc/systemd/system/multi-user.target.wants/edge-web.service").exists()
    if shutil.which("systemctl"):
        wants = image / "etc/systemd/system/multi-user.target.wants/edge-gateway.service"
        assert os.readlink(wants) == "/etc/systemd/system/edge-gateway.service"
    config = image / "etc/edge/gateway.yaml"
    assert config.read_text() == (checkout / "config/gateway.installed.yaml").read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    reference = image / "etc/edge/gateway.example.yaml"
    assert reference.read_text() == (checkout / "config/gateway.example.yaml").read_text()
    venv = image / "opt/edge/venv"
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert (venv / "bin/edge").read_text().startswith("#!/opt/edge/venv/bin/python\n")  # as seen once booted
    assert os.readlink(image / "usr/local/bin/edge") == "/opt/edge/venv/bin/edge"
    imported = subprocess.run([venv / "bin/python", "-c", "import edge; print(edge.__version__, edge.__file__)"],
                              capture_output=True, text=True, check=True, cwd=image).stdout.split()
    assert imported[0] == __version__ and imported[1].startswith(str(venv))
    if AS_ROOT:
        assert any(line.startswith("edge:") for line in (image / "etc/passwd").read_text().splitlines())
        groups = group_members(image)
        assert "edge" in groups["gpio"] and "edge" in groups["dialout"]
        assert "spi" not in groups  # groups that do not exist are not created
        assert config.stat().st_gid == int(next(line.split(":")[2] for line in
                                                (image / "etc/group").read_text().splitlines()
                                                if line.startswith("edge:")))
    assert Path("/etc/passwd").read_bytes() == host_passwd  # the machine itself is untouched

    with open(config, "a") as handle:
        handle.write("# the technician's edit\n")
    before = snapshot(image)
    second = install(checkout, image)
    assert "kept the existing /etc/edge/gateway.yaml" in second.stderr
    assert snapshot(image) == before  # idempotent: the same files, the edited config kept

    buffer = image / "var/lib/edge/buffer.db"  # as the service would have left it
    buffer.parent.mkdir(parents=True)
    buffer.write_bytes(b"readings")
    install(checkout, image, "--uninstall")
    assert not unit.exists() and not venv.exists() and not (image / "usr/local/bin/edge").is_symlink()
    assert not web_unit.exists()
    assert not (image / "etc/systemd/system/multi-user.target.wants/edge-gateway.service").is_symlink()
    assert buffer.read_bytes() == b"readings"
    assert config.read_text().endswith("# the technician's edit\n")

    install(checkout, image, "--uninstall", "--purge")
    assert not buffer.exists() and not config.exists()
    if AS_ROOT:
        assert not any(line.startswith("edge:") for line in (image / "etc/passwd").read_text().splitlines())
        assert "edge" not in group_members(image) and "edge" not in group_members(image)["gpio"]


def test_purge_without_uninstall_is_refused(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT), "--root", str(tmp_path), "--purge"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "--purge goes with --uninstall" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_config_a_fresh_install_gets_starts_as_a_service(checkout, image, tmp_path):
    """What the installer puts at /etc/edge/gateway.yaml passes `edge check` with every file it names, needs no
    secret, and writes only where the unit lets the service write (absolute paths: the service's working directory
    is not the checkout), so `edge doctor && systemctl start` on a fresh install can succeed."""
    from edge.gateway.config import load_config

    install(checkout, image)
    installed = image / "etc/edge/gateway.yaml"
    edge = [sys.executable, "-c", "from edge.cli import main; main()"]  # the venv installed offline has no deps
    done = subprocess.run([*edge, "check", "-c", installed], capture_output=True,
                          text=True, env={**os.environ, "EDGE_GATEWAY_ID": "", "EDGE_MQTT_URL": ""}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    config = load_config(installed, env={}, files=True)
    unit = (checkout / "systemd/edge-gateway.service").read_text()
    assert "StateDirectory=edge" in unit and "RuntimeDirectory=edge" in unit
    for path in (config.buffer.path, config.control.socket):
        assert Path(path).is_absolute() and Path(path).parts[:4] in (("/", "var", "lib", "edge"),
                                                                      ("/", "run", "edge", Path(path).name)), path
    assert config.hardware.backend == "simulated"
    assert [t.type for t in config.sms.transports] == ["console"]  # no key, no modem: nothing to fail at start
