"""The error table and the abort path: codes, HTTP statuses, rich details, nothing leaked, logged bugs."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from structlog.testing import capture_logs

from formicary.v1 import job_definition_pb2
from queen.api.errors import (
    DETAILS_METADATA_KEY,
    ERROR_TABLE,
    INTERNAL_ERROR,
    error_status,
    rich_status,
    status_of,
    stream_rpc,
    unary_rpc,
)
from queen.domain.errors import (
    AlreadyExists,
    FormicaryError,
    InvalidArgument,
    InvalidDefinition,
    InvalidTransition,
    NotFound,
    PermissionDenied,
)
from queen.domain.problems import Problem, ProblemCode, Severity
from queen.store import DuplicateUserKey

pytestmark = pytest.mark.unit

C = grpc.StatusCode


def problem(line: int = 21, severity: Severity = Severity.ERROR) -> Problem:
    return Problem(
        severity,
        ProblemCode.COLON_IN_PLAIN_SCALAR,
        "invalid YAML: this line holds an unquoted `: `",
        line,
        38,
        text="- echo '{\"a\": 1}' > f",
        fix="quote the whole value",
    )


@pytest.mark.parametrize(
    ("error", "code", "http", "reason"),
    [
        (NotFound("x"), C.NOT_FOUND, 404, "NOT_FOUND"),
        (AlreadyExists("x"), C.ALREADY_EXISTS, 409, "ALREADY_EXISTS"),
        (DuplicateUserKey("k", 7), C.ALREADY_EXISTS, 409, "DUPLICATE_USER_KEY"),
        (InvalidArgument("x", field="f"), C.INVALID_ARGUMENT, 400, "INVALID_ARGUMENT"),
        (InvalidDefinition([problem()]), C.INVALID_ARGUMENT, 400, "INVALID_DEFINITION"),
        (PermissionDenied("x"), C.PERMISSION_DENIED, 403, "PERMISSION_DENIED"),
        (
            InvalidTransition("job request 1", "CANCELLED", "CANCELLED"),
            C.FAILED_PRECONDITION,
            409,
            "INVALID_TRANSITION",
        ),
        (RuntimeError("boom"), C.INTERNAL, 500, "INTERNAL"),
        (FormicaryError("unmapped"), C.INTERNAL, 500, "INTERNAL"),
    ],
)
def test_the_table_maps_each_error(error: Exception, code: grpc.StatusCode, http: int, reason: str) -> None:
    row = error_status(error)
    assert (row.grpc_code, row.http_status, row.reason) == (code, http, reason)


def test_subclasses_inherit_their_row() -> None:
    class TaskTypeMissing(NotFound):
        pass

    assert error_status(TaskTypeMissing("x")) is ERROR_TABLE[NotFound]


def test_invalid_definition_details_are_validation_problems() -> None:
    status = rich_status(InvalidDefinition([problem(21), problem(30, Severity.WARNING)], source="upload"))
    assert status.code == C.INVALID_ARGUMENT.value[0]
    assert "21:38" in status.message
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("INVALID_DEFINITION", "formicary.v1")
    problems = []
    for packed in status.details[1:]:
        message = job_definition_pb2.ValidationProblem()
        assert packed.Unpack(message)
        problems.append(message)
    assert [(p.line, p.column, p.severity) for p in problems] == [
        (21, 38, job_definition_pb2.VALIDATION_SEVERITY_ERROR),
        (30, 38, job_definition_pb2.VALIDATION_SEVERITY_WARNING),
    ]
    assert problems[0].code == "colon_in_plain_scalar"
    assert problems[0].offending_text == "- echo '{\"a\": 1}' > f"
    assert problems[0].fix == "quote the whole value"


def test_details_stay_within_the_trailer_budget() -> None:
    status = rich_status(InvalidDefinition([problem(n) for n in range(1, 301)]))
    assert status.ByteSize() <= 3500
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    kept = len(status.details) - 1
    assert kept > 5
    assert int(info.metadata["omitted_details"]) == 300 - kept


def test_long_messages_are_cut_to_fit_a_header() -> None:
    status = rich_status(NotFound("ß" * 2000))
    assert len(status.message.encode()) <= 600
    assert status.message.endswith("…")
    assert status.message.startswith("ßß")


def test_duplicate_user_key_names_the_existing_request() -> None:
    status = rich_status(DuplicateUserKey("deploy-42", 17))
    info, resource = error_details_pb2.ErrorInfo(), error_details_pb2.ResourceInfo()
    status.details[0].Unpack(info)
    status.details[1].Unpack(resource)
    assert info.metadata["existing_job_request_id"] == "17"
    assert (resource.resource_type, resource.resource_name) == ("formicary.v1.JobRequest", "17")


def test_invalid_argument_names_its_field() -> None:
    status = rich_status(InvalidArgument("page_token is bad", field="page_token"))
    bad_request = error_details_pb2.BadRequest()
    status.details[1].Unpack(bad_request)
    assert bad_request.field_violations[0].field == "page_token"


def test_an_unknown_error_leaks_nothing() -> None:
    code, status = status_of(RuntimeError("password=hunter2 at db.internal:5432"), incident="abc123")
    assert code is C.INTERNAL
    assert "hunter2" not in status.SerializeToString().decode("utf-8", "replace")
    assert "abc123" in status.message
    assert error_status(RuntimeError()) is INTERNAL_ERROR


class FakeContext:
    """The part of grpc.aio.ServicerContext the abort path uses; abort raises, as the real one does."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str, Any] | None = None

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        self.aborted = (code, details, trailing_metadata)
        raise grpc.aio.AbortError()


class Servicer:
    @unary_rpc
    async def Fails(self, request: Exception, context: Any) -> str:
        raise request

    @unary_rpc
    async def Works(self, request: str, context: Any) -> str:
        return request.upper()

    @stream_rpc
    async def Streams(self, request: Exception, context: Any) -> AsyncGenerator[int, None]:
        yield 1
        yield 2
        raise request


async def test_unary_rpc_aborts_with_the_mapped_status() -> None:
    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        await Servicer().Fails(NotFound("job type 'x' does not exist"), context)
    assert context.aborted is not None
    code, details, trailers = context.aborted
    assert (code, details) == (C.NOT_FOUND, "job type 'x' does not exist")
    ((key, value),) = trailers
    assert key == DETAILS_METADATA_KEY
    assert status_pb2.Status.FromString(value).message == details
    assert await Servicer().Works("ok", FakeContext()) == "OK"


async def test_a_bug_is_logged_with_its_traceback_and_reported_as_internal() -> None:
    context = FakeContext()
    with capture_logs() as logs, pytest.raises(grpc.aio.AbortError):
        await Servicer().Fails(KeyError("internal detail"), context)
    assert context.aborted is not None
    assert context.aborted[0] is C.INTERNAL
    assert "internal detail" not in context.aborted[1]
    (entry,) = [e for e in logs if e["event"] == "rpc_failed"]
    assert entry["rpc"] == "Servicer.Fails"
    assert isinstance(entry["exc_info"], KeyError)
    assert entry["incident"] in context.aborted[1]


async def test_stream_rpc_sends_items_then_the_mapped_status() -> None:
    context = FakeContext()
    received = []
    stream = Servicer().Streams(InvalidTransition("job request 1", "PENDING", "resumed"), context)
    received.append(await anext(stream))
    received.append(await anext(stream))
    with pytest.raises(grpc.aio.AbortError):
        await anext(stream)
    assert received == [1, 2]
    assert context.aborted is not None
    assert context.aborted[0] is C.FAILED_PRECONDITION


async def test_an_abort_by_the_method_itself_is_left_alone() -> None:
    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        await Servicer().Fails(grpc.aio.AbortError(), context)
    assert context.aborted is None
