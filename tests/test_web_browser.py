"""The greenhouse page in a real headless chromium, against a running `edge run` daemon on the simulation and
`edge web` as its own process, as a farmer uses it: values from the buffer, «بدون داده» for a sensor that fails,
a login, a switch from the page (and one past its max_manual refused with the reason), an alert acknowledged, six
wrong PINs rate-limited, the daemon stopped under the page and the page killed under the daemon.

Screenshots at phone and desktop size go to tests/screenshots/ (web-*.png); docs/operations.md describes them.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from conftest import DaemonProcess, wait_until

pytestmark = pytest.mark.slow

CONFIG = """\
gateway: {{id: gh-web, name: گلخانه نمونه, timezone: Asia/Tehran}}
hardware:
  backend: simulated
  simulation:
    faults:
      - {{sensor: co2, kind: dropout}}   # fails from the start: «بدون داده»
buffer: {{path: {dir}/buffer.db}}
clock: {{trust: synced}}
control: {{socket: {dir}/control.sock}}
sensors:
  - {{id: air, name: هوا, type: simulated, measures: [temperature, humidity], interval: 1s}}
  - {{id: soil, name: بستر ۱, type: simulated, measures: [soil_moisture], zone: bed-1, interval: 2s}}
  - {{id: co2, type: simulated, measures: [co2], interval: 2s}}
actuators:
  - {{id: fan, name: فن, type: pwm, kind: fan, pin: 18}}
  - {{id: pump, name: پمپ بستر ۱, type: relay, kind: pump, zone: bed-1, pin: 27, max_manual: 10m}}
alerts:
  recipients:
    - {{name: Farmer, number: "09120000000"}}
  group_window: 1s
  rules:
    - {{id: warm, type: above, severity: critical, input: {{sensor: air, quantity: temperature}}, threshold: -30,
       clear: -35, for: 1s}}
sms:
  transports:
    - {{type: console}}
web: {{listen: "127.0.0.1:0", pin_file: {dir}/web.pin, stale_after: 10}}
"""
# stale_after: 10 intervals, not 3 (the default): a loaded machine may sample the air late by more than 3 s
PIN = "274915"


class WebProcess:
    """`edge web -c CONFIG` as a subprocess; ``url`` is the address it printed."""

    def __init__(self, config: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "web", "-c", str(config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout], daemon=True).start()
        self.stderr: list[str] = []
        threading.Thread(target=lambda: [self.stderr.append(line) for line in self.proc.stderr], daemon=True).start()
        self.printed: list[str] = []
        while not self.printed or not self.printed[-1].startswith("greenhouse page: "):
            try:
                self.printed.append(lines.get(timeout=60))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError("edge web printed no address: " + "".join(self.stderr)) from None
        self.url = self.printed[-1].split()[-1]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def edge_status(config: Path, cli: bool = False) -> dict:
    """What `edge status --json` prints: run as the command (``cli``), or read in this process with the very
    function it calls (polling a subprocess costs a second an attempt)."""
    if cli:
        out = subprocess.run([sys.executable, "-m", "edge", "status", "--json", "-c", str(config)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    from edge.gateway.config import load_config
    from edge.gateway.status import read_status

    return read_status(load_config(config, env={})).to_json()


def every_sensor_read(config: Path) -> bool:
    from edge.gateway.buffer import BufferUnavailable

    try:
        return all(s["last_ts"] for s in edge_status(config)["sensors"].values())
    except BufferUnavailable:  # the daemon has not created it yet
        return False


def make_greenhouse(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "web.pin").write_text(PIN + "\n")
    config = directory / "gateway.yaml"
    config.write_text(CONFIG.format(dir=directory))
    return config


@pytest.fixture(scope="module")
def greenhouse(tmp_path_factory):
    """One daemon and one page for the module's tests (each starts in ~2 s; the tests share them)."""
    config = make_greenhouse(tmp_path_factory.mktemp("web"))
    daemon = DaemonProcess(config)
    try:
        web = WebProcess(config)
    except BaseException:
        daemon.stop()
        raise
    try:
        wait_until(lambda: every_sensor_read(config), 60, "every sensor to be read once")
    except AssertionError as exc:  # say what the daemon said, and leave no process behind
        web.stop()
        code, err = daemon.stop()
        raise AssertionError(f"{exc}; the daemon (exit {code}) logged:\n{err[-4000:]}") from None
    yield config, web
    web.stop()
    daemon.stop()


def element(browser, css: str):
    return browser.driver.find_element(By.CSS_SELECTOR, css)


def text_of(browser, css: str) -> str:
    return element(browser, css).text


def open_fresh(browser, url: str, size: str = "phone") -> None:
    """The page with no cookies: the browser fixture's reset runs on about:blank, where deleting cookies leaves
    those of 127.0.0.1 in place, so the previous test's login would still hold."""
    browser.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.open(url, size)


def submit(browser, css: str) -> None:
    """Click the form button ``css`` names and wait for the answer's page (a click does not wait for the navigation
    it starts). A page that reloaded itself between finding the button and clicking it (its 30 s refresh, on a
    slow machine) is searched again."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    for attempt in range(3):
        old = browser.driver.find_element(By.TAG_NAME, "html")
        try:
            element(browser, css).click()
            break
        except (StaleElementReferenceException, WebDriverException) as exc:
            if attempt == 2 or not isinstance(exc, StaleElementReferenceException) and \
                    "does not belong to the document" not in str(exc):
                raise
    WebDriverWait(browser.driver, 30).until(lambda _driver: gone(old))
    WebDriverWait(browser.driver, 30).until(
        lambda driver: driver.execute_script("return document.readyState") == "complete")


def gone(old) -> bool:
    """True once the page ``old`` belongs to has been replaced. Mid-navigation chromedriver may answer "does not
    belong to the document" instead of a stale reference; both mean the old page is gone."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        old.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


def log_in(browser, url: str, pin: str = PIN) -> None:
    open_fresh(browser, url)
    element(browser, "#login input[name=secret]").send_keys(pin)
    submit(browser, "#login button")


def reload_until(browser, predicate, what: str, timeout: float = 90.0):
    def check():
        browser.driver.refresh()
        return predicate()
    return wait_until(check, timeout, what)


def test_the_page_shows_the_buffers_values_in_persian_and_no_data_for_a_failing_sensor(browser, greenhouse):
    config, web = greenhouse
    open_fresh(browser, web.url)
    driver = browser.driver
    assert driver.execute_script("return [document.documentElement.lang, document.documentElement.dir]") == \
        ["fa", "rtl"]
    assert text_of(browser, "h1") == "گلخانه نمونه"
    status = edge_status(config)
    shown = text_of(browser, "#q-air-temperature .value")
    assert re.fullmatch(r"−?[۰-۹]+(٫[۰-۹])?°C", shown), shown  # Persian digits
    stored = status["sensors"]["air"]["quantities"]["temperature"]["value"]
    western = shown.translate(str.maketrans("۰۱۲۳۴۵۶۷۸۹٫−", "0123456789.-")).removesuffix("°C")
    assert abs(float(western) - stored) < 1.0  # the buffer's value (the daemon may have sampled again since)
    assert text_of(browser, "#q-co2-co2 .value") == "بدون داده"
    assert element(browser, "#q-co2-co2").get_attribute("data-nodata") == "true"
    assert "بدون داده" not in text_of(browser, "#q-soil-soil_moisture")
    assert element(browser, "#q-air-temperature svg.spark path").get_attribute("d").startswith("M")
    assert text_of(browser, "#o-pump .name") == "پمپ بستر ۱"
    # one phone screen wide: nothing overflows 360 px
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 360
    name = element(browser, "#q-air-temperature .name").rect
    assert name["x"] + name["width"] > 300, name  # right to left: names start at the right
    browser.screenshot("web-phone")
    browser.open(web.url + "?lang=en", size="desktop")
    assert driver.execute_script("return document.documentElement.dir") == "ltr"
    assert text_of(browser, "#q-co2-co2 .value") == "no data"
    browser.screenshot("web-desktop-en")
    browser.open(web.url, size="desktop")  # the cookie keeps English until Persian is chosen again
    assert driver.execute_script("return document.documentElement.lang") == "en"
    browser.open(web.url + "?lang=fa", size="desktop")
    assert driver.execute_script("return document.documentElement.lang") == "fa"
    browser.screenshot("web-desktop")


def test_a_switch_from_the_page_changes_the_output_and_one_past_max_manual_is_refused(browser, greenhouse):
    config, web = greenhouse
    log_in(browser, web.url)
    assert element(browser, "#logout")
    Select(element(browser, "#o-pump select[name=for]")).select_by_value("1800")  # 30 min > max_manual 10 min
    submit(browser, "#o-pump button[value=on]")
    refusal = text_of(browser, "#notice")
    assert refusal == "پمپ بستر ۱: پذیرفته نشد: ۳۰ دقیقه بیش از بیشترین زمان فرمان دستی آن (۱۰ دقیقه) است"
    assert edge_status(config)["actuators"]["pump"]["state"] == "off"
    browser.screenshot("web-phone-refused")
    Select(element(browser, "#o-pump select[name=for]")).select_by_value("300")
    submit(browser, "#o-pump button[value=on]")
    pump = edge_status(config, cli=True)["actuators"]["pump"]
    assert pump["state"] == "on" and pump["reason"].startswith("manual:web:") and 0 < pump["remaining_s"] <= 300
    assert element(browser, "#o-pump").get_attribute("data-state") == "on"
    assert "دستی" in text_of(browser, "#o-pump .why") and "مانده" in text_of(browser, "#o-pump .why")
    browser.screenshot("web-phone-logged-in")
    submit(browser, "#o-pump button[value=auto]")
    assert not edge_status(config)["actuators"]["pump"]["reason"].startswith("manual:")


def test_an_alert_acknowledged_from_the_page_is_acknowledged(browser, greenhouse):
    config, web = greenhouse
    log_in(browser, web.url)
    form = reload_until(browser, lambda: browser.driver.find_elements(By.CSS_SELECTOR, "#alerts form.ack"),
                        "the alert to fire and show an ack button")
    code = form[0].find_element(By.NAME, "code").get_attribute("value")
    submit(browser, f"#a-{code} form.ack button")
    assert "دیده شد" in text_of(browser, f"#a-{code}")
    listing = subprocess.run([sys.executable, "-m", "edge", "alerts", "-c", str(config)], capture_output=True,
                             text=True, timeout=60).stdout
    assert re.search(rf"^\s*{code}\s.*acknowledged by web:", listing, re.M), listing


def test_six_wrong_pins_are_answered_with_the_wait(browser, greenhouse):
    config, _ = greenhouse
    web = WebProcess(config)  # its own attempts memory: the other tests' logins stay possible
    try:
        for attempt in range(5):
            log_in(browser, web.url, pin="000000")
            assert text_of(browser, "#notice") == "رمز نادرست است", attempt
        log_in(browser, web.url)  # the right PIN, too late
        assert "تلاش‌های نادرست زیاد بود" in text_of(browser, "#notice")
        assert "دقیقه دیگر" in text_of(browser, "#notice")
        assert not browser.driver.find_elements(By.ID, "logout")
        browser.screenshot("web-phone-rate-limited")
        assert web.stop() == 0  # SIGTERM: a clean stop
    finally:
        web.stop()


def test_the_page_survives_its_daemon_and_the_daemon_survives_its_page(browser, tmp_path):
    config = make_greenhouse(tmp_path)
    daemon = DaemonProcess(config)
    web = WebProcess(config)
    try:
        wait_until(lambda: every_sensor_read(config), 60, "the first readings")
        log_in(browser, web.url)
        assert not browser.driver.find_elements(By.ID, "daemon")
        assert daemon.stop(timeout=90)[0] == 0
        browser.driver.refresh()
        assert "سامانه کنترل خاموش است" in text_of(browser, "#daemon")
        reload_until(browser, lambda: text_of(browser, "#q-air-temperature .value") == "بدون داده",
                     "the last reading to grow stale (10 intervals)")
        submit(browser, "#o-fan button[value=on]")
        assert "سامانه کنترل در دسترس نیست" in text_of(browser, "#notice")
        browser.screenshot("web-phone-daemon-stopped")

        daemon = DaemonProcess(config)
        reload_until(browser, lambda: not browser.driver.find_elements(By.ID, "daemon"), "the daemon to be back")
        web.stop(signal.SIGKILL)
        total = edge_status(config)["buffer"]["total"]
        wait_until(lambda: edge_status(config)["buffer"]["total"] >= total + 4, 90, "sampling to go on")
        assert daemon.proc.poll() is None
    finally:
        web.stop(signal.SIGKILL)
        daemon.stop()


def test_the_daemon_does_not_import_the_page():
    code = ("import sys, edge.gateway.daemon, edge.gateway.config; "
            "print(sorted(m for m in sys.modules if m.startswith('edge.gateway.web')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert out.stdout.strip() == "['edge.gateway.web', 'edge.gateway.web.config']", out.stderr
