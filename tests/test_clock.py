"""Whether the wall clock can be trusted: systemd-timesyncd's flag, the kernel, or the config's word."""

from __future__ import annotations

from edge.gateway.clock import Clock, FakeClock, kernel_clock_synced


def test_timesyncd_flag_file_means_synced_and_latches(tmp_path):
    flag = tmp_path / "synchronized"
    clock = Clock(timesync_flag=flag)
    kernel = kernel_clock_synced()
    assert clock.is_synced() is bool(kernel)
    flag.touch()
    assert clock.is_synced() is True
    flag.unlink()  # timesyncd removes the flag on restart; the clock was good once this boot
    assert clock.is_synced() is True


def test_config_can_force_the_clock_state(tmp_path):
    flag = tmp_path / "synchronized"
    flag.touch()
    assert Clock("unsynced", timesync_flag=flag).is_synced() is False
    assert Clock("synced", timesync_flag=tmp_path / "absent").is_synced() is True


def test_clock_reports_utc_boot_time_and_a_boot_id():
    clock = Clock()
    assert clock.time() > 1.7e9
    first = clock.monotonic()
    assert clock.monotonic() >= first
    assert len(clock.boot_id) >= 32


def test_fake_clock_moves_only_when_told():
    clock = FakeClock(start=100.0, synced=False)
    clock.advance(5)
    clock.set_wall(1000.0)
    assert (clock.time(), clock.monotonic(), clock.is_synced()) == (1000.0, 1005.0, False)


def test_asking_the_kernel_runs_no_program_and_imports_no_subprocess():
    """The C library is the one this process has loaded (not looked up by name: ctypes.util runs ldconfig in a
    subprocess, at every round until the clock syncs), and ctypes is imported at the first question only."""
    import subprocess
    import sys

    check = ("import sys; from edge.gateway.clock import Clock, kernel_clock_synced; "
             "assert 'ctypes' not in sys.modules; Clock('auto').is_synced(); kernel_clock_synced(); "
             "assert 'ctypes' in sys.modules; "
             "print(sorted(m for m in ('subprocess', 'ctypes.util', 'shutil') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
