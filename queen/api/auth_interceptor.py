"""The gRPC server interceptor that authenticates every call and checks its permission (one table).

Health and reflection are let through untouched (`OPEN_RPCS`). Every other call must carry
`authorization: Bearer <token>` metadata; the interceptor verifies it with the `Authenticator` (the
same one the REST gateway uses), checks the permission `RPC_PERMISSIONS` names for the method (a method
missing from the table is refused) and the credential's rate limit, then runs the servicer with the
caller in `current_principal`, where `queen.api._convert.identity_of` reads it.

AntService.Connect is the one exception: an Ant that cannot set metadata may put its credential in
Register.credential (ant_service.proto, AUTHENTICATION); such a call is let through without a
principal and the Ant servicer authenticates its Register frame with the same Authenticator.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from queen.api.errors import abort_with
from queen.domain.errors import FormicaryError
from queen.security.authenticator import Authenticator
from queen.security.permissions import OPEN_RPCS, RPC_PERMISSIONS
from queen.security.principal import current_principal

__all__ = ["ANT_CONNECT", "AuthInterceptor"]

ANT_CONNECT = "/formicary.v1.AntService/Connect"

_Context = grpc.aio.ServicerContext[Any, Any]
_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the type stubs


def _authorization(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            return value if isinstance(value, str) else bytes(value).decode(errors="replace")
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates and authorizes every call but health and reflection."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method in OPEN_RPCS:
            return handler
        authorization = _authorization(handler_call_details.invocation_metadata)
        deferred = method == ANT_CONNECT and authorization is None and self._auth.required

        async def admit(context: _Context) -> None:
            """Set the caller for this call, or abort it."""
            try:
                if deferred:
                    current_principal.set(None)  # the Ant servicer authenticates Register.credential
                    return
                principal = await self._auth.authenticate(authorization)
                self._auth.authorize(principal, RPC_PERMISSIONS.get(method), method.rsplit("/", 1)[-1])
            except FormicaryError as exc:
                await abort_with(context, exc, rpc=method)
            current_principal.set(principal)

        return _wrapped(handler, admit)


def _wrapped(handler: _Handler, admit: Callable[[_Context], Awaitable[None]]) -> _Handler:
    """The same handler, with `admit` run first in the call's own task.

    The handler's behaviours are typed as `Any`: grpc's stubs describe the synchronous server's."""
    behaviours: Any = handler
    if handler.unary_unary is not None:
        inner_uu = behaviours.unary_unary

        async def unary_unary(request: Any, context: _Context) -> Any:
            await admit(context)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        inner_us = behaviours.unary_stream

        async def unary_stream(request: Any, context: _Context) -> AsyncIterator[Any]:
            await admit(context)
            async for item in inner_us(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary is not None:
        inner_su = behaviours.stream_unary

        async def stream_unary(requests: Any, context: _Context) -> Any:
            await admit(context)
            return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer
        )
    inner_ss = behaviours.stream_stream
    if inspect.isasyncgenfunction(inner_ss):

        async def stream_stream_gen(requests: Any, context: _Context) -> AsyncIterator[Any]:
            await admit(context)
            async for item in inner_ss(requests, context):
                yield item

        return grpc.stream_stream_rpc_method_handler(
            stream_stream_gen, handler.request_deserializer, handler.response_serializer
        )

    # the read/write form (AntService.Connect): a coroutine that returns None
    async def stream_stream(requests: Any, context: _Context) -> Any:
        await admit(context)
        return await inner_ss(requests, context)

    return grpc.stream_stream_rpc_method_handler(
        stream_stream, handler.request_deserializer, handler.response_serializer
    )
