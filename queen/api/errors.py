"""Domain errors as gRPC statuses (and HTTP statuses, for the REST gateway): one table, one abort path.

Every public servicer method is wrapped by `unary_rpc` or `stream_rpc`, which turn a `FormicaryError`
into the status of the table, with the rich error model (`google.rpc.Status` in the
`grpc-status-details-bin` trailer, readable with grpcio-status's `rpc_status.from_call`):

- always an `ErrorInfo` (reason: the row's `reason`, domain `formicary.v1`, typed metadata);
- InvalidDefinition: one packed `formicary.v1.ValidationProblem` per problem (line, column, severity,
  code, message, offending text, fix);
- InvalidArgument naming a field: a `BadRequest` field violation;
- DuplicateUserKey: a `ResourceInfo` naming the existing request (and its id in the ErrorInfo);
- InvalidTransition: a `PreconditionFailure` (and current/target states in the ErrorInfo).

Anything else is a bug: INTERNAL with a generic message and an incident id, the traceback goes to the
log under that id, and nothing of the exception reaches the caller.

Why decorators rather than a server interceptor: interceptors are fixed when the server is built (in
`queen.app`), while these servicers are added to a server that already exists; the decorators also
keep error mapping off the Ant stream, which ends its calls with statuses of its own.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Never, TypeVar

import grpc
import structlog
from google.protobuf import any_pb2
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2

from queen.api._convert import validation_problem
from queen.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FormicaryError,
    InvalidArgument,
    InvalidDefinition,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from queen.store import DuplicateUserKey

__all__ = [
    "DETAILS_METADATA_KEY",
    "ERROR_DOMAIN",
    "ERROR_TABLE",
    "INTERNAL_ERROR",
    "ErrorStatus",
    "abort_with",
    "error_status",
    "rich_status",
    "status_of",
    "stream_rpc",
    "unary_rpc",
]

log = structlog.get_logger(__name__)

DETAILS_METADATA_KEY = "grpc-status-details-bin"
ERROR_DOMAIN = "formicary.v1"
# Trailers are headers: clients refuse them beyond 8 KiB by default (grpc.max_metadata_size). The
# details travel base64-encoded (x 4/3) and the message percent-encoded (non-ASCII bytes x 3), so at
# most 600 message bytes (1.8 KB encoded) and 3.5 KB of details (4.7 KB encoded) stay well below.
_MAX_MESSAGE_BYTES = 600
_MAX_DETAILS_BYTES = 3500


@dataclass(frozen=True, slots=True)
class ErrorStatus:
    """How one kind of error is reported: gRPC code, HTTP status, and `ErrorInfo.reason`."""

    grpc_code: grpc.StatusCode
    http_status: int
    reason: str


# The one table. Looked up along the exception's MRO, so the most specific row wins (DuplicateUserKey
# before AlreadyExists, InvalidDefinition before InvalidArgument).
ERROR_TABLE: Mapping[type[FormicaryError], ErrorStatus] = {
    NotFound: ErrorStatus(grpc.StatusCode.NOT_FOUND, 404, "NOT_FOUND"),
    AlreadyExists: ErrorStatus(grpc.StatusCode.ALREADY_EXISTS, 409, "ALREADY_EXISTS"),
    DuplicateUserKey: ErrorStatus(grpc.StatusCode.ALREADY_EXISTS, 409, "DUPLICATE_USER_KEY"),
    InvalidArgument: ErrorStatus(grpc.StatusCode.INVALID_ARGUMENT, 400, "INVALID_ARGUMENT"),
    InvalidDefinition: ErrorStatus(grpc.StatusCode.INVALID_ARGUMENT, 400, "INVALID_DEFINITION"),
    PermissionDenied: ErrorStatus(grpc.StatusCode.PERMISSION_DENIED, 403, "PERMISSION_DENIED"),
    Unauthenticated: ErrorStatus(grpc.StatusCode.UNAUTHENTICATED, 401, "UNAUTHENTICATED"),
    ResourceExhausted: ErrorStatus(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "RESOURCE_EXHAUSTED"),
    FailedPrecondition: ErrorStatus(grpc.StatusCode.FAILED_PRECONDITION, 409, "FAILED_PRECONDITION"),
    InvalidTransition: ErrorStatus(grpc.StatusCode.FAILED_PRECONDITION, 409, "INVALID_TRANSITION"),
}
# Everything not in the table, FormicaryError subclasses included: they are bugs until given a row.
INTERNAL_ERROR = ErrorStatus(grpc.StatusCode.INTERNAL, 500, "INTERNAL")


def error_status(exc: BaseException) -> ErrorStatus:
    """The table's row for `exc` (the most specific class that has one), else INTERNAL_ERROR."""
    for cls in type(exc).__mro__:
        found = ERROR_TABLE.get(cls) if issubclass(cls, FormicaryError) else None
        if found is not None:
            return found
    return INTERNAL_ERROR


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes (on a character boundary), marked with "…" when cut."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode(errors="ignore") + "…"


def rich_status(exc: FormicaryError, row: ErrorStatus | None = None) -> status_pb2.Status:
    """The `google.rpc.Status` describing a domain error, within the trailer budget."""
    row = row or error_status(exc)
    metadata: dict[str, str] = {"error": type(exc).__name__}
    details: list[Any] = []
    if isinstance(exc, InvalidDefinition):
        details.extend(validation_problem(problem) for problem in exc.problems)
    elif isinstance(exc, InvalidArgument) and exc.field:
        metadata["field"] = exc.field
        violation = error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=str(exc))
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    if isinstance(exc, DuplicateUserKey):
        metadata["existing_job_request_id"] = str(exc.existing_id)
        metadata["user_key"] = exc.user_key
        details.append(
            error_details_pb2.ResourceInfo(
                resource_type="formicary.v1.JobRequest",
                resource_name=str(exc.existing_id),
                description=f"job request {exc.existing_id} has user_key {exc.user_key!r}",
            )
        )
    if isinstance(exc, InvalidTransition):
        metadata.update(entity=exc.entity, current_state=exc.current, target_state=exc.target)
        violation_ = error_details_pb2.PreconditionFailure.Violation(
            type="STATE", subject=exc.entity, description=str(exc)
        )
        details.append(error_details_pb2.PreconditionFailure(violations=[violation_]))
    if isinstance(exc, ResourceExhausted) and exc.retry_after > 0:
        metadata["retry_after_seconds"] = f"{exc.retry_after:.3f}"
        delay = Duration()
        delay.FromNanoseconds(int(exc.retry_after * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return _status(row, _clip(str(exc), _MAX_MESSAGE_BYTES), metadata, details)


def _status(
    row: ErrorStatus, message: str, metadata: dict[str, str], details: list[Any]
) -> status_pb2.Status:
    """A Status whose serialized form fits the budget: details that do not fit are left out, and the
    ErrorInfo (always first) says how many."""
    status = status_pb2.Status(code=row.grpc_code.value[0], message=message)
    info = error_details_pb2.ErrorInfo(reason=row.reason, domain=ERROR_DOMAIN, metadata=metadata)
    status.details.append(_packed(info))
    for index, detail in enumerate(details):
        packed = _packed(detail)
        if status.ByteSize() + packed.ByteSize() + 64 > _MAX_DETAILS_BYTES:
            info.metadata["omitted_details"] = str(len(details) - index)
            status.details[0].CopyFrom(_packed(info))
            break
        status.details.append(packed)
    return status


def status_of(exc: BaseException, *, incident: str = "") -> tuple[grpc.StatusCode, status_pb2.Status]:
    """The code and rich status a call failing with `exc` ends with."""
    row = error_status(exc)
    if row is INTERNAL_ERROR or not isinstance(exc, FormicaryError):
        message = f"internal error (incident {incident}); the Queen's log has the details"
        return row.grpc_code, _status(INTERNAL_ERROR, message, {"incident": incident}, [])
    return row.grpc_code, rich_status(exc, row)


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException, *, rpc: str) -> Never:
    """End the call with the status of `exc`; an unmapped exception is logged with its traceback."""
    incident = ""
    if error_status(exc) is INTERNAL_ERROR:
        incident = uuid.uuid4().hex[:12]
        log.error("rpc_failed", rpc=rpc, incident=incident, exc_info=exc)
    code, status = status_of(exc, incident=incident)
    await context.abort(
        code, status.message, trailing_metadata=((DETAILS_METADATA_KEY, status.SerializeToString()),)
    )


S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


def unary_rpc(
    method: Callable[[S, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
) -> Callable[[S, Req, grpc.aio.ServicerContext[Req, Resp]], Coroutine[Any, Any, Resp]]:
    """Wrap a unary servicer method: errors become statuses through the table."""
    rpc = method.__qualname__

    @functools.wraps(method)
    async def call(self: S, request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
        with structlog.contextvars.bound_contextvars(rpc=rpc):
            try:
                return await method(self, request, context)
            except grpc.aio.AbortError:
                raise  # the method aborted the call itself
            except Exception as exc:
                await abort_with(context, exc, rpc=rpc)

    return call


def stream_rpc(
    method: Callable[[S, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncGenerator[Resp, None]],
) -> Callable[[S, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """Wrap a server-streaming servicer method (an async generator): errors become statuses through the
    table; the inner generator is closed at once when the client goes away."""
    rpc = method.__qualname__

    @functools.wraps(method)
    async def call(
        self: S, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        with structlog.contextvars.bound_contextvars(rpc=rpc):
            try:
                async with contextlib.aclosing(method(self, request, context)) as stream:
                    async for item in stream:
                        yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await abort_with(context, exc, rpc=rpc)

    return call
