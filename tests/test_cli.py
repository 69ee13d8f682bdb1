"""`edge status` and `edge readings` read the buffer beside a running daemon."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys

import pytest

from conftest import wait_until

pytestmark = pytest.mark.slow


def edge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=60)


def status_json(config) -> dict:
    proc = edge("status", "-c", str(config), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def running(gateway_config, start_daemon):
    daemon = start_daemon(gateway_config)
    wait_until(lambda: edge("status", "-c", str(gateway_config), "--json").returncode == 0
               and status_json(gateway_config)["buffer"]["total"] >= 6, what="the daemon's first readings")
    yield gateway_config
    assert daemon.stop()[0] == 0


def test_status_json_is_a_stable_contract_while_the_daemon_runs(running):
    report = status_json(running)
    assert {"gateway", "epoch", "clock", "buffer", "sensors"} <= set(report)
    assert report["gateway"]["id"] == "gh-test"
    assert report["epoch"] == 1
    assert report["daemon"] == "running"
    assert report["clock"] == {"synced": True, "trust": "synced"}
    assert report["sync"]["link"] == "offline (no broker configured)"
    buffer = report["buffer"]
    assert buffer["total"] == buffer["pending"] + buffer["acknowledged"] and buffer["acknowledged"] == 0
    assert buffer["oldest_pending_age_s"] >= 0
    assert set(report["sensors"]) == {"air", "soil"}
    air = report["sensors"]["air"]
    assert set(air["quantities"]) == {"temperature", "humidity"}
    assert air["quantities"]["temperature"]["quality"] == "good"
    assert air["quantities"]["temperature"]["unit"] == "°C"
    assert 0 <= air["age_s"] < 60


def test_status_prints_a_readable_summary(running):
    proc = edge("status", "-c", str(running))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("gateway  gh-test\nepoch    1 since ")
    assert "air              " in proc.stdout and "temperature" in proc.stdout


def test_readings_as_csv_json_and_table_agree(running):
    as_csv = list(csv.DictReader(io.StringIO(edge("readings", "-c", str(running), "--sensor", "air",
                                                   "--format", "csv").stdout)))
    assert as_csv and {row["sensor"] for row in as_csv} == {"air"}
    assert list(as_csv[0]) == ["ts", "epoch", "seq", "sensor", "quantity", "value", "unit", "quality", "reason",
                               "clock"]
    assert as_csv[0]["ts"].endswith("+00:00")
    as_json = json.loads(edge("readings", "-c", str(running), "--sensor", "air", "--format", "json").stdout)
    keys = {(r["epoch"], r["seq"]) for r in as_json}
    assert {(int(r["epoch"]), int(r["seq"])) for r in as_csv} <= keys
    table = edge("readings", "-c", str(running)).stdout.splitlines()
    assert table[0].startswith("time (UTC)") and any(" soil " in line for line in table[1:])


def test_readings_refuses_an_unknown_sensor(running):
    proc = edge("readings", "-c", str(running), "--sensor", "nope")
    assert proc.returncode == 2
    assert "unknown sensor 'nope' (sensors: air, soil)" in proc.stderr


def test_status_before_the_first_run_says_so(gateway_config):
    proc = edge("status", "-c", str(gateway_config))
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: no buffer at ") and "Traceback" not in proc.stderr


def test_a_bad_duration_on_the_command_line_is_refused(gateway_config):
    proc = edge("readings", "-c", str(gateway_config), "--since", "yesterday")
    assert proc.returncode == 2
    assert "invalid duration 'yesterday'" in proc.stderr


def test_status_tells_a_clean_stop_from_a_crash(gateway_config, start_daemon):
    for epoch, (stop_signal, expected) in enumerate(((signal.SIGTERM, "stopped"),
                                                     (signal.SIGKILL, "stopped uncleanly")), start=1):
        daemon = start_daemon(gateway_config)
        # running (its lock taken) and its epoch started: a kill before that leaves the last epoch the clean one
        wait_until(lambda: edge("status", "-c", str(gateway_config), "--json").returncode == 0
                   and status_json(gateway_config)["daemon"] == "running"
                   and status_json(gateway_config)["epoch"] == epoch, what=f"the daemon to run epoch {epoch}")
        daemon.stop(stop_signal)
        assert status_json(gateway_config)["daemon"] == expected


class DaemonWritesDuringTheQueries:
    """A wall clock for the CLI and the doctor that a daemon's write moves on: while the report reads the buffer,
    5 s pass and the daemon commits a reading stamped with that later time (the race behind a negative age)."""

    def __init__(self, monkeypatch, path, module):
        from types import SimpleNamespace

        from edge.gateway.buffer import Buffer, NewReading

        self.now = 1_760_000_000.0
        self.writer, _ = Buffer.open(path, now=self.now, boot_id="b")
        self.writer.append_readings([NewReading(self.now - 30, "air", "temperature", 20.0, "°C")])
        original = Buffer.counts

        def counts(buffer, stream):
            if stream == "readings" and buffer is not self.writer:
                self.now += 5
                self.writer.append_readings([NewReading(self.now, "air", "temperature", 21.0, "°C"),
                                             NewReading(self.now, "air", "humidity", 50.0, "%")])
            return original(buffer, stream)

        monkeypatch.setattr(Buffer, "counts", counts)
        monkeypatch.setattr(module, "time", SimpleNamespace(time=lambda: self.now))

    def close(self) -> None:
        self.writer.close()


def test_status_ages_are_measured_after_the_buffer_was_read(gateway_config, monkeypatch):
    import edge.cli
    from edge.cli import status_report
    from edge.gateway.config import load_config

    config = load_config(gateway_config)
    race = DaemonWritesDuringTheQueries(monkeypatch, config.buffer.path, edge.cli)
    try:
        report = status_report(config)
    finally:
        race.close()
    assert report["sensors"]["air"]["age_s"] == 0.0  # the reading committed meanwhile, seen as just now
    assert report["buffer"]["oldest_pending_age_s"] == 35.0


def test_the_doctors_ages_are_measured_after_the_buffer_was_read(gateway_config, monkeypatch):
    import edge.gateway.doctor
    from edge.gateway.doctor import diagnose

    path = gateway_config.parent / "buffer.db"
    race = DaemonWritesDuringTheQueries(monkeypatch, path, edge.gateway.doctor)
    try:
        report = diagnose(gateway_config, systemctl=lambda verb, unit: "")  # the writer holds the daemon's lock
    finally:
        race.close()
    [buffer] = [check for check in report.checks if check.name == "buffer"]
    assert buffer.summary.endswith("oldest 35s old")
    [sensors] = [check for check in report.checks if check.name == "sensors"]
    assert sensors.lines == ("soil: no reading yet",)  # air's reading is fresh, neither stale nor from the future


def test_a_reading_stamped_before_the_clock_stepped_back_shows_age_0_not_a_negative_one(gateway_config, monkeypatch):
    import edge.cli
    from edge.cli import status_report
    from edge.gateway.config import load_config

    config = load_config(gateway_config)
    race = DaemonWritesDuringTheQueries(monkeypatch, config.buffer.path, edge.cli)
    try:
        monkeypatch.setattr(edge.cli, "time", type("SteppedBack", (), {"time": staticmethod(lambda: race.now - 0.3)}))
        report = status_report(config)  # NTP stepped the wall clock 0.3 s back after the daemon's last reading
    finally:
        race.close()
    assert report["sensors"]["air"]["age_s"] == 0.0


def test_counts_in_command_output_agree_with_their_nouns(gateway_config, tmp_path):
    import re
    import time as clock

    from click.testing import CliRunner

    from edge.cli import main
    from edge.gateway.buffer import Buffer, NewReading

    buffer, _ = Buffer.open(tmp_path / "buffer.db", now=clock.time(), boot_id="boot-1")
    buffer.append_readings([NewReading(clock.time(), "air", "temperature", 21.0, "°C")])
    buffer.close()
    status = CliRunner().invoke(main, ["status", "-c", str(gateway_config)]).output
    [line] = [text for text in status.splitlines() if text.startswith("buffer ")]
    assert ": 1 reading, 1 pending" in line
    events, noun = re.search(r"; (\d+) (events?) pending", line).groups()
    assert noun == ("event" if events == "1" else "events")
    one = tmp_path / "one.yaml"
    one.write_text("gateway: {id: gh-1}\nsensors:\n  - {id: air, type: simulated, measures: [temperature]}\n"
                   "actuators:\n  - {id: fan, type: relay, kind: fan, pin: 17}\n")
    assert CliRunner().invoke(main, ["check", "-c", str(one)]).output == (
        f"{one}: ok (gateway gh-1, 1 sensor, 1 actuator, simulated backend)\n")
    assert "(gateway gh-test, 2 sensors, 2 actuators, " in CliRunner().invoke(main, ["check", "-c",
                                                                                     str(gateway_config)]).output
