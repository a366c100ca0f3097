"""`/docs`: a browsable page of the OpenAPI document, served entirely by the Queen.

FastAPI's own `/docs` loads Swagger UI from a CDN, which is unreachable here (and should not be needed
to read an API), so it is disabled; this page, a small script of the Queen's own, renders
`/openapi.json` instead. Its Content-Security-Policy allows nothing from elsewhere.
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time, and the
# dependency aliases they use (`Caller`) are local to the router factories.

from importlib import resources

from fastapi import APIRouter, Response

from queen.http.errors import HttpProblem

__all__ = ["docs_router"]

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_ASSETS = {"docs.js": "text/javascript; charset=utf-8", "docs.css": "text/css; charset=utf-8"}


def _read(name: str) -> bytes:
    return resources.files("queen.http").joinpath("static", name).read_bytes()


def docs_router() -> APIRouter:
    """The page and its two assets, read once when the gateway is built."""
    page = _read("docs.html")
    assets = {name: (_read(name), media_type) for name, media_type in _ASSETS.items()}
    headers = {"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"}
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    async def docs() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)

    @router.get("/docs/assets/{name}")
    async def docs_asset(name: str) -> Response:
        found = assets.get(name)
        if found is None:
            raise HttpProblem(404, f"no docs asset {name[:64]!r}")
        content, media_type = found
        return Response(content, media_type=media_type, headers=headers)

    return router
