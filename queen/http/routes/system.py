"""Operator routes: `/api/ants`, `/api/health` (open, never authenticated), `/metrics`."""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time, and the
# dependency aliases they use (`Caller`) are local to the router factories.

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from queen.domain.errors import InvalidArgument
from queen.domain.identity import Identity
from queen.domain.job_definition import TaskMethod
from queen.http import _convert as convert
from queen.http.metrics import render_metrics
from queen.http.paging import Paging, page_of
from queen.http.schemas import AntOut, ErrorOut, HealthOut, Page
from queen.services.admin import AdminService
from queen.telemetry.metrics import METRICS

__all__ = ["system_router"]

_MAX_TAGS = 64


def _method(value: str) -> TaskMethod | None:
    if not value:
        return None
    try:
        return TaskMethod.from_text(value.upper())
    except ValueError:
        raise InvalidArgument(f"method {value[:40]!r} is not a task method", field="method") from None


def system_router(admin: AdminService, caller: Callable[[Request], Awaitable[Identity]]) -> APIRouter:
    router = APIRouter()
    Caller = Annotated[Identity, Depends(caller)]

    @router.get(
        "/api/ants",
        tags=["ants"],
        summary="Registered Ants, by id",
        responses={400: {"model": ErrorOut}},
    )
    async def list_ants(
        identity: Caller,
        paging: Paging,
        method: Annotated[str, Query(description="Only Ants that run this method.")] = "",
        tag: Annotated[list[str], Query(description="Only Ants offering every one of these tags.")] = [],  # noqa: B006
    ) -> Page[AntOut]:
        del identity  # Ants are installation-wide; the caller only has to be someone
        if len(tag) > _MAX_TAGS:
            raise InvalidArgument(f"at most {_MAX_TAGS} tags", field="tag")
        ants = admin.list_ants(method=_method(method), tags=tag)
        chosen = ants[paging.offset : paging.offset + paging.page_size]
        return page_of([convert.ant(a) for a in chosen], paging, total=len(ants))

    @router.get(
        "/api/health",
        tags=["operations"],
        summary="The Queen's health (open: no authentication, ever)",
        response_model=HealthOut,
        description="200 when every component is healthy, 503 otherwise; the body says which.",
        responses={503: {"model": HealthOut, "description": "A component is unhealthy."}},
    )
    async def health() -> JSONResponse:
        found = convert.health(await admin.health())
        return JSONResponse(found.model_dump(mode="json"), status_code=200 if found.healthy else 503)

    @router.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    async def metrics(identity: Caller) -> Response:
        stats = await admin.stats(identity)
        body = render_metrics(stats, admin.list_ants(), METRICS.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
