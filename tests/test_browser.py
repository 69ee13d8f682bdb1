"""The browser the pages' tests use works here: Debian's chromium, driven by Selenium, with a font for Persian."""

from __future__ import annotations

from browser import static_page

PAGE = """<!doctype html><html lang="fa" dir="rtl"><head><meta charset="utf-8"></head>
<body><p id="p" style="font-size:40px;display:inline-block">بدون داده ۱۲</p>
<button id="b" onclick="document.getElementById('p').textContent='ok'">x</button></body></html>"""


def test_a_headless_chromium_loads_a_loopback_page_renders_persian_and_clicks(browser):
    with static_page(PAGE) as url:
        browser.open(url, size="phone")
        driver = browser.driver
        assert driver.execute_script("return document.documentElement.dir") == "rtl"
        text = driver.find_element("id", "p")
        assert text.text == "بدون داده ۱۲"
        # Persian glyphs come from a real font: the text is wider than nothing, and right-to-left puts it at the right
        width = driver.execute_script("return document.getElementById('p').getBoundingClientRect().width")
        assert width > 100
        assert driver.execute_script(
            "return document.getElementById('p').getBoundingClientRect().right") > 300
        driver.find_element("id", "b").click()
        assert driver.find_element("id", "p").text == "ok"
        assert browser.screenshot("browser-smoke").stat().st_size > 1000
