"""The data center's console (served by ``edge dc api`` beside the /v1 API) and the OpenAPI docs page, both from
files inside the package: no CDN, no external URL, nothing fetched at run time.

The console is one static page (``static/console/``: HTML, CSS and plain JavaScript, no framework, charts drawn as
SVG by hand) that talks to the same /v1 API as everyone else. An operator logs in by pasting a token: it is kept in
the tab's ``sessionStorage`` and sent as ``Authorization: Bearer``, so no cookie authenticates anything (no CSRF to
guard against) and closing the tab forgets it. What the token sees and may do is what the API lets it: the fleet
view lists the gateways it sees, the command form shows only for a token scoped to control, and the API refuses a
command from a read-only one all the same.

The docs page is FastAPI's own Swagger UI page pointed at Swagger UI's files shipped in ``static/swagger/``
(swagger-ui-dist, Apache-2.0: ``static/NOTICE``), with the online validator off.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
CONSOLE = STATIC / "console"
SWAGGER = STATIC / "swagger"

#: Only the page's own files; no inline script, nothing from elsewhere, not framed.
CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def install(app: FastAPI) -> None:
    """Serve the console at /console/ (and / redirects there), its files at /console/static/, and the docs page
    at /docs with Swagger UI's files at /docs/static/; none of them in the OpenAPI document."""

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    @app.get("/console", include_in_schema=False)
    def console_bare() -> RedirectResponse:
        return RedirectResponse("/console/")

    @app.get("/console/", include_in_schema=False)
    def console_page() -> FileResponse:
        return FileResponse(CONSOLE / "index.html", media_type="text/html; charset=utf-8", headers=CONSOLE_HEADERS)

    @app.get("/docs", include_in_schema=False)
    def docs_page() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs",
                                   swagger_js_url="/docs/static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/static/swagger-ui.css",
                                   swagger_favicon_url="/console/static/favicon.svg",
                                   swagger_ui_parameters={"validatorUrl": None})

    app.mount("/console/static", StaticFiles(directory=CONSOLE), name="console-static")
    app.mount("/docs/static", StaticFiles(directory=SWAGGER), name="docs-static")
