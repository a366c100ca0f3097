"""AdminService servicer: connected Ants, the Queen's health, and counters for operators."""

from __future__ import annotations

from typing import Any

import grpc

from formicary.v1 import admin_service_pb2 as pb
from formicary.v1 import admin_service_pb2_grpc as pb_grpc
from queen.api import _convert as convert
from queen.api.errors import unary_rpc
from queen.domain.errors import InvalidArgument
from queen.domain.identity import Identity
from queen.services.admin import AdminService

__all__ = ["AdminServicer"]

_MAX_TAGS = 64

_Context = grpc.aio.ServicerContext[Any, Any]


class AdminServicer(pb_grpc.AdminServiceServicer):
    """Thin: convert, call `AdminService` as the caller, convert back."""

    def __init__(self, admin: AdminService) -> None:
        self._admin = admin

    def _identity(self, context: _Context) -> Identity:
        return convert.identity_of(context)

    @unary_rpc
    async def ListAnts(self, request: pb.ListAntsRequest, context: _Context) -> pb.ListAntsResponse:
        self._identity(context)
        if len(request.tags) > _MAX_TAGS:
            raise InvalidArgument(f"at most {_MAX_TAGS} tags", field="tags")
        ants = self._admin.list_ants(method=convert.method_from_proto(request.method), tags=request.tags)
        return pb.ListAntsResponse(ants=[convert.ant_info(ant) for ant in ants])

    @unary_rpc
    async def GetHealth(self, request: pb.GetHealthRequest, context: _Context) -> pb.GetHealthResponse:
        self._identity(context)
        return convert.get_health_response(await self._admin.health())

    @unary_rpc
    async def GetStats(self, request: pb.GetStatsRequest, context: _Context) -> pb.GetStatsResponse:
        return convert.get_stats_response(await self._admin.stats(self._identity(context)))
