"""Initial schema: job definitions, job requests, job and task executions, events, artifacts, approvals.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Plain SQLAlchemy types only (no imports from queen.store), so this file keeps meaning the same schema
however the models change later. Timestamps are `timestamptz` on PostgreSQL and naive-UTC text on SQLite
(the models' UTCDateTime makes both aware). Numeric ids are BIGSERIAL on PostgreSQL and INTEGER PRIMARY
KEY (the rowid) on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UUID = sa.String(36)
_STATE = sa.String(32)


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "job_definitions",
        sa.Column("id", _UUID, nullable=False),
        sa.Column("organization_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("job_type", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("yaml", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("cron_trigger", sa.String(), nullable=False),
        sa.Column("max_concurrency", sa.Integer(), nullable=True),
        sa.Column("methods", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", _timestamp(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_definitions"),
        sa.UniqueConstraint(
            "organization_id", "job_type", "version", name="uq_job_definitions_org_type_version"
        ),
    )

    op.create_table(
        "job_requests",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("parent_id", _big_id(), nullable=True),
        sa.Column("user_key", sa.String(), nullable=True),
        sa.Column("job_definition_id", _UUID, nullable=False),
        sa.Column("job_type", sa.String(), nullable=False),
        sa.Column("job_version", sa.Integer(), nullable=False),
        sa.Column("job_state", _STATE, nullable=False),
        sa.Column("job_priority", sa.Integer(), nullable=False),
        sa.Column("job_group", sa.String(), nullable=False),
        sa.Column("organization_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("scheduled_at", _timestamp(), nullable=True),
        sa.Column("cron_triggered", sa.Boolean(), nullable=False),
        sa.Column("retried", sa.Integer(), nullable=False),
        sa.Column("schedule_attempts", sa.Integer(), nullable=False),
        sa.Column("wait_reason", sa.Text(), nullable=False),
        sa.Column("error_code", sa.String(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("job_execution_id", _UUID, nullable=True),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("root_span_id", sa.String(16), nullable=False),
        sa.Column("paused_until", _timestamp(), nullable=True),
        sa.Column("restart_mode", sa.String(8), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("started_at", _timestamp(), nullable=True),
        sa.Column("ended_at", _timestamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_job_requests"),
        sa.ForeignKeyConstraint(
            ["job_definition_id"],
            ["job_definitions.id"],
            name="fk_job_requests_job_definition_id_job_definitions",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["job_requests.id"], name="fk_job_requests_parent_id_job_requests"
        ),
    )
    # NULLs are distinct in unique indexes on both databases: unique per organization when not null.
    op.create_index(
        "uq_job_requests_org_user_key", "job_requests", ["organization_id", "user_key"], unique=True
    )
    op.create_index(
        "ix_job_requests_scheduler",
        "job_requests",
        ["job_state", "scheduled_at", "job_priority", "created_at"],
    )
    op.create_index("ix_job_requests_type_state", "job_requests", ["job_type", "job_state"])
    op.create_index("ix_job_requests_org_id", "job_requests", ["organization_id", "id"])
    op.create_index("ix_job_requests_parent_id", "job_requests", ["parent_id"])

    op.create_table(
        "job_executions",
        sa.Column("id", _UUID, nullable=False),
        sa.Column("job_request_id", _big_id(), nullable=False),
        sa.Column("job_type", sa.String(), nullable=False),
        sa.Column("job_version", sa.Integer(), nullable=False),
        sa.Column("job_state", _STATE, nullable=False),
        sa.Column("exit_code", sa.String(), nullable=False),
        sa.Column("exit_message", sa.Text(), nullable=False),
        sa.Column("error_code", sa.String(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("contexts", sa.JSON(), nullable=False),
        sa.Column("cursor", sa.JSON(), nullable=True),
        sa.Column("started_at", _timestamp(), nullable=False),
        sa.Column("ended_at", _timestamp(), nullable=True),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("cpu_secs", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_executions"),
        sa.ForeignKeyConstraint(
            ["job_request_id"], ["job_requests.id"], name="fk_job_executions_job_request_id_job_requests"
        ),
    )
    op.create_index("ix_job_executions_job_request_id", "job_executions", ["job_request_id"])

    op.create_table(
        "task_executions",
        sa.Column("id", _UUID, nullable=False),
        sa.Column("job_execution_id", _UUID, nullable=False),
        sa.Column("task_type", sa.String(), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("task_state", _STATE, nullable=False),
        sa.Column("task_order", sa.Integer(), nullable=False),
        sa.Column("allow_failure", sa.Boolean(), nullable=False),
        sa.Column("exit_code", sa.String(), nullable=False),
        sa.Column("exit_message", sa.Text(), nullable=False),
        sa.Column("error_code", sa.String(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("failed_command", sa.Text(), nullable=False),
        sa.Column("ant_id", sa.String(), nullable=False),
        sa.Column("ant_host", sa.String(), nullable=False),
        sa.Column("retried", sa.Integer(), nullable=False),
        sa.Column("contexts", sa.JSON(), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("stdout", sa.JSON(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("cost_factor", sa.Float(), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("next_run_at", _timestamp(), nullable=True),
        sa.Column("deadline_at", _timestamp(), nullable=True),
        sa.Column("started_at", _timestamp(), nullable=True),
        sa.Column("ended_at", _timestamp(), nullable=True),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_task_executions"),
        sa.ForeignKeyConstraint(
            ["job_execution_id"],
            ["job_executions.id"],
            name="fk_task_executions_job_execution_id_job_executions",
        ),
        sa.UniqueConstraint("job_execution_id", "task_type", name="uq_task_executions_execution_task_type"),
    )
    op.create_index("ix_task_executions_task_state", "task_executions", ["task_state"])

    op.create_table(
        "events",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("job_request_id", _big_id(), nullable=False),
        sa.Column("task_execution_id", _UUID, nullable=True),
        sa.Column("task_type", sa.String(), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("from_state", _STATE, nullable=True),
        sa.Column("to_state", _STATE, nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(
            ["job_request_id"], ["job_requests.id"], name="fk_events_job_request_id_job_requests"
        ),
    )
    op.create_index("ix_events_request_id", "events", ["job_request_id", "id"])

    op.create_table(
        "artifacts",
        sa.Column("id", _UUID, nullable=False),
        sa.Column("organization_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("job_request_id", _big_id(), nullable=True),
        sa.Column("job_execution_id", _UUID, nullable=True),
        sa.Column("task_execution_id", _UUID, nullable=True),
        sa.Column("task_type", sa.String(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", _STATE, nullable=False),
        sa.Column("bucket", sa.String(), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_length", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("expires_at", _timestamp(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("deleted_at", _timestamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
        sa.ForeignKeyConstraint(
            ["job_request_id"], ["job_requests.id"], name="fk_artifacts_job_request_id_job_requests"
        ),
        sa.ForeignKeyConstraint(
            ["job_execution_id"], ["job_executions.id"], name="fk_artifacts_job_execution_id_job_executions"
        ),
        sa.ForeignKeyConstraint(
            ["task_execution_id"],
            ["task_executions.id"],
            name="fk_artifacts_task_execution_id_task_executions",
        ),
        sa.UniqueConstraint("bucket", "key", name="uq_artifacts_bucket_key"),
    )
    op.create_index("ix_artifacts_org_created", "artifacts", ["organization_id", "created_at"])
    op.create_index(
        "ix_artifacts_org_request", "artifacts", ["organization_id", "job_request_id", "created_at"]
    )
    op.create_index("ix_artifacts_expires_at", "artifacts", ["expires_at"])
    op.create_index("ix_artifacts_task_execution_id", "artifacts", ["task_execution_id"])

    op.create_table(
        "approval_gates",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("task_execution_id", _UUID, nullable=False),
        sa.Column("opening", sa.Integer(), nullable=False),
        sa.Column("job_request_id", _big_id(), nullable=False),
        sa.Column("job_execution_id", _UUID, nullable=False),
        sa.Column("organization_id", sa.String(), nullable=False),
        sa.Column("job_type", sa.String(), nullable=False),
        sa.Column("task_type", sa.String(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("state", _STATE, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("requester", sa.String(), nullable=False),
        sa.Column("separation_of_duties_note", sa.Text(), nullable=False),
        sa.Column("artifact_digests", sa.JSON(), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("traceparent", sa.String(64), nullable=False),
        sa.Column("sla_step", sa.Integer(), nullable=False),
        sa.Column("next_due_at", _timestamp(), nullable=True),
        sa.Column("deadline_at", _timestamp(), nullable=True),
        sa.Column("decided_by", sa.String(), nullable=False),
        sa.Column("decided_channel", _STATE, nullable=True),
        sa.Column("decision_comment", sa.Text(), nullable=False),
        sa.Column("decision_inputs", sa.JSON(), nullable=False),
        sa.Column("ledger_length", sa.Integer(), nullable=False),
        sa.Column("ledger_head", sa.String(64), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("decided_at", _timestamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_approval_gates"),
        sa.ForeignKeyConstraint(
            ["task_execution_id"],
            ["task_executions.id"],
            name="fk_approval_gates_task_execution_id_task_executions",
        ),
        sa.ForeignKeyConstraint(
            ["job_request_id"], ["job_requests.id"], name="fk_approval_gates_job_request_id_job_requests"
        ),
        sa.UniqueConstraint("task_execution_id", "opening", name="uq_approval_gates_task_opening"),
    )
    op.create_index("ix_approval_gates_request_task", "approval_gates", ["job_request_id", "task_type"])
    op.create_index(
        "ix_approval_gates_org_state", "approval_gates", ["organization_id", "state", "created_at"]
    )
    op.create_index("ix_approval_gates_state_due", "approval_gates", ["state", "next_due_at"])

    op.create_table(
        "approval_votes",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("gate_id", _big_id(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("decision", _STATE, nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("channel", _STATE, nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("outcome", _STATE, nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_approval_votes"),
        sa.ForeignKeyConstraint(
            ["gate_id"], ["approval_gates.id"], name="fk_approval_votes_gate_id_approval_gates"
        ),
        sa.UniqueConstraint("gate_id", "version", "user_id", name="uq_approval_votes_gate_version_user"),
        sa.UniqueConstraint("gate_id", "user_id", "idempotency_key", name="uq_approval_votes_gate_user_key"),
    )

    op.create_table(
        "approval_ledger",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("gate_id", _big_id(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_approval_ledger"),
        sa.ForeignKeyConstraint(
            ["gate_id"], ["approval_gates.id"], name="fk_approval_ledger_gate_id_approval_gates"
        ),
        sa.UniqueConstraint("gate_id", "sequence", name="uq_approval_ledger_gate_sequence"),
    )


def downgrade() -> None:
    op.drop_table("approval_ledger")
    op.drop_table("approval_votes")
    op.drop_table("approval_gates")
    op.drop_table("artifacts")
    op.drop_table("events")
    op.drop_table("task_executions")
    op.drop_table("job_executions")
    op.drop_table("job_requests")
    op.drop_table("job_definitions")
