"""The SDK reads the Queen's error statuses: every row of the Queen's error table, with its details,
becomes the matching SDK error (built here by the Queen's own `status_of`, as a failed call carries it)."""

from __future__ import annotations

import grpc
import pytest
from grpc.aio import Metadata

from queen.api.errors import DETAILS_METADATA_KEY, status_of
from queen.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    InvalidTransition,
    NotFound,
    PermissionDenied,
)
from queen.domain.errors import InvalidDefinition as DomainInvalidDefinition
from queen.domain.problems import Problem, ProblemCode, Severity
from queen.store import DuplicateUserKey as DomainDuplicateUserKey
from sdk import errors

pytestmark = pytest.mark.unit


def failed_call(exc: Exception) -> grpc.aio.AioRpcError:
    """The error a client sees when the Queen fails a call with `exc`."""
    code, status = status_of(exc, incident="abc123")
    trailers = Metadata((DETAILS_METADATA_KEY, status.SerializeToString()))
    return grpc.aio.AioRpcError(code, Metadata(), trailers, details=status.message)


def test_an_invalid_definition_carries_every_problem_with_line_column_and_fix() -> None:
    problem = Problem(Severity.ERROR, ProblemCode.YAML_SYNTAX, "bad", 21, 38, "- echo", "quote it")
    found = errors.error_from_rpc(failed_call(DomainInvalidDefinition([problem], source="upload")))

    assert isinstance(found, errors.InvalidDefinition)
    assert found.reason == "INVALID_DEFINITION"
    (read,) = found.problems
    assert (read.line, read.column, read.severity, read.fix) == (21, 38, "error", "quote it")
    assert read.format("playbook.yaml") == "playbook.yaml:21:38: error: bad (fix: quote it)"


def test_a_duplicate_user_key_names_the_existing_request() -> None:
    found = errors.error_from_rpc(failed_call(DomainDuplicateUserKey("release-1", 42)))

    assert isinstance(found, errors.DuplicateUserKey)
    assert found.existing_id == 42
    assert found.code == "ALREADY_EXISTS"


@pytest.mark.parametrize(
    ("raised", "expected", "reason"),
    [
        (NotFound("job request 9 does not exist"), errors.NotFound, "NOT_FOUND"),
        (InvalidArgument("too big", field="params"), errors.InvalidArgument, "INVALID_ARGUMENT"),
        (FailedPrecondition("disabled"), errors.FailedPrecondition, "FAILED_PRECONDITION"),
        (
            InvalidTransition("job request 9", "COMPLETED", "PAUSED"),
            errors.FailedPrecondition,
            "INVALID_TRANSITION",
        ),
        (PermissionDenied("no"), errors.PermissionDenied, "PERMISSION_DENIED"),
        (RuntimeError("a bug"), errors.InternalError, "INTERNAL"),
    ],
)
def test_each_row_of_the_error_table_becomes_its_sdk_error(
    raised: Exception, expected: type[errors.FormicaryError], reason: str
) -> None:
    found = errors.error_from_rpc(failed_call(raised))

    assert type(found) is expected
    assert found.reason == reason
    if isinstance(found, errors.InvalidArgument):
        assert found.field == "params"
    if reason == "INTERNAL":
        assert "abc123" in found.message


def test_a_call_without_details_still_maps_by_code() -> None:
    bare = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, Metadata(), Metadata(), details="connection refused"
    )

    found = errors.error_from_rpc(bare)

    assert isinstance(found, errors.Unavailable)
    assert (found.message, found.reason) == ("connection refused", "UNAVAILABLE")
