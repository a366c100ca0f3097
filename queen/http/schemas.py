"""The REST gateway's JSON documents, with Formicary's field names (snake_case, as its Go structs write them).

These models are what the OpenAPI document describes; `queen.http._convert` fills them from the service
layer's records. Times are RFC 3339 (UTC); durations are written as the definition language writes them
(`1m30s`); a job request's id is a number, every other id a string.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

__all__ = [
    "AntOut",
    "ApprovalDecisionOut",
    "ApprovalInputOut",
    "ApprovalOut",
    "ApprovalPolicyOut",
    "ApprovalQuorumOut",
    "ApprovalSlaStepOut",
    "ApprovalTallyOut",
    "ApprovalVoteIn",
    "ApprovalVoteOut",
    "ArtifactDigestOut",
    "ArtifactOut",
    "ArtifactsConfigOut",
    "ComponentHealthOut",
    "ContainerOut",
    "DeletedDefinitionOut",
    "ErrorOut",
    "HealthOut",
    "JobDefinitionOut",
    "JobExecutionOut",
    "JobRequestOut",
    "LogLineOut",
    "Page",
    "SubmitJobRequestIn",
    "TaskDefinitionOut",
    "TaskExecutionOut",
    "TaskLogLinesOut",
    "UploadDefinitionJsonIn",
    "UploadedDefinitionOut",
    "ValidationProblemOut",
]

T = TypeVar("T")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# -- errors ------------------------------------------------------------------------------------------


class ErrorOut(_Out):
    """Every error response. `code` is the gRPC status code name the same failure has over gRPC,
    `reason` the ErrorInfo reason (the error table's row), `details` the status details in the
    protobuf JSON mapping (each with its `@type`): ErrorInfo first, then ValidationProblem (line,
    column, fix), BadRequest field violations, ResourceInfo (an existing request for a duplicate
    user_key) or PreconditionFailure."""

    code: str = Field(examples=["INVALID_ARGUMENT"])
    reason: str = Field(examples=["INVALID_DEFINITION"])
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)


# -- paging ------------------------------------------------------------------------------------------


class Page(_Out, Generic[T]):
    """One page of a listing. `page` counts from 0, as in Formicary. `total_records` and `total_pages`
    are null where the Queen does not count the matches (definitions, artifacts); `has_more` is always
    set."""

    records: list[T]
    page: int
    page_size: int
    total_records: int | None
    total_pages: int | None
    has_more: bool


# -- job definitions ---------------------------------------------------------------------------------


class ValidationProblemOut(_Out):
    """A validation problem, as the `formicary.v1.ValidationProblem` JSON mapping writes it."""

    severity: str = Field(examples=["VALIDATION_SEVERITY_WARNING"])
    line: int
    column: int
    code: str
    message: str
    path: str = ""
    offending_text: str = ""
    fix: str = ""


class ContainerOut(_Out):
    image: str
    image_pull_policy: str = ""
    entrypoint: list[str] = Field(default_factory=list)
    cpu_request: str = ""
    cpu_limit: str = ""
    memory_request: str = ""
    memory_limit: str = ""


class ArtifactsConfigOut(_Out):
    paths: list[str]
    expires_after: str | None = None


class ApprovalInputOut(_Out):
    name: str
    type: str
    required: bool
    description: str = ""
    values: list[str] = Field(default_factory=list)


class ApprovalQuorumOut(_Out):
    group: str
    min: int


class ApprovalSlaStepOut(_Out):
    """One rung of the SLA ladder, resolved: after how long without a decision, what, to whom."""

    after: str
    action: str
    to: list[str] = Field(default_factory=list)
    message: str = ""


class ApprovalPolicyOut(_Out):
    """A MANUAL task's `approval_policy` as declared (Formicary's names, and the Queen's additions)."""

    min_approvals: int
    allowed_users: list[str]
    allowed_roles: list[str]
    allow_self_approval: bool
    sla_deadline: str | None = None
    timeout_action: str | None = None
    inputs: list[ApprovalInputOut] = Field(default_factory=list)
    require_unanimous: bool = False
    reject_vetoes: bool = True
    quorum: list[ApprovalQuorumOut] = Field(default_factory=list)
    escalation_recipients: list[str] = Field(default_factory=list)
    escalation_message: str = ""
    sla: list[ApprovalSlaStepOut] = Field(default_factory=list)


class TaskDefinitionOut(_Out):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    task_type: str
    method: str
    description: str
    task_order: int
    script: list[str]
    before_script: list[str]
    after_script: list[str]
    container: ContainerOut | None = None
    variables: dict[str, Any]
    environment: dict[str, str]
    tags: list[str]
    timeout: str | None = None
    retry: int
    delay_between_retries: str | None = None
    allow_failure: bool
    always_run: bool
    allow_start_if_completed: bool
    on_completed: str
    on_failed: str
    on_exit_code: dict[str, str]
    dependencies: list[str]
    artifacts: ArtifactsConfigOut
    except_: str = Field(default="", alias="except")
    url: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    fork_job_type: str = ""
    await_forked_tasks: list[str] = Field(default_factory=list)
    report_stdout: bool = False
    approval_policy: ApprovalPolicyOut | None = None


class JobDefinitionOut(_Out):
    """One stored version of a job type. `tasks` is empty only for a version stored before the parser
    became stricter (its `raw_yaml` is still shown)."""

    id: str
    job_type: str
    version: int
    sem_version: str
    description: str
    platform: str
    cron_trigger: str
    timeout: str | None
    retry: int
    hard_reset_after_retries: int
    delay_between_retries: str | None
    max_concurrency: int | None
    disabled: bool
    public_plugin: bool
    required_params: list[str]
    tags: list[str]
    methods: list[str]
    organization_id: str
    user_id: str
    raw_yaml: str
    tasks: list[TaskDefinitionOut]
    created_at: datetime
    updated_at: datetime


class UploadedDefinitionOut(JobDefinitionOut):
    """The definition as stored; `new_version` is false when the upload was identical to the latest
    version (a no-op, answered 200 instead of 201); `warnings` are problems that did not reject it."""

    new_version: bool
    warnings: list[ValidationProblemOut]


class DeletedDefinitionOut(_Out):
    job_type: str
    deleted_versions: int


class UploadDefinitionJsonIn(BaseModel):
    """The JSON form of an upload: the YAML text in `yaml`."""

    model_config = ConfigDict(extra="forbid")

    yaml: str


# -- job requests ------------------------------------------------------------------------------------


class ArtifactOut(_Out):
    """An artifact's description; `url` downloads its content."""

    id: str
    name: str
    kind: str
    sha256: str
    content_type: str
    content_length: int
    job_request_id: int | None
    job_execution_id: str | None
    task_execution_id: str | None
    task_type: str
    bucket: str = ""
    organization_id: str = ""
    user_id: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    expires_at: datetime | None = None
    created_at: datetime | None = None
    url: str


class TaskExecutionOut(_Out):
    id: str
    job_execution_id: str
    task_type: str
    method: str
    task_state: str
    task_order: int
    allow_failure: bool
    exit_code: str
    exit_message: str
    error_code: str
    error_message: str
    failed_command: str
    ant_id: str
    ant_host: str
    retried: int
    contexts: dict[str, Any]
    artifacts: list[ArtifactOut]
    cost_factor: float
    stdout: list[str]
    warnings: list[str]
    started_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime


class JobExecutionOut(_Out):
    id: str
    job_request_id: int
    job_type: str
    job_version: str
    job_state: str
    organization_id: str
    user_id: str
    exit_code: str
    exit_message: str
    error_code: str
    error_message: str
    contexts: dict[str, Any]
    tasks: list[TaskExecutionOut]
    started_at: datetime
    ended_at: datetime | None
    updated_at: datetime
    cpu_secs: float


class JobRequestOut(_Out):
    """A job request; `execution` (its current run, with its tasks) is null before it is launched and
    in listings unless `include_execution=true`."""

    id: int
    parent_id: int | None
    user_key: str | None
    job_definition_id: str
    job_execution_id: str | None
    organization_id: str
    user_id: str
    job_type: str
    job_version: str
    job_state: str
    job_group: str
    job_priority: int
    params: dict[str, str]
    scheduled_at: datetime | None
    cron_triggered: bool
    retried: int
    schedule_attempts: int
    error_code: str
    error_message: str
    wait_reason: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    execution: JobExecutionOut | None = None


class SubmitJobRequestIn(BaseModel):
    """What to run. `params` values are text; numbers and booleans are accepted and written as text
    (`3`, `true`). `scheduled_at` without a time zone is UTC. A `user_key` already used in the
    organisation is refused with 409 naming the existing request."""

    model_config = ConfigDict(extra="forbid")

    job_type: str = Field(min_length=1, max_length=256, examples=["secure-go-cicd"])
    job_version: str | int | None = Field(default=None, description="Definition version; latest if unset.")
    params: dict[str, Any] = Field(default_factory=dict)
    job_priority: int = 0
    scheduled_at: datetime | None = None
    user_key: str = ""
    job_group: str = Field(default="", max_length=256)
    description: str = Field(default="", max_length=4096)


class LogLineOut(_Out):
    """One console line of a task attempt; `stream` is stdout, stderr or system (the Ant's own notes)."""

    sequence: int
    time: datetime
    stream: str
    text: str


class TaskLogLinesOut(_Out):
    """New console lines of one attempt of one task (a `logs` event of a request's stream)."""

    task_type: str
    task_execution_id: str
    task_retry: int
    lines: list[LogLineOut]


# -- approvals ---------------------------------------------------------------------------------------


class ApprovalVoteIn(BaseModel):
    """One decision on a MANUAL task's gate, as Formicary's clients send it. The decider is the
    authenticated caller, never a field of this body (fields such as `user_id` are ignored, like any
    other field not listed here). `gate_version` is the version the decider was shown: a decision on
    a gate that changed since is refused (409); 0 or absent skips the check. A repeat with the same
    `idempotency_key` answers the first decision again, with `duplicate: true`."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    decision: str = Field(max_length=40, examples=["APPROVED", "REJECTED"])
    comments: str = Field(
        default="",
        validation_alias=AliasChoices("comments", "comment"),
        description="Why; required for REJECTED. `comment` is accepted too.",
    )
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="Values for the inputs the gate declares; numbers and booleans are written as text.",
    )
    idempotency_key: str = ""
    gate_version: int = Field(default=0, ge=0)


class ApprovalVoteOut(_Out):
    """One vote as cast. `decision` is APPROVED or REJECTED; `gate_version` the version it was cast on
    (votes on an earlier version no longer count)."""

    user_id: str
    roles: list[str]
    decision: str
    comments: str
    inputs: dict[str, Any]
    channel: str
    gate_version: int
    created_at: datetime


class ArtifactDigestOut(_Out):
    """An artifact the job had produced when the gate opened (or last changed): what the decision is
    bound to."""

    artifact_id: str
    name: str
    sha256: str
    url: str


class ApprovalTallyOut(_Out):
    """The votes that count (those on the current version), and how many approvals the policy asks."""

    approvals: int
    rejections: int
    required_approvals: int


class ApprovalOut(_Out):
    """A MANUAL task's gate as the caller sees it. `state` is OPEN, APPROVED, REJECTED, TIMED_OUT or
    CANCELLED; `version` changes when what is to be approved changed. `progress` says where it stands
    (or how it closed); `caller_can_decide` whether the caller may vote now, and if not, why."""

    job_request_id: int
    task_type: str
    task_execution_id: str
    job_type: str
    organization_id: str
    description: str
    state: str
    version: int
    policy: ApprovalPolicyOut
    policy_summary: str
    progress: str
    tally: ApprovalTallyOut
    votes: list[ApprovalVoteOut]
    requester: str
    separation_of_duties_note: str
    artifact_digests: list[ArtifactDigestOut]
    caller_can_decide: bool
    caller_cannot_decide_reason: str
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime | None
    next_sla_at: datetime | None
    next_sla_action: str | None
    decided_at: datetime | None
    decided_by: str
    decided_channel: str | None
    decision_comments: str
    decision_inputs: dict[str, Any]
    trace_id: str


class ApprovalDecisionOut(ApprovalOut):
    """The gate after a decision; `duplicate` when the idempotency key named an earlier decision (the
    gate is then shown as it is now, and nothing was recorded again)."""

    duplicate: bool


# -- operators ---------------------------------------------------------------------------------------


class AntOut(_Out):
    """A registered Ant. `current_load` is how many tasks it runs, `load` the load it reports."""

    ant_id: str
    connected: bool
    host: str
    version: str
    methods: list[str]
    tags: list[str]
    labels: dict[str, str]
    max_capacity: int
    current_load: int
    free_slots: int
    load: float
    session_id: str
    ant_started_at: datetime | None
    updated_at: datetime | None


class ComponentHealthOut(_Out):
    name: str
    healthy: bool
    message: str
    checked_at: datetime


class HealthOut(_Out):
    healthy: bool
    version: str
    scheduler_leader: bool
    started_at: datetime
    components: list[ComponentHealthOut]
