"""Translation between the public API's protobuf messages and the Queen's records and domain types.

Protobuf stops here: servicers convert a request with these functions, call the service layer with
domain values, and convert the records they get back. Enums map by name (`JobState.PENDING` ↔
`JOB_STATE_PENDING`); a domain value without a proto counterpart fails at import, not on the wire.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import grpc
import structlog
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from formicary.v1 import (
    admin_service_pb2,
    ant_pb2,
    approval_pb2,
    artifact_pb2,
    container_pb2,
    execution_pb2,
    job_definition_pb2,
    job_request_pb2,
    log_line_pb2,
    state_pb2,
    task_pb2,
)
from queen.ants.registry import AntSnapshot
from queen.domain import job_definition as jd
from queen.domain.errors import InvalidArgument, Unauthenticated
from queen.domain.identity import Identity
from queen.domain.problems import Problem, ProblemCode, Severity
from queen.domain.states import JobState, TaskState
from queen.security.principal import current_principal
from queen.services.admin import Health, Stats
from queen.store import (
    DefinitionRecord,
    EventKind,
    EventRecord,
    JobExecutionRecord,
    JobRequestRecord,
    TaskExecutionRecord,
)
from queen.task_logs import StoredLine

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "PageRequest",
    "ant_info",
    "get_health_response",
    "get_stats_response",
    "identity_of",
    "job_definition",
    "job_request",
    "job_request_event",
    "job_state_after",
    "job_state_from_proto",
    "job_state_to_proto",
    "log_line",
    "method_from_proto",
    "method_to_proto",
    "page_request",
    "parsed_job_definition",
    "task_state_to_proto",
    "timestamp",
    "to_datetime",
    "validation_problem",
]

log = structlog.get_logger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

# -- who is calling ----------------------------------------------------------------------------------


def identity_of(context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
    """The identity the call acts as: the one `queen.api.auth_interceptor.AuthInterceptor` verified
    for it (the local identity when the Queen runs without authentication).

    A call that reached a servicer without passing the interceptor has no identity and is refused
    (Unauthenticated): a servicer mounted on a server without the interceptor fails closed.
    """
    del context
    principal = current_principal.get()
    if principal is None:
        raise Unauthenticated("the call was not authenticated")
    return principal.identity


# -- enums, by name ------------------------------------------------------------------------------------

_JOB_STATE_TO_PROTO = {state: state_pb2.JobState.Value(f"JOB_STATE_{state.value}") for state in JobState}
_JOB_STATE_FROM_PROTO = {value: state for state, value in _JOB_STATE_TO_PROTO.items()}
_TASK_STATE_TO_PROTO = {state: state_pb2.TaskState.Value(f"TASK_STATE_{state.value}") for state in TaskState}
_METHOD_TO_PROTO = {
    method: task_pb2.TaskMethod.Value(f"TASK_METHOD_{method.value}") for method in jd.TaskMethod
}
_METHOD_FROM_PROTO = {value: method for method, value in _METHOD_TO_PROTO.items()}
_SEVERITY_TO_PROTO = {
    Severity.ERROR: job_definition_pb2.VALIDATION_SEVERITY_ERROR,
    Severity.WARNING: job_definition_pb2.VALIDATION_SEVERITY_WARNING,
}
_LOG_STREAMS = {
    "stdout": log_line_pb2.LOG_STREAM_STDOUT,
    "stderr": log_line_pb2.LOG_STREAM_STDERR,
    "system": log_line_pb2.LOG_STREAM_SYSTEM,
}
# ValidationProblem.code is lower snake case; where the proto names a code for a rule
# (job_definition.proto), that name is used, otherwise the domain code with `-` → `_`.
_PROBLEM_CODES = {
    ProblemCode.YAML_SYNTAX: "invalid_yaml",
    ProblemCode.BAD_METHOD: "invalid_method",
    ProblemCode.BAD_DURATION: "invalid_duration",
    ProblemCode.UNKNOWN_ROUTE_TARGET: "missing_task",
}


def job_state_to_proto(state: JobState) -> state_pb2.JobState.ValueType:
    return _JOB_STATE_TO_PROTO[state]


def job_state_from_proto(value: int, *, field: str = "states") -> JobState | None:
    """The state; None for JOB_STATE_UNSPECIFIED ("any state" in filters); InvalidArgument if unknown."""
    if value == state_pb2.JOB_STATE_UNSPECIFIED:
        return None
    state = _JOB_STATE_FROM_PROTO.get(state_pb2.JobState.ValueType(value))
    if state is None:
        raise InvalidArgument(f"{field}: {value} is not a JobState", field=field)
    return state


def task_state_to_proto(state: TaskState) -> state_pb2.TaskState.ValueType:
    return _TASK_STATE_TO_PROTO[state]


def method_to_proto(method: str) -> task_pb2.TaskMethod.ValueType:
    """The proto method of a method name (records keep methods as text); UNSPECIFIED if unknown."""
    try:
        return _METHOD_TO_PROTO[jd.TaskMethod(method)]
    except ValueError:
        return task_pb2.TASK_METHOD_UNSPECIFIED


def method_from_proto(value: int, *, field: str = "method") -> jd.TaskMethod | None:
    """The method; None for TASK_METHOD_UNSPECIFIED ("any method" in filters); InvalidArgument if unknown."""
    if value == task_pb2.TASK_METHOD_UNSPECIFIED:
        return None
    method = _METHOD_FROM_PROTO.get(task_pb2.TaskMethod.ValueType(value))
    if method is None:
        raise InvalidArgument(f"{field}: {value} is not a TaskMethod", field=field)
    return method


# -- scalars -------------------------------------------------------------------------------------------


@overload
def timestamp(value: datetime) -> Timestamp: ...
@overload
def timestamp(value: datetime | None) -> Timestamp | None: ...
def timestamp(value: datetime | None) -> Timestamp | None:
    """An aware datetime as a Timestamp (None stays None, so the field stays unset)."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _epoch_timestamp(seconds: float | None) -> Timestamp | None:
    return None if seconds is None else timestamp(datetime.fromtimestamp(seconds, UTC))


def to_datetime(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def _duration(value: timedelta | None) -> Duration | None:
    if value is None:
        return None
    duration = Duration()
    duration.FromTimedelta(value)
    return duration


def _plain(value: Any) -> Any:
    """Frozen record data (MappingProxyType, tuples) as JSON-ready dicts and lists."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _text(value: Any) -> str:
    """A free-form value as text: strings as they are, YAML scalars as YAML writes them, the rest as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(_plain(value), sort_keys=True, default=str)


def _texts(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): _text(value) for key, value in values.items()}


# -- paging --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A page asked for: `limit` items from `offset`, for the filters summarized in `filters_key`."""

    limit: int
    offset: int
    filters_key: str

    def next_token(self, next_offset: int) -> str:
        """The token of the page starting at `next_offset` (opaque to clients: base64 text)."""
        raw = f"{next_offset}:{self.filters_key}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _filters_key(filters: Sequence[object]) -> str:
    return hashlib.sha256(repr(tuple(filters)).encode()).hexdigest()[:16]


def page_request(page_size: int, page_token: str, filters: Sequence[object] = ()) -> PageRequest:
    """Check the paging fields of a List request: page_size 0 means 50, above 500 means 500; a token
    is only valid with the filters it was issued for (AIP-158)."""
    if page_size < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size")
    limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    key = _filters_key(filters)
    if not page_token:
        return PageRequest(limit, 0, key)
    bad = InvalidArgument("page_token is not a token this server issued", field="page_token")
    if len(page_token) > 200:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4)).decode()
        offset_text, token_key = raw.split(":", 1)
        offset = int(offset_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if offset < 0:
        raise bad
    if token_key != key:
        raise InvalidArgument(
            "page_token was issued for other filters; keep the filters unchanged between pages",
            field="page_token",
        )
    return PageRequest(limit, offset, key)


# -- job definitions -----------------------------------------------------------------------------------


def validation_problem(problem: Problem) -> job_definition_pb2.ValidationProblem:
    code = _PROBLEM_CODES.get(problem.code, problem.code.value.replace("-", "_"))
    return job_definition_pb2.ValidationProblem(
        severity=_SEVERITY_TO_PROTO[problem.severity],
        line=problem.line,
        column=problem.column,
        code=code,
        message=problem.message,
        # at most one line, as the field promises
        offending_text=problem.text.splitlines()[0] if problem.text else "",
        fix=problem.fix,
    )


def _container(spec: jd.ContainerSpec) -> container_pb2.ContainerDefinition:
    return container_pb2.ContainerDefinition(
        image=spec.image,
        entrypoint=list(spec.entrypoint),
        image_pull_policy=spec.image_pull_policy,
        resources=container_pb2.ContainerResources(
            cpu_request=spec.cpu_request,
            cpu_limit=spec.cpu_limit,
            memory_request=spec.memory_request,
            memory_limit=spec.memory_limit,
        ),
    )


def _service(service: Mapping[str, Any]) -> container_pb2.ServiceContainer:
    """A `services:` entry (free-form in the language) with the keys the proto knows; others are dropped."""
    environment = service.get("environment") or service.get("variables") or {}
    ports = service.get("ports") or ()
    return container_pb2.ServiceContainer(
        name=_text(service.get("name", "")),
        alias=_text(service.get("alias", "")),
        container=container_pb2.ContainerDefinition(image=_text(service.get("image", ""))),
        environment=_texts(environment) if isinstance(environment, Mapping) else {},
        ports=[int(port) for port in ports if isinstance(port, int) and not isinstance(port, bool)],
    )


def _approval_policy(policy: jd.ApprovalPolicy) -> approval_pb2.ApprovalPolicy:
    return approval_pb2.ApprovalPolicy(
        required_approvals=policy.min_approvals,
        approver_roles=list(policy.allowed_roles),
        approver_user_ids=list(policy.allowed_users),
        allow_requester_approval=policy.allow_self_approval,
        decision_timeout=_duration(policy.sla_deadline),
        inputs=[
            approval_pb2.ApprovalInputSpec(name=i.name, description=i.description, required=i.required)
            for i in policy.inputs
        ],
    )


def _task_definition(
    task: jd.TaskDefinition, order: int, definition_id: str
) -> job_definition_pb2.TaskDefinition:
    message = job_definition_pb2.TaskDefinition(
        # No row per task: a name-based UUID of (version id, task type) is stable within the version.
        id=str(uuid.uuid5(uuid.UUID(definition_id), task.task_type)) if definition_id else "",
        task_type=task.task_type,
        method=_METHOD_TO_PROTO[task.method],
        description=task.description,
        task_order=order,
        before_script=list(task.before_script),
        script=list(task.script),
        after_script=list(task.after_script),
        services=[_service(service) for service in task.services],
        variables=_texts(task.variables),
        environment=_texts(task.environment),
        tags=list(task.tags),
        timeout=_duration(task.timeout),
        retry=task.retry,
        delay_between_retries=_duration(task.delay_between_retries),
        allow_failure=task.allow_failure,
        always_run=task.always_run,
        allow_start_if_completed=task.allow_start_if_completed,
        on_completed=task.on_completed,
        on_failed=task.on_failed,
        on_exit_code=dict(task.on_exit_code),
        dependencies=list(task.dependencies),
        artifacts=artifact_pb2.ArtifactsConfig(
            paths=list(task.artifacts.paths), retention_duration=_duration(task.artifacts.expires_after)
        ),
        url=task.url,
        headers=dict(task.headers),
        fork_job_type=task.fork_job_type,
        fork_job_version=task.fork_job_version,
        await_forked_tasks=list(task.await_forked_tasks),
        report_stdout=task.report_stdout,
        host_network=task.host_network,
        messaging_request_queue=task.messaging_request_queue,
        messaging_reply_queue=task.messaging_reply_queue,
    )
    # `except` is a Python keyword: set through setattr rather than the constructor.
    setattr(message, "except", task.except_)
    if task.container is not None:
        message.container.CopyFrom(_container(task.container))
    if task.cache is not None:
        message.cache.CopyFrom(
            artifact_pb2.CacheConfig(
                key=task.cache.key,
                key_paths=list(task.cache.key_paths),
                paths=list(task.cache.paths),
                retention_duration=_duration(task.cache.expires_after),
            )
        )
    if task.resources is not None:
        message.resources.CopyFrom(
            container_pb2.ContainerResources(
                cpu_request=task.resources.cpu,
                memory_request=task.resources.memory,
                ephemeral_storage_request=task.resources.disk_space,
            )
        )
    if task.approval_policy is not None:
        message.approval_policy.CopyFrom(_approval_policy(task.approval_policy))
    return message


def parsed_job_definition(
    definition: jd.JobDefinition, *, yaml: str, definition_id: str = ""
) -> job_definition_pb2.JobDefinition:
    """The message of a parsed definition (no stored metadata: id empty and version 0 unless set later)."""
    return job_definition_pb2.JobDefinition(
        id=definition_id,
        job_type=definition.job_type,
        sem_version=definition.sem_version,
        description=definition.description,
        platform=definition.platform,
        cron_trigger=definition.cron_trigger,
        timeout=_duration(definition.timeout),
        retry=definition.retry,
        hard_reset_after_retries=definition.hard_reset_after_retries,
        delay_between_retries=_duration(definition.delay_between_retries),
        max_concurrency=definition.max_concurrency or 0,
        public_plugin=definition.public_plugin,
        required_params=list(definition.required_params),
        tags=sorted(definition.all_tags),
        methods=[_METHOD_TO_PROTO[m] for m in sorted(definition.methods)],
        job_variables=_texts(definition.job_variables),
        yaml=yaml,
        tasks=[_task_definition(task, order, definition_id) for order, task in enumerate(definition.tasks)],
    )


def job_definition(record: DefinitionRecord) -> job_definition_pb2.JobDefinition:
    """A stored version with its tasks (parsed from its YAML, cached per version)."""
    try:
        parsed = record.definition()
    except InvalidArgument:
        # Stored before the parser became stricter: still show what is stored (YAML, metadata), without
        # the tasks, rather than failing every listing that includes it.
        log.warning("stored_definition_unparsable", definition_id=record.id, job_type=record.job_type)
        message = job_definition_pb2.JobDefinition(
            id=record.id, job_type=record.job_type, description=record.description, yaml=record.yaml
        )
        message.cron_trigger = record.cron_trigger
        message.max_concurrency = record.max_concurrency or 0
        message.tags.extend(record.tags)
        message.methods.extend(method_to_proto(m) for m in record.methods)
    else:
        message = parsed_job_definition(parsed, yaml=record.yaml, definition_id=record.id)
    message.version = record.version
    message.disabled = record.disabled
    message.organization_id = record.organization_id
    message.user_id = record.user_id
    message.create_time.CopyFrom(timestamp(record.created_at))
    message.update_time.CopyFrom(timestamp(record.updated_at))
    return message


# -- job requests --------------------------------------------------------------------------------------


def _artifact(
    data: Mapping[str, Any], task: TaskExecutionRecord, job_request_id: int
) -> artifact_pb2.Artifact:
    length = data.get("content_length", 0)
    return artifact_pb2.Artifact(
        id=_text(data.get("id", "")),
        name=_text(data.get("name", "")),
        bucket=_text(data.get("bucket", "")),
        key=_text(data.get("key", "")),
        sha256=_text(data.get("sha256", "")),
        content_length=length if isinstance(length, int) else 0,
        content_type=_text(data.get("content_type", "")),
        job_request_id=job_request_id,
        job_execution_id=task.job_execution_id,
        task_execution_id=task.id,
        task_type=task.task_type,
    )


def _task_execution(task: TaskExecutionRecord, job_request_id: int) -> execution_pb2.TaskExecution:
    return execution_pb2.TaskExecution(
        id=task.id,
        job_execution_id=task.job_execution_id,
        task_type=task.task_type,
        method=method_to_proto(task.method),
        task_state=_TASK_STATE_TO_PROTO[task.task_state],
        allow_failure=task.allow_failure,
        exit_code=task.exit_code,
        exit_message=task.exit_message,
        error_code=task.error_code,
        error_message=task.error_message,
        failed_command=task.failed_command,
        ant_id=task.ant_id,
        ant_host=task.ant_host,
        retried=task.retried,
        contexts=_texts(task.contexts),
        artifacts=[_artifact(a, task, job_request_id) for a in task.artifacts if isinstance(a, Mapping)],
        task_order=task.task_order,
        cost_factor=task.cost_factor,
        stdout=list(task.stdout),
        warnings=list(task.warnings),
        start_time=timestamp(task.started_at),
        end_time=timestamp(task.ended_at),
        update_time=timestamp(task.updated_at),
    )


def _job_execution(
    execution: JobExecutionRecord, tasks: Iterable[TaskExecutionRecord], request: JobRequestRecord
) -> execution_pb2.JobExecution:
    return execution_pb2.JobExecution(
        id=execution.id,
        job_request_id=execution.job_request_id,
        job_type=execution.job_type,
        job_version=str(execution.job_version),
        job_state=_JOB_STATE_TO_PROTO[execution.job_state],
        organization_id=request.organization_id,
        user_id=request.user_id,
        exit_code=execution.exit_code,
        exit_message=execution.exit_message,
        error_code=execution.error_code,
        error_message=execution.error_message,
        contexts=_texts(execution.contexts),
        tasks=[_task_execution(task, request.id) for task in tasks],
        start_time=timestamp(execution.started_at),
        end_time=timestamp(execution.ended_at),
        update_time=timestamp(execution.updated_at),
        cpu_duration=_duration(timedelta(seconds=execution.cpu_secs)),
    )


def job_request(
    request: JobRequestRecord,
    execution: JobExecutionRecord | None = None,
    tasks: Iterable[TaskExecutionRecord] = (),
) -> job_request_pb2.JobRequest:
    """A request; with `execution`, its current execution and that execution's tasks."""
    message = job_request_pb2.JobRequest(
        id=request.id,
        parent_id=request.parent_id or 0,
        user_key=request.user_key or "",
        job_definition_id=request.job_definition_id,
        job_type=request.job_type,
        job_version=str(request.job_version),
        job_state=_JOB_STATE_TO_PROTO[request.job_state],
        job_priority=request.job_priority,
        job_group=request.job_group,
        params=dict(request.params),
        scheduled_time=timestamp(request.scheduled_at),
        organization_id=request.organization_id,
        user_id=request.user_id,
        error_code=request.error_code,
        error_message=request.error_message,
        retried=request.retried,
        schedule_attempts=request.schedule_attempts,
        cron_triggered=request.cron_triggered,
        job_execution_id=request.job_execution_id or "",
        create_time=timestamp(request.created_at),
        update_time=timestamp(request.updated_at),
        wait_reason=request.wait_reason,
    )
    if execution is not None:
        message.execution.CopyFrom(_job_execution(execution, tasks, request))
    return message


# -- events --------------------------------------------------------------------------------------------


_JOB_STATE_VALUES = frozenset(state.value for state in JobState)
_TASK_STATE_VALUES = frozenset(state.value for state in TaskState)


def job_state_after(event: EventRecord, before: JobState) -> JobState:
    """The request's state after `event` (events of other kinds than the request's own keep it)."""
    if event.kind == EventKind.REQUEST_SUBMITTED:
        return JobState.PENDING
    if event.kind == EventKind.JOB_STATE_CHANGED and event.to_state in _JOB_STATE_VALUES:
        return JobState(event.to_state)
    return before


def _summary(event: EventRecord, exit_code: str) -> str:
    """A one-line account of the event for people ("task build EXECUTING → COMPLETED, exit code 0")."""
    moved = f"{event.from_state or '-'} → {event.to_state or '-'}"
    match event.kind:
        case EventKind.REQUEST_SUBMITTED:
            text = f"submitted by {_text(event.data.get('user_id', ''))}".rstrip()
        case EventKind.JOB_STATE_CHANGED:
            text = f"job {moved}"
        case EventKind.JOB_EXECUTION_CREATED:
            text = f"job execution {_text(event.data.get('job_execution_id', ''))} created"
        case EventKind.JOB_EXECUTION_STATE_CHANGED:
            text = f"job execution {moved}"
        case EventKind.TASK_CREATED:
            text = f"task {event.task_type} created"
        case EventKind.TASK_STATE_CHANGED:
            text = f"task {event.task_type} {moved}"
            ant = _text(event.data.get("ant_id", ""))
            if ant:
                text += f" on {ant}"
            if exit_code:
                text += f", exit code {exit_code}"
        case EventKind.WAIT_REASON_CHANGED:
            return f"waiting: {event.message}" if event.message else "no longer waiting"
        case _:
            text = event.kind
    return f"{text}: {event.message}" if event.message else text


def job_request_event(
    event: EventRecord, *, job_type: str, job_state: JobState
) -> job_request_pb2.JobRequestEvent:
    """A stored event as streamed; `job_state` is the request's state after it (see job_state_after)."""
    is_task = bool(event.task_type)
    task_state = state_pb2.TASK_STATE_UNSPECIFIED
    exit_code = ""
    if is_task:
        if event.to_state in _TASK_STATE_VALUES:
            task_state = _TASK_STATE_TO_PROTO[TaskState(event.to_state)]
        exit_code = _text(event.data.get("exit_code", ""))
    return job_request_pb2.JobRequestEvent(
        job_request_id=event.job_request_id,
        job_type=job_type,
        job_state=_JOB_STATE_TO_PROTO[job_state],
        task_type=event.task_type or "",
        task_execution_id=event.task_execution_id or "",
        task_state=task_state,
        exit_code=exit_code,
        event_time=timestamp(event.created_at),
        message=_summary(event, exit_code),
    )


def log_line(line: StoredLine) -> log_line_pb2.LogLine:
    return log_line_pb2.LogLine(
        sequence=line.sequence,
        time=timestamp(line.time),
        stream=_LOG_STREAMS.get(line.stream, log_line_pb2.LOG_STREAM_UNSPECIFIED),
        text=line.text,
    )


# -- admin ---------------------------------------------------------------------------------------------


def ant_info(ant: AntSnapshot) -> ant_pb2.AntInfo:
    # AntSnapshot says neither whether an Ant is draining nor which tasks it runs (only how many), so
    # state is CONNECTED or DISCONNECTED and running_task_execution_ids stays empty.
    return ant_pb2.AntInfo(
        ant_id=ant.ant_id,
        state=ant_pb2.ANT_STATE_CONNECTED if ant.connected else ant_pb2.ANT_STATE_DISCONNECTED,
        host=ant.host,
        version=ant.version,
        methods=[method_to_proto(m) for m in ant.methods],
        tags=list(ant.tags),
        labels=dict(ant.labels),
        max_capacity=ant.max_capacity,
        free_slots=ant.free_slots,
        load=ant.load,
        session_id=ant.session_id,
        last_heartbeat_time=_epoch_timestamp(ant.last_heartbeat_at),
        connect_time=_epoch_timestamp(ant.connected_at),
    )


def get_health_response(health: Health) -> admin_service_pb2.GetHealthResponse:
    return admin_service_pb2.GetHealthResponse(
        healthy=health.healthy,
        components=[
            admin_service_pb2.ComponentHealth(
                name=c.name, healthy=c.healthy, message=c.message, check_time=timestamp(c.checked_at)
            )
            for c in health.components
        ],
        version=health.version,
        scheduler_leader=health.scheduler_leader,
        start_time=timestamp(health.started_at),
    )


def get_stats_response(stats: Stats) -> admin_service_pb2.GetStatsResponse:
    return admin_service_pb2.GetStatsResponse(
        job_requests_by_state=[
            admin_service_pb2.JobStateCount(state=_JOB_STATE_TO_PROTO[state], count=count)
            for state, count in sorted(
                stats.requests_by_state.items(), key=lambda i: _JOB_STATE_TO_PROTO[i[0]]
            )
            if count
        ],
        queue_depth=stats.queue_depth,
        ready_tasks=stats.ready_tasks,
        running_tasks=stats.running_tasks,
        connected_ants=stats.connected_ants,
        total_capacity=stats.total_capacity,
        free_slots=stats.free_slots,
        pending_approvals=stats.pending_approvals,
        stats_time=timestamp(stats.taken_at),
    )
