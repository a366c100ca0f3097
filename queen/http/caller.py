"""Who is calling the REST gateway: the one place that changes when authentication arrives."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from queen.domain.identity import Identity

__all__ = ["caller_of"]


def caller_of(local: Identity) -> Callable[[Request], Identity]:
    """A FastAPI dependency giving the identity a request acts as.

    Authentication is a later issue; until then every request acts as the Queen's local identity
    (embedded mode, `Identity.authenticated` False), exactly as `queen.api._convert.identity_of` does for
    gRPC. The authenticating version will verify the request's bearer token here and refuse the request
    when there is none. `/api/health` never depends on it.
    """

    def caller(request: Request) -> Identity:
        del request
        return local

    return caller
