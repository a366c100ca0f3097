"""REST errors: the one error table of `queen.api.errors` rendered as JSON, with the gRPC status's details.

A domain error gets the HTTP status of its row in `ERROR_TABLE` and the body

    {"code": "<gRPC code name>", "reason": "<row reason>", "message": "...", "details": [...]}

where `details` are the very messages of the gRPC status (`rich_status`), in the protobuf JSON mapping
with their `@type`: ErrorInfo first, then ValidationProblem (line, column, fix), BadRequest,
ResourceInfo (the existing request of a duplicate user_key) or PreconditionFailure. Two differences
from gRPC, both because HTTP bodies have no trailer budget: the message is never clipped, and every
validation problem is listed.

Failures of HTTP itself (an unknown route, a body too large, an unsupported media type, a body that is
not the documented JSON) are `HttpProblem`s with the same body shape; anything unexpected is a bug:
500, a generic message with an incident id, the traceback in the log.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queen.api.errors import INTERNAL_ERROR, error_status, rich_status
from queen.domain.errors import (
    FormicaryError,
    InvalidArgument,
    InvalidDefinition,
    ResourceExhausted,
    Unauthenticated,
)
from queen.http._convert import problem_detail

__all__ = ["ErrorBoundary", "HttpProblem", "error_body", "install_error_handlers", "internal_error_body"]

log = structlog.get_logger(__name__)

_ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
_DOMAIN = "formicary.v1"
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})

# HTTP statuses of HTTP-level failures, with the gRPC code a gRPC client would see for the same thing.
_HTTP_CODES: Mapping[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "BAD_REQUEST"),
    404: ("NOT_FOUND", "NO_SUCH_ROUTE"),
    405: ("UNIMPLEMENTED", "METHOD_NOT_ALLOWED"),
    413: ("RESOURCE_EXHAUSTED", "REQUEST_TOO_LARGE"),
    415: ("INVALID_ARGUMENT", "UNSUPPORTED_MEDIA_TYPE"),
    501: ("UNIMPLEMENTED", "NOT_IMPLEMENTED"),
}


class HttpProblem(HTTPException):
    """A failure of the HTTP exchange itself rather than of a domain rule (an HTTPException, so that
    FastAPI passes it through unchanged even when it is raised while a body is being read)."""

    def __init__(self, status: int, message: str, *, reason: str = "") -> None:
        super().__init__(status_code=status, detail=message)
        code, default_reason = _HTTP_CODES.get(status, ("UNKNOWN", "HTTP_ERROR"))
        self.code = code
        self.reason = reason or default_reason
        self.message = message


def _any_json(packed: Any) -> dict[str, Any]:
    body: dict[str, Any] = json_format.MessageToDict(
        packed, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return body


def _error_info(reason: str, metadata: Mapping[str, str]) -> dict[str, Any]:
    return {"@type": _ERROR_INFO_TYPE, "reason": reason, "domain": _DOMAIN, "metadata": dict(metadata)}


def error_body(exc: FormicaryError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of a domain error that has a row in the table."""
    row = error_status(exc)
    status = rich_status(exc, row)
    details = [_any_json(packed) for packed in status.details]
    if isinstance(exc, InvalidDefinition):
        # The gRPC trailer budget may have left problems out; an HTTP body lists them all.
        info = details[0]
        info.get("metadata", {}).pop("omitted_details", None)
        details = [info, *(problem_detail(p) for p in exc.problems)]
    body = {"code": row.grpc_code.name, "reason": row.reason, "message": str(exc), "details": details}
    return row.http_status, body


def internal_error_body(incident: str) -> dict[str, Any]:
    message = f"internal error (incident {incident}); the Queen's log has the details"
    return {
        "code": INTERNAL_ERROR.grpc_code.name,
        "reason": INTERNAL_ERROR.reason,
        "message": message,
        "details": [_error_info(INTERNAL_ERROR.reason, {"incident": incident})],
    }


def problem_body(problem: HttpProblem) -> dict[str, Any]:
    return {
        "code": problem.code,
        "reason": problem.reason,
        "message": problem.message,
        "details": [_error_info(problem.reason, {})],
    }


def _validation_body(errors: Sequence[Any]) -> tuple[int, dict[str, Any]]:
    """FastAPI's request validation errors as the table's InvalidArgument, one field violation each."""
    violations = []
    for error in errors:
        # ("body", "params", "x") -> "params.x"; ("query", "page") -> "page": the field as the caller wrote it
        parts = [str(part) for part in error.get("loc", ())]
        location = ".".join(parts[1:] if parts and parts[0] in _LOCATIONS else parts) or "body"
        violations.append({"field": location, "description": str(error.get("msg", "invalid value"))})
    first = violations[0] if violations else {"field": "body", "description": "invalid request"}
    status, body = error_body(
        InvalidArgument(f"{first['field']}: {first['description']}", field=first["field"])
    )
    for detail in body["details"]:
        if detail.get("@type") == _BAD_REQUEST_TYPE:
            detail["field_violations"] = violations
    return status, body


def _incident(exc: BaseException, request: Request | None = None) -> str:
    incident = uuid.uuid4().hex[:12]
    path = request.url.path if request is not None else ""
    log.error("http_request_failed", incident=incident, path=path, exc_info=exc)
    return incident


async def _formicary_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FormicaryError)
    if error_status(exc) is INTERNAL_ERROR:
        return JSONResponse(internal_error_body(_incident(exc, request)), status_code=500)
    status, body = error_body(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, ResourceExhausted) and exc.retry_after > 0:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="formicary"'
    return JSONResponse(body, status_code=status, headers=headers or None)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, HttpProblem):
        problem = exc
    else:
        # Starlette's own: an unknown route (404) or a method the route lacks (405).
        message = (
            f"no route {request.method} {request.url.path}"
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        problem = HttpProblem(exc.status_code, message)
    return JSONResponse(problem_body(problem), status_code=exc.status_code, headers=exc.headers)


async def _request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    status, body = _validation_body(exc.errors())
    return JSONResponse(body, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Every error the routes raise becomes a JSON error body (see the module docstring)."""
    app.add_exception_handler(FormicaryError, _formicary_error)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _request_validation_error)


class ErrorBoundary:
    """Outermost ASGI middleware: an exception no handler took (a bug) becomes a 500 JSON body with an
    incident id, and is logged once with its traceback rather than reaching uvicorn. If the response
    had already started (a streamed download), the connection is left to close short of its length."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            incident = _incident(exc)
            if started:
                return
            response = JSONResponse(internal_error_body(incident), status_code=500)
            await response(scope, receive, send)
