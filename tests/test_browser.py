"""The browser the pages' tests use works here: Debian's chromium, driven by Selenium, with a font for Persian."""

from __future__ import annotations

import http.server
import threading

PAGE = """<!doctype html><html lang="fa" dir="rtl"><head><meta charset="utf-8"></head>
<body><p id="p" style="font-size:40px;display:inline-block">بدون داده ۱۲</p>
<button id="b" onclick="document.getElementById('p').textContent='ok'">x</button></body></html>"""


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_headless_chromium_loads_a_loopback_page_renders_persian_and_clicks(browser):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.open(f"http://127.0.0.1:{server.server_address[1]}/", size="phone")
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
    finally:
        server.shutdown()
        server.server_close()
