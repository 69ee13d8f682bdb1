"""Display names travel from the gateway's config to the agronomist: the daemon's start event carries them, the
collector's store keeps the latest start's (by epoch, whatever order re-sends come in), the history API lists them
with the gateway and its sensors, and `edge history plot` labels lines and bands with them (the id beside).

The collector's own `Store.write` stores the events, as it does for a gateway's batch; the real `edge dc api` runs
in front of the database as a subprocess.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest

from edge.contract.events import ActuatorChange, DaemonStart
from edge.contract.protocol import Event, EventBatch, Reading, ReadingBatch
from edge.datacenter.store import Store, Work
from test_history import Api

pytestmark = pytest.mark.slow

GATEWAY = "gh-names-01"
T0 = datetime(2025, 12, 1, 0, 0, tzinfo=timezone.utc).timestamp()
NAMES = {"air": "هوای داخل", "heater-1": "بخاری"}


def _start(seq: int, ts: float, epoch: int, name: str | None, names: dict[str, str]) -> Event:
    data = DaemonStart("t", epoch, "clean", True, {"air": 600.0}, name, names).to_data()
    return Event(seq, ts, DaemonStart.KIND, "daemon", data)


@pytest.fixture(scope="module")
def api(tmp_path_factory, postgres_server):
    tmp = tmp_path_factory.mktemp("names")
    database = postgres_server.create_database()
    store = Store.connect(database.url)
    try:
        readings = tuple(Reading(i + 1, T0 + 600 * i, "air", "temperature", 15.0 + i % 3, "°C") for i in range(12))
        store.write(Work(readings=[ReadingBatch(GATEWAY, 2, readings)]))
        # epoch 2's start arrives first, then epoch 1's (a re-send): the older names must not come back
        store.write(Work(events=[EventBatch(GATEWAY, 2, (
            _start(1, T0, 2, "گلخانه حسن", NAMES),
            Event(2, T0 + 1800, ActuatorChange.KIND, "heater-1", ActuatorChange(1.0, 0.0, "rule:heating").to_data()),
        ))]))
        store.write(Work(events=[EventBatch(GATEWAY, 1, (_start(1, T0 - 86400, 1, "old name", {"air": "old"}),))]))
    finally:
        store.close()
    running = Api({**os.environ, "EDGE_DATABASE_URL": database.url, "EDGE_MQTT_URL": "mqtt://127.0.0.1:1"}, tmp)
    running.secret = running.token("all", "gh-*")
    yield running
    running.stop()


def test_the_latest_start_names_the_gateway_and_its_devices_in_the_api(api):
    [gateway] = api.get("/v1/gateways", api.secret).json()
    assert (gateway["id"], gateway["name"], gateway["names"]) == (GATEWAY, "گلخانه حسن", NAMES)
    assert api.get(f"/v1/gateways/{GATEWAY}", api.secret).json()["name"] == "گلخانه حسن"
    [series] = api.get(f"/v1/gateways/{GATEWAY}/sensors", api.secret).json()
    assert (series["sensor"], series["name"]) == ("air", "هوای داخل")


def test_edge_history_gateways_shows_the_name(api):
    result = api.cli("history", "gateways", "--server", api.url, "--token-file", api.token_file(api.secret))
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split()[-1] == "NAME" and row.endswith("گلخانه حسن")


def test_the_chart_labels_lines_and_bands_with_display_names(api):
    pytest.importorskip("matplotlib")
    from edge.history import Request, figure

    drawn, _ = figure(Request(api.url, api.secret, GATEWAY, "2025-12-01T00:00:00Z", "2025-12-01T02:00:00Z"))
    [legend] = drawn.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["air (هوای داخل)", "heater-1 (بخاری) on"]  # the id first: the label reads left to right
    title = drawn.axes[0].get_title()
    assert title.startswith(f"{GATEWAY}: ") and title.endswith(" · گلخانه حسن")


def test_a_gateway_without_names_is_labelled_by_its_ids(api, postgres_server):
    store = Store.connect(api.env["EDGE_DATABASE_URL"])
    try:
        store.write(Work(events=[EventBatch(GATEWAY, 3, (_start(1, T0 + 7200, 3, None, {}),))]))
    finally:
        store.close()
    [gateway] = api.get("/v1/gateways", api.secret).json()
    assert (gateway["name"], gateway["names"]) == (None, {})
    [series] = api.get(f"/v1/gateways/{GATEWAY}/sensors", api.secret).json()
    assert series["name"] is None
