"""REST errors come from the one error table, with the very details of the gRPC status."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from queen.api.errors import ERROR_TABLE, rich_status
from queen.domain.errors import (
    FailedPrecondition,
    FormicaryError,
    InvalidArgument,
    InvalidDefinition,
    InvalidTransition,
    NotFound,
    PermissionDenied,
)
from queen.domain.problems import Problem, ProblemCode, Severity
from queen.http.errors import HttpProblem, _validation_body, error_body, internal_error_body, problem_body
from queen.store import DuplicateUserKey

pytestmark = pytest.mark.unit


def _grpc_details(exc: FormicaryError) -> list[dict[str, Any]]:
    return [
        json_format.MessageToDict(
            packed, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        for packed in rich_status(exc).details
    ]


def _problem(line: int) -> Problem:
    return Problem(
        Severity.ERROR,
        ProblemCode.UNKNOWN_FIELD,
        f"unknown field on line {line}",
        line,
        3,
        "x: 1",
        "remove it",
    )


ERRORS: list[FormicaryError] = [
    NotFound("job request 9 does not exist"),
    DuplicateUserKey("release-1", 42),
    InvalidArgument("too big", field="params"),
    InvalidDefinition([_problem(21)], source="upload"),
    PermissionDenied("no"),
    FailedPrecondition("job type 'x' is disabled"),
    InvalidTransition("job request 9", "COMPLETED", "PAUSED"),
]


@pytest.mark.parametrize("exc", ERRORS, ids=lambda e: type(e).__name__)
def test_the_body_has_the_table_status_code_reason_and_the_grpc_details(exc: FormicaryError) -> None:
    status, body = error_body(exc)

    row = next(ERROR_TABLE[cls] for cls in type(exc).__mro__ if cls in ERROR_TABLE)
    assert status == row.http_status
    assert (body["code"], body["reason"], body["message"]) == (row.grpc_code.name, row.reason, str(exc))
    assert body["details"] == _grpc_details(exc)


def test_the_table_covers_every_status_the_gateway_documents() -> None:
    assert {error_body(e)[0] for e in ERRORS} == {400, 403, 404, 409}


def test_an_invalid_definition_lists_every_problem_where_the_trailer_budget_would_cut() -> None:
    many = InvalidDefinition([_problem(n) for n in range(1, 201)], source="upload")

    _, body = error_body(many)

    problems = [d for d in body["details"] if d["@type"].endswith("ValidationProblem")]
    assert [p["line"] for p in problems] == list(range(1, 201))
    assert problems[0]["fix"] == "remove it"
    assert "omitted_details" not in body["details"][0]["metadata"]
    assert len(_grpc_details(many)) < 201  # what gRPC can carry in its trailer


def test_request_validation_errors_are_the_table_invalid_argument_with_a_violation_each() -> None:
    status, body = _validation_body(
        [
            {"loc": ("body", "job_type"), "msg": "Field required"},
            {"loc": ("query", "page"), "msg": "Input should be greater than or equal to 0"},
        ]
    )

    assert (status, body["code"], body["reason"]) == (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
    (violations,) = [d["field_violations"] for d in body["details"] if d["@type"].endswith("BadRequest")]
    assert [v["field"] for v in violations] == ["job_type", "page"]


def test_http_problems_and_internal_errors_have_the_same_shape() -> None:
    too_large = problem_body(HttpProblem(413, "too big"))
    internal = internal_error_body("abc123")

    assert (too_large["code"], too_large["reason"]) == ("RESOURCE_EXHAUSTED", "REQUEST_TOO_LARGE")
    assert internal["code"] == "INTERNAL"
    assert "abc123" in internal["message"]
    assert internal["details"][0]["metadata"] == {"incident": "abc123"}
    for body in (too_large, internal):
        assert set(body) == {"code", "reason", "message", "details"}
