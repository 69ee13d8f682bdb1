"""``edge web``: the greenhouse page's HTTP server, a process of its own beside the daemon.

It reads the buffer as ``edge status`` does (reader connections, WAL: the daemon is never blocked) and asks the
daemon over its control socket exactly as ``edge actuate`` and ``edge alerts ack`` do (``control_socket.call``, the
daemon's ``CommandParser`` and ``Supervisor``: the same limits and refusals), so nothing here can weaken sampling or
control, and the page keeps answering while the daemon is stopped.

:class:`WebApp` is the whole of the page's behaviour over plain values (``handle(Request) -> Response``), tested
without sockets; :func:`serve` puts it behind the standard library's ``ThreadingHTTPServer``. Every bad request (an
unknown path, method or form field, a body too large, a wrong CSRF token) gets a 4xx answer naming what is wrong, is
logged, and changes nothing; no request ends the server.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import logging
import math
import re
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge.errors import EdgeError
from edge.gateway.alerts.names import names_of
from edge.gateway.control.commands import CommandParser, Refused
from edge.gateway.web import view
from edge.gateway.web.auth import Attempts, SecretError, Sessions, read_secret, same_token, verify

log = logging.getLogger("edge.web")

MAX_BODY = 4096
SESSION_COOKIE = "edge_session"
CSRF_COOKIE = "edge_csrf"
LANG_COOKIE = "edge_lang"
LANGS = ("fa", "en")
#: The form fields each POST takes (all of them required but ``for``).
FORMS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "/login": (frozenset({"csrf", "secret"}), frozenset()),
    "/logout": (frozenset({"csrf"}), frozenset()),
    "/actuate": (frozenset({"csrf", "actuator", "action"}), frozenset({"for"})),
    "/ack": (frozenset({"csrf", "code"}), frozenset()),
}
PAGES = ("/", "/static/app.js", "/static/style.css")
STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)


@dataclass
class Request:
    method: str
    target: str  # path and query, as sent
    client: str  # the client's address (the attempts limit counts per address)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False


class BadForm(ValueError):
    """A form or request the page refuses; ``status`` its HTTP status, the message names what is wrong (shown in
    the page's language)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _static(name: str) -> bytes:
    return resources.files("edge.gateway.web").joinpath("static", name).read_bytes()


class WebApp:
    """The page: its routes, login, forms and answers. ``ask(request)`` sends one request to the daemon's control
    socket (``control_socket.call``); ``clock`` gives the wall time (injected by tests)."""

    def __init__(self, config: Any, ask: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 clock: Callable[[], float] = time.time):
        self.config = config
        self.web = config.web
        self.clock = clock
        self.ask = ask or self._ask_socket
        self.sessions = Sessions(self.web.session_ttl)
        self.attempts = Attempts(self.web.attempts, self.web.attempts_window)
        self.parser = CommandParser.of(config)
        self.names = names_of(config)
        self.static = {name: _static(name) for name in STATIC_TYPES}
        self.static_gzip = {name: gzip.compress(data, 9, mtime=0) for name, data in self.static.items()}
        self.etags = {name: '"' + hashlib.sha256(data).hexdigest()[:16] + '"' for name, data in self.static.items()}

    def _ask_socket(self, request: dict[str, Any]) -> dict[str, Any]:
        from edge.gateway.control_socket import call

        return call(self.config.control.socket, request)

    # -------------------------------------------------------------------------------------------- dispatch

    def handle(self, request: Request) -> Response:
        """The answer to one request; never raises (an unexpected failure is a logged 500)."""
        cookies = _cookies(request.headers.get("cookie", ""))
        lang = cookies.get(LANG_COOKIE) if cookies.get(LANG_COOKIE) in LANGS else "fa"
        try:
            url = urlsplit(request.target)
            query = _query(url.query)
            if "lang" in query:
                if query["lang"] not in LANGS:
                    raise BadForm(400, _t(lang, f"زبان ناشناخته {query['lang']!r} (fa یا en)",
                                          f"unknown language {query['lang']!r} (fa or en)"))
                lang = query["lang"]
            path = url.path
            if path not in PAGES and path not in FORMS:
                raise BadForm(404, _t(lang, f"صفحه‌ای با نشانی {path!r} نیست", f"no page at {path!r}"))
            allowed = ("GET", "HEAD") if path in PAGES else ("POST",)
            if request.method not in allowed:
                response = self._problem(request, 405, _t(
                    lang, f"روش {request.method} برای {path} پذیرفته نیست ({', '.join(allowed)})",
                    f"method {request.method} is not allowed on {path} (allowed: {', '.join(allowed)})"), lang)
                response.headers.append(("Allow", ", ".join(allowed)))
                return response
            if path.startswith("/static/"):
                return self._asset(path.removeprefix("/static/"), request)
            if path == "/":
                response = self.page(request, cookies, lang, query)
            else:
                response = self.post(path, request, cookies, lang)
            if "lang" in query:
                response.headers.append(("Set-Cookie", f"{LANG_COOKIE}={lang}; Path=/; Max-Age=31536000; "
                                                       "SameSite=Strict"))
            return response
        except BadForm as exc:
            return self._problem(request, exc.status, str(exc), lang, cookies)
        except Exception:
            log.exception("web: %s %s from %s failed", request.method, _printable(request.target), request.client)
            return self._problem(request, 500, _t(lang, "خطای داخلی؛ دوباره امتحان کنید",
                                                  "internal error; try again"), lang)

    def _problem(self, request: Request, status: int, text: str, lang: str,
                 cookies: dict[str, str] | None = None) -> Response:
        """A refusal: logged, and shown as the page with the reason on top when the page can be read (so the farmer
        keeps the context), else as a short page of its own."""
        log.warning("web: %d for %s %s from %s: %s", status, request.method, _printable(request.target)[:200],
                    request.client, text)
        close = status in (411, 413)
        if cookies is not None and status not in (404, 405, 411, 413, 500):
            try:
                response = self._render(cookies, lang, notice=text, error=True)
                response.status, response.close = status, close
                return response
            except Exception:
                log.exception("web: the page could not be rendered")
        return Response(status, view.message_page(status, text, lang).encode(), close=close)

    # -------------------------------------------------------------------------------------------- the page

    def page(self, request: Request, cookies: dict[str, str], lang: str, query: dict[str, str]) -> Response:
        return self._render(cookies, lang)

    def _render(self, cookies: dict[str, str], lang: str, notice: str | None = None,
                error: bool = False) -> Response:
        now = self.clock()
        session = self.sessions.get(cookies.get(SESSION_COOKIE), now)
        headers = []
        login_csrf = cookies.get(CSRF_COOKIE, "")
        if not re.fullmatch(r"[A-Za-z0-9_-]{32,64}", login_csrf):
            login_csrf = secrets.token_urlsafe(24)
            headers.append(("Set-Cookie", f"{CSRF_COOKIE}={login_csrf}; Path=/; HttpOnly; SameSite=Strict"))
        page = view.gather(self.config, wall=self.clock)
        viewer = view.Viewer(lang, session.csrf if session else None, login_csrf, notice, error)
        return Response(200, view.render(page, self.config, viewer).encode(), headers=headers)

    def _asset(self, name: str, request: Request) -> Response:
        if name not in self.static:
            raise BadForm(404, f"no asset {name!r}")
        headers = [("Cache-Control", "public, max-age=86400"), ("ETag", self.etags[name])]
        if request.headers.get("if-none-match") == self.etags[name]:
            return Response(304, headers=headers)
        return Response(200, self.static[name], STATIC_TYPES[name], headers)

    # -------------------------------------------------------------------------------------------- forms

    def post(self, path: str, request: Request, cookies: dict[str, str], lang: str) -> Response:
        form = self._form(path, request, lang)
        now = self.clock()
        if path == "/login":
            return self.login(form, request, cookies, lang, now)
        session = self.sessions.get(cookies.get(SESSION_COOKIE), now)
        if session is None:
            raise BadForm(401, _t(lang, "ابتدا با رمز وارد شوید", "log in first"))
        if not same_token(form["csrf"], session.csrf):
            raise BadForm(403, _t(lang, "فرم کهنه است (نشانه CSRF نادرست): صفحه را دوباره باز کنید",
                                  "stale form (wrong CSRF token): reload the page"))
        if path == "/logout":
            self.sessions.end(session.token)
            return _redirect("/", [("Set-Cookie", f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; "
                                                  "SameSite=Strict")])
        if path == "/actuate":
            return self.actuate(form, lang)
        return self.acknowledge(form, lang)

    def _form(self, path: str, request: Request, lang: str) -> dict[str, str]:
        """The POSTed form's fields, checked: the body's size and type, known fields, each given once."""
        origin = request.headers.get("origin")
        host = request.headers.get("host")
        if origin and origin != "null" and host and urlsplit(origin).netloc != host:
            raise BadForm(403, _t(lang, f"فرم از جای دیگری ({origin}) فرستاده شده است",
                                  f"form sent from another site ({origin})"))
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise BadForm(415, _t(lang, f"نوع بدنه {content_type or 'هیچ'!r} پذیرفته نیست (فرم HTML)",
                                  f"body type {content_type or 'none'!r} is not accepted (an HTML form)"))
        try:
            text = request.body.decode("utf-8")
            fields = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            raise BadForm(400, _t(lang, "بدنه فرم خوانا نیست", "the form's body cannot be read")) from None
        required, optional = FORMS[path]
        unknown = sorted(set(fields) - required - optional)
        if unknown:
            raise BadForm(400, _t(lang, f"فیلد ناشناخته {', '.join(map(repr, unknown))}",
                                  f"unknown field(s) {', '.join(map(repr, unknown))}"))
        missing = sorted(required - set(fields))
        if missing:
            raise BadForm(400, _t(lang, f"فیلد {', '.join(map(repr, missing))} نیامده است",
                                  f"missing field(s) {', '.join(map(repr, missing))}"))
        repeated = sorted(name for name, values in fields.items() if len(values) > 1)
        if repeated:
            raise BadForm(400, _t(lang, f"فیلد {', '.join(map(repr, repeated))} بیش از یک بار آمده است",
                                  f"field(s) {', '.join(map(repr, repeated))} given more than once"))
        return {name: values[0] for name, values in fields.items()}

    def login(self, form: dict[str, str], request: Request, cookies: dict[str, str], lang: str,
              now: float) -> Response:
        expected = cookies.get(CSRF_COOKIE)
        if not expected or not same_token(form["csrf"], expected):
            raise BadForm(403, _t(lang, "فرم ورود کهنه است: صفحه را دوباره باز کنید",
                                  "stale login form: reload the page"))
        wait = self.attempts.wait(request.client, now)
        if wait > 0:
            response = self._problem(request, 429, _t(
                lang, f"تلاش‌های نادرست زیاد بود: {view.span(_rounded_up(wait), 'fa')} دیگر دوباره امتحان کنید",
                f"too many wrong attempts: try again in {view.span(_rounded_up(wait), 'en')}"), lang, cookies)
            response.headers.append(("Retry-After", str(int(wait) + 1)))
            return response
        try:
            stored = read_secret(self.web.secret_file)
            good = verify(stored, form["secret"])
        except (SecretError, ValueError) as exc:
            log.error("web: login impossible: %s", exc)
            raise BadForm(503, _t(lang, "ورود ممکن نیست: فایل رمز درست تنظیم نشده است (به نصاب بگویید)",
                                  "login is impossible: the secret file is not set up (tell the installer)")) \
                from None
        if not good:
            self.attempts.failed(request.client, now)
            log.warning("web: wrong secret from %s", request.client)
            raise BadForm(401, _t(lang, "رمز نادرست است", "wrong PIN or password"))
        self.attempts.succeeded(request.client)
        session = self.sessions.create(now)
        log.info("web: login from %s", request.client)
        return _redirect("/", [("Set-Cookie", f"{SESSION_COOKIE}={session.token}; Path=/; HttpOnly; "
                                              f"SameSite=Strict; Max-Age={int(self.web.session_ttl)}")])

    def actuate(self, form: dict[str, str], lang: str) -> Response:
        actuator, action, duration_text = form["actuator"], form["action"], form.get("for")
        duration: float | None = None
        if duration_text not in (None, ""):
            if not re.fullmatch(r"[0-9]{1,7}", duration_text):
                raise BadForm(400, _t(lang, f"مدت {duration_text[:40]!r} عدد ثانیه نیست",
                                      f"duration {duration_text[:40]!r} is not a number of seconds"))
            duration = float(duration_text)
        if actuator not in self.parser.limits:
            raise BadForm(400, _t(lang, f"خروجی ناشناخته {actuator[:40]!r}", f"unknown output {actuator[:40]!r}"))
        if action not in ("on", "off", "auto"):
            raise BadForm(400, _t(lang, f"فرمان ناشناخته {action[:40]!r} (روشن، خاموش یا خودکار)",
                                  f"unknown action {action[:40]!r} (on, off or auto)"))
        try:  # the daemon reads it again with the same parser; checked here first to answer in the page's language
            self.parser.actuate(actuator, action, duration, "web")
        except Refused as exc:
            raise BadForm(409, self._refusal(actuator, action, duration, str(exc), lang)) from None
        request = {"op": "actuate", "actuator": actuator, "action": action, "who": "web"}
        if action != "auto":
            request["for"] = duration
        answer = self._ask_daemon(request, lang)
        if not answer.get("ok"):
            raise BadForm(409, self._refusal(actuator, action, duration, str(answer.get("error", "refused")), lang))
        log.info("web: %s %s%s", actuator, action, f" for {duration:.0f}s" if duration else "")
        return _redirect(f"/#o-{actuator}")

    def acknowledge(self, form: dict[str, str], lang: str) -> Response:
        code = form["code"].strip()
        if not re.fullmatch(r"[0-9A-Za-z-]{1,16}", code):
            raise BadForm(400, _t(lang, f"کد هشدار {code[:40]!r} درست نیست", f"alert code {code[:40]!r} is not valid"))
        answer = self._ask_daemon({"op": "ack_alert", "code": code, "who": "web"}, lang)
        if not answer.get("ok"):
            log.info("web: ack of %s refused: %s", code, answer.get("error"))
            raise BadForm(409, _t(lang, f"هشدار باز و دیده‌نشده‌ای با کد {view.digits(code, 'fa')} نیست",
                                  f"no open, unacknowledged alert has code {code}"))
        log.info("web: alert %s acknowledged", code)
        return _redirect("/#alerts")

    def _ask_daemon(self, request: dict[str, Any], lang: str) -> dict[str, Any]:
        try:
            return self.ask(request)
        except (OSError, ValueError) as exc:
            log.warning("web: cannot reach the daemon at %s: %s", self.config.control.socket, exc)
            raise BadForm(503, _t(lang, "سامانه کنترل در دسترس نیست: فرمان اجرا نشد",
                                  "the control daemon cannot be reached: nothing was done")) from None

    def _refusal(self, actuator: str, action: str, duration: float | None, reason: str, lang: str) -> str:
        """A refusal as the farmer reads it: in Persian for the refusals the parser and the supervisor give, else
        the daemon's words after a Persian «not accepted»."""
        reason = reason.removeprefix("refused: ")
        name = self.names.of_actuator(actuator, lang)
        if lang != "fa":
            return f"{name}: refused: {reason}"
        limits = self.parser.limits[actuator]
        if "exceeds" in reason and duration is not None:
            bound_name, bound = "max_manual", limits.manual_limit()
            if action == "on" and limits.max_on is not None and duration > limits.max_on:
                bound_name, bound = "max_on", limits.max_on
            what = "بیشترین زمان فرمان دستی" if bound_name == "max_manual" else "بیشترین زمان روشن ماندن"
            return (f"{name}: پذیرفته نشد: {view.span(duration, 'fa')} بیش از {what} آن "
                    f"({view.span(bound, 'fa')}) است")
        if reason.startswith("min_off") and limits.min_off:
            return f"{name}: پذیرفته نشد: هنوز کمترین زمان خاموشی آن نگذشته است ({view.span(limits.min_off, 'fa')})"
        if reason.startswith("latched off"):
            return f"{name}: پذیرفته نشد: پس از بیشترین زمان روشن ماندن قفل است تا درخواستی برایش نماند"
        match = re.match(r"interlock with ([A-Za-z0-9_-]+)", reason)
        if match:
            other = self.names.of_actuator(match.group(1), "fa") if match.group(1) in self.parser.limits \
                else match.group(1)
            return f"{name}: پذیرفته نشد: با {other} هم‌زمان روشن نمی‌شود"
        if reason.startswith("power budget"):
            return f"{name}: پذیرفته نشد: سقف خروجی‌های روشن پر است"
        return f"{name}: پذیرفته نشد: {reason}"


def _rounded_up(wait: float) -> float:
    """A wait as a person is told it: whole minutes, rounded up (4 min 59 s is «5 minutes»), or seconds under one."""
    return 60.0 * math.ceil(wait / 60) if wait > 60 else float(math.ceil(wait))


def _t(lang: str, fa: str, en: str) -> str:
    return fa if lang == "fa" else en


def _redirect(location: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(303, b"", headers=[("Location", location), *(headers or [])])


def _cookies(header: str) -> dict[str, str]:
    cookie = SimpleCookie()
    try:
        cookie.load(header[:4096])
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in cookie.items()}


def _query(text: str) -> dict[str, str]:
    try:
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=10)
    except ValueError:
        raise BadForm(400, "too many query fields") from None
    return {name: values[-1] for name, values in fields.items()}


def _printable(text: str) -> str:
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


# ------------------------------------------------------------------------------------------------------ HTTP


class Handler(http.server.BaseHTTPRequestHandler):
    """Frames HTTP for the :class:`WebApp` (``server.app``): reads at most ``MAX_BODY`` bytes of a body, writes the
    answer with its security headers, gzip when the client takes it. A client gets ``timeout`` seconds per read."""

    server_version = "edge-web"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 15

    def _serve(self) -> None:
        app: WebApp = self.server.app  # type: ignore[attr-defined]
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Request(self.command, self.path, self.client_address[0], headers)
        response = None
        if self.command == "POST":
            length = headers.get("content-length")
            if length is None or not length.isdigit():
                response = app._problem(request, 411, "Content-Length needed (a number of bytes)", "fa")
            elif int(length) > MAX_BODY:
                response = app._problem(request, 413, f"بدنه بزرگ‌تر از {view.digits(str(MAX_BODY), 'fa')} بایت است "
                                                      f"(body larger than {MAX_BODY} bytes)", "fa")
            else:
                request.body = self.rfile.read(int(length))
        if response is None:
            response = app.handle(request)
        self._write(response, headers)

    def _write(self, response: Response, headers: dict[str, str]) -> None:
        body = response.body
        gzipped = False
        if len(body) > 512 and "gzip" in headers.get("accept-encoding", ""):
            name = self.path.split("?")[0].removeprefix("/static/")
            app: WebApp = self.server.app  # type: ignore[attr-defined]
            body = app.static_gzip[name] if response.body is app.static.get(name) else gzip.compress(body, 6)
            gzipped = True
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Vary", "Accept-Encoding, Cookie")
        if not any(name == "Cache-Control" for name, _ in response.headers):
            self.send_header("Cache-Control", "no-store")
        for name, value in (*SECURITY_HEADERS, *response.headers):
            self.send_header(name, value)
        if response.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve  # noqa: N815 - the stdlib's names

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's answer to a request it cannot parse (a bad request line, headers too long): logged too."""
        log.warning("web: %d from %s: %s", code, self.client_address[0], message)
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("web: %s %s", self.client_address[0], format % args)


_BUSY_TEXT = "سرور مشغول است؛ چند ثانیه دیگر دوباره امتحان کنید (server busy)\n".encode()
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(_BUSY_TEXT)).encode() + b"\r\n\r\n" + _BUSY_TEXT)


class Server(http.server.ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once: past that a new connection is answered 503 and
    closed at once, so idle or slow clients cost a bounded number of threads (each gets ``Handler.timeout``)."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], app: WebApp, max_connections: int = 32):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            log.warning("web: too many connections; %s answered 503", client_address[0])
            try:
                request.sendall(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("web: connection from %s failed", client_address[0] if client_address else "?", exc_info=True)


def serve(config: Any, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the page until SIGTERM or SIGINT. ``on_ready(url)`` once it listens."""
    address = config.web.address
    if address is None:
        raise EdgeError(f"web.listen is not set in {config.source}: the page is off (docs/operations.md, "
                        "\"The greenhouse page\")")
    try:
        server = Server(address, WebApp(config))
    except OSError as exc:
        raise EdgeError(f"cannot listen on {config.web.listen}: {exc.strerror or exc}") from None

    def stop(_signum: int, _frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    log.info("web: serving the greenhouse page on %s", url)
    if on_ready:
        on_ready(url)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        log.info("web: stopped")
