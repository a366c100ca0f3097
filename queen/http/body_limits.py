"""Request body size limits: a clear 413 before a byte too many is buffered.

A declared `Content-Length` above the limit is refused at once; a chunked body is counted as it arrives
and refused when it passes the limit (an `HttpProblem`, which FastAPI passes through unchanged even
while it reads a JSON body for a route). The limits come from the rules behind them: a definition may
be `MAX_DEFINITION_BYTES` of YAML (x2 leaves room for JSON escaping; the parser reports the exact rule),
everything else is small JSON around at most `max_params_bytes` of params.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queen.domain.definition_parser import MAX_DEFINITION_BYTES
from queen.http.errors import HttpProblem, problem_body

__all__ = ["BodyLimit", "BodyLimits", "body_limits_for"]

_MIN_JSON_BODY = 256 * 1024


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """The largest body accepted, by default and per (method, path)."""

    default: int
    routes: Mapping[tuple[str, str], int] = field(default_factory=lambda: MappingProxyType({}))

    def for_route(self, method: str, path: str) -> int:
        return self.routes.get((method, path.rstrip("/") or "/"), self.default)


def body_limits_for(max_params_bytes: int) -> BodyLimits:
    """The gateway's limits, derived from the Queen's own (params size) and the parser's (YAML size)."""
    return BodyLimits(
        default=max(_MIN_JSON_BODY, 2 * max_params_bytes + 64 * 1024),
        routes=MappingProxyType({("POST", "/api/jobs/definitions"): 2 * MAX_DEFINITION_BYTES}),
    )


def _too_large(limit: int, size: int | None = None) -> HttpProblem:
    said = f"{size} bytes" if size is not None else "more"
    return HttpProblem(413, f"the request body is {said}; this route accepts at most {limit} bytes")


class BodyLimit:
    """ASGI middleware enforcing `BodyLimits`."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_route(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            problem = _too_large(limit, declared)
            # Connection: close, since the body is not read: the connection cannot be reused.
            response = JSONResponse(problem_body(problem), status_code=413, headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
