"""The greenhouse page's logic without a browser: its config, the secret file, the attempts limit, sessions and CSRF,
what the page shows from a real buffer (values, «بدون داده», Persian digits, charts with gaps), and every bad
request refused with a 4xx that names it. The daemon's control socket is the one thing replaced here (by a recorder):
tests/test_web_browser.py drives the page against a running `edge run`."""

from __future__ import annotations

import html
import http.client
import re
import socket
import sys
import threading
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.gateway.alerts.store import Store
from edge.gateway.buffer import Buffer, NewReading
from edge.gateway.config import parse_config
from edge.gateway.web import view
from edge.gateway.web.auth import Attempts, hash_secret, verify
from edge.gateway.web.server import Request, Server, WebApp

from conftest import wait_until

T0 = 1_765_000_000.0  # 6 Dec 2025 05:46 UTC: 15 Azar 1404 in Tehran

CONFIG = """\
gateway: {{id: gh-web, name: گلخانه حسن, timezone: Asia/Tehran}}
buffer: {{path: {buffer}}}
control: {{socket: {socket}}}
sensors:
  - {{id: air, name: هوا, type: simulated, measures: [temperature, humidity], interval: 10s}}
  - {{id: soil, type: simulated, measures: [soil_moisture], zone: bed-1, interval: 1m}}
actuators:
  - {{id: pump, name: پمپ بستر, type: relay, kind: pump, zone: bed-1, pin: 27, max_on: 30m}}
  - {{id: fan, type: pwm, kind: fan, pin: 18}}
web: {{listen: "127.0.0.1:0", pin_file: {pin}}}
"""


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Daemon:
    """Stands in for the daemon's control socket: records each request and answers as told."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answer: dict | Exception = {"ok": True, "result": {}}

    def __call__(self, request: dict) -> dict:
        self.requests.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def greenhouse(tmp_path):
    pin = tmp_path / "web.pin"
    pin.write_text("482913\n")
    config = parse_config(CONFIG.format(buffer=tmp_path / "buffer.db", socket=tmp_path / "control.sock", pin=pin))
    buffer, _ = Buffer.open(config.buffer.path, now=T0 - 7200, boot_id="b")
    yield config, buffer
    buffer.close()


@pytest.fixture
def app(greenhouse):
    config, _ = greenhouse
    daemon = Daemon()
    clock = Clock()
    web = WebApp(config, ask=daemon, clock=clock)
    web.daemon, web.test_clock = daemon, clock
    return web


def get(app: WebApp, target: str = "/", cookies: dict | None = None, client: str = "10.0.0.5"):
    headers = {"cookie": "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())}
    return app.handle(Request("GET", target, client, headers))


def post(app: WebApp, path: str, fields: dict, cookies: dict | None = None, client: str = "10.0.0.5",
         content_type: str = "application/x-www-form-urlencoded"):
    from urllib.parse import urlencode

    headers = {"cookie": "; ".join(f"{k}={v}" for k, v in (cookies or {}).items()), "content-type": content_type}
    return app.handle(Request("POST", path, client, headers, urlencode(fields).encode()))


def set_cookies(response) -> dict[str, str]:
    return {value.split("=", 1)[0]: value.split("=", 1)[1].split(";")[0]
            for name, value in response.headers if name == "Set-Cookie"}


def text(response) -> str:
    return response.body.decode()


def notice(response) -> str:
    found = re.search(r'<p id="notice"[^>]*>([^<]*)<', text(response))
    return html.unescape(found.group(1)) if found else ""


def logged_in(app: WebApp, client: str = "10.0.0.5") -> dict[str, str]:
    """Log in with the right PIN; the cookies and the session's CSRF token."""
    first = get(app, client=client)
    cookies = set_cookies(first)
    answer = post(app, "/login", {"csrf": cookies["edge_csrf"], "secret": "482913"}, cookies, client)
    assert answer.status == 303
    cookies.update(set_cookies(answer))
    page = text(get(app, cookies=cookies, client=client))
    cookies["form"] = re.search(r'action="/actuate".*?name="csrf" value="([^"]+)"', page).group(1)
    return cookies


# ------------------------------------------------------------------------------------------------------ config


def test_web_listen_without_a_pin_or_password_file_is_refused_with_a_reason(tmp_path):
    with pytest.raises(ConfigError, match="web.listen needs web.pin_file or web.password_file"):
        parse_config("gateway: {id: g}\nweb: {listen: 0.0.0.0:8090}\n")
    with pytest.raises(ConfigError, match="not both"):
        parse_config(f"gateway: {{id: g}}\nweb: {{pin_file: {tmp_path}/a, password_file: {tmp_path}/b}}\n")
    with pytest.raises(ConfigError, match="port '99999'"):
        parse_config(f"gateway: {{id: g}}\nweb: {{listen: '0.0.0.0:99999', pin_file: {tmp_path}/a}}\n")
    assert parse_config("gateway: {id: g}\n").web.listen is None  # off unless set


def test_edge_check_wants_the_pin_file_unless_the_page_creates_it(tmp_path):
    text = f"gateway: {{id: g}}\nweb: {{listen: '127.0.0.1:8090', pin_file: {tmp_path}/web.pin}}\n"
    with pytest.raises(ConfigError, match="web.pin_file.*does not exist"):
        parse_config(text, files=True)
    created = text[:-2] + ", create_pin: true}\n"
    assert parse_config(created, files=True).web.create_pin


# ------------------------------------------------------------------------------------------------------ secrets


def test_a_secret_is_checked_against_the_file_as_a_hash_or_as_itself():
    stored = hash_secret("482913")
    assert stored.startswith("scrypt$") and "482913" not in stored
    assert verify(stored, "482913") and not verify(stored, "482914")
    assert verify("482913", "482913") and not verify("482913", "48291") and not verify("482913", "")
    import base64
    import hashlib

    digest = hashlib.pbkdf2_hmac("sha256", b"sesame", b"salt", 1000)
    pbkdf2 = f"pbkdf2_sha256$1000${base64.b64encode(b'salt').decode()}${base64.b64encode(digest).decode()}"
    assert verify(pbkdf2, "sesame") and not verify(pbkdf2, "Sesame")


def test_the_attempts_limit_counts_per_address_and_forgets_after_its_window():
    attempts = Attempts(limit=5, window=300)
    for i in range(5):
        assert attempts.wait("10.0.0.5", T0 + i) == 0
        attempts.failed("10.0.0.5", T0 + i)
    assert attempts.wait("10.0.0.5", T0 + 10) == pytest.approx(290)
    assert attempts.wait("10.0.0.6", T0 + 10) == 0  # another phone is not locked out
    assert attempts.wait("10.0.0.5", T0 + 300.5) == 0  # the first failure left the window


# ------------------------------------------------------------------------------------------------------ the page


def test_the_page_shows_the_buffers_values_in_persian_with_their_age(greenhouse, app):
    config, buffer = greenhouse
    buffer.append_readings([NewReading(T0 - 20, "air", "temperature", -2.5, "°C"),
                            NewReading(T0 - 20, "air", "humidity", 71.25, "%"),
                            NewReading(T0 - 30, "soil", "soil_moisture", 31.0, "%")])
    page = text(get(app))
    assert '<html lang="fa" dir="rtl">' in page
    assert "گلخانه حسن" in page
    assert "۱۵ آذر ۱۴۰۴" in page  # Jalali, Persian digits, the greenhouse's zone
    air = re.search(r'<li id="q-air-temperature".*?</li>', page).group(0)
    assert "\u2212۲٫۵°C" in air and "۲۰ ثانیه پیش" in air and 'data-nodata="false"' in air
    assert "۷۱٫۲٪" in page or "۷۱٫۳٪" in page
    assert "بدون داده" not in page
    assert "src=\"http" not in page and "href=\"http" not in page  # nothing from elsewhere


def test_a_stale_or_failed_or_never_read_quantity_shows_no_data(greenhouse, app):
    config, buffer = greenhouse
    buffer.append_readings([NewReading(T0 - 31, "air", "temperature", 21.0, "°C"),  # 3.1 intervals of 10 s
                            NewReading(T0 - 31, "air", "humidity", None, "%", "error", "no answer")])
    page = text(get(app))
    for quantity in ("air-temperature", "air-humidity", "soil-soil_moisture"):
        row = re.search(rf'<li id="q-{quantity}".*?</li>', page).group(0)
        assert "بدون داده" in row and 'data-nodata="true"' in row, quantity
    assert 'title="no answer"' in page  # the failed read says why, on hover
    app.test_clock.now = T0 - 25  # 0.6 intervals later it was fresh
    row = re.search(r'<li id="q-air-temperature".*?</li>', text(get(app))).group(0)
    assert "بدون داده" not in row and "۲۱°C" in row


def test_before_the_daemon_ever_ran_the_page_says_so_and_shows_no_data(tmp_path):
    pin = tmp_path / "web.pin"
    pin.write_text("482913\n")
    config = parse_config(CONFIG.format(buffer=tmp_path / "none.db", socket=tmp_path / "c.sock", pin=pin))
    answer = get(WebApp(config, ask=Daemon(), clock=Clock()))
    page = text(answer)
    assert answer.status == 200 and "هنوز داده‌ای ذخیره نشده است" in page
    assert page.count("بدون داده") == 3  # air temperature and humidity, soil moisture
    assert not (tmp_path / "none.db").exists()  # a reader creates nothing


def test_english_is_chosen_by_query_and_kept_in_a_cookie(app):
    answer = get(app, "/?lang=en")
    assert '<html lang="en" dir="ltr">' in text(answer) and "no data" in text(answer)
    cookie = next(v for n, v in answer.headers if n == "Set-Cookie" and v.startswith("edge_lang="))
    assert cookie.startswith("edge_lang=en") and "SameSite=Strict" in cookie
    assert '<html lang="en"' in text(get(app, cookies={"edge_lang": "en"}))
    bad = get(app, "/?lang=xx")
    assert bad.status == 400 and "xx" in notice(bad)


def test_the_chart_is_the_last_day_in_buckets_with_its_gaps_left_open(greenhouse, app):
    config, buffer = greenhouse
    since = T0 - view.DAY
    rows = [NewReading(since + b * view.STEP + 10, "air", "temperature", 10.0 + b, "°C")
            for b in (*range(0, 10), *range(20, 30), 40)]
    buffer.append_readings(rows)
    series = buffer.series(["air"], since, view.STEP)[("air", "temperature")]
    assert sorted(series) == [*range(0, 10), *range(20, 30), 40]
    svg = view.sparkline(series, "air")
    path = re.search(r'd="([^"]+)"', svg).group(1)
    assert path.count("M") == 2 and "l0.01 0" not in path  # the two runs: 0-9 and 20-29
    assert re.search(r'class="dot" d="M40.5 3.0 l0.01 0"', svg)  # the lone bucket is a dot
    assert path.startswith("M0.5 37.0") and "L20.5" not in path  # lowest value at the bottom; no line over the gap
    page = text(get(app))
    assert re.search(r'<li id="q-air-temperature".*?<path d="M0\.5', page)


def test_outputs_show_state_reason_and_time_left_and_the_forms_appear_after_login(greenhouse, app):
    config, buffer = greenhouse
    from edge.gateway.control.state import ControlState
    from edge.gateway.control.types import ActuatorState

    ControlState(buffer).save_actuator("pump", ActuatorState(value=1.0, reason="schedule:morning", since=T0 - 60,
                                                              until=T0 + 540))
    page = text(get(app))
    pump = re.search(r'<li id="o-pump".*?</li>', page).group(0)
    assert "پمپ بستر" in pump and "روشن" in pump and "برنامه" in pump and "۹ دقیقه مانده" in pump
    assert 'action="/actuate"' not in page and 'id="login"' in page
    cookies = logged_in(app)
    page = text(get(app, cookies=cookies))
    assert page.count('action="/actuate"') == 2 and 'id="logout"' in page


def test_active_alerts_are_listed_with_an_ack_button_behind_the_login(greenhouse, app):
    config, buffer = greenhouse
    store = Store(buffer)
    with store.transaction():
        _, code = store.new_incident(key="cold", rule_id="too-cold", severity="critical", kind="below",
                                     fact={"sensor": "air", "quantity": "temperature", "unit": "°C", "limit": 5.0},
                                     fired_ts=T0 - 600, value=3.0)
    page = text(get(app))
    alert = re.search(rf'<li id="a-{code}".*?</li>', page).group(0)
    assert "فوری" in alert and "دما ۳°" in alert and "too-cold" not in alert  # as its SMS says it, no Latin id
    assert 'action="/ack"' not in page
    cookies = logged_in(app)
    answer = post(app, "/ack", {"csrf": cookies["form"], "code": code}, cookies)
    assert answer.status == 303
    assert app.daemon.requests == [{"op": "ack_alert", "code": code, "who": "web"}]


# ------------------------------------------------------------------------------------------------------ login


def test_six_wrong_pins_from_one_address_are_answered_429_with_the_wait_in_persian(app):
    cookies = set_cookies(get(app))
    for _ in range(5):
        answer = post(app, "/login", {"csrf": cookies["edge_csrf"], "secret": "000000"}, cookies)
        assert answer.status == 401 and notice(answer) == "رمز نادرست است"
    locked = post(app, "/login", {"csrf": cookies["edge_csrf"], "secret": "482913"}, cookies)  # right, but too late
    assert locked.status == 429 and "۵ دقیقه دیگر" in notice(locked)
    assert ("Retry-After", "301") in locked.headers
    assert "edge_session" not in set_cookies(locked)
    assert post(app, "/login", {"csrf": cookies["edge_csrf"], "secret": "482913"}, cookies,
                client="10.0.0.9").status == 303  # another address is not locked out
    app.test_clock.now += 100  # 3 min 20 s left: told as 4 minutes, rounded up
    assert "۴ دقیقه دیگر" in notice(post(app, "/login", {"csrf": cookies["edge_csrf"], "secret": "482913"}, cookies))
    app.test_clock.now += 201
    assert post(app, "/login", {"csrf": cookies["edge_csrf"], "secret": "482913"}, cookies).status == 303


def test_the_session_cookie_is_httponly_and_samesite_strict_and_logout_ends_it(app):
    cookies = set_cookies(get(app))
    answer = post(app, "/login", {"csrf": cookies["edge_csrf"], "secret": "482913"}, cookies)
    header = next(v for n, v in answer.headers if n == "Set-Cookie" and v.startswith("edge_session="))
    assert "HttpOnly" in header and "SameSite=Strict" in header
    cookies = logged_in(app)
    assert post(app, "/logout", {"csrf": cookies["form"]}, cookies).status == 303
    assert post(app, "/actuate", {"csrf": cookies["form"], "actuator": "pump", "action": "on"},
                cookies).status == 401
    assert app.daemon.requests == []


def test_a_login_without_the_forms_csrf_token_is_refused(app):
    cookies = set_cookies(get(app))
    answer = post(app, "/login", {"csrf": "forged-token-forged-token-forged", "secret": "482913"}, cookies)
    assert answer.status == 403 and "edge_session" not in set_cookies(answer)


def test_a_missing_secret_file_makes_login_impossible_and_says_so(app, greenhouse):
    Path(app.web.pin_file).unlink()
    cookies = set_cookies(get(app))
    answer = post(app, "/login", {"csrf": cookies["edge_csrf"], "secret": "482913"}, cookies)
    assert answer.status == 503 and "فایل رمز" in notice(answer)


# ------------------------------------------------------------------------------------------------------ commands


def test_a_switch_goes_to_the_daemon_as_edge_actuate_sends_it(app):
    cookies = logged_in(app)
    answer = post(app, "/actuate", {"csrf": cookies["form"], "actuator": "pump", "action": "on", "for": "600"},
                  cookies)
    assert answer.status == 303 and ("Location", "/#o-pump") in answer.headers
    assert app.daemon.requests == [{"op": "actuate", "actuator": "pump", "action": "on", "who": "web", "for": 600.0}]


def test_a_switch_past_max_on_is_refused_in_persian_before_the_daemon_is_asked(app):
    cookies = logged_in(app)
    answer = post(app, "/actuate", {"csrf": cookies["form"], "actuator": "pump", "action": "on", "for": "3600"},
                  cookies)
    assert answer.status == 409
    assert notice(answer) == "پمپ بستر: پذیرفته نشد: ۱ ساعت بیش از بیشترین زمان روشن ماندن آن (۳۰ دقیقه) است"
    assert app.daemon.requests == []


def test_the_daemons_refusal_is_shown_in_persian(app):
    cookies = logged_in(app)
    app.daemon.answer = {"ok": False, "error": "refused: min_off 5m not yet elapsed"}
    answer = post(app, "/actuate", {"csrf": cookies["form"], "actuator": "fan", "action": "on", "for": "600"},
                  cookies)
    assert answer.status == 409 and "فن: پذیرفته نشد" in notice(answer)


def test_a_daemon_that_does_not_answer_in_time_is_not_said_to_have_done_nothing(app):
    cookies = logged_in(app)
    app.daemon.answer = TimeoutError("timed out")
    answer = post(app, "/actuate", {"csrf": cookies["form"], "actuator": "fan", "action": "off"}, cookies)
    assert answer.status == 504 and "پاسخ نداد" in notice(answer) and "اجرا نشد" not in notice(answer)


def test_an_unreachable_daemon_makes_a_command_answer_503(app):
    cookies = logged_in(app)
    app.daemon.answer = ConnectionRefusedError(111, "Connection refused")
    answer = post(app, "/actuate", {"csrf": cookies["form"], "actuator": "fan", "action": "off"}, cookies)
    assert answer.status == 503 and "در دسترس نیست" in notice(answer)


@pytest.mark.parametrize("fields, status, words", [
    ({"actuator": "boiler", "action": "on"}, 400, "خروجی ناشناخته 'boiler'"),
    ({"actuator": "pump", "action": "toggle"}, 400, "فرمان ناشناخته 'toggle'"),
    ({"actuator": "pump", "action": "on", "for": "ten"}, 400, "مدت 'ten' عدد ثانیه نیست"),
    ({"actuator": "pump", "action": "on", "colour": "red"}, 400, "فیلد ناشناخته 'colour'"),
    ({"action": "on"}, 400, "فیلد 'actuator' نیامده است"),
])
def test_a_bad_form_field_is_named_and_nothing_is_sent(app, fields, status, words):
    cookies = logged_in(app)
    answer = post(app, "/actuate", {"csrf": cookies["form"], **fields}, cookies)
    assert answer.status == status and words in notice(answer)
    assert app.daemon.requests == []


def test_a_forged_csrf_token_or_a_foreign_origin_is_refused(app):
    cookies = logged_in(app)
    assert post(app, "/actuate", {"csrf": "x" * 32, "actuator": "pump", "action": "off"}, cookies).status == 403
    from urllib.parse import urlencode

    foreign = Request("POST", "/actuate", "10.0.0.5",
                      {"cookie": f"edge_session={cookies['edge_session']}", "origin": "http://evil.example",
                       "host": "10.0.0.2:8090", "content-type": "application/x-www-form-urlencoded"},
                      urlencode({"csrf": cookies["form"], "actuator": "pump", "action": "off"}).encode())
    assert app.handle(foreign).status == 403
    assert app.daemon.requests == []


def test_unknown_paths_methods_and_body_types_are_4xx(app):
    assert get(app, "/admin").status == 404
    answer = app.handle(Request("DELETE", "/", "10.0.0.5", {}))
    assert answer.status == 405 and ("Allow", "GET, HEAD") in answer.headers
    assert get(app, "/actuate").status == 405
    cookies = logged_in(app)
    assert post(app, "/actuate", {"csrf": cookies["form"], "actuator": "pump", "action": "off"}, cookies,
                content_type="application/json").status == 415


# ------------------------------------------------------------------------------------------------------ HTTP


@pytest.fixture
def server(app):
    httpd = Server(("127.0.0.1", 0), app)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_the_server_refuses_oversize_bodies_and_garbage_and_keeps_serving(server):
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    connection.request("POST", "/login", body=b"x" * 100_000,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    answer = connection.getresponse()
    western = answer.read().decode().translate(str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789"))
    assert answer.status == 413 and "4096" in western
    connection.close()
    with socket.create_connection(("127.0.0.1", server), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01 garbage\r\n\r\n")
        assert b"400" in raw.recv(1000)
    with socket.create_connection(("127.0.0.1", server), timeout=10) as raw:
        raw.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 411")
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    connection.request("GET", "/", headers={"Accept-Encoding": "gzip"})
    answer = connection.getresponse()
    assert answer.status == 200 and answer.getheader("Content-Encoding") == "gzip"
    assert "default-src 'none'" in answer.getheader("Content-Security-Policy")
    import gzip

    assert '<html lang="fa" dir="rtl">' in gzip.decompress(answer.read()).decode()
    connection.request("GET", "/static/app.js")
    assert connection.getresponse().read().startswith(b"//")


def test_connections_past_the_limit_are_answered_503_and_the_server_recovers(app):
    httpd = Server(("127.0.0.1", 0), app, max_connections=3)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port = httpd.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]  # send nothing
    try:
        def refused():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
                return extra.recv(100).startswith(b"HTTP/1.1 503")
        wait_until(refused, 30, "a connection past the limit to be refused")
    finally:
        for connection in idle:
            connection.close()

    def served():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/")
        status = connection.getresponse().status
        connection.close()
        return status == 200
    try:
        wait_until(served, 30, "the server to answer again once the idle clients left")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_edge_web_set_secret_writes_a_hash_the_login_accepts(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edge.cli import main

    # edge web keeps numpy out of its process (sys.modules["numpy"] = None): here that is the test process, so it is
    # undone afterwards (later tests in it, psycopg's int dumpers and hypothesis, look for numpy in sys.modules)
    monkeypatch.setitem(sys.modules, "numpy", sys.modules.get("numpy"))

    pin = tmp_path / "web.pin"
    config = tmp_path / "gateway.yaml"
    config.write_text(f"gateway: {{id: g}}\nbuffer: {{path: {tmp_path}/b.db}}\nweb: {{pin_file: {pin}}}\n")
    result = CliRunner().invoke(main, ["web", "--set-secret", "-c", str(config), "--env-file", "/dev/null"],
                                input="5931\n5931\n")
    assert result.exit_code == 0, result.output
    stored = pin.read_text().strip()
    assert stored.startswith("scrypt$") and "5931" not in stored and verify(stored, "5931")
    assert oct(pin.stat().st_mode & 0o777) == "0o640"
    off = CliRunner().invoke(main, ["web", "-c", str(config), "--env-file", "/dev/null"])
    assert off.exit_code == 1 and "web.listen is not set" in off.output


def test_the_demo_pin_is_made_up_once_and_kept(tmp_path):
    from edge.gateway.web.auth import create_pin

    path = tmp_path / "var" / "web.pin"
    pin = create_pin(path)
    assert re.fullmatch(r"[0-9]{6}", pin) and path.read_text().strip() == pin
    assert create_pin(path) is None and path.read_text().strip() == pin  # later runs keep it


def test_a_refused_request_is_logged_without_the_pin(app, caplog):
    cookies = set_cookies(get(app))
    with caplog.at_level("WARNING", logger="edge.web"):
        post(app, "/login", {"csrf": cookies["edge_csrf"], "secret": "917364"}, cookies)
        get(app, "/admin")
    assert "wrong secret from 10.0.0.5" in caplog.text and "404 for GET /admin" in caplog.text
    assert "917364" not in caplog.text

