"""The data center's console in a real headless chromium against the real chain (tests/console_kit.py): the fleet
view lists 5,000 gateways and filters, sorts and pages them; a greenhouse view charts the database's readings with
their gaps left open, the outputs' on-periods, the events, the coverage and a CSV of exactly what is shown; a
command from the console switches the simulated gateway's output and shows its result; a read-only token gets no
command form and is refused by the API; a command to an offline gateway is pending, then expired; the docs page
loads nothing from outside. Screenshots at phone and desktop size go to tests/screenshots/."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from console_kit import GATEWAY, Chain

pytestmark = pytest.mark.slow

FLEET = 5000
HISTORIC = "gh-history"  # a gateway whose readings the test writes straight into PostgreSQL
UTC = timezone.utc


def until(browser, condition, timeout: float = 30, what: str = "the page"):
    return WebDriverWait(browser.driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda driver: condition(driver), message=f"timed out waiting for {what}")


def log_in(browser, chain: Chain, secret: str, size: str = "desktop", hash_: str = "#/", lang: str = "en") -> None:
    # a file of the console's origin without script first: its storage is cleared before the page ever runs
    browser.open(f"{chain.url}/console/static/favicon.svg", size=size)
    browser.driver.execute_script("sessionStorage.clear(); localStorage.setItem('edge-console-lang', arguments[0])",
                                  lang)
    browser.driver.get(f"{chain.url}/console/{hash_}")
    field = until(browser, lambda d: d.find_element(By.ID, "token").is_displayed() and d.find_element(By.ID, "token"),
                  what="the login form")
    field.send_keys(secret)
    browser.driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    until(browser, lambda d: not d.find_element(By.ID, "login").is_displayed(), what="the login to pass")


@pytest.fixture(scope="module")
def fleet(chain):
    """5,000 gateways straight into gateway_status, a few with alerts and hours of readings, and one with a known
    history of readings (two runs with a gap between) and a heater's on-period."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    hour = now.replace(minute=0)
    with chain.database.connect() as conn:
        with conn.cursor().copy("COPY gateway_status (gateway_id, name, state, state_since, last_seen, backlog) "
                                "FROM STDIN") as copy:
            for i in range(FLEET):
                copy.write_row((f"gh-fleet-{i:04d}", f"گلخانه {i}", "offline" if i % 7 == 0 else "online",
                                now, now - timedelta(seconds=i * 13), (i * 37) % 1000))
        conn.execute("INSERT INTO gateway_hours (gateway_id, hour, readings, good) SELECT 'gh-fleet-0001', "
                     "%s - h * interval '1 hour', 360, 360 FROM generate_series(1, 24) h", (hour,))
        conn.execute("INSERT INTO gateway_hours (gateway_id, hour, readings, good) SELECT 'gh-fleet-0002', "
                     "%s - h * interval '1 hour', 360, 360 FROM generate_series(1, 12) h", (hour,))
        conn.execute("INSERT INTO events (gateway_id, epoch, seq, ts, kind, source, data) VALUES "
                     "('gh-fleet-0003', 1, 1, %s, 'alert.fired', 'too-cold:air', '{}'), "
                     "('gh-fleet-0003', 1, 2, %s, 'alert.fired', 'too-humid:air', '{}'), "
                     "('gh-fleet-0003', 1, 3, %s, 'alert.resolved', 'too-humid:air', '{}')",
                     (now - timedelta(hours=2), now - timedelta(hours=2), now - timedelta(hours=1)))
        # the historic gateway: readings each minute 3 h to 2 h ago and 90 to 60 min ago, and a heater on 150 to 130
        # minutes ago
        conn.execute("INSERT INTO gateway_status (gateway_id, state, state_since, last_seen, names) VALUES "
                     "(%s, 'offline', %s, %s, %s)", (HISTORIC, now, now - timedelta(hours=1),
                                                      json.dumps({"air": "هوا", "heater-1": "بخاری"})))
        minutes = [*range(180, 120, -1), *range(90, 60, -1)]
        conn.execute("INSERT INTO readings (gateway_id, epoch, seq, ts, sensor, quantity, value, unit, quality, clock) "
                     "SELECT %s, 1, m, %s - m * interval '1 minute' + interval '5 seconds', 'air', 'temperature', "
                     "15 + 4 * sin(m / 9.0), '°C', 'good', 1 FROM unnest(%s::int[]) AS m", (HISTORIC, now, minutes))
        conn.execute("INSERT INTO events (gateway_id, epoch, seq, ts, kind, source, data) VALUES "
                     "(%s, 1, 1, %s, 'actuator.change', 'heater-1', %s), (%s, 1, 2, %s, 'actuator.change', "
                     "'heater-1', %s)",
                     (HISTORIC, now - timedelta(minutes=150), json.dumps({"value": 1, "previous": 0,
                                                                          "reason": "rule:heating"}),
                      HISTORIC, now - timedelta(minutes=130), json.dumps({"value": 0, "previous": 1,
                                                                          "reason": "rule:heating"})))
        conn.commit()
    return {"reader": chain.token("console-reader", "gh-*"),
            "operator": chain.token("console-operator", "gh-*", scope="control"),
            "points": len(minutes)}


def test_the_fleet_summary_answers_for_5000_gateways_in_one_request(chain, fleet):
    answer = httpx.get(f"{chain.url}/v1/fleet", headers={"Authorization": f"Bearer {fleet['reader']}"}, timeout=30)
    assert answer.status_code == 200
    body = answer.json()
    rows = {row[0]: dict(zip(body["fields"], row)) for row in body["gateways"]}
    assert len(rows) == FLEET + 2 and GATEWAY in rows and HISTORIC in rows
    assert rows["gh-fleet-0001"]["coverage_24h"] == 1.0 and rows["gh-fleet-0002"]["coverage_24h"] == 0.5
    assert rows["gh-fleet-0003"]["alerts"] == 1 and rows["gh-fleet-0004"]["alerts"] == 0
    assert rows[GATEWAY]["clock"] == "synced" and rows[GATEWAY]["last_reading"] is not None
    narrow = chain.token("narrow", "gh-fleet-00[0-4]?")
    seen = httpx.get(f"{chain.url}/v1/fleet", headers={"Authorization": f"Bearer {narrow}"}, timeout=30).json()
    assert len(seen["gateways"]) == 50


def test_the_fleet_view_lists_5000_gateways_and_filters_sorts_and_pages_them(browser, chain, fleet):
    log_in(browser, chain, fleet["reader"])
    driver = browser.driver
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#fleet-rows tr")) == 50, what="the first page")
    assert driver.find_element(By.ID, "fleet-summary").text.startswith(f"{FLEET + 2:,} gateways")
    assert driver.find_element(By.ID, "page").text == f"1–50 of {FLEET + 2:,}"
    browser.screenshot("console-fleet-desktop")
    driver.find_element(By.ID, "filter").send_keys("gh-fleet-0042")
    until(browser, lambda d: [r.get_attribute("data-id") for r in d.find_elements(By.CSS_SELECTOR, "#fleet-rows tr")]
          == ["gh-fleet-0042"], what="the filter")
    driver.find_element(By.ID, "filter").clear()
    driver.execute_script("document.getElementById('filter').dispatchEvent(new Event('input'))")
    Select(driver.find_element(By.ID, "state-filter")).select_by_value("offline")
    offline = 1 + len(range(0, FLEET, 7))  # and the historic gateway
    until(browser, lambda d: d.find_element(By.ID, "page").text == f"1–50 of {offline:,}", what="offline only")
    until(browser, lambda d: {r.text for r in d.find_elements(By.CSS_SELECTOR, "#fleet-rows .badge")} == {"offline"},
          what="offline badges only")
    Select(driver.find_element(By.ID, "state-filter")).select_by_value("")
    driver.find_element(By.ID, "alerts-only").click()
    until(browser, lambda d: [r.get_attribute("data-id") for r in d.find_elements(By.CSS_SELECTOR, "#fleet-rows tr")]
          == ["gh-fleet-0003"], what="the gateways with alerts")
    driver.find_element(By.ID, "alerts-only").click()
    backlog = driver.find_element(By.CSS_SELECTOR, "th[data-sort=backlog]")
    backlog.click()
    backlog.click()  # descending
    until(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#fleet-rows tr td.num").text == "999",
          what="the largest backlog first")
    driver.find_element(By.ID, "next").click()
    assert driver.find_element(By.ID, "page").text == f"51–100 of {FLEET + 2:,}"


def test_the_fleet_view_in_persian_is_right_to_left_with_persian_digits_on_a_phone(browser, chain, fleet):
    log_in(browser, chain, fleet["reader"], size="phone", lang="fa")
    driver = browser.driver
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#fleet-rows tr")) == 50, what="the first page")
    assert driver.execute_script("return document.documentElement.dir") == "rtl"
    summary = driver.find_element(By.ID, "fleet-summary").text
    assert "درگاه" in summary and "۵٬۰۰۲" in summary, summary
    browser.screenshot("console-fleet-phone-fa")
    driver.find_element(By.ID, "lang").click()
    until(browser, lambda d: d.execute_script("return document.documentElement.dir") == "ltr", what="English")


def test_a_greenhouse_view_charts_the_databases_readings_with_gaps_on_periods_and_a_matching_csv(browser, chain,
                                                                                                 fleet):
    log_in(browser, chain, fleet["reader"], hash_=f"#/g/{HISTORIC}")
    driver = browser.driver
    path = until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#charts path.series"), what="the chart")[0]
    assert int(path.get_attribute("data-points")) == fleet["points"]
    assert path.get_attribute("d").count("M") == 2  # the half hour without readings is left open
    periods = driver.find_elements(By.CSS_SELECTOR, "#onoff rect.on")
    assert [p.get_attribute("data-output") for p in periods] == ["heater-1"]
    plot = float(driver.find_element(By.CSS_SELECTOR, "#onoff svg").get_attribute("data-plot-width"))
    width = float(periods[0].get_attribute("width"))
    assert width / plot == pytest.approx(20 / 1440, rel=0.05)  # 20 minutes of a 24 h axis
    kinds = [li.get_attribute("data-kind") for li in driver.find_elements(By.CSS_SELECTOR, "#timeline li")]
    assert kinds == ["actuator.change", "actuator.change"]
    hours = driver.find_elements(By.CSS_SELECTOR, "#heatmap rect.hour")
    assert len(hours) >= 3
    assert driver.find_element(By.ID, "command-box").is_displayed() is False  # a read-only token: no form
    browser.screenshot("console-greenhouse-desktop")
    driver.find_element(By.ID, "csv").click()
    link = until(browser, lambda d: d.find_elements(By.ID, "csv-link"), what="the CSV download")[0]
    assert link.get_attribute("download").startswith(f"{HISTORIC}_readings_")
    csv = httpx.get(chain.url + link.get_attribute("data-url"),
                    headers={"Authorization": f"Bearer {fleet['reader']}"}, timeout=30)
    assert "every=1m" in link.get_attribute("data-url")
    assert len(csv.text.strip().splitlines()) == 1 + fleet["points"]  # a header and exactly the points charted
    refused = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/v1/gateways/' + arguments[0] + '/commands', {method: 'POST', headers: {'Content-Type':
              'application/json', 'Authorization': 'Bearer ' + sessionStorage.getItem('edge-console-token')},
              body: JSON.stringify({op: 'ping'})}).then(r => done(r.status));""", HISTORIC)
    assert refused == 403


def send_from_the_console(browser, op: str, output: str = "", action: str = "on", duration: str = "",
                          expect: str | None = "done"):
    """Fill and send the command form; with ``expect``, wait for the new command's row in that state and return it
    (the gateway may have earlier commands listed)."""
    driver = browser.driver
    before = {r.get_attribute("data-command") for r in driver.find_elements(By.CSS_SELECTOR, "#command-rows tr")}
    Select(driver.find_element(By.ID, "cmd-op")).select_by_value(op)
    if op == "actuate":
        driver.find_element(By.ID, "cmd-output").clear()
        driver.find_element(By.ID, "cmd-output").send_keys(output)
        Select(driver.find_element(By.ID, "cmd-action")).select_by_value(action)
        driver.find_element(By.ID, "cmd-for").clear()
        driver.find_element(By.ID, "cmd-for").send_keys(duration)
    driver.find_element(By.ID, "cmd-send").click()
    if expect is None:
        return None

    def new_row(d):
        rows = [r for r in d.find_elements(By.CSS_SELECTOR, f"#command-rows tr[data-state={expect}]")
                if r.get_attribute("data-command") not in before]
        return rows[0] if rows else None

    return until(browser, new_row, what=f"a new command {expect}")


def test_a_command_from_the_console_switches_the_gateways_output_and_shows_its_result(browser, chain, fleet):
    log_in(browser, chain, fleet["operator"], size="phone", hash_=f"#/g/{GATEWAY}")
    driver = browser.driver
    until(browser, lambda d: d.find_element(By.ID, "command-box").is_displayed(), what="the command form")
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#charts path.series"), what="the live chart")
    assert chain.heater() == "off"
    row = send_from_the_console(browser, "actuate", "heater-1", "on", "10m")
    assert "heater-1: on" in row.find_element(By.CLASS_NAME, "answer").text
    assert chain.heater() == "on"
    driver.execute_script("document.getElementById('command-box').scrollIntoView()")
    browser.screenshot("console-greenhouse-command-phone")
    refused = send_from_the_console(browser, "actuate", "heater-1", "on", "2h", expect="refused")  # past max_manual
    assert "30m" in refused.find_element(By.CLASS_NAME, "answer").text
    send_from_the_console(browser, "actuate", "heater-1", "auto")
    send_from_the_console(browser, "actuate", "heater-1", "on", "30d", expect=None)  # past commands.max_duration
    until(browser, lambda d: "commands.max_duration" in d.find_element(By.ID, "cmd-error").text, what="the bound")


def test_a_command_to_an_offline_gateway_shows_pending_then_expired(browser, chain, fleet):
    log_in(browser, chain, fleet["operator"], hash_=f"#/g/{HISTORIC}")
    until(browser, lambda d: d.find_element(By.ID, "command-box").is_displayed(), what="the command form")
    row = send_from_the_console(browser, "ping", expect="pending")
    command_id = row.get_attribute("data-command")
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"#command-rows tr[data-command='{command_id}']"
                                                                "[data-state=expired]"), timeout=20, what="expired")


def test_the_docs_page_loads_swagger_ui_from_the_package_only(browser, chain):
    browser.open(f"{chain.url}/docs", size="desktop")
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"), what="Swagger UI's operations")
    resources = browser.driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(url.startswith(chain.url) for url in resources), resources
    assert any(url.endswith("/docs/static/swagger-ui-bundle.js") for url in resources)
    browser.screenshot("console-docs-desktop")
