"""A real headless browser for the pages' tests: Debian's chromium driven through Debian's chromedriver by Selenium.

A pytest plugin (``pytest_plugins = ["browser"]`` in conftest.py). Nothing is downloaded: Selenium is given the
driver's path, so its own driver manager never runs. The browser lives for the test session; each test gets a clean
window of the size it asks for and a fresh profile state (cookies and storage cleared).

Fixtures:

- ``browser``: a ``Browser`` (``open(url, size="phone"|"desktop")``, ``screenshot(name)``, the Selenium ``driver``).

``static_page(html)`` serves one page on loopback (the smoke test's page, the benchmark's baseline page).

Screenshots go to ``$EDGE_SCREENSHOTS`` (default ``tests/screenshots/``, not committed), named by the test.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("EDGE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("EDGE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
SCREENSHOTS = Path(os.environ.get("EDGE_SCREENSHOTS", Path(__file__).resolve().parent / "screenshots"))

#: Window sizes in CSS pixels: a small Android phone and a laptop.
SIZES = {"phone": (360, 740), "desktop": (1366, 850)}


class Browser:
    """One headless chromium for the session."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    "--lang=fa-IR", "--force-device-scale-factor=1"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        self.driver.set_page_load_timeout(60)

    def open(self, url: str, size: str = "phone") -> None:
        width, height = SIZES[size]
        self.driver.set_window_size(width, height)
        self.driver.get(url)

    def reset(self) -> None:
        # every site's cookies (delete_all_cookies on about:blank would leave those of 127.0.0.1 in place)
        self.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        try:
            self.driver.execute_script("window.localStorage && localStorage.clear()")
        except Exception:  # about:blank has no storage
            pass

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def close(self) -> None:
        self.driver.quit()


@pytest.fixture(scope="session")
def _browser_session() -> Iterator[Browser]:
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not binary.exists():
            pytest.skip(f"{binary} is missing: as root, run  apt-get install -y {package}  (scripts/test does it)")
    browser = Browser()
    yield browser
    browser.close()


@pytest.fixture
def browser(_browser_session: Browser) -> Iterator[Browser]:
    _browser_session.reset()
    yield _browser_session
    _browser_session.driver.get("about:blank")


@contextlib.contextmanager
def static_page(html: str) -> Iterator[str]:
    """Serve ``html`` at every path of a server on a free loopback port; yields the page's URL."""
    body = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
