"""Records as the REST gateway's JSON: Formicary's field names, enums by name, durations as text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, cast

import pytest

from queen.domain.definition_parser import parse_job_definition
from queen.domain.states import JobState, TaskState
from queen.http import _convert as convert
from queen.http.application import build_app
from queen.http.body_limits import body_limits_for
from queen.services.requests import RequestDetails
from queen.services.service_set import Services
from queen.store import DefinitionRecord, JobExecutionRecord, JobRequestRecord, TaskExecutionRecord

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

YAML = """\
job_type: deploy
timeout: 1h30m
tasks:
- task_type: build
  method: SHELL
  script: [make]
  timeout: 90s
  on_completed: gate
- task_type: gate
  method: MANUAL
  on_exit_code:
    APPROVED: ship
    REJECTED: FATAL
- task_type: ship
  method: SHELL
  script: [./ship]
"""


def _request(**changes: Any) -> JobRequestRecord:
    values: dict[str, Any] = {
        "id": 7, "parent_id": None, "user_key": None, "job_definition_id": "d-1", "job_type": "deploy",
        "job_version": 2, "job_state": JobState.FAILED, "job_priority": 5, "job_group": "",
        "organization_id": "o", "user_id": "u", "params": MappingProxyType({"env": "prod"}),
        "scheduled_at": None, "cron_triggered": False,
        "retried": 0, "schedule_attempts": 1, "wait_reason": "", "error_code": "ERR_TASK_FAILED",
        "error_message": "task build failed", "job_execution_id": "e-1", "trace_id": "", "root_span_id": "",
        "paused_until": None, "restart_mode": "", "created_at": NOW, "updated_at": NOW, "started_at": NOW,
        "ended_at": NOW,
    }  # fmt: skip
    values.update(changes)
    return JobRequestRecord(**values)


def _task() -> TaskExecutionRecord:
    return TaskExecutionRecord(
        id="t-1", job_execution_id="e-1", task_type="build", method="SHELL", task_state=TaskState.FAILED,
        task_order=0, allow_failure=False, exit_code="2", exit_message="make: error", error_code="",
        error_message="", failed_command="make", ant_id="ant-1", ant_host="h", retried=0,
        contexts=MappingProxyType({}), artifacts=({"id": "a-1", "name": "build.log", "content_length": 12},),
        stdout=(), warnings=(), cost_factor=0.0, span_id="", next_run_at=None, deadline_at=None,
        started_at=NOW, ended_at=NOW + timedelta(seconds=3), updated_at=NOW,
    )  # fmt: skip


def test_a_request_has_formicarys_field_names_and_its_tasks() -> None:
    execution = JobExecutionRecord(
        id="e-1", job_request_id=7, job_type="deploy", job_version=2, job_state=JobState.FAILED, exit_code="",
        exit_message="", error_code="", error_message="", contexts=MappingProxyType({}), cursor=None,
        started_at=NOW, ended_at=NOW, updated_at=NOW, cpu_secs=1.5,
    )  # fmt: skip
    body = convert.job_request(RequestDetails(_request(), execution, (_task(),))).model_dump(mode="json")

    assert {k: body[k] for k in ("id", "job_type", "job_state", "job_priority", "params", "error_code")} == {
        "id": 7,
        "job_type": "deploy",
        "job_state": "FAILED",
        "job_priority": 5,
        "params": {"env": "prod"},
        "error_code": "ERR_TASK_FAILED",
    }
    assert body["error_message"] == "task build failed"
    assert body["created_at"] == "2026-01-02T03:04:05Z"
    (task,) = body["execution"]["tasks"]
    assert {k: task[k] for k in ("task_type", "task_state", "exit_code", "exit_message", "ant_id")} == {
        "task_type": "build",
        "task_state": "FAILED",
        "exit_code": "2",
        "exit_message": "make: error",
        "ant_id": "ant-1",
    }
    assert task["artifacts"][0]["url"] == "/api/artifacts/a-1/download"
    assert convert.job_request(_request()).execution is None


def test_a_definition_shows_its_tasks_and_durations_as_the_language_writes_them() -> None:
    record = DefinitionRecord(
        id="d-1", organization_id="o", user_id="u", job_type="deploy", version=3, digest="x", yaml=YAML,
        description="", cron_trigger="", max_concurrency=None, methods=("MANUAL", "SHELL"), tags=(),
        disabled=False, deleted_at=None, created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    parse_job_definition(YAML)  # the fixture itself is valid

    body = convert.job_definition(record).model_dump(mode="json", by_alias=True)

    assert (body["job_type"], body["version"], body["timeout"], body["raw_yaml"]) == (
        "deploy",
        3,
        "1h30m",
        YAML,
    )
    assert [t["task_type"] for t in body["tasks"]] == ["build", "gate", "ship"]
    build, gate, _ = body["tasks"]
    assert (build["timeout"], build["on_completed"], build["except"]) == ("1m30s", "gate", "")
    assert gate["on_exit_code"] == {"APPROVED": "ship", "REJECTED": "FATAL"}


def test_the_gateway_serves_the_documented_routes() -> None:
    dummy = cast(Any, object())
    app = build_app(
        Services(dummy, dummy, dummy, dummy, dummy, dummy, dummy, dummy, dummy), limits=body_limits_for(65536)
    )

    routes = {(method, path) for path, item in app.openapi()["paths"].items() for method in item}

    assert routes == {
        ("post", "/api/jobs/definitions"),
        ("get", "/api/jobs/definitions"),
        ("get", "/api/jobs/definitions/{ref}"),
        ("delete", "/api/jobs/definitions/{ref}"),
        ("get", "/api/jobs/definitions/{job_type}/yaml"),
        ("post", "/api/jobs/definitions/{ref}/disable"),
        ("post", "/api/jobs/definitions/{ref}/enable"),
        ("post", "/api/jobs/requests"),
        ("get", "/api/jobs/requests"),
        ("get", "/api/jobs/requests/stream"),
        ("get", "/api/jobs/requests/{request_id}"),
        ("get", "/api/jobs/requests/{request_id}/stream"),
        ("post", "/api/jobs/requests/{request_id}/cancel"),
        ("post", "/api/jobs/requests/{request_id}/pause"),
        ("post", "/api/jobs/requests/{request_id}/resume"),
        ("post", "/api/jobs/requests/{request_id}/restart"),
        ("post", "/api/jobs/requests/{request_id}/trigger"),
        ("post", "/api/jobs/requests/{request_id}/tasks/{task_type}/vote"),
        ("get", "/api/jobs/requests/{request_id}/tasks/{task_type}/approval"),
        ("get", "/api/approvals/pending"),
        ("get", "/api/approvals/pending/stream"),
        ("get", "/api/artifacts"),
        ("get", "/api/artifacts/{artifact_id}"),
        ("get", "/api/artifacts/{artifact_id}/download"),
        ("delete", "/api/artifacts/{artifact_id}"),
        ("get", "/api/ants"),
        ("get", "/api/health"),
        ("get", "/metrics"),
        ("post", "/api/auth/login"),
        ("post", "/api/auth/logout"),
        ("get", "/api/auth/whoami"),
    }
