"""The REST gateway's ASGI application: Formicary-compatible routes over the Queen's service layer.

Every route calls the same services as the gRPC servicers (`queen.services`), so every rule lives once;
errors come from the one table of `queen.api.errors` (see `queen.http.errors`).
"""

from __future__ import annotations

import os
from importlib import metadata

from fastapi import FastAPI

from queen.http.body_limits import BodyLimit, BodyLimits
from queen.http.caller import caller_of
from queen.http.dashboard import dashboard_router
from queen.http.errors import ErrorBoundary, install_error_handlers
from queen.http.routes.approvals import approvals_router
from queen.http.routes.artifacts import artifacts_router
from queen.http.routes.definitions import definitions_router
from queen.http.routes.docs import docs_router
from queen.http.routes.requests import requests_router
from queen.http.routes.session import SessionCookies, session_router
from queen.http.routes.system import system_router
from queen.http.sse import EventStreams
from queen.services.service_set import Services

__all__ = ["build_app"]

_DESCRIPTION = """\
Formicary's REST API: job definitions (playbooks), job requests and their tasks, approvals, artifacts
and Ants. Field names follow Formicary's JSON. Errors are `{"code", "reason", "message", "details"}`
with the gRPC status code and details of the same failure over gRPC. Listings page with `page` (from 0)
and `page_size`. Every route but `/api/health` needs `Authorization: Bearer <token>` (an API token from
`formicary tokens create`, or an OIDC token), or the dashboard's session cookie from `POST /api/auth/login`
(then state-changing requests also carry `X-CSRF-Token`).
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


def build_app(services: Services, *, limits: BodyLimits, sessions: SessionCookies | None = None) -> FastAPI:
    """The application for one Queen's services."""
    sessions = sessions or SessionCookies(csrf_key=os.urandom(32))
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
    caller = caller_of(services.authenticator, sessions.csrf_key)
    app.include_router(session_router(services.authenticator, sessions, caller))
    # The server-sent event streams: the gateway ends them all when it stops (HttpGateway.stop).
    streams = EventStreams()
    app.state.event_streams = streams
    app.include_router(
        definitions_router(services.definitions, caller),
        prefix="/api/jobs/definitions",
        tags=["job definitions"],
    )
    app.include_router(
        requests_router(services.requests, caller, logs=services.logs, streams=streams),
        prefix="/api/jobs/requests",
        tags=["job requests"],
    )
    app.include_router(approvals_router(services.approvals, caller, streams=streams), tags=["approvals"])
    app.include_router(
        artifacts_router(services.artifacts, caller), prefix="/api/artifacts", tags=["artifacts"]
    )
    app.include_router(system_router(services.admin, caller))
    app.include_router(docs_router())
    app.include_router(dashboard_router())
    # Added last = outermost: the boundary sees whatever escapes the limits and the handlers.
    app.add_middleware(BodyLimit, limits=limits)
    app.add_middleware(ErrorBoundary)
    return app
