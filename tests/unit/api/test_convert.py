"""Records and domain values → protobuf messages (and back for enums, paging and timestamps)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from formicary.v1 import ant_pb2, job_definition_pb2, log_line_pb2, state_pb2, task_pb2
from queen.ants.registry import AntSnapshot
from queen.api import _convert as convert
from queen.domain.definition_parser import parse_job_definition
from queen.domain.errors import InvalidArgument
from queen.domain.job_definition import TaskMethod
from queen.domain.states import JobState, TaskState
from queen.store import (
    DefinitionRecord,
    EventRecord,
    JobExecutionRecord,
    JobRequestRecord,
    TaskExecutionRecord,
)
from queen.task_logs import StoredLine

pytestmark = pytest.mark.unit

T0 = datetime(2030, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)

RICH_YAML = """\
job_type: rich
description: every converted field
sem_version: 1.2.0
timeout: 1h30m
retry: 2
max_concurrency: 3
required_params: [version]
job_variables:
  region: eu-west-1
  replicas: 3
  dry_run: true
tasks:
- task_type: build
  method: DOCKER
  tags: [linux]
  timeout: 90s
  delay_between_retries: 5s
  script: [go build ./...]
  variables:
    debug: false
  environment:
    GOFLAGS: -mod=mod
  container:
    image: golang:1.24
    memory_limit: 1Gi
  cache:
    key: go
    paths: [/go/pkg]
  resources:
    cpu: "2"
  artifacts:
    paths: [bin/app]
    expires_after: 24h
  on_completed: approve
- task_type: approve
  method: MANUAL
  description: ship it?
  approval_policy:
    min_approvals: 2
    allowed_roles: [operator]
    sla_deadline: 4h
  on_exit_code:
    APPROVED: COMPLETED
    REJECTED: FATAL
"""


def definition_record(yaml: str = RICH_YAML, **overrides: object) -> DefinitionRecord:
    parsed = parse_job_definition(yaml)
    fields: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "organization_id": "org",
        "user_id": "alice",
        "job_type": parsed.job_type,
        "version": 4,
        "digest": "d" * 64,
        "yaml": yaml,
        "description": parsed.description,
        "cron_trigger": "",
        "max_concurrency": parsed.max_concurrency,
        "methods": tuple(sorted(m.value for m in parsed.methods)),
        "tags": tuple(sorted(parsed.all_tags)),
        "disabled": False,
        "deleted_at": None,
        "created_at": T0,
        "updated_at": T0 + timedelta(minutes=1),
    }
    fields.update(overrides)
    return DefinitionRecord(**fields)  # type: ignore[arg-type]


def test_every_domain_state_and_method_has_its_proto_value() -> None:
    for state in JobState:
        assert state_pb2.JobState.Name(convert.job_state_to_proto(state)) == f"JOB_STATE_{state.value}"
        assert convert.job_state_from_proto(convert.job_state_to_proto(state)) is state
    for task_state in TaskState:
        assert (
            state_pb2.TaskState.Name(convert.task_state_to_proto(task_state))
            == f"TASK_STATE_{task_state.value}"
        )
    for method in TaskMethod:
        assert convert.method_from_proto(convert.method_to_proto(method.value)) is method
    assert convert.job_state_from_proto(state_pb2.JOB_STATE_UNSPECIFIED) is None
    assert convert.method_from_proto(task_pb2.TASK_METHOD_UNSPECIFIED) is None
    assert convert.method_to_proto("TELEPATHY") == task_pb2.TASK_METHOD_UNSPECIFIED
    with pytest.raises(InvalidArgument):
        convert.job_state_from_proto(99)
    with pytest.raises(InvalidArgument):
        convert.method_from_proto(99)


def test_timestamps_are_utc() -> None:
    stamp = convert.timestamp(T0)
    assert stamp.ToJsonString() == "2030-01-02T03:04:05.600Z"
    assert convert.to_datetime(stamp) == T0
    assert convert.timestamp(None) is None


def test_page_tokens_round_trip_and_are_bound_to_their_filters() -> None:
    first = convert.page_request(0, "", ("a", 1))
    assert (first.limit, first.offset) == (50, 0)
    assert convert.page_request(10_000, "").limit == 500
    token = first.next_token(50)
    assert convert.page_request(0, token, ("a", 1)).offset == 50
    with pytest.raises(InvalidArgument, match="other filters") as other:
        convert.page_request(0, token, ("b", 1))
    assert other.value.field == "page_token"
    for bad in ("***", "bm9wZQ", "LTU6YWJj", "x" * 500):
        with pytest.raises(InvalidArgument):
            convert.page_request(0, bad)
    with pytest.raises(InvalidArgument):
        convert.page_request(-1, "")


def test_job_definition_carries_its_tasks_and_metadata() -> None:
    record = definition_record()
    message = convert.job_definition(record)
    assert (message.id, message.job_type, message.version, message.sem_version) == (
        record.id,
        "rich",
        4,
        "1.2.0",
    )
    assert (message.organization_id, message.user_id, message.yaml) == ("org", "alice", RICH_YAML)
    assert message.timeout.ToTimedelta() == timedelta(hours=1, minutes=30)
    assert (message.retry, message.max_concurrency) == (2, 3)
    assert list(message.required_params) == ["version"]
    assert dict(message.job_variables) == {"region": "eu-west-1", "replicas": "3", "dry_run": "true"}
    assert list(message.methods) == [task_pb2.TASK_METHOD_DOCKER, task_pb2.TASK_METHOD_MANUAL]
    assert list(message.tags) == ["linux"]
    assert convert.to_datetime(message.update_time) == T0 + timedelta(minutes=1)

    build, approve = message.tasks
    assert (build.task_order, approve.task_order) == (0, 1)
    assert build.id == str(uuid.uuid5(uuid.UUID(record.id), "build"))
    assert build.method == task_pb2.TASK_METHOD_DOCKER
    assert build.timeout.ToTimedelta() == timedelta(seconds=90)
    assert build.delay_between_retries.ToTimedelta() == timedelta(seconds=5)
    assert dict(build.variables) == {"debug": "false"}
    assert dict(build.environment) == {"GOFLAGS": "-mod=mod"}
    assert (build.container.image, build.container.resources.memory_limit) == ("golang:1.24", "1Gi")
    assert (build.cache.key, list(build.cache.paths)) == ("go", ["/go/pkg"])
    assert build.resources.cpu_request == "2"
    assert build.artifacts.retention_duration.ToTimedelta() == timedelta(hours=24)
    assert build.on_completed == "approve"
    assert approve.method == task_pb2.TASK_METHOD_MANUAL
    assert dict(approve.on_exit_code) == {"APPROVED": "COMPLETED", "REJECTED": "FATAL"}
    policy = approve.approval_policy
    assert (policy.required_approvals, list(policy.approver_roles)) == (2, ["operator"])
    assert policy.decision_timeout.ToTimedelta() == timedelta(hours=4)
    assert not approve.HasField("container")


def test_a_stored_definition_the_parser_now_refuses_is_still_shown() -> None:
    record = definition_record()
    broken = DefinitionRecord(
        **{**{f: getattr(record, f) for f in record.__slots__}, "yaml": "tasks: [", "digest": "e" * 64}
    )  # type: ignore[arg-type]
    message = convert.job_definition(broken)
    assert (message.job_type, message.yaml, len(message.tasks)) == ("rich", "tasks: [", 0)
    assert list(message.methods) == [task_pb2.TASK_METHOD_DOCKER, task_pb2.TASK_METHOD_MANUAL]


def test_validation_problem_uses_the_proto_vocabulary() -> None:
    from queen.domain.problems import Problem, ProblemCode, Severity

    converted = convert.validation_problem(
        Problem(Severity.ERROR, ProblemCode.YAML_SYNTAX, "bad", 3, 4, text="a: b\nc: d", fix="quote")
    )
    assert (converted.code, converted.line, converted.column) == ("invalid_yaml", 3, 4)
    assert converted.offending_text == "a: b"
    assert converted.severity == job_definition_pb2.VALIDATION_SEVERITY_ERROR
    assert (
        convert.validation_problem(Problem(Severity.WARNING, ProblemCode.UNREACHABLE_TASK, "x", 1, 1)).code
        == "unreachable_task"
    )


def request_record(**overrides: object) -> JobRequestRecord:
    fields: dict[str, object] = {
        "id": 12,
        "parent_id": None,
        "user_key": None,
        "job_definition_id": "def-1",
        "job_type": "rich",
        "job_version": 4,
        "job_state": JobState.EXECUTING,
        "job_priority": -3,
        "job_group": "g",
        "organization_id": "org",
        "user_id": "alice",
        "params": MappingProxyType({"version": "1.0"}),
        "scheduled_at": None,
        "cron_triggered": False,
        "retried": 1,
        "schedule_attempts": 2,
        "wait_reason": "",
        "error_code": "",
        "error_message": "",
        "job_execution_id": "exec-1",
        "trace_id": "",
        "root_span_id": "",
        "paused_until": None,
        "restart_mode": "",
        "created_at": T0,
        "updated_at": T0,
        "started_at": T0,
        "ended_at": None,
    }
    fields.update(overrides)
    return JobRequestRecord(**fields)  # type: ignore[arg-type]


def test_job_request_with_its_execution_and_tasks() -> None:
    execution = JobExecutionRecord(
        id="exec-1",
        job_request_id=12,
        job_type="rich",
        job_version=4,
        job_state=JobState.EXECUTING,
        exit_code="",
        exit_message="",
        error_code="",
        error_message="",
        contexts=MappingProxyType({"version": "1.0", "count": 2, "nested": MappingProxyType({"a": (1, 2)})}),
        cursor=None,
        started_at=T0,
        ended_at=None,
        updated_at=T0,
        cpu_secs=1.5,
    )
    task = TaskExecutionRecord(
        id="task-1",
        job_execution_id="exec-1",
        task_type="build",
        method="DOCKER",
        task_state=TaskState.COMPLETED,
        task_order=0,
        allow_failure=False,
        exit_code="0",
        exit_message="",
        error_code="",
        error_message="",
        failed_command="",
        ant_id="ant-1",
        ant_host="h",
        retried=0,
        contexts=MappingProxyType({}),
        artifacts=(MappingProxyType({"id": "art-1", "name": "app", "content_length": 10}),),
        stdout=("ok",),
        warnings=("local fallback: KUBERNETES task run with SHELL",),
        cost_factor=1.0,
        span_id="",
        next_run_at=None,
        deadline_at=None,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=3),
        updated_at=T0,
    )
    message = convert.job_request(request_record(), execution, [task])
    assert (message.id, message.job_version, message.job_priority) == (12, "4", -3)
    assert message.job_state == state_pb2.JOB_STATE_EXECUTING
    assert (message.parent_id, message.user_key) == (0, "")
    assert not message.HasField("scheduled_time")
    assert dict(message.params) == {"version": "1.0"}
    execution_message = message.execution
    assert (execution_message.organization_id, execution_message.user_id) == ("org", "alice")
    assert dict(execution_message.contexts) == {"version": "1.0", "count": "2", "nested": '{"a": [1, 2]}'}
    assert execution_message.cpu_duration.ToTimedelta() == timedelta(seconds=1.5)
    (task_message,) = execution_message.tasks
    assert (task_message.task_state, task_message.method) == (
        state_pb2.TASK_STATE_COMPLETED,
        task_pb2.TASK_METHOD_DOCKER,
    )
    assert (task_message.artifacts[0].id, task_message.artifacts[0].content_length) == ("art-1", 10)
    assert task_message.artifacts[0].task_execution_id == "task-1"
    assert not convert.job_request(request_record()).HasField("execution")


def event(kind: str, **fields: object) -> EventRecord:
    values: dict[str, object] = {
        "id": 1,
        "job_request_id": 12,
        "task_execution_id": None,
        "task_type": None,
        "kind": kind,
        "from_state": None,
        "to_state": None,
        "message": "",
        "data": MappingProxyType({}),
        "created_at": T0,
    }
    values.update(fields)
    return EventRecord(**values)  # type: ignore[arg-type]


def test_events_carry_the_request_state_tracked_along_the_log() -> None:
    log = [
        event("request_submitted", to_state="PENDING", data=MappingProxyType({"user_id": "alice"})),
        event("wait_reason_changed", message="no connected Ant runs SHELL tasks"),
        event("job_state_changed", from_state="PENDING", to_state="READY"),
        event("job_execution_state_changed", from_state="STARTED", to_state="EXECUTING"),
        event(
            "task_state_changed",
            task_type="build",
            task_execution_id="task-1",
            from_state="EXECUTING",
            to_state="COMPLETED",
            data=MappingProxyType({"exit_code": "0", "ant_id": "ant-1"}),
        ),
    ]
    state = JobState.PENDING
    streamed = []
    for record in log:
        state = convert.job_state_after(record, state)
        streamed.append(convert.job_request_event(record, job_type="rich", job_state=state))
    assert [e.job_state for e in streamed] == [
        state_pb2.JOB_STATE_PENDING,
        state_pb2.JOB_STATE_PENDING,
        state_pb2.JOB_STATE_READY,
        state_pb2.JOB_STATE_READY,  # an execution's own state change is not the request's
        state_pb2.JOB_STATE_READY,
    ]
    assert streamed[0].message == "submitted by alice"
    assert streamed[1].message == "waiting: no connected Ant runs SHELL tasks"
    done = streamed[-1]
    assert (done.task_type, done.task_execution_id, done.exit_code) == ("build", "task-1", "0")
    assert done.task_state == state_pb2.TASK_STATE_COMPLETED
    assert done.message == "task build EXECUTING → COMPLETED on ant-1, exit code 0"
    assert streamed[2].task_state == state_pb2.TASK_STATE_UNSPECIFIED


def test_log_lines_and_ants() -> None:
    line = convert.log_line(StoredLine("task-1", 0, 3, T0, "stderr", "oops"))
    assert (line.sequence, line.stream, line.text) == (3, log_line_pb2.LOG_STREAM_STDERR, "oops")
    ant = convert.ant_info(
        AntSnapshot(
            ant_id="ant-1",
            session_id="s",
            methods=("DOCKER", "SHELL"),
            tags=("linux",),
            max_capacity=4,
            running=1,
            free_slots=3,
            load=0.25,
            version="0.1.0",
            host="h",
            labels={"zone": "a"},
            connected=False,
            connected_at=T0.timestamp(),
            last_heartbeat_at=None,
        )
    )
    assert ant.state == ant_pb2.ANT_STATE_DISCONNECTED
    assert list(ant.methods) == [task_pb2.TASK_METHOD_DOCKER, task_pb2.TASK_METHOD_SHELL]
    assert convert.to_datetime(ant.connect_time) == T0
    assert not ant.HasField("last_heartbeat_time")
