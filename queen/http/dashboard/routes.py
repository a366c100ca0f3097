"""Serving the dashboard: one HTML page for each of its addresses, and its static assets.

The dashboard is plain HTML, CSS and JavaScript modules of its own (no framework, nothing from a CDN:
nothing outside may be reachable). Its addresses (`/`, `/requests/42`, ...) all answer the same page,
whose script renders the one the address names, reading everything through the REST API (`/api/...`),
so that whatever guards the API (`queen.http.caller`) guards the dashboard's data too: these routes
serve code, never data. A Content-Security-Policy allows nothing but the Queen itself.
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time.

import hashlib
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request, Response

from queen.http.errors import HttpProblem

__all__ = ["ASSETS_PATH", "PAGES", "dashboard_router"]

ASSETS_PATH = "/dashboard/assets"
# The dashboard's addresses; each answers index.html and the script reads `location.pathname`.
PAGES = (
    "/",
    "/requests",
    "/requests/{request_id}",
    "/definitions",
    "/definitions/{job_type}",
    "/approvals",
    "/ants",
)

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (an ETag makes that cheap): a Queen upgrade is seen at once.
    "Cache-Control": "no-cache",
}


class _Asset:
    def __init__(self, content: bytes, media_type: str) -> None:
        self.content = content
        self.media_type = media_type
        self.etag = f'"{hashlib.sha256(content).hexdigest()[:32]}"'

    def response(self, request: Request) -> Response:
        headers = {**_HEADERS, "ETag": self.etag}
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers=headers)
        return Response(self.content, media_type=self.media_type, headers=headers)


def _assets(folder: Traversable, prefix: str = "") -> dict[str, _Asset]:
    """Every file under `folder` whose kind is served, by its path relative to the static folder."""
    found: dict[str, _Asset] = {}
    for entry in folder.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.update(_assets(entry, f"{name}/"))
            continue
        media_type = _MEDIA_TYPES.get("." + entry.name.rpartition(".")[2])
        if media_type is not None:
            found[name] = _Asset(entry.read_bytes(), media_type)
    return found


def dashboard_router() -> APIRouter:
    """The page and its assets, read once when the gateway is built."""
    assets = _assets(resources.files("queen.http.dashboard").joinpath("static"))
    page = assets["index.html"]
    router = APIRouter(include_in_schema=False)

    async def dashboard_page(request: Request) -> Response:
        return page.response(request)

    for path in PAGES:
        router.add_api_route(path, dashboard_page, methods=["GET"])

    @router.get(ASSETS_PATH + "/{name:path}")
    async def dashboard_asset(name: str, request: Request) -> Response:
        found = assets.get(name)
        if found is None:
            raise HttpProblem(404, f"no dashboard asset {name[:100]!r}")
        return found.response(request)

    return router
