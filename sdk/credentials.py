"""The caller's credential: a bearer token from `FORMICARY_TOKEN` (or given), sent as gRPC metadata."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import grpc

__all__ = ["TOKEN_VARIABLE", "bearer_interceptors", "resolve_token"]

TOKEN_VARIABLE = "FORMICARY_TOKEN"


def resolve_token(token: str | None = None) -> str | None:
    """`token`, else $FORMICARY_TOKEN, else None (the Queen then refuses every call but health, unless
    it runs without authentication)."""
    found = (token if token is not None else os.environ.get(TOKEN_VARIABLE, "")).strip()
    return found or None


def _with_token(details: grpc.aio.ClientCallDetails, header: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    if metadata.get("authorization") is None:  # a call's own credential wins over the channel's
        metadata["authorization"] = header
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _BearerUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, header: str) -> None:
        self._header = header

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_token(client_call_details, self._header), request)


class _BearerUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, header: str) -> None:
        self._header = header

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_token(client_call_details, self._header), request)


class _BearerStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, header: str) -> None:
        self._header = header

    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self._header), request_iterator)


class _BearerStreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, header: str) -> None:
        self._header = header

    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self._header), request_iterator)


def bearer_interceptors(token: str | None) -> Sequence[grpc.aio.ClientInterceptor]:
    """The interceptors to give `grpc.aio.*_channel(..., interceptors=...)`: one per call kind (a
    channel files each interceptor under the first kind it is an instance of); none without a token."""
    if not token:
        return []
    header = f"Bearer {token}"
    return [
        _BearerUnaryUnary(header),
        _BearerUnaryStream(header),
        _BearerStreamUnary(header),
        _BearerStreamStream(header),
    ]
