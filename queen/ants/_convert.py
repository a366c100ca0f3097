"""Translation between the supervisor's dataclasses and the Ant stream's protobuf messages."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from formicary.v1 import artifact_pb2, state_pb2, task_pb2
from queen.domain.job_definition import TaskMethod
from queen.domain.states import TaskState
from queen.domain.work import TaskReport, TaskWork

__all__ = ["method_from_proto", "method_to_proto", "task_report", "task_request"]

_METHOD_FROM_PROTO: dict[int, TaskMethod] = {
    task_pb2.TaskMethod.Value(f"TASK_METHOD_{m.value}"): m for m in TaskMethod
}


def method_to_proto(method: TaskMethod) -> task_pb2.TaskMethod.ValueType:
    return task_pb2.TaskMethod.Value(f"TASK_METHOD_{method.value}")


def method_from_proto(value: int) -> TaskMethod | None:
    """The method, or None for TASK_METHOD_UNSPECIFIED or a value this Queen does not know."""
    return _METHOD_FROM_PROTO.get(value)


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(int(seconds * 1e9))
    return duration


def task_request(work: TaskWork) -> task_pb2.TaskRequest:
    """The TaskRequest an Ant receives for one attempt."""
    task = work.task
    options = task_pb2.ExecutorOptions(
        name=f"frm-{work.job_request_id}-{task.task_type}",
        method=method_to_proto(task.method),
        environment=dict(task.environment),
        working_dir=task.working_dir,
        dependent_artifact_ids=list(work.dependent_artifact_ids),
        privileged=task.privileged,
        node_selector=dict(task.node_selector),
        pod_labels=dict(task.pod_labels),
        pod_annotations=dict(task.pod_annotations),
        network_mode=task.network_mode,
        host_network=task.host_network,
        headers=dict(task.headers),
        query_params=dict(task.query),
        url=task.url,
        messaging_request_queue=task.messaging_request_queue,
        messaging_reply_queue=task.messaging_reply_queue,
        fork_job_type=task.fork_job_type,
        fork_job_version=task.fork_job_version,
        await_forked_tasks=list(task.await_forked_tasks),
        cost_factor=task.cost_factor,
    )
    options.artifacts.paths.extend(task.artifacts.paths)
    if task.artifacts.expires_after is not None:
        options.artifacts.retention_duration.FromTimedelta(task.artifacts.expires_after)
    if task.container is not None:
        options.main_container.image = task.container.image
    request = task_pb2.TaskRequest(
        user_id=work.user_id,
        organization_id=work.organization_id,
        job_definition_id=work.job_definition_id,
        job_request_id=work.job_request_id,
        job_type=work.job_type,
        job_type_version=str(work.job_version),
        job_execution_id=work.job_execution_id,
        task_execution_id=work.task_execution_id,
        task_type=task.task_type,
        correlation_id=work.correlation_id,
        platform=work.platform,
        action=task_pb2.TASK_ACTION_EXECUTE,
        job_retry=work.job_retry,
        task_retry=work.task_retry,
        allow_failure=task.allow_failure,
        tags=list(task.tags),
        before_script=list(task.before_script),
        after_script=list(task.after_script),
        script=list(task.script),
        executor_opts=options,
        traceparent=work.traceparent,
        tracestate=work.tracestate,
        report_stdout=task.report_stdout,
    )
    if task.timeout is not None:
        request.timeout.CopyFrom(_duration(task.timeout.total_seconds()))
    for name, value in work.variables.items():
        request.variables[name].value = value
        request.variables[name].secret = name in work.secret_names
    return request


def _time(stamp: Timestamp, present: bool) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if present else None


_STATUS: dict[int, TaskState] = {
    state_pb2.TASK_STATE_COMPLETED: TaskState.COMPLETED,
    state_pb2.TASK_STATE_FAILED: TaskState.FAILED,
    state_pb2.TASK_STATE_CANCELLED: TaskState.CANCELLED,
    state_pb2.TASK_STATE_SKIPPED: TaskState.SKIPPED,
}


def task_report(response: task_pb2.TaskResponse, *, ant_id: str, ant_host: str) -> TaskReport:
    """The supervisor's view of an Ant's TaskResponse; an unknown status counts as FAILED."""
    state = _STATUS.get(response.status, TaskState.FAILED)
    error_code = response.error_code
    if response.status not in _STATUS and not error_code:
        error_code = "ERR_BAD_RESULT"
    timings = response.timings
    return TaskReport(
        state=state,
        exit_code=response.exit_code,
        exit_message=response.exit_message,
        error_code=error_code,
        error_message=response.error_message,
        failed_command=response.failed_command,
        task_context=dict(response.task_context),
        job_context=dict(response.job_context),
        artifacts=tuple(_artifact(a) for a in response.artifacts),
        warnings=tuple(response.warnings),
        stdout=tuple(response.stdout),
        ant_id=response.ant_id or ant_id,
        ant_host=response.host or ant_host,
        cost_factor=response.cost_factor,
        started_at=_time(timings.start_time, timings.HasField("start_time")),
        ended_at=_time(timings.finish_time, timings.HasField("finish_time")),
    )


def _artifact(artifact: artifact_pb2.Artifact) -> dict[str, object]:
    return {
        "id": artifact.id,
        "name": artifact.name,
        "bucket": artifact.bucket,
        "key": artifact.key,
        "sha256": artifact.sha256,
        "content_length": artifact.content_length,
        "content_type": artifact.content_type,
    }
