"""The REST gateway's ASGI application: Formicary-compatible routes over the Queen's service layer.

Every route calls the same services as the gRPC servicers (`queen.services`), so every rule lives once;
errors come from the one table of `queen.api.errors` (see `queen.http.errors`).
"""

from __future__ import annotations

from importlib import metadata

from fastapi import FastAPI

from queen.http.body_limits import BodyLimit, BodyLimits
from queen.http.caller import caller_of
from queen.http.errors import ErrorBoundary, install_error_handlers
from queen.http.routes.approvals import approvals_router
from queen.http.routes.artifacts import artifacts_router
from queen.http.routes.definitions import definitions_router
from queen.http.routes.docs import docs_router
from queen.http.routes.requests import requests_router
from queen.http.routes.system import system_router
from queen.services.service_set import Services

__all__ = ["build_app"]

_DESCRIPTION = """\
Formicary's REST API: job definitions (playbooks), job requests and their tasks, approvals, artifacts
and Ants. Field names follow Formicary's JSON. Errors are `{"code", "reason", "message", "details"}`
with the gRPC status code and details of the same failure over gRPC. Listings page with `page` (from 0)
and `page_size`. Until authentication arrives, every call acts as the Queen's local identity.
"""

_TAGS = [
    {"name": "job definitions", "description": "Playbooks: DAGs of tasks, versioned by upload."},
    {"name": "job requests", "description": "Runs of a job definition, and the controls over them."},
    {"name": "approvals", "description": "MANUAL tasks' gates: vote, read, what waits for people."},
    {"name": "artifacts", "description": "Files tasks produced, their logs, and uploads."},
    {"name": "ants", "description": "The workers connected to this Queen."},
    {"name": "operations", "description": "Health and metrics."},
]


def _version() -> str:
    try:
        return metadata.version("formicary")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def build_app(services: Services, *, limits: BodyLimits) -> FastAPI:
    """The application for one Queen's services."""
    app = FastAPI(
        title="Formicary",
        version=_version(),
        description=_DESCRIPTION,
        openapi_tags=_TAGS,
        openapi_url="/openapi.json",
        # FastAPI's pages load their scripts from a CDN: replaced by a local page (routes/docs.py).
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    caller = caller_of(services.local_identity)
    app.include_router(
        definitions_router(services.definitions, caller),
        prefix="/api/jobs/definitions",
        tags=["job definitions"],
    )
    app.include_router(
        requests_router(services.requests, caller), prefix="/api/jobs/requests", tags=["job requests"]
    )
    app.include_router(approvals_router(services.approvals, caller), tags=["approvals"])
    app.include_router(
        artifacts_router(services.artifacts, caller), prefix="/api/artifacts", tags=["artifacts"]
    )
    app.include_router(system_router(services.admin, caller))
    app.include_router(docs_router())
    # Added last = outermost: the boundary sees whatever escapes the limits and the handlers.
    app.add_middleware(BodyLimit, limits=limits)
    app.add_middleware(ErrorBoundary)
    return app
