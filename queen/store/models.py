"""The Queen's tables as SQLAlchemy 2 declarative models; private to `queen.store` (callers get records).

The Alembic migrations under `migrations/versions` create exactly this schema (a test compares them).
Conventions: free-form text is non-null with "" for "none", so that "" and NULL never both mean empty;
timestamps are aware UTC (`UTCDateTime`); states are their enum values as text; JSON columns hold plain
dicts and lists.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from queen.domain.approvals import Channel, GateState, Vote
from queen.domain.states import JobState, TaskState
from queen.store._column_types import BIG_ID, EnumText, UTCDateTime
from queen.store.records import ArtifactKind

__all__ = [
    "NAMING_CONVENTION",
    "ApiTokenRow",
    "ApprovalGateRow",
    "ApprovalLedgerRow",
    "ApprovalVoteRow",
    "ArtifactRow",
    "Base",
    "ConfigRow",
    "EventRow",
    "JobDefinitionRow",
    "JobExecutionRow",
    "JobRequestRow",
    "SecurityAuditRow",
    "TaskExecutionRow",
]

# Deterministic constraint names, so that migrations can name (and later drop or alter) them on both
# databases, and autogenerate compares like with like.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_UUID = String(36)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class JobDefinitionRow(Base):
    """One version of a job type's definition. Rows are immutable except `disabled` and `deleted_at`."""

    __tablename__ = "job_definitions"
    __table_args__ = (
        UniqueConstraint(
            "organization_id", "job_type", "version", name="uq_job_definitions_org_type_version"
        ),
    )

    id: Mapped[str] = mapped_column(_UUID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(String, default="")
    user_id: Mapped[str] = mapped_column(String)
    job_type: Mapped[str] = mapped_column(String)
    version: Mapped[int] = mapped_column(Integer)
    # sha256 (hex) of the canonical form of the parsed definition: an upload with the same digest as the
    # latest version is a no-op, whatever its comments or layout.
    digest: Mapped[str] = mapped_column(String(64))
    yaml: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    cron_trigger: Mapped[str] = mapped_column(String, default="")
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    methods: Mapped[list[str]] = mapped_column(JSON)
    tags: Mapped[list[str]] = mapped_column(JSON)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobRequestRow(Base):
    """A request to run a job type, pinned to one definition version; the unit users see and cancel."""

    __tablename__ = "job_requests"
    __table_args__ = (
        # NULLs are distinct in unique indexes on both SQLite and PostgreSQL, so this plain unique index
        # is "unique per organization when user_key is not null" on both, with no partial-index dialects.
        Index("uq_job_requests_org_user_key", "organization_id", "user_key", unique=True),
        # the scheduler: PENDING, due (scheduled_at), by priority then age
        Index("ix_job_requests_scheduler", "job_state", "scheduled_at", "job_priority", "created_at"),
        # listing and counting by type and state
        Index("ix_job_requests_type_state", "job_type", "job_state"),
        # an organisation's requests, newest first
        Index("ix_job_requests_org_id", "organization_id", "id"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    parent_id: Mapped[int | None] = mapped_column(BIG_ID, ForeignKey("job_requests.id"), index=True)
    user_key: Mapped[str | None] = mapped_column(String)
    job_definition_id: Mapped[str] = mapped_column(_UUID, ForeignKey("job_definitions.id"))
    job_type: Mapped[str] = mapped_column(String)
    job_version: Mapped[int] = mapped_column(Integer)
    job_state: Mapped[JobState] = mapped_column(EnumText(JobState))
    job_priority: Mapped[int] = mapped_column(Integer, default=0)
    job_group: Mapped[str] = mapped_column(String, default="")
    organization_id: Mapped[str] = mapped_column(String, default="")
    user_id: Mapped[str] = mapped_column(String)
    params: Mapped[dict[str, str]] = mapped_column(JSON)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cron_triggered: Mapped[bool] = mapped_column(Boolean, default=False)
    retried: Mapped[int] = mapped_column(Integer, default=0)
    schedule_attempts: Mapped[int] = mapped_column(Integer, default=0)
    wait_reason: Mapped[str] = mapped_column(Text, default="")
    error_code: Mapped[str] = mapped_column(String, default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    # The current execution. Not a foreign key: job_executions already points here, and a cycle of
    # foreign keys cannot be created table by table on SQLite (no ALTER TABLE ADD CONSTRAINT).
    job_execution_id: Mapped[str | None] = mapped_column(_UUID)
    # W3C trace context of the request's root span, so a restarted Queen continues the same trace.
    trace_id: Mapped[str] = mapped_column(String(32), default="")
    root_span_id: Mapped[str] = mapped_column(String(16), default="")
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "" for a first run; "soft" or "hard" after a user's restart (soft reuses completed tasks).
    restart_mode: Mapped[str] = mapped_column(String(8), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobExecutionRow(Base):
    """One run of a request (a restart creates another)."""

    __tablename__ = "job_executions"

    id: Mapped[str] = mapped_column(_UUID, primary_key=True)
    job_request_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("job_requests.id"), index=True)
    job_type: Mapped[str] = mapped_column(String)
    job_version: Mapped[int] = mapped_column(Integer)
    job_state: Mapped[JobState] = mapped_column(EnumText(JobState))
    exit_code: Mapped[str] = mapped_column(String, default="")
    exit_message: Mapped[str] = mapped_column(Text, default="")
    error_code: Mapped[str] = mapped_column(String, default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    contexts: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The supervisor's position in the DAG (queen.supervisor.cursor), saved with every decision.
    cursor: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cpu_secs: Mapped[float] = mapped_column(Float, default=0.0)


class TaskExecutionRow(Base):
    """One task of a job execution; retries and sensor loops reuse the row (and count in `retried`)."""

    __tablename__ = "task_executions"
    __table_args__ = (
        UniqueConstraint("job_execution_id", "task_type", name="uq_task_executions_execution_task_type"),
        # the Ant-lost sweep and the restart resume look tasks up by state
        Index("ix_task_executions_task_state", "task_state"),
    )

    id: Mapped[str] = mapped_column(_UUID, primary_key=True)
    job_execution_id: Mapped[str] = mapped_column(_UUID, ForeignKey("job_executions.id"))
    task_type: Mapped[str] = mapped_column(String)
    method: Mapped[str] = mapped_column(String(32))
    task_state: Mapped[TaskState] = mapped_column(EnumText(TaskState))
    task_order: Mapped[int] = mapped_column(Integer)
    allow_failure: Mapped[bool] = mapped_column(Boolean, default=False)
    exit_code: Mapped[str] = mapped_column(String, default="")
    exit_message: Mapped[str] = mapped_column(Text, default="")
    error_code: Mapped[str] = mapped_column(String, default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    failed_command: Mapped[str] = mapped_column(Text, default="")
    ant_id: Mapped[str] = mapped_column(String, default="")
    ant_host: Mapped[str] = mapped_column(String, default="")
    retried: Mapped[int] = mapped_column(Integer, default=0)
    contexts: Mapped[dict[str, Any]] = mapped_column(JSON)
    artifacts: Mapped[list[Any]] = mapped_column(JSON)
    stdout: Mapped[list[str]] = mapped_column(JSON)
    # What the Ant wants people to know about the run (e.g. "local fallback: KUBERNETES task run with SHELL")
    warnings: Mapped[list[str]] = mapped_column(JSON)
    cost_factor: Mapped[float] = mapped_column(Float, default=0.0)
    span_id: Mapped[str] = mapped_column(String(16), default="")
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EventRow(Base):
    """What happened to a request, in order. Append-only: nothing updates or deletes these rows."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_request_id", "job_request_id", "id"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    job_request_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("job_requests.id"))
    task_execution_id: Mapped[str | None] = mapped_column(_UUID)
    task_type: Mapped[str | None] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ArtifactRow(Base):
    """What one artifact is and where its content lies (object store `bucket`, `key`).

    Rows are never removed: deleting an artifact sets `deleted_at` (and removes the content), so the
    history of a job keeps naming what it produced. Job request, execution and task are NULL for
    artifacts not tied to them (user uploads).
    """

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("bucket", "key", name="uq_artifacts_bucket_key"),
        # an organisation's artifacts newest first, overall and per job request
        Index("ix_artifacts_org_created", "organization_id", "created_at"),
        Index("ix_artifacts_org_request", "organization_id", "job_request_id", "created_at"),
        # the expiry sweep
        Index("ix_artifacts_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(_UUID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(String, default="")
    user_id: Mapped[str] = mapped_column(String)
    job_request_id: Mapped[int | None] = mapped_column(BIG_ID, ForeignKey("job_requests.id"))
    job_execution_id: Mapped[str | None] = mapped_column(_UUID, ForeignKey("job_executions.id"))
    task_execution_id: Mapped[str | None] = mapped_column(_UUID, ForeignKey("task_executions.id"), index=True)
    task_type: Mapped[str] = mapped_column(String, default="")
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[ArtifactKind] = mapped_column(EnumText(ArtifactKind))
    bucket: Mapped[str] = mapped_column(String)
    key: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    content_length: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    # `metadata` is the declarative base's own attribute: the column keeps the API's name, the attribute not.
    labels: Mapped[dict[str, str]] = mapped_column("metadata", JSON)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApprovalGateRow(Base):
    """One opening of a MANUAL task's approval gate (queen.domain.approvals has the rules)."""

    __tablename__ = "approval_gates"
    __table_args__ = (
        UniqueConstraint("task_execution_id", "opening", name="uq_approval_gates_task_opening"),
        # GetApproval names a gate by (job request, task type): the latest opening wins
        Index("ix_approval_gates_request_task", "job_request_id", "task_type"),
        # pending lists per organisation, oldest first
        Index("ix_approval_gates_org_state", "organization_id", "state", "created_at"),
        # the timers: the earliest due rung of an open gate
        Index("ix_approval_gates_state_due", "state", "next_due_at"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    task_execution_id: Mapped[str] = mapped_column(_UUID, ForeignKey("task_executions.id"))
    opening: Mapped[int] = mapped_column(Integer)
    job_request_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("job_requests.id"))
    job_execution_id: Mapped[str] = mapped_column(_UUID)
    organization_id: Mapped[str] = mapped_column(String, default="")
    job_type: Mapped[str] = mapped_column(String)
    task_type: Mapped[str] = mapped_column(String)
    description: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[GateState] = mapped_column(EnumText(GateState))
    version: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    requester: Mapped[str] = mapped_column(String)
    separation_of_duties_note: Mapped[str] = mapped_column(Text, default="")
    artifact_digests: Mapped[list[Any]] = mapped_column(JSON)
    trace_id: Mapped[str] = mapped_column(String(32), default="")
    traceparent: Mapped[str] = mapped_column(String(64), default="")
    sla_step: Mapped[int] = mapped_column(Integer, default=0)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str] = mapped_column(String, default="")
    decided_channel: Mapped[Channel | None] = mapped_column(EnumText(Channel))
    decision_comment: Mapped[str] = mapped_column(Text, default="")
    decision_inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    ledger_length: Mapped[int] = mapped_column(Integer, default=0)
    ledger_head: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApprovalVoteRow(Base):
    """One vote on a gate. Append-only: nothing updates or deletes these rows."""

    __tablename__ = "approval_votes"
    __table_args__ = (
        # one vote per person per gate version: two concurrent votes of one user cannot both land
        UniqueConstraint("gate_id", "version", "user_id", name="uq_approval_votes_gate_version_user"),
        # a retried call finds its first answer (NULL keys are distinct: no key, no protection)
        UniqueConstraint("gate_id", "user_id", "idempotency_key", name="uq_approval_votes_gate_user_key"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    gate_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("approval_gates.id"))
    version: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[str] = mapped_column(String)
    roles: Mapped[list[str]] = mapped_column(JSON)
    decision: Mapped[Vote] = mapped_column(EnumText(Vote))
    comment: Mapped[str] = mapped_column(Text, default="")
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    channel: Mapped[Channel] = mapped_column(EnumText(Channel))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[GateState] = mapped_column(EnumText(GateState))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApprovalLedgerRow(Base):
    """One entry of a gate's audit ledger, hash-chained per gate. Append-only."""

    __tablename__ = "approval_ledger"
    __table_args__ = (UniqueConstraint("gate_id", "sequence", name="uq_approval_ledger_gate_sequence"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    gate_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("approval_gates.id"))
    sequence: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# -- security (migration 0002) -----------------------------------------------------------------------


class ApiTokenRow(Base):
    """An API token the Queen issued: only the SHA-256 of the token is kept, never the token."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_organization_id", "organization_id"),)

    id: Mapped[str] = mapped_column(_UUID, primary_key=True)  # the JWT's `jti`
    organization_id: Mapped[str] = mapped_column(String)
    user_id: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String(16))  # "user" or "ant"
    roles: Mapped[list[str]] = mapped_column(JSON)
    methods: Mapped[list[str]] = mapped_column(JSON)  # Ant tokens: the methods the Ant may serve
    tags: Mapped[list[str]] = mapped_column(JSON)  # Ant tokens: the tags the Ant may offer
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str] = mapped_column(String, default="")


class ConfigRow(Base):
    """A config of an organisation, a job type or a user; a secret one holds AES-GCM ciphertext."""

    __tablename__ = "configs"
    __table_args__ = (
        UniqueConstraint("organization_id", "scope", "owner", "name", name="uq_configs_org_scope_owner_name"),
    )

    id: Mapped[str] = mapped_column(_UUID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(String)
    scope: Mapped[str] = mapped_column(String(16))  # "organization", "job" or "user"
    owner: Mapped[str] = mapped_column(String, default="")  # "", the job type or the user id
    name: Mapped[str] = mapped_column(String)
    secret: Mapped[bool] = mapped_column(Boolean)
    # Plain text, or for a secret base64(nonce + ciphertext + tag) under the key `key_id`.
    value: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(64), default="")
    created_by: Mapped[str] = mapped_column(String, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SecurityAuditRow(Base):
    """A security-relevant action (token issued or revoked, secret set, revealed, deleted). Append-only."""

    __tablename__ = "security_audit"
    __table_args__ = (Index("ix_security_audit_organization_id", "organization_id"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(String)
    actor: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
