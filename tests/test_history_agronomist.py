"""What an agronomist pulling and charting a season needs from `edge history`: each reading's clock flag and its
gateway in the CSV, means rounded, local-day buckets (`--tz`), several gateways in one resumable pull, a wide table
on a regular grid, and a chart that shows no more than is known.

The database is written directly (as the collector stores rows: clock 0 unsynced, 1 synced, 2 corrected); the real
`edge dc api` runs in front of it as a subprocess, and the real `edge history` commands pull from it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from edge.datacenter.store import migrate
from test_history import Api

pytestmark = pytest.mark.slow

UTC = timezone.utc
NORTH, SOUTH = "gh-north-01", "gh-south-02"
#: Twelve hours of NORTH, across UTC midnight and across Tehran's midnight (2025-07-14T20:30Z).
T0 = datetime(2025, 7, 14, 18, 0, tzinfo=UTC)
HOURS = 12
#: NORTH's air sensor sends nothing in this hour (00:00-01:00Z, readings at 00:00 and 01:00 included).
GAP = (datetime(2025, 7, 15, 0, 0, tzinfo=UTC), datetime(2025, 7, 15, 1, 0, tzinfo=UTC))
#: The heater goes on at 05:00Z and no event says it went off; the last reading is at 05:50Z.
HEATER_ON = datetime(2025, 7, 15, 5, 0, tzinfo=UTC)
FROM, TO = "2025-07-14T18:00:00Z", "2025-07-15T06:00:00Z"


def _rows():
    """NORTH: air temperature every 10 min (values in tenths: their means are not short in binary), soil moisture
    every 10 min 250 ms later; the first six air readings before the clock synced, the next two re-timed."""
    rows = []
    seq = 0
    for i in range(HOURS * 6):
        at = T0 + timedelta(minutes=10 * i)
        seq += 1
        if not GAP[0] <= at <= GAP[1]:
            clock = 0 if i < 6 else 2 if i < 8 else 1
            rows.append((NORTH, seq, at, "air", "temperature", 0.1 * (i % 10) + 0.1, "°C", clock))
        seq += 1
        rows.append((NORTH, seq, at + timedelta(milliseconds=250), "soil", "soil_moisture", 30 + i % 3, "%", 1))
    for i in range(6):
        rows.append((SOUTH, i + 1, T0 + timedelta(minutes=10 * i, milliseconds=500), "air", "temperature",
                     20.0 + i, "°C", 1))
    return rows


def _store(conn) -> None:
    conn.execute("INSERT INTO gateway_status (gateway_id, state, state_since, last_seen) VALUES "
                 "(%s, 'online', now(), now()), (%s, 'online', now(), now())", (NORTH, SOUTH))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO readings (gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, "
                        "clock) VALUES (%s, 1, %s, %s, %s, %s, %s, %s, 'good', %s)", _rows())
    events = [(1, T0, "daemon.start", "daemon", {"version": "t", "epoch": 1, "previous_stop": "clean",
                                                 "clock_synced": False}),
              (2, T0 + timedelta(hours=1), "actuator.change", "fan", {"value": 1.0, "previous": 0.0, "reason": "r"}),
              (3, T0 + timedelta(hours=2), "actuator.change", "pump", {"value": 1.0, "previous": 0.0, "reason": "r"}),
              (4, T0 + timedelta(hours=3), "actuator.change", "fan", {"value": 0.0, "previous": 1.0, "reason": "r"}),
              (5, T0 + timedelta(hours=3, minutes=30), "actuator.change", "pump",
               {"value": 0.0, "previous": 1.0, "reason": "r"}),
              (6, HEATER_ON, "actuator.change", "heater", {"value": 1.0, "previous": 0.0, "reason": "rule:frost"})]
    for seq, at, kind, source, data in events:
        conn.execute("INSERT INTO events (gateway_id, epoch, seq, ts, kind, source, data) VALUES "
                     "(%s, 1, %s, %s, %s, %s, %s)", (NORTH, seq, at, kind, source, json.dumps(data)))


@pytest.fixture(scope="module")
def api(tmp_path_factory, postgres_server):
    tmp = tmp_path_factory.mktemp("agronomist")
    database = postgres_server.create_database()
    with database.connect() as conn:
        migrate(conn)
        _store(conn)
    running = Api({**os.environ, "EDGE_DATABASE_URL": database.url, "EDGE_MQTT_URL": "mqtt://127.0.0.1:1"}, tmp)
    running.database = database
    running.secret = running.token("all", "gh-*")
    yield running
    running.stop()


def history(api, command: str, *args: str):
    return api.cli("history", command, "--server", api.url, "--token-file", api.token_file(api.secret), *args)


def pull(api, *args: str, gateways=(NORTH,), start=FROM, end=TO):
    return history(api, "pull", *[a for g in gateways for a in ("--gateway", g)], "--from", start, "--to", end,
                   *args)


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# ------------------------------------------------------------------------------------------------------- the CSV


def test_each_row_carries_its_gateway_and_the_clock_it_was_taken_with(api):
    result = pull(api, "--sensor", "air")
    assert result.exit_code == 0, result.output
    rows = rows_of(result.stdout)
    assert result.stdout.startswith("ts,gateway,sensor,quantity,value,unit,quality,clock,epoch,seq\n")
    assert {r["gateway"] for r in rows} == {NORTH}
    assert [r["clock"] for r in rows[:9]] == ["unsynced"] * 6 + ["corrected"] * 2 + ["synced"]
    assert {r["quality"] for r in rows} == {"good"}


def test_means_are_rounded_to_six_significant_digits(api):
    result = pull(api, "--sensor", "air", "--every", "1h")
    assert result.exit_code == 0, result.output
    rows = rows_of(result.stdout)
    means = {r["ts"]: r["mean"] for r in rows}
    assert means["2025-07-14T18:00:00.000Z"] == "0.35"  # 0.1, 0.2, ... 0.6 in binary: 0.35000000000000003
    assert all(len(m.replace(".", "").replace("-", "").lstrip("0")) <= 6 for m in means.values()), means
    assert result.stdout.startswith("ts,gateway,sensor,quantity,unit,count,min,mean,max\n")
    assert rows[0]["gateway"] == NORTH


def test_daily_buckets_are_local_days_with_tz(api):
    """Tehran's day starts at 20:30 UTC: the 15 air readings of 18:00-20:20Z are the 14th there, the rest the 15th;
    --from/--to without an offset are Tehran's times, and every time is written with its offset."""
    result = pull(api, "--sensor", "air", "--every", "1d", "--tz", "Asia/Tehran", start="2025-07-14T21:00",
                  end="2025-07-15T10:00")
    assert result.exit_code == 0, result.output
    rows = [(r["ts"], int(r["count"])) for r in rows_of(result.stdout)]
    assert rows == [("2025-07-14T00:00:00.000+03:30", 15), ("2025-07-15T00:00:00.000+03:30", 72 - 15 - 7)]
    utc = pull(api, "--sensor", "air", "--every", "1d")
    assert [(r["ts"], int(r["count"])) for r in rows_of(utc.stdout)] == [
        ("2025-07-14T00:00:00.000Z", 36), ("2025-07-15T00:00:00.000Z", 72 - 36 - 7)]


def test_hourly_buckets_in_a_half_hour_zone_start_at_its_full_hours(api):
    result = pull(api, "--sensor", "soil", "--every", "1h", "--tz", "Asia/Tehran", "--format", "ndjson")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["ts"] == "2025-07-14T21:00:00.000+03:30" and rows[0]["count"] == 3  # 18:00, 18:10, 18:20Z
    assert rows[1]["ts"] == "2025-07-14T22:00:00.000+03:30" and rows[1]["count"] == 6
    raw = pull(api, "--sensor", "soil", "--tz", "Asia/Tehran")
    assert rows_of(raw.stdout)[0]["ts"] == "2025-07-14T21:30:00.250+03:30"


def test_a_local_export_resumes_exactly_after_a_cut(api, tmp_path):
    whole, cut = tmp_path / "whole.csv", tmp_path / "cut.csv"
    args = ("--every", "1h", "--tz", "Asia/Tehran", "-o")
    assert pull(api, *args, str(whole)).exit_code == 0
    data = whole.read_bytes()
    cut.write_bytes(data[:len(data) // 2 + 5])
    assert pull(api, *args, str(cut), "--resume").exit_code == 0
    assert cut.read_bytes() == data
    cut.write_bytes(data[:len(data) // 2])
    utc = pull(api, "--every", "1h", "-o", str(cut), "--resume")  # without --tz: the file would mix two forms
    assert utc.exit_code == 1 and "resume with the --tz the file was pulled with" in utc.stderr


@pytest.mark.parametrize("zone", ["Asia/Tehrn", "../../etc/passwd", "", "Not a zone"])
def test_an_unknown_time_zone_is_a_400_naming_it(api, zone):
    response = api.get(f"/v1/gateways/{NORTH}/readings", api.secret,
                       params={"from": FROM, "to": TO, "every": "1d", "tz": zone})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert f"tz: {zone!r} is not a time zone" in response.json()["detail"]
    result = pull(api, "--every", "1d", "--tz", zone or "x/")
    assert result.exit_code == 1 and "is not a time zone" in result.stderr


# ----------------------------------------------------------------------------------------- several gateways


def test_several_gateways_are_pulled_into_one_file_each_row_with_its_gateway(api):
    both = pull(api, "--sensor", "air", gateways=(NORTH, SOUTH, NORTH))
    assert both.exit_code == 0, both.output
    rows = rows_of(both.stdout)
    north = rows_of(pull(api, "--sensor", "air").stdout)
    south = rows_of(pull(api, "--sensor", "air", gateways=(SOUTH,)).stdout)
    assert len(north) == 65 and len(south) == 6
    assert rows == north + south  # in the order given, each gateway once
    assert [r["gateway"] for r in rows] == [NORTH] * 65 + [SOUTH] * 6


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_a_pull_of_several_gateways_resumes_exactly_from_any_byte(api, tmp_path, fmt):
    whole = tmp_path / f"whole.{fmt}"
    args = ("--format", fmt, "--every", "1h")
    assert pull(api, *args, "-o", str(whole), gateways=(SOUTH, NORTH)).exit_code == 0
    data = whole.read_bytes()
    south_end = data.index(NORTH.encode())
    south_end = data.rindex(b"\n", 0, south_end) + 1
    for offset in (0, 30, south_end - 4, south_end, south_end + 9, len(data) // 2, len(data) - 2):
        left = tmp_path / f"left-{offset}.{fmt}"
        left.write_bytes(data[:offset])
        result = pull(api, *args, "-o", str(left), "--resume", gateways=(SOUTH, NORTH))
        assert result.exit_code == 0, result.output
        assert left.read_bytes() == data, f"resumed from byte {offset}"
    other = pull(api, *args, "-o", str(left), "--resume", gateways=(SOUTH,))  # the file ends with NORTH's rows
    assert other.exit_code == 1 and f"last row is of gateway {NORTH!r}, not of {SOUTH}" in other.stderr


# -------------------------------------------------------------------------------------------------- the chart


def chart(api, every=None, tz=None, end="2025-07-16T00:00:00Z"):
    pytest.importorskip("matplotlib")
    from edge.history import Request, figure

    drawn, _ = figure(Request(api.url, api.secret, NORTH, FROM, end, every=every, tz=tz))
    return drawn


def _days(ts: datetime) -> float:
    import matplotlib.dates as mdates

    return mdates.date2num(ts)


def test_an_actuator_still_on_is_drawn_on_only_up_to_the_last_thing_known(api):
    """The heater went on at 05:00Z; the last reading is at 05:50Z; the range asked for runs to the next midnight."""
    drawn = chart(api)
    heater = [p for ax in drawn.axes for p in ax.patches if p.get_gid() == "actuator:heater"]
    assert heater
    for band in heater:
        assert band.get_x() == pytest.approx(_days(HEATER_ON))
        assert band.get_x() + band.get_width() == pytest.approx(
            _days(datetime(2025, 7, 15, 5, 50, 0, 250000, tzinfo=UTC)), abs=1e-6)


@pytest.mark.parametrize("every", [None, "1m", "1h", "1d"])
def test_a_line_never_bridges_the_hour_the_air_sensor_missed(api, every):
    import math

    import matplotlib.dates as mdates

    middle = _days(GAP[0] + (GAP[1] - GAP[0]) / 2)
    drawn = chart(api, every=every, end=TO)
    air = drawn.axes[1]  # panels by quantity: soil_moisture, temperature
    assert air.get_ylabel() == "temperature (°C)"
    for line in air.get_lines():
        if line.get_linestyle() == "None":  # markers only
            continue
        xs = [mdates.date2num(x) if isinstance(x, datetime) else x for x in line.get_xdata()]
        points = list(zip(xs, line.get_ydata()))
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            assert not (x0 < middle < x1 and not math.isnan(y0) and not math.isnan(y1)), (every, x0, x1)


def test_one_legend_outside_the_panels_names_each_sensor_and_each_actuator_band(api):
    drawn = chart(api)
    drawn.canvas.draw()
    assert all(ax.get_legend() is None for ax in drawn.axes)
    [legend] = drawn.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["air", "soil", "time unsure (clock not synced)", "fan on", "heater on", "pump on"]
    box = legend.get_window_extent()
    assert all(not box.overlaps(ax.get_window_extent()) for ax in drawn.axes)
    # overlapping periods (fan 19-21h, pump 20-21:30h) are drawn in separate rows: they never mix
    rows = {}
    for ax in drawn.axes[:1]:
        for band in ax.patches:
            rows.setdefault(band.get_gid(), set()).add((band.get_y(), band.get_y() + band.get_height()))
    spans = sorted(next(iter(r)) for r in rows.values())
    assert len(spans) == 3 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_readings_taken_before_the_clock_synced_are_marked_as_unsure(api):
    import matplotlib.dates as mdates

    drawn = chart(api, end=TO)
    [marks] = [line for line in drawn.axes[1].get_lines() if line.get_gid() == "unsynced"]
    assert [mdates.date2num(x) if isinstance(x, datetime) else x for x in marks.get_xdata()] == pytest.approx(
        [_days(T0 + timedelta(minutes=10 * i)) for i in range(6)])
    assert "time unsure (clock not synced)" not in [t.get_text() for t in chart(api, every="1h").legends[0].texts]


def test_the_time_axis_is_in_the_zone_asked_for(api):
    import matplotlib.dates as mdates

    for tz, minute in ((None, 0), ("Asia/Tehran", 30)):
        drawn = chart(api, tz=tz, end=TO)
        drawn.canvas.draw()
        ticks = [mdates.num2date(x) for x in drawn.axes[-1].get_xticks()]
        assert len(ticks) >= 3 and {t.minute for t in ticks} == {minute}, (tz, ticks)
        assert (tz or "UTC") in drawn.axes[0].get_title()


# ------------------------------------------------------------------------------------------------------- --wide


def test_wide_gives_one_row_per_bucket_of_a_regular_grid_with_a_column_per_series(api):
    result = pull(api, "--every", "1h", "--wide")
    assert result.exit_code == 0, result.output
    rows = rows_of(result.stdout)
    assert result.stdout.startswith("ts,air.temperature,soil.soil_moisture\n")
    assert [r["ts"] for r in rows] == [f"2025-07-{d}T{h:02d}:00:00.000Z" for d, h in
                                       [("14", h) for h in range(18, 24)] + [("15", h) for h in range(6)]]
    by_time = {r["ts"]: r for r in rows}
    assert by_time["2025-07-15T00:00:00.000Z"]["air.temperature"] == ""  # the hour without air readings
    assert by_time["2025-07-15T00:00:00.000Z"]["soil.soil_moisture"] == "31.0"
    long = rows_of(pull(api, "--every", "1h").stdout)
    for row in long:
        assert by_time[row["ts"]][f"{row['sensor']}.{row['quantity']}"] == repr(float(row["mean"]))


def test_wide_keeps_empty_buckets_on_the_grid_and_follows_tz_and_several_gateways(api):
    result = pull(api, "--every", "1d", "--wide", "--tz", "Asia/Tehran", "--sensor", "air", gateways=(NORTH, SOUTH),
                  start="2025-07-13", end="2025-07-16")
    assert result.exit_code == 0, result.output
    rows = rows_of(result.stdout)
    assert list(rows[0]) == ["ts", f"{NORTH}/air.temperature", f"{SOUTH}/air.temperature"]
    assert [r["ts"] for r in rows] == ["2025-07-13T00:00:00.000+03:30", "2025-07-14T00:00:00.000+03:30",
                                       "2025-07-15T00:00:00.000+03:30"]
    assert rows[0][f"{NORTH}/air.temperature"] == rows[0][f"{SOUTH}/air.temperature"] == ""
    assert rows[1][f"{SOUTH}/air.temperature"] == "22.5"  # 20..25, all before Tehran's midnight
    assert rows[2][f"{SOUTH}/air.temperature"] == ""


def test_wide_needs_every_and_csv_and_cannot_resume(api, tmp_path):
    for args in (("--wide",), ("--wide", "--every", "1h", "--format", "ndjson"),
                 ("--wide", "--every", "1h", "-o", str(tmp_path / "w.csv"), "--resume")):
        result = pull(api, *args)
        assert result.exit_code == 2 and "--wide needs --every" in result.stderr, args


def test_plot_says_it_draws_one_gateway(api, tmp_path):
    result = history(api, "plot", "--gateway", NORTH, "--gateway", SOUTH, "--from", FROM, "--to", TO, "-o",
                     str(tmp_path / "c.png"))
    assert result.exit_code == 2 and "plot draws one gateway" in result.stderr
