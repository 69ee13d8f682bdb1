"""edge.gateway.status: the report edge status prints (and the coming web page shows), typed, from the owners."""

from __future__ import annotations

from edge.gateway.buffer import Buffer, NewReading
from edge.gateway.config import parse_config
from edge.gateway.control.state import ControlState
from edge.gateway.control.types import ActuatorState
from edge.gateway.status import LinkStatus, StatusReport, iso, read_status, render_text
from edge.gateway.sync.state import SyncState

T0 = 1_760_000_000.0


def config_of(tmp_path):
    return parse_config(f"gateway: {{id: gh, name: North}}\nbuffer: {{path: {tmp_path / 'buffer.db'}}}\n"
                        "sync: {url: 'mqtt://127.0.0.1:1', stall_after: 2m}\n"
                        "sensors:\n  - {id: air, type: simulated, measures: [temperature], interval: 10s}\n"
                        "actuators:\n  - {id: fan, type: relay, kind: fan, pin: 18}\n"
                        "  - {id: pump, type: relay, kind: pump, pin: 27}\n")


def test_the_report_is_typed_and_read_through_each_owner(tmp_path):
    config = config_of(tmp_path)
    daemon, _ = Buffer.open(config.buffer.path, now=T0, boot_id="b")  # holds the owner lock, as a running daemon
    try:
        daemon.append_readings([NewReading(T0, "air", "temperature", 21.5, "°C")])
        ControlState(daemon).save_actuator("fan", ActuatorState(1.0, "rule:cooling", T0, T0, T0 + 60))
        SyncState(daemon).record_link(link="up", since=T0 - 100, beat=T0 - 200, error="None")  # an older version's
        report = read_status(config, now=T0 + 30)
    finally:
        daemon.close()
    assert isinstance(report, StatusReport) and report.daemon == "running"
    assert report.sync == LinkStatus("stalled", iso(T0 - 100), None,  # "None", as stored before, is no error
                                     f"the uplink thread has made no progress since {iso(T0 - 200)} (230s)")
    assert report.sensors["air"].quantities["temperature"].value == 21.5 and report.sensors["air"].age_s == 30.0
    assert report.actuators["fan"]["reason"] == "rule:cooling" and report.actuators["fan"]["remaining_s"] == 30.0
    assert report.actuators["pump"]["reason"] == "never switched"
    as_json = report.to_json()
    assert list(as_json) == ["gateway", "epoch", "epoch_started", "daemon", "clock", "buffer", "disk", "sync", "sms",
                             "sensors", "actuators"]
    assert as_json["sensors"]["air"]["quantities"]["temperature"] == {"value": 21.5, "unit": "°C",
                                                                      "quality": "good", "reason": None}
    lines = render_text(report)
    assert lines[0] == "gateway  gh (North)"
    assert f"link     stalled since {iso(T0 - 100)}; last error: the uplink thread" in "\n".join(lines)
    assert lines[-2:] == ["  fan              on   rule:cooling, 30s left", "  pump             off  never switched"]


def test_a_gateway_whose_parts_never_ran_reads_as_empty(tmp_path):
    config = config_of(tmp_path)
    Buffer.open(config.buffer.path, now=T0, boot_id="b")[0].close()  # the buffer's own tables only
    report = read_status(config, now=T0)
    assert report.daemon == "stopped uncleanly" and report.sync.link == "daemon not running"
    assert report.sms.queued == 0 and report.actuators["fan"]["since"] is None


def test_the_buffer_line_names_the_oldest_pending_reading_only_when_one_is_pending(tmp_path):
    config = config_of(tmp_path)
    daemon, _ = Buffer.open(config.buffer.path, now=T0, boot_id="b")
    try:
        [empty] = [line for line in render_text(read_status(config, now=T0)) if line.startswith("buffer")]
        daemon.append_readings([NewReading(T0, "air", "temperature", 21.5, "°C")])
        [one] = [line for line in render_text(read_status(config, now=T0 + 30)) if line.startswith("buffer")]
    finally:
        daemon.close()
    assert "oldest pending" not in empty and "never" not in empty
    assert "1 reading, 1 pending, 0 acknowledged; oldest pending 30s ago; 0 events pending" in one
