"""Wire messages (formicary.v1) <-> the Ant's own types. With stream.py and artifact_transfer.py (the
gRPC clients), the only module that touches the generated code."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from ant.artifacts import ArtifactOwner
from ant.attempt import AttemptRequest
from ant.executors.context import LogStream
from ant.executors.methods import Method
from ant.executors.result import ArtifactRef, ExecutionResult, ExecutionStatus, Timings
from ant.executors.spec import ContainerSpec, PullPolicy, ResourceSpec, TaskSpec, Variable
from ant.log_buffer import LogEntry
from formicary.v1 import (
    ant_service_pb2,
    artifact_pb2,
    artifact_service_pb2,
    container_pb2,
    log_line_pb2,
    state_pb2,
    task_pb2,
)

__all__ = [
    "PROTOCOL_VERSION",
    "InvalidTaskRequest",
    "SessionTerms",
    "accepted_frame",
    "artifact_from_proto",
    "attempt_from_proto",
    "batch_frame",
    "heartbeat_frame",
    "log_lines_frame",
    "method_from_proto",
    "method_to_proto",
    "pong_frame",
    "register_frame",
    "rejected_frame",
    "response_from_result",
    "result_frame",
    "session_from_proto",
    "upload_metadata",
]

Req = ant_service_pb2.ConnectRequest

_METHODS: dict[Method, task_pb2.TaskMethod.ValueType] = {
    Method.SHELL: task_pb2.TASK_METHOD_SHELL,
    Method.DOCKER: task_pb2.TASK_METHOD_DOCKER,
    Method.KUBERNETES: task_pb2.TASK_METHOD_KUBERNETES,
    Method.HTTP_GET: task_pb2.TASK_METHOD_HTTP_GET,
    Method.HTTP_POST_FORM: task_pb2.TASK_METHOD_HTTP_POST_FORM,
    Method.HTTP_POST_JSON: task_pb2.TASK_METHOD_HTTP_POST_JSON,
    Method.HTTP_PUT_FORM: task_pb2.TASK_METHOD_HTTP_PUT_FORM,
    Method.HTTP_PUT_JSON: task_pb2.TASK_METHOD_HTTP_PUT_JSON,
    Method.HTTP_DELETE: task_pb2.TASK_METHOD_HTTP_DELETE,
}
_METHODS_BACK: dict[int, Method] = {int(v): k for k, v in _METHODS.items()}
_STATUSES: dict[ExecutionStatus, state_pb2.TaskState.ValueType] = {
    ExecutionStatus.COMPLETED: state_pb2.TASK_STATE_COMPLETED,
    ExecutionStatus.FAILED: state_pb2.TASK_STATE_FAILED,
    ExecutionStatus.CANCELLED: state_pb2.TASK_STATE_CANCELLED,
}
_STREAMS: dict[LogStream, log_line_pb2.LogStream.ValueType] = {
    LogStream.STDOUT: log_line_pb2.LOG_STREAM_STDOUT,
    LogStream.STDERR: log_line_pb2.LOG_STREAM_STDERR,
    LogStream.SYSTEM: log_line_pb2.LOG_STREAM_SYSTEM,
}
_PULL_POLICIES = {p.value: p for p in PullPolicy}

DEFAULT_HEARTBEAT_INTERVAL = timedelta(seconds=10)
# The highest version of the stream protocol this Ant speaks (ant_service.proto, PROTOCOL VERSIONS).
PROTOCOL_VERSION = 3
DEFAULT_HEARTBEAT_TIMEOUT = timedelta(seconds=60)


class InvalidTaskRequest(ValueError):
    """A TaskRequest this Ant cannot run as given (unknown method, bad pull policy); it is rejected."""


def method_to_proto(method: Method) -> task_pb2.TaskMethod.ValueType:
    return _METHODS[method]


def method_from_proto(value: int) -> Method | None:
    """Our method for a wire value; None for methods an Ant never runs or does not know."""
    return _METHODS_BACK.get(int(value))


def _duration(value: Duration) -> timedelta:
    return timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def _timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _moment(stamp: Timestamp, present: bool) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if present else None


def _container(
    definition: container_pb2.ContainerDefinition, opts: task_pb2.ExecutorOptions
) -> ContainerSpec | None:
    if not definition.image:
        return None
    policy = _PULL_POLICIES.get(definition.image_pull_policy or PullPolicy.IF_NOT_PRESENT.value)
    if policy is None:
        raise InvalidTaskRequest(f"unknown image_pull_policy {definition.image_pull_policy!r}")
    r = definition.resources
    return ContainerSpec(
        image=definition.image,
        entrypoint=tuple(definition.entrypoint),
        command=tuple(definition.command),
        pull_policy=policy,
        user=definition.user,
        resources=ResourceSpec(
            cpu_request=r.cpu_request,
            cpu_limit=r.cpu_limit,
            memory_request=r.memory_request,
            memory_limit=r.memory_limit,
            ephemeral_storage_request=r.ephemeral_storage_request,
            ephemeral_storage_limit=r.ephemeral_storage_limit,
        ),
        privileged=opts.privileged,
        network_mode=opts.network_mode,
        host_network=opts.host_network,
        node_selector=dict(opts.node_selector),
        pod_labels=dict(opts.pod_labels),
        pod_annotations=dict(opts.pod_annotations),
    )


def attempt_from_proto(request: task_pb2.TaskRequest, *, receive_time: datetime) -> AttemptRequest:
    """The attempt a DispatchTask carries. Raises InvalidTaskRequest for what no Ant could run."""
    opts = request.executor_opts
    # ExecutorOptions.method is the definition's method; TaskRequest has no other method field.
    method = method_from_proto(opts.method)
    if method is None:
        known = opts.method in task_pb2.TaskMethod.values()
        name = task_pb2.TaskMethod.Name(opts.method) if known else str(opts.method)
        raise InvalidTaskRequest(f"method {name} is not run by Ants of this kind")
    spec = TaskSpec(
        task_execution_id=request.task_execution_id,
        job_request_id=request.job_request_id,
        task_type=request.task_type,
        method=method,
        job_type=request.job_type,
        script=tuple(request.script),
        before_script=tuple(request.before_script),
        after_script=tuple(request.after_script),
        variables={name: Variable(v.value, v.secret) for name, v in request.variables.items()},
        environment=dict(opts.environment),
        timeout=_duration(request.timeout) if request.HasField("timeout") else None,
        working_dir=opts.working_dir,
        container=_container(opts.main_container, opts) if opts.HasField("main_container") else None,
        executor_name=opts.name,
        url=opts.url,
        headers=dict(opts.headers),
        query=dict(opts.query_params),
        allow_failure=request.allow_failure,
        task_retry=request.task_retry,
        job_retry=request.job_retry,
        cost_factor=opts.cost_factor,
        tags=tuple(request.tags),
    )
    return AttemptRequest(
        spec=spec,
        ignored_options=_ignored_options(opts),
        correlation_id=request.correlation_id,
        job_type_version=request.job_type_version,
        report_stdout=request.report_stdout,
        dependent_artifact_ids=tuple(opts.dependent_artifact_ids),
        artifact_paths=tuple(opts.artifacts.paths) if opts.HasField("artifacts") else (),
        artifact_retention=(
            _duration(opts.artifacts.retention_duration)
            if opts.HasField("artifacts") and opts.artifacts.HasField("retention_duration")
            else None
        ),
        traceparent=request.traceparent,
        receive_time=receive_time,
    )


def _ignored_options(opts: task_pb2.ExecutorOptions) -> tuple[str, ...]:
    """Options of the request this Ant does not implement yet, to be said in the task's record."""
    ignored = []
    if opts.services:
        ignored.append("services (side containers) are not started by this Ant yet")
    if opts.main_container.volumes:
        ignored.append("container volumes are not mounted by this Ant yet")
    if opts.HasField("helper_container"):
        ignored.append("helper_container is not used by this Ant yet")
    if opts.HasField("cache"):
        ignored.append("the cache is not restored or saved by this Ant yet")
    return tuple(ignored)


def _artifact(ref: ArtifactRef) -> artifact_pb2.Artifact:
    """An uploaded artifact for TaskResponse.artifacts: as the Queen described it at upload."""
    return artifact_pb2.Artifact(
        id=ref.id,
        name=ref.name,
        kind=artifact_pb2.ARTIFACT_KIND_TASK,
        bucket=ref.bucket,
        key=ref.key,
        sha256=ref.sha256,
        content_length=ref.content_length,
        content_type=ref.content_type,
        job_request_id=ref.job_request_id,
        job_execution_id=ref.job_execution_id,
        task_execution_id=ref.task_execution_id,
        task_type=ref.task_type,
        organization_id=ref.organization_id,
        user_id=ref.user_id,
        metadata=dict(ref.labels),
        create_time=_timestamp(ref.create_time),
        expiry_time=_timestamp(ref.expiry_time),
    )


def artifact_from_proto(artifact: artifact_pb2.Artifact) -> ArtifactRef:
    """The Queen's description of a stored artifact (UploadArtifact's answer, DownloadArtifact's first
    message)."""
    return ArtifactRef(
        id=artifact.id,
        name=artifact.name,
        sha256=artifact.sha256,
        content_length=artifact.content_length,
        content_type=artifact.content_type,
        bucket=artifact.bucket,
        key=artifact.key,
        job_request_id=artifact.job_request_id,
        job_execution_id=artifact.job_execution_id,
        task_execution_id=artifact.task_execution_id,
        task_type=artifact.task_type,
        organization_id=artifact.organization_id,
        user_id=artifact.user_id,
        labels=dict(artifact.metadata),
        create_time=_moment(artifact.create_time, artifact.HasField("create_time")),
        expiry_time=_moment(artifact.expiry_time, artifact.HasField("expiry_time")),
    )


def upload_metadata(
    name: str, owner: ArtifactOwner, *, content_type: str, content_length: int
) -> artifact_service_pb2.UploadArtifactRequest:
    """The first message of an UploadArtifact call for one of a task's files (kind TASK). The digest is
    not announced (it is computed while the file streams) but compared with the Queen's answer."""
    metadata = artifact_service_pb2.UploadArtifactMetadata(
        name=name,
        kind=artifact_pb2.ARTIFACT_KIND_TASK,
        content_type=content_type,
        job_request_id=owner.job_request_id,
        task_execution_id=owner.task_execution_id,
        task_type=owner.task_type,
        content_length=content_length,
    )
    if owner.retention is not None:
        metadata.retention_duration.FromTimedelta(owner.retention)
    return artifact_service_pb2.UploadArtifactRequest(metadata=metadata)


def _timings(timings: Timings) -> task_pb2.TaskResponseTimings:
    return task_pb2.TaskResponseTimings(
        receive_time=_timestamp(timings.receive_time),
        start_time=_timestamp(timings.start_time),
        dependencies_download_time=_timestamp(timings.dependencies_download_time),
        script_finish_time=_timestamp(timings.script_finish_time),
        artifacts_upload_time=_timestamp(timings.artifacts_upload_time),
        finish_time=_timestamp(timings.finish_time),
    )


def response_from_result(
    attempt: AttemptRequest, result: ExecutionResult, *, ant_id: str, host: str, tags: Sequence[str]
) -> task_pb2.TaskResponse:
    """The TaskResponse of an attempt; stdout only when the request asked for it (report_stdout)."""
    spec = attempt.spec
    return task_pb2.TaskResponse(
        job_request_id=spec.job_request_id,
        task_execution_id=spec.task_execution_id,
        job_type=spec.job_type,
        job_type_version=attempt.job_type_version,
        task_type=spec.task_type,
        correlation_id=attempt.correlation_id,
        status=_STATUSES[result.status],
        ant_id=ant_id,
        host=host,
        namespace=result.namespace,
        tags=list(tags),
        error_message=result.error_message,
        error_code=result.error_code,
        exit_code=result.exit_code,
        exit_message=result.exit_message,
        failed_command=result.failed_command,
        task_context=dict(result.task_context),
        job_context=dict(result.job_context),
        artifacts=[_artifact(a) for a in result.artifacts],
        warnings=list(result.warnings),
        stdout=list(result.stdout) if attempt.report_stdout else [],
        cost_factor=result.cost_factor,
        timings=_timings(result.timings),
    )


@dataclass(frozen=True, slots=True)
class SessionTerms:
    """What Registered told the Ant."""

    session_id: str
    resumed: bool
    resumed_tasks: Mapping[str, int] = field(default_factory=dict)  # task id -> last stored log sequence
    heartbeat_interval: timedelta = DEFAULT_HEARTBEAT_INTERVAL
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT
    ping_interval: timedelta | None = None
    config: Mapping[str, str] = field(default_factory=dict)
    protocol_version: int = 1  # of this stream (ant_service.proto, PROTOCOL VERSIONS)


def session_from_proto(registered: ant_service_pb2.ConnectResponse.Registered) -> SessionTerms:
    """Unset or zero intervals fall back to 10 s heartbeats and a 60 s timeout."""
    interval = _duration(registered.heartbeat_interval) if registered.HasField("heartbeat_interval") else None
    timeout = _duration(registered.heartbeat_timeout) if registered.HasField("heartbeat_timeout") else None
    ping = _duration(registered.ping_interval) if registered.HasField("ping_interval") else None
    return SessionTerms(
        session_id=registered.session_id,
        resumed=registered.resumed,
        resumed_tasks={t.task_execution_id: t.last_log_sequence for t in registered.resumed_tasks},
        heartbeat_interval=interval if interval and interval > timedelta(0) else DEFAULT_HEARTBEAT_INTERVAL,
        heartbeat_timeout=timeout if timeout and timeout > timedelta(0) else DEFAULT_HEARTBEAT_TIMEOUT,
        ping_interval=ping if ping and ping > timedelta(0) else None,
        config=dict(registered.config),
        protocol_version=max(registered.protocol_version, 1),
    )


def register_frame(
    *,
    ant_id: str,
    methods: Iterable[Method],
    tags: Sequence[str],
    max_capacity: int,
    version: str,
    labels: Mapping[str, str],
    host: str,
    resume: tuple[str, int, Sequence[str]] | None,
    protocol_version: int = PROTOCOL_VERSION,
) -> Req:
    """Register; `resume` is (session_id, last_acked_sequence, held task ids) when reconnecting."""
    register = Req.Register(
        ant_id=ant_id,
        methods=[method_to_proto(m) for m in methods],
        tags=list(tags),
        max_capacity=max_capacity,
        version=version,
        labels=dict(labels),
        host=host,
        protocol_version=min(protocol_version, PROTOCOL_VERSION),
    )
    if resume is not None:
        session_id, last_acked, held = resume
        register.resume.CopyFrom(
            Req.Register.Resume(
                session_id=session_id, last_acked_sequence=last_acked, running_task_execution_ids=list(held)
            )
        )
    return Req(register=register)


def heartbeat_frame(*, held: Sequence[str], free_slots: int, load: float, last_acked_sequence: int) -> Req:
    return Req(
        heartbeat=Req.Heartbeat(
            running_task_execution_ids=list(held),
            free_slots=free_slots,
            load=load,
            last_acked_sequence=last_acked_sequence,
        )
    )


def accepted_frame(sequence: int, task_execution_id: str) -> Req:
    return Req(task_accepted=Req.TaskAccepted(sequence=sequence, task_execution_id=task_execution_id))


def rejected_frame(sequence: int, task_execution_id: str, reason: str) -> Req:
    return Req(
        task_rejected=Req.TaskRejected(sequence=sequence, task_execution_id=task_execution_id, reason=reason)
    )


def pong_frame(nonce: int) -> Req:
    return Req(pong=Req.Pong(nonce=nonce))


def batch_frame(frames: list[Req]) -> Req:
    """Protocol 3: `frames` as one message, handled by the Queen in this order."""
    return Req(batch=Req.Batch(frames=frames))


def _log_lines(entries: Iterable[LogEntry]) -> list[log_line_pb2.LogLine]:
    return [
        log_line_pb2.LogLine(
            sequence=e.sequence, time=_timestamp(e.time), stream=_STREAMS[e.stream], text=e.text
        )
        for e in entries
    ]


def log_lines_frame(task_execution_id: str, task_retry: int, entries: Iterable[LogEntry]) -> Req:
    return Req(
        log_lines=Req.LogLines(
            task_execution_id=task_execution_id, task_retry=task_retry, lines=_log_lines(entries)
        )
    )


def result_frame(
    sequence: int, response: task_pb2.TaskResponse, *, task_retry: int = 0, lines: Iterable[LogEntry] = ()
) -> Req:
    """TaskResult; `lines` (protocol 2) are the attempt's last log lines, carried along (section 6)."""
    return Req(
        task_result=Req.TaskResult(
            sequence=sequence, response=response, lines=_log_lines(lines), task_retry=task_retry
        )
    )
