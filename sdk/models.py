"""The SDK's types: frozen dataclasses and string enums, each built from its protobuf message by
`from_proto()`. Protobuf types stop here; the client's public API returns only these."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from formicary.v1 import (
    admin_service_pb2,
    ant_pb2,
    approval_pb2,
    artifact_pb2,
    execution_pb2,
    job_definition_pb2,
    job_definition_service_pb2,
    job_request_pb2,
    log_line_pb2,
    state_pb2,
    task_pb2,
)
from sdk.errors import ValidationProblem

__all__ = [
    "Ant",
    "Approval",
    "Artifact",
    "ComponentHealth",
    "DefinitionUpload",
    "Health",
    "JobDefinition",
    "JobRequest",
    "JobRequestEvent",
    "JobState",
    "LogLine",
    "TaskDefinition",
    "TaskExecution",
    "TaskState",
]


class JobState(enum.StrEnum):
    """The life of a job request."""

    PENDING = "PENDING"
    READY = "READY"
    STARTED = "STARTED"
    EXECUTING = "EXECUTING"
    MANUAL_APPROVAL_REQUIRED = "MANUAL_APPROVAL_REQUIRED"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)

    @classmethod
    def from_proto(cls, value: int) -> JobState | None:
        """The state of a proto value; None for JOB_STATE_UNSPECIFIED or a value this SDK does not know."""
        return cls.__members__.get(_enum_name(state_pb2.JobState.DESCRIPTOR, value, "JOB_STATE_"))

    def to_proto(self) -> state_pb2.JobState.ValueType:
        return state_pb2.JobState.Value(f"JOB_STATE_{self.value}")


class TaskState(enum.StrEnum):
    """The life of one task execution."""

    READY = "READY"
    STARTED = "STARTED"
    EXECUTING = "EXECUTING"
    MANUAL_APPROVAL_REQUIRED = "MANUAL_APPROVAL_REQUIRED"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self not in (
            TaskState.READY,
            TaskState.STARTED,
            TaskState.EXECUTING,
            TaskState.MANUAL_APPROVAL_REQUIRED,
        )

    @classmethod
    def from_proto(cls, value: int) -> TaskState | None:
        return cls.__members__.get(_enum_name(state_pb2.TaskState.DESCRIPTOR, value, "TASK_STATE_"))


def _enum_name(descriptor: EnumDescriptor, value: int, prefix: str) -> str:
    """The name of a proto enum value without its prefix; "" for an unknown value (a newer Queen)."""
    found = descriptor.values_by_number.get(value)
    return found.name.removeprefix(prefix) if found is not None else ""


def _time(message: Timestamp, present: bool) -> datetime | None:
    return message.ToDatetime(tzinfo=UTC) if present else None


def _method(value: int) -> str:
    return _enum_name(task_pb2.TaskMethod.DESCRIPTOR, value, "TASK_METHOD_") if value else ""


def _frozen(values: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """One task of a job definition, as much of it as the CLI shows."""

    task_type: str
    method: str
    description: str
    on_completed: str
    on_failed: str
    on_exit_code: Mapping[str, str]

    @classmethod
    def from_proto(cls, message: job_definition_pb2.TaskDefinition) -> TaskDefinition:
        return cls(
            task_type=message.task_type,
            method=_method(message.method),
            description=message.description,
            on_completed=message.on_completed,
            on_failed=message.on_failed,
            on_exit_code=_frozen(message.on_exit_code),
        )


@dataclass(frozen=True, slots=True)
class JobDefinition:
    """One stored version of a job type."""

    id: str
    job_type: str
    version: int
    disabled: bool
    description: str
    yaml: str
    tasks: tuple[TaskDefinition, ...]
    methods: tuple[str, ...]
    tags: tuple[str, ...]
    required_params: tuple[str, ...]
    cron_trigger: str
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_proto(cls, message: job_definition_pb2.JobDefinition) -> JobDefinition:
        return cls(
            id=message.id,
            job_type=message.job_type,
            version=message.version,
            disabled=message.disabled,
            description=message.description,
            yaml=message.yaml,
            tasks=tuple(TaskDefinition.from_proto(t) for t in message.tasks),
            methods=tuple(_method(m) for m in message.methods),
            tags=tuple(message.tags),
            required_params=tuple(message.required_params),
            cron_trigger=message.cron_trigger,
            created_at=_time(message.create_time, message.HasField("create_time")),
            updated_at=_time(message.update_time, message.HasField("update_time")),
        )


@dataclass(frozen=True, slots=True)
class DefinitionUpload:
    """The result of an upload: the stored version, whether it is new, and the warnings found."""

    definition: JobDefinition
    new_version: bool
    warnings: tuple[ValidationProblem, ...]

    @classmethod
    def from_proto(cls, message: job_definition_service_pb2.UploadJobDefinitionResponse) -> DefinitionUpload:
        return cls(
            definition=JobDefinition.from_proto(message.job_definition),
            new_version=message.new_version,
            warnings=tuple(ValidationProblem.from_proto(p) for p in message.problems),
        )


@dataclass(frozen=True, slots=True)
class Artifact:
    """An artifact's description (its content is downloaded separately)."""

    id: str
    name: str
    kind: str
    content_type: str
    content_length: int
    sha256: str
    job_request_id: int | None
    task_type: str
    task_execution_id: str
    created_at: datetime | None

    @classmethod
    def from_proto(cls, message: artifact_pb2.Artifact) -> Artifact:
        return cls(
            id=message.id,
            name=message.name,
            kind=_enum_name(artifact_pb2.ArtifactKind.DESCRIPTOR, message.kind, "ARTIFACT_KIND_")
            if message.kind
            else "",
            content_type=message.content_type,
            content_length=message.content_length,
            sha256=message.sha256,
            job_request_id=message.job_request_id or None,
            task_type=message.task_type,
            task_execution_id=message.task_execution_id,
            created_at=_time(message.create_time, message.HasField("create_time")),
        )


@dataclass(frozen=True, slots=True)
class TaskExecution:
    """One task of a job request's current execution, with its latest result."""

    id: str
    task_type: str
    method: str
    task_state: TaskState | None
    exit_code: str
    exit_message: str
    error_code: str
    error_message: str
    ant_id: str
    retried: int
    started_at: datetime | None
    ended_at: datetime | None
    artifacts: tuple[Artifact, ...]
    warnings: tuple[str, ...]

    @classmethod
    def from_proto(cls, message: execution_pb2.TaskExecution) -> TaskExecution:
        return cls(
            id=message.id,
            task_type=message.task_type,
            method=_method(message.method),
            task_state=TaskState.from_proto(message.task_state),
            exit_code=message.exit_code,
            exit_message=message.exit_message,
            error_code=message.error_code,
            error_message=message.error_message,
            ant_id=message.ant_id,
            retried=message.retried,
            started_at=_time(message.start_time, message.HasField("start_time")),
            ended_at=_time(message.end_time, message.HasField("end_time")),
            artifacts=tuple(Artifact.from_proto(a) for a in message.artifacts),
            warnings=tuple(message.warnings),
        )


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A job request; `tasks` are those of its current execution (empty before it runs, and in
    listings)."""

    id: int
    job_type: str
    job_version: str
    job_definition_id: str
    job_state: JobState | None
    job_priority: int
    params: Mapping[str, str]
    user_key: str
    error_code: str
    error_message: str
    wait_reason: str
    created_at: datetime | None
    updated_at: datetime | None
    scheduled_at: datetime | None
    tasks: tuple[TaskExecution, ...]

    @property
    def is_terminal(self) -> bool:
        return self.job_state is not None and self.job_state.is_terminal

    @classmethod
    def from_proto(cls, message: job_request_pb2.JobRequest) -> JobRequest:
        return cls(
            id=message.id,
            job_type=message.job_type,
            job_version=message.job_version,
            job_definition_id=message.job_definition_id,
            job_state=JobState.from_proto(message.job_state),
            job_priority=message.job_priority,
            params=_frozen(message.params),
            user_key=message.user_key,
            error_code=message.error_code,
            error_message=message.error_message,
            wait_reason=message.wait_reason,
            created_at=_time(message.create_time, message.HasField("create_time")),
            updated_at=_time(message.update_time, message.HasField("update_time")),
            scheduled_at=_time(message.scheduled_time, message.HasField("scheduled_time")),
            tasks=tuple(TaskExecution.from_proto(t) for t in message.execution.tasks),
        )


@dataclass(frozen=True, slots=True)
class JobRequestEvent:
    """One change of a job request, as the watch stream reports it (`task_type` empty for the job's own
    changes)."""

    job_request_id: int
    job_type: str
    job_state: JobState | None
    task_type: str
    task_state: TaskState | None
    exit_code: str
    message: str
    time: datetime | None

    @classmethod
    def from_proto(cls, message: job_request_pb2.JobRequestEvent) -> JobRequestEvent:
        return cls(
            job_request_id=message.job_request_id,
            job_type=message.job_type,
            job_state=JobState.from_proto(message.job_state),
            task_type=message.task_type,
            task_state=TaskState.from_proto(message.task_state),
            exit_code=message.exit_code,
            message=message.message,
            time=_time(message.event_time, message.HasField("event_time")),
        )


@dataclass(frozen=True, slots=True)
class LogLine:
    """One console line of a task attempt."""

    task_type: str
    task_execution_id: str
    task_retry: int
    sequence: int
    stream: str  # stdout, stderr or system
    text: str
    time: datetime | None

    @classmethod
    def from_proto(
        cls, message: log_line_pb2.LogLine, *, task_type: str, task_execution_id: str, task_retry: int
    ) -> LogLine:
        return cls(
            task_type=task_type,
            task_execution_id=task_execution_id,
            task_retry=task_retry,
            sequence=message.sequence,
            stream=_enum_name(log_line_pb2.LogStream.DESCRIPTOR, message.stream, "LOG_STREAM_").lower(),
            text=message.text,
            time=_time(message.time, message.HasField("time")),
        )


@dataclass(frozen=True, slots=True)
class Ant:
    """A registered Ant as the Queen sees it."""

    ant_id: str
    state: str  # CONNECTED, DRAINING or DISCONNECTED
    host: str
    version: str
    methods: tuple[str, ...]
    tags: tuple[str, ...]
    max_capacity: int
    free_slots: int
    load: float
    last_heartbeat_at: datetime | None

    @classmethod
    def from_proto(cls, message: ant_pb2.AntInfo) -> Ant:
        return cls(
            ant_id=message.ant_id,
            state=_enum_name(ant_pb2.AntState.DESCRIPTOR, message.state, "ANT_STATE_"),
            host=message.host,
            version=message.version,
            methods=tuple(_method(m) for m in message.methods),
            tags=tuple(message.tags),
            max_capacity=message.max_capacity,
            free_slots=message.free_slots,
            load=message.load,
            last_heartbeat_at=_time(message.last_heartbeat_time, message.HasField("last_heartbeat_time")),
        )


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    name: str
    healthy: bool
    message: str


@dataclass(frozen=True, slots=True)
class Health:
    """The Queen's health and version."""

    healthy: bool
    version: str
    components: tuple[ComponentHealth, ...]

    @classmethod
    def from_proto(cls, message: admin_service_pb2.GetHealthResponse) -> Health:
        return cls(
            healthy=message.healthy,
            version=message.version,
            components=tuple(ComponentHealth(c.name, c.healthy, c.message) for c in message.components),
        )


@dataclass(frozen=True, slots=True)
class Approval:
    """A MANUAL gate of a job request: its state (PENDING, APPROVED, REJECTED, TIMED_OUT, CANCELLED),
    the tally so far (`progress`, e.g. "1 of 2 approvals"), and whether the caller may decide it."""

    job_request_id: int
    task_type: str
    job_type: str
    state: str
    progress: str
    policy_summary: str
    votes: int
    caller_can_decide: bool
    caller_cannot_decide_reason: str
    deadline_at: datetime | None
    decided_by: str

    @classmethod
    def from_proto(cls, message: approval_pb2.Approval) -> Approval:
        return cls(
            job_request_id=message.job_request_id,
            task_type=message.task_type,
            job_type=message.job_type,
            state=_enum_name(approval_pb2.ApprovalState.DESCRIPTOR, message.state, "APPROVAL_STATE_"),
            progress=message.progress,
            policy_summary=message.policy_summary,
            votes=len(message.votes),
            caller_can_decide=message.caller_can_decide,
            caller_cannot_decide_reason=message.caller_cannot_decide_reason,
            deadline_at=_time(message.deadline_time, message.HasField("deadline_time")),
            decided_by=message.decided_by_user_id,
        )
