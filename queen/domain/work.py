"""What the supervisor hands to whatever runs a task (an Ant, or the Queen itself), and what comes back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from queen.domain.job_definition import TaskDefinition, TaskMethod
from queen.domain.states import TaskState

__all__ = ["TaskConfigs", "TaskReport", "TaskWork"]


@dataclass(frozen=True, slots=True)
class TaskConfigs:
    """The configs a task gets (organisation, job type and user ones, decrypted): each value by name,
    the narrowest scope winning, and which of them are secret (masked wherever they come back)."""

    values: Mapping[str, str]
    secret_names: frozenset[str]

    @property
    def secret_values(self) -> tuple[str, ...]:
        return tuple(self.values[name] for name in sorted(self.secret_names))


@dataclass(frozen=True, slots=True)
class TaskWork:
    """One attempt of one task: the rendered task definition plus the identifiers an Ant reports back.

    `correlation_id` names the attempt (`<task_execution_id>:<job retry>.<task retry>`): a result whose
    correlation id is not the current attempt's is stale and ignored.
    """

    job_request_id: int
    job_definition_id: str
    job_type: str
    job_version: int
    job_execution_id: str
    task_execution_id: str
    correlation_id: str
    task: TaskDefinition
    variables: Mapping[str, str]
    secret_names: frozenset[str] = frozenset()
    organization_id: str = ""
    user_id: str = ""
    platform: str = ""
    job_retry: int = 0
    task_retry: int = 0
    dependent_artifact_ids: tuple[str, ...] = ()
    traceparent: str = ""
    tracestate: str = ""
    # The configs read in the transaction that created the attempt's row (one read fewer on the dispatch
    # path); None when they were not, and whoever dispatches reads them (queen.security.injection).
    configs: TaskConfigs | None = None
    # the task's tags as a set, made once: routing compares them with each Ant's at every placement
    tags: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", frozenset(self.task.tags))

    @property
    def method(self) -> TaskMethod:
        return self.task.method


@dataclass(frozen=True, slots=True)
class TaskReport:
    """How an attempt ended, as the executor (or the Queen, for a lost Ant or a timeout) reports it."""

    state: TaskState
    exit_code: str = ""
    exit_message: str = ""
    error_code: str = ""
    error_message: str = ""
    failed_command: str = ""
    task_context: Mapping[str, str] = field(default_factory=dict)
    job_context: Mapping[str, str] = field(default_factory=dict)
    artifacts: tuple[Mapping[str, object], ...] = ()
    warnings: tuple[str, ...] = ()
    stdout: tuple[str, ...] = ()
    ant_id: str = ""
    ant_host: str = ""
    cost_factor: float = 0.0
    started_at: datetime | None = None
    ended_at: datetime | None = None
