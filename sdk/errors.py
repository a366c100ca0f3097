"""The SDK's errors: one root, a subclass per gRPC status the Queen uses, with the status's rich details.

Callers never see a `grpc.RpcError`: every call of `sdk.client.Client` raises one of these. The details
travel in the `grpc-status-details-bin` trailer (`google.rpc.Status`), which is read here without
grpcio-status: ErrorInfo (reason, metadata), ValidationProblem (line, column, fix), ResourceInfo (the
existing request of a duplicate user_key), BadRequest (the field at fault).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from formicary.v1 import job_definition_pb2

__all__ = [
    "AlreadyExists",
    "Cancelled",
    "DeadlineExceeded",
    "DuplicateUserKey",
    "FailedPrecondition",
    "FormicaryError",
    "InternalError",
    "InvalidArgument",
    "InvalidDefinition",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "ValidationProblem",
    "error_from_rpc",
]

_DETAILS_KEY = "grpc-status-details-bin"
_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ValidationProblem:
    """One problem of a job definition, at a 1-based line and column of its YAML, with a fix."""

    severity: str  # "error" or "warning"
    line: int
    column: int
    code: str
    message: str
    offending_text: str = ""
    fix: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def format(self, source: str) -> str:
        """`FILE:LINE:COLUMN: severity: message (fix: ...)`, as `formicary lint` prints problems."""
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{source}:{self.line}:{self.column}: {self.severity}: {self.message}{fix}"

    @classmethod
    def from_proto(cls, message: job_definition_pb2.ValidationProblem) -> ValidationProblem:
        severity = job_definition_pb2.ValidationSeverity.Name(message.severity)
        return cls(
            severity=severity.removeprefix("VALIDATION_SEVERITY_").lower(),
            line=message.line,
            column=message.column,
            code=message.code,
            message=message.message,
            offending_text=message.offending_text,
            fix=message.fix,
        )


class FormicaryError(Exception):
    """A call to the Queen failed. `code` is the gRPC status code name, `reason` the Queen's ErrorInfo
    reason (e.g. INVALID_DEFINITION), `metadata` the ErrorInfo metadata."""

    def __init__(
        self, message: str, *, code: str = "UNKNOWN", reason: str = "", metadata: Mapping[str, str] = _EMPTY
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason or code
        self.metadata = MappingProxyType(dict(metadata))


class NotFound(FormicaryError):
    """The named thing does not exist (or is not visible to the caller)."""


class AlreadyExists(FormicaryError):
    """Something with the same identity exists already."""


class DuplicateUserKey(AlreadyExists):
    """A job request with this user_key exists: `existing_id` is its id."""

    def __init__(self, message: str, *, existing_id: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.existing_id = existing_id


class InvalidArgument(FormicaryError):
    """The Queen refused a value of the call; `field` names it when known."""

    def __init__(self, message: str, *, field: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field = field


class InvalidDefinition(InvalidArgument):
    """A job definition failed validation; `problems` lists every problem (errors and warnings)."""

    def __init__(self, message: str, *, problems: Sequence[ValidationProblem], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.problems = tuple(problems)


class FailedPrecondition(FormicaryError):
    """Not possible in the current state (a disabled job type, a request that is already finished)."""


class PermissionDenied(FormicaryError):
    """The caller may not do this."""


class Unauthenticated(FormicaryError):
    """The Queen does not know who is calling."""


class ResourceExhausted(FormicaryError):
    """A limit was reached (a message too large, a quota)."""


class Unimplemented(FormicaryError):
    """This Queen does not support the call."""


class Unavailable(FormicaryError):
    """The Queen cannot be reached (not running, wrong address, network) or is shutting down."""


class DeadlineExceeded(FormicaryError):
    """The Queen did not answer in time."""


class Cancelled(FormicaryError):
    """The call was cancelled."""


class InternalError(FormicaryError):
    """The Queen failed (a bug); its log has the details under the incident id in the message."""


_BY_CODE: Mapping[grpc.StatusCode, type[FormicaryError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.DATA_LOSS: InternalError,
    grpc.StatusCode.UNKNOWN: InternalError,
}


@dataclass(frozen=True, slots=True)
class _Details:
    reason: str = ""
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    problems: tuple[ValidationProblem, ...] = ()
    field: str = ""
    resource_name: str = ""


def _details(metadata: Sequence[tuple[str, str | bytes]]) -> _Details:
    """The rich details of a failed call's trailers (empty when there are none or they are unreadable)."""
    raw = next((value for key, value in metadata if key == _DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return _Details()
    try:
        status = status_pb2.Status.FromString(raw)
    except DecodeError:
        return _Details()
    reason, info_metadata, field, resource = "", {}, "", ""
    problems: list[ValidationProblem] = []
    for packed in status.details:
        info = error_details_pb2.ErrorInfo()
        problem = job_definition_pb2.ValidationProblem()
        bad_request = error_details_pb2.BadRequest()
        resource_info = error_details_pb2.ResourceInfo()
        if packed.Unpack(info):
            reason, info_metadata = info.reason, dict(info.metadata)
        elif packed.Unpack(problem):
            problems.append(ValidationProblem.from_proto(problem))
        elif packed.Unpack(bad_request) and bad_request.field_violations:
            field = bad_request.field_violations[0].field
        elif packed.Unpack(resource_info):
            resource = resource_info.resource_name
    return _Details(reason, MappingProxyType(info_metadata), tuple(problems), field, resource)


def error_from_rpc(exc: grpc.RpcError) -> FormicaryError:
    """The SDK error for a failed gRPC call (a `grpc.aio.AioRpcError`, or a sync call's error)."""
    code, message, trailers = grpc.StatusCode.UNKNOWN, "", ()
    if isinstance(exc, grpc.aio.AioRpcError | grpc.Call):
        code, message = exc.code(), exc.details() or ""
        trailers = tuple(exc.trailing_metadata() or ())
    message = message or code.name.lower()
    details = _details(trailers)
    common: dict[str, Any] = {"code": code.name, "reason": details.reason, "metadata": details.metadata}
    if details.reason == "INVALID_DEFINITION" or details.problems:
        return InvalidDefinition(message, problems=details.problems, field=details.field, **common)
    existing = details.metadata.get("existing_job_request_id", "") or details.resource_name
    if code is grpc.StatusCode.ALREADY_EXISTS and existing.isdigit():
        return DuplicateUserKey(message, existing_id=int(existing), **common)
    kind = _BY_CODE.get(code, FormicaryError)
    if issubclass(kind, InvalidArgument):
        return kind(message, field=details.field or details.metadata.get("field", ""), **common)
    return kind(message, **common)
