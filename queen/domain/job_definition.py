"""The job-definition language as typed, frozen objects: a job is a DAG of tasks routed by exit codes.

Everything here is produced by `queen.domain.definition_parser` from YAML and is immutable.
Lists are tuples; free-form maps (variables, image definitions) keep the YAML's plain values.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

__all__ = [
    "DEFAULT_METHOD",
    "EXIT_CODE_KEYWORDS",
    "MANUAL_EXIT_CODES",
    "ApprovalInput",
    "ApprovalPolicy",
    "ArtifactsConfig",
    "CacheConfig",
    "ContainerSpec",
    "FanOut",
    "InputType",
    "JobDefinition",
    "NotifyChannel",
    "NotifyWhen",
    "QuorumRule",
    "Resources",
    "RetryBackoffPolicy",
    "RouteTarget",
    "SlaAction",
    "SlaStep",
    "SubWorkflow",
    "TaskDefinition",
    "TaskMethod",
    "TimeoutAction",
    "Webhook",
    "is_error_code_target",
    "is_no_op_target",
]


class TaskMethod(enum.StrEnum):
    """How a task runs: on an Ant's executor, or (MANUAL, JOB_FORK*, EXPIRE_ARTIFACTS) in the Queen."""

    SHELL = "SHELL"
    DOCKER = "DOCKER"
    KUBERNETES = "KUBERNETES"
    HTTP_GET = "HTTP_GET"
    HTTP_POST_FORM = "HTTP_POST_FORM"
    HTTP_POST_JSON = "HTTP_POST_JSON"
    HTTP_PUT_FORM = "HTTP_PUT_FORM"
    HTTP_PUT_JSON = "HTTP_PUT_JSON"
    HTTP_DELETE = "HTTP_DELETE"
    WEBSOCKET = "WEBSOCKET"
    MANUAL = "MANUAL"
    JOB_FORK = "JOB_FORK"
    JOB_FORK_AWAIT = "JOB_FORK_AWAIT"
    EXPIRE_ARTIFACTS = "EXPIRE_ARTIFACTS"
    MESSAGING = "MESSAGING"

    @classmethod
    def from_text(cls, text: str) -> TaskMethod:
        """The method named by `text`, accepting Formicary's aliases FORK_JOB and AWAIT_FORKED_JOB."""
        alias = _METHOD_ALIASES.get(text)
        return alias if alias is not None else cls(text)

    @property
    def runs_in_queen(self) -> bool:
        """Queen-side methods never reach an Ant and hold no Ant capacity."""
        return self in _QUEEN_METHODS

    @property
    def is_http(self) -> bool:
        return self.name.startswith("HTTP_")


_METHOD_ALIASES = {"FORK_JOB": TaskMethod.JOB_FORK, "AWAIT_FORKED_JOB": TaskMethod.JOB_FORK_AWAIT}
_QUEEN_METHODS = frozenset(
    {TaskMethod.MANUAL, TaskMethod.JOB_FORK, TaskMethod.JOB_FORK_AWAIT, TaskMethod.EXPIRE_ARTIFACTS}
)

# A task without `method` runs on Kubernetes, as in Formicary.
DEFAULT_METHOD = TaskMethod.KUBERNETES


class RouteTarget(enum.StrEnum):
    """Reserved words a route (`on_completed`, `on_failed`, `on_exit_code` values) may name instead of a task.

    ERR_* (any upper-case suffix) is reserved too: fail the job with that error code.
    """

    FATAL = "FATAL"  # fail the job now, no retries; always_run tasks still run
    RESTART_TASK = "RESTART_TASK"  # run the same task again (counts as a retry)
    RESTART_JOB = "RESTART_JOB"  # run the job again from its first task (counts as a job retry)
    PAUSE_JOB = "PAUSE_JOB"  # pause; resumed by a user or after `pause_time`
    EXECUTING = "EXECUTING"  # sensor loop: run the task again after its delay until the code changes
    COMPLETED = "COMPLETED"  # end the job, overriding its outcome to COMPLETED
    FAILED = "FAILED"  # end the job, overriding its outcome to FAILED


_ERROR_CODE_TARGET = re.compile(r"ERR_[A-Z0-9_]+")
# `no-op` ends the path with nothing further to run. The brief's DR playbook writes
# `on_completed: no-op` for a branch it never takes; a task of that name, if one exists, wins.
_NO_OP_TARGETS = frozenset({"no-op", "noop", "no_op", "NO_OP", "NOOP"})


def is_error_code_target(target: str) -> bool:
    """`ERR_*` targets fail the job with that error code."""
    return _ERROR_CODE_TARGET.fullmatch(target) is not None


def is_no_op_target(target: str) -> bool:
    return target in _NO_OP_TARGETS


# Non-numeric keys of `on_exit_code`: the outcome names a task's exit code may take.
EXIT_CODE_KEYWORDS = frozenset({"COMPLETED", "FAILED", "APPROVED", "REJECTED", "TIMED_OUT", "SKIPPED"})
# Outcomes only a MANUAL task produces.
MANUAL_EXIT_CODES = frozenset({"APPROVED", "REJECTED", "TIMED_OUT"})


@dataclass(frozen=True, slots=True)
class RetryBackoffPolicy:
    """Delay before retry n (1-based) = min(initial_delay * multiplier**(n-1), max_delay), ± jitter."""

    initial_delay: timedelta = timedelta(seconds=1)
    multiplier: float = 2.0
    max_delay: timedelta = timedelta(minutes=5)
    jitter: float = 0.0

    def delay_for(self, retry: int) -> timedelta:
        """The deterministic part of the delay before the given retry; callers add jitter."""
        seconds = self.initial_delay.total_seconds() * self.multiplier ** max(retry - 1, 0)
        return min(timedelta(seconds=seconds), self.max_delay)


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """The image a DOCKER or KUBERNETES task runs in, and its resource requests."""

    image: str
    image_pull_policy: str = ""
    entrypoint: tuple[str, ...] = ()
    cpu_limit: str = ""
    cpu_request: str = ""
    memory_limit: str = ""
    memory_request: str = ""
    volumes: Mapping[str, Any] = field(default_factory=dict)
    image_definition: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ArtifactsConfig:
    """Files (glob patterns, relative to the task's working directory) uploaded after the task."""

    paths: tuple[str, ...] = ()
    expires_after: timedelta | None = None


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Paths kept between runs of the same job type, keyed by `key` or by digests of `key_paths`."""

    key: str = ""
    key_paths: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    expires_after: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Resources:
    """What a task needs from its executor (Kubernetes requests/limits notation)."""

    cpu: str = ""
    memory: str = ""
    disk_space: str = ""
    network: str = ""


class TimeoutAction(enum.StrEnum):
    """What happens to a gate whose `sla_deadline` passes without a decision."""

    AUTO_APPROVE = "AUTO_APPROVE"
    AUTO_REJECT = "AUTO_REJECT"
    ESCALATE = "ESCALATE"


class SlaAction(enum.StrEnum):
    """One rung of an approval's SLA ladder."""

    REMIND = "REMIND"
    ESCALATE = "ESCALATE"
    AUTO_APPROVE = "AUTO_APPROVE"
    AUTO_REJECT = "AUTO_REJECT"
    TIME_OUT = "TIME_OUT"


@dataclass(frozen=True, slots=True)
class SlaStep:
    """After `after` without a decision, do `action` (to `to`, for REMIND and ESCALATE)."""

    after: timedelta
    action: SlaAction
    to: tuple[str, ...] = ()
    message: str = ""


@dataclass(frozen=True, slots=True)
class QuorumRule:
    """At least `min` approvals from members of `group`."""

    group: str
    min: int


class InputType(enum.StrEnum):
    """Types of the values an approver supplies with a decision."""

    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ENUM = "enum"


@dataclass(frozen=True, slots=True)
class ApprovalInput:
    """A typed value the approver supplies; it becomes a variable of the tasks that follow."""

    name: str
    type: InputType = InputType.STRING
    required: bool = False
    default: str | float | bool | None = None
    values: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """Who may decide a MANUAL gate, how many must agree, and what happens when nobody does."""

    min_approvals: int = 1
    allowed_users: tuple[str, ...] = ()
    allowed_roles: tuple[str, ...] = ()
    require_unanimous: bool = False
    sla_deadline: timedelta | None = None
    timeout_action: TimeoutAction | None = None
    escalation_recipients: tuple[str, ...] = ()
    escalation_message: str = ""
    quorum: tuple[QuorumRule, ...] = ()
    allow_self_approval: bool = False
    reject_vetoes: bool = True
    sla: tuple[SlaStep, ...] = ()
    inputs: tuple[ApprovalInput, ...] = ()


@dataclass(frozen=True, slots=True)
class FanOut:
    """Run the task once per item (a list, or a template that renders to one), as `variable`."""

    items: tuple[str, ...] | str
    variable: str = "item"
    max_parallel: int | None = None


@dataclass(frozen=True, slots=True)
class SubWorkflow:
    """Run another job type as a child request, optionally waiting for it (`await`)."""

    job_type: str
    version: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    wait: bool = True


@dataclass(frozen=True, slots=True)
class Webhook:
    """An HTTP POST sent on lifecycle events of the job or task."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)


class NotifyWhen(enum.StrEnum):
    """When a notification channel fires (Formicary's values)."""

    ALWAYS = "always"
    ON_SUCCESS = "onSuccess"
    ON_FAILURE = "onFailure"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class NotifyChannel:
    """Recipients on one channel (`email`, `slack`, `webhook`) and when to tell them."""

    channel: str
    recipients: tuple[str, ...]
    when: NotifyWhen = NotifyWhen.ALWAYS


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """One node of the job's DAG."""

    task_type: str
    method: TaskMethod = DEFAULT_METHOD
    description: str = ""
    script: tuple[str, ...] = ()
    before_script: tuple[str, ...] = ()
    after_script: tuple[str, ...] = ()
    container: ContainerSpec | None = None
    services: tuple[Mapping[str, Any], ...] = ()
    variables: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    timeout: timedelta | None = None
    retry: int = 0
    delay_between_retries: timedelta | None = None
    retry_backoff_policy: RetryBackoffPolicy | None = None
    pause_time: timedelta | None = None
    allow_failure: bool = False
    always_run: bool = False
    allow_start_if_completed: bool = False
    on_completed: str = ""
    on_failed: str = ""
    on_exit_code: Mapping[str, str] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    artifact_ids: tuple[str, ...] = ()
    artifacts: ArtifactsConfig = ArtifactsConfig()
    cache: CacheConfig | None = None
    except_: str = ""
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    resources: Resources | None = None
    approval_policy: ApprovalPolicy | None = None
    fork_job_type: str = ""
    fork_job_version: str = ""
    await_forked_tasks: tuple[str, ...] = ()
    messaging_request_queue: str = ""
    messaging_reply_queue: str = ""
    report_stdout: bool = False
    fan_out: FanOut | None = None
    sub_workflow: SubWorkflow | None = None
    webhook: Webhook | None = None
    privileged: bool = False
    host_network: bool = False
    network_mode: str = ""
    working_dir: str = ""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    cost_factor: float = 0.0

    def routes(self) -> dict[str, str]:
        """Every route of this task, keyed by where it is written (`on_completed`, `on_exit_code.1`, ...)."""
        found = {f"on_exit_code.{code}": target for code, target in self.on_exit_code.items()}
        if self.on_completed:
            found["on_completed"] = self.on_completed
        if self.on_failed:
            found["on_failed"] = self.on_failed
        return found


@dataclass(frozen=True, slots=True)
class JobDefinition:
    """A job type: its tasks (the first listed runs first) and how requests of it are scheduled."""

    job_type: str
    tasks: tuple[TaskDefinition, ...]
    description: str = ""
    cron_trigger: str = ""
    timeout: timedelta | None = None
    retry: int = 0
    hard_reset_after_retries: int = 0
    delay_between_retries: timedelta | None = None
    retry_backoff_policy: RetryBackoffPolicy | None = None
    max_concurrency: int | None = None
    platform: str = ""
    tags: tuple[str, ...] = ()
    required_params: tuple[str, ...] = ()
    job_variables: Mapping[str, Any] = field(default_factory=dict)
    public_plugin: bool = False
    sem_version: str = ""
    pause_time: timedelta | None = None
    skip_if: str = ""
    webhook: Webhook | None = None
    notify: tuple[NotifyChannel, ...] = ()

    @property
    def first_task(self) -> TaskDefinition:
        return self.tasks[0]

    def task(self, task_type: str) -> TaskDefinition | None:
        """The task of that type, or None."""
        for task in self.tasks:
            if task.task_type == task_type:
                return task
        return None

    @property
    def methods(self) -> frozenset[TaskMethod]:
        """Every method the job's tasks use (the scheduler checks an Ant exists for each)."""
        return frozenset(task.method for task in self.tasks)

    @property
    def all_tags(self) -> frozenset[str]:
        """The job's tags plus every task's tags."""
        tags = set(self.tags)
        for task in self.tasks:
            tags.update(task.tags)
        return frozenset(tags)
