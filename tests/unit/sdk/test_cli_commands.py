"""The client commands' pure parts: params, addresses, exit codes, error lines, progress text."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from sdk.cli import build_app
from sdk.client import resolve_address
from sdk.commands.progress import Progress
from sdk.commands.requests import outcome_exit_code, parse_params
from sdk.commands.session import describe_error, exit_code_of
from sdk.errors import (
    DeadlineExceeded,
    InvalidArgument,
    InvalidDefinition,
    NotFound,
    Unavailable,
    ValidationProblem,
)
from sdk.models import JobRequestEvent, JobState, TaskState

pytestmark = pytest.mark.unit


def test_params_are_name_value_pairs() -> None:
    assert parse_params(["who=world", "empty=", "eq=a=b"]) == {"who": "world", "empty": "", "eq": "a=b"}
    with pytest.raises(typer.BadParameter):
        parse_params(["who"])


def test_the_exit_code_follows_the_outcome() -> None:
    assert [
        outcome_exit_code(s) for s in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, None)
    ] == [
        0,
        1,
        2,
        2,
    ]


def test_addresses_come_from_the_option_the_environment_or_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FORMICARY_URL", raising=False)
    assert resolve_address() == "127.0.0.1:7070"
    monkeypatch.setenv("FORMICARY_URL", "grpc://queen.example:7171")
    assert resolve_address() == "queen.example:7171"
    assert resolve_address("10.0.0.1:7070") == "10.0.0.1:7070"
    for bad in ("http://localhost:7777", "localhost", "localhost:99999"):
        with pytest.raises(InvalidArgument):
            resolve_address(bad)


def test_errors_are_one_line_and_problems_name_file_line_and_column() -> None:
    problem = ValidationProblem("error", 21, 38, "invalid_yaml", "bad\nYAML", fix="quote it")
    assert describe_error(InvalidDefinition("1 error", problems=[problem]), source="dr.yaml") == [
        "dr.yaml:21:38: error: bad YAML (fix: quote it)"
    ]
    assert describe_error(NotFound("job request 9 does not exist", code="NOT_FOUND")) == [
        "formicary: not found: job request 9 does not exist"
    ]
    (unreachable,) = describe_error(Unavailable("refused", code="UNAVAILABLE"), address="h:1")
    assert unreachable.startswith("formicary: cannot reach the Queen at h:1: refused")
    assert exit_code_of(NotFound("x")) == 1
    assert exit_code_of(Unavailable("x")) == 3
    assert exit_code_of(DeadlineExceeded("x")) == 3


def _event(job: JobState, task: str = "", state: TaskState | None = None) -> JobRequestEvent:
    return JobRequestEvent(7, "deploy", job, task, state, "", "", None)


def test_progress_says_task_n_of_m_and_the_current_task() -> None:
    progress = Progress(7, "deploy", total_tasks=5)
    assert progress.summary() == "request 7 (deploy) SUBMITTED"
    for event in (
        _event(JobState.EXECUTING, "build", TaskState.EXECUTING),
        _event(JobState.EXECUTING, "build", TaskState.COMPLETED),
        _event(JobState.EXECUTING, "scan", TaskState.EXECUTING),
    ):
        progress.apply(event)
    assert progress.summary() == "request 7 (deploy) EXECUTING: task 2 of 5 scan EXECUTING"
    assert progress.line().startswith(progress.summary() + " · ")
    progress.apply(_event(JobState.MANUAL_APPROVAL_REQUIRED, "gate", TaskState.MANUAL_APPROVAL_REQUIRED))
    assert progress.gate == "gate"


def test_every_client_command_is_registered_beside_the_plugins() -> None:
    app = build_app()
    result = CliRunner().invoke(app, ["--help"])
    for command in ("definitions", "submit", "status", "logs", "cancel", "restart", "artifacts", "ants"):
        assert command in result.stdout
    assert CliRunner().invoke(app, ["definitions", "--help"]).exit_code == 0
