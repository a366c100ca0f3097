"""Approval gates, their votes and their hash-chained ledger (rules: queen.domain.approvals).

Every write to a gate is one guarded UPDATE on its `revision` (and, as the caller needs, its state,
version or SLA rung), so of two concurrent writers exactly one succeeds and the other sees None and
re-reads. Votes and ledger entries are append-only; a ledger append takes the gate row's lock (the
UPDATE of its length) first, so entries of one gate are numbered and chained one after the other.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from queen.domain.approvals import (
    GENESIS_HASH,
    Channel,
    GateState,
    LedgerKind,
    Vote,
    entry_body,
    entry_hash,
    gate_key,
)
from queen.domain.errors import NotFound
from queen.domain.states import TaskState
from queen.store._clock import utc_now
from queen.store._json import freeze, freeze_mapping, to_json_list, to_json_object
from queen.store.models import (
    ApprovalGateRow,
    ApprovalLedgerRow,
    ApprovalVoteRow,
    JobExecutionRow,
    JobRequestRow,
    TaskExecutionRow,
)
from queen.store.records import ApprovalGateRecord, ApprovalLedgerRecord, ApprovalVoteRecord

__all__ = [
    "WaitingTask",
    "add_vote",
    "append_entry",
    "create_gate",
    "due_gates",
    "find_vote_by_key",
    "gates",
    "get_gate",
    "latest_gate",
    "latest_gate_of_task",
    "ledger_of",
    "next_due_at",
    "open_gates",
    "orphaned_open_gates",
    "update_gate",
    "votes_of",
    "waiting_tasks_without_gate",
]

_ENTITY = "approval gate"


async def create_gate(
    session: AsyncSession,
    *,
    task_execution_id: str,
    opening: int,
    job_request_id: int,
    job_execution_id: str,
    organization_id: str,
    job_type: str,
    task_type: str,
    description: str,
    policy: Mapping[str, Any],
    requester: str,
    separation_of_duties_note: str,
    artifact_digests: Sequence[Mapping[str, Any]],
    trace_id: str,
    traceparent: str,
    next_due_at: datetime | None,
    deadline_at: datetime | None,
    now: datetime,
) -> tuple[ApprovalGateRecord, bool]:
    """The OPEN gate of (task execution, opening), version 1; `(gate, False)` when a concurrent opener
    created it first (a savepoint keeps the caller's transaction usable)."""
    row = ApprovalGateRow(
        task_execution_id=task_execution_id,
        opening=opening,
        job_request_id=job_request_id,
        job_execution_id=job_execution_id,
        organization_id=organization_id,
        job_type=job_type,
        task_type=task_type,
        description=description,
        state=GateState.OPEN,
        version=1,
        revision=1,
        policy=to_json_object(policy),
        requester=requester,
        separation_of_duties_note=separation_of_duties_note,
        artifact_digests=to_json_list(artifact_digests),
        trace_id=trace_id,
        traceparent=traceparent,
        sla_step=0,
        next_due_at=next_due_at,
        deadline_at=deadline_at,
        decided_by="",
        decided_channel=None,
        decision_comment="",
        decision_inputs={},
        ledger_length=0,
        ledger_head="",
        created_at=now,
        updated_at=now,
        decided_at=None,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = await _gate_of_opening(session, task_execution_id, opening)
        if existing is not None:
            return existing, False
        raise
    return _gate(row), True


async def _gate_of_opening(
    session: AsyncSession, task_execution_id: str, opening: int
) -> ApprovalGateRecord | None:
    stmt = _select_gates().where(
        ApprovalGateRow.task_execution_id == task_execution_id, ApprovalGateRow.opening == opening
    )
    row = (await session.scalars(stmt)).one_or_none()
    return None if row is None else _gate(row)


async def get_gate(session: AsyncSession, gate_id: int) -> ApprovalGateRecord:
    row = await session.get(ApprovalGateRow, gate_id, populate_existing=True)
    if row is None:
        raise NotFound(f"{_ENTITY} {gate_id} does not exist")
    return _gate(row)


async def latest_gate_of_task(session: AsyncSession, task_execution_id: str) -> ApprovalGateRecord | None:
    """The task execution's latest opening, or None."""
    stmt = (
        _select_gates()
        .where(ApprovalGateRow.task_execution_id == task_execution_id)
        .order_by(ApprovalGateRow.opening.desc())
        .limit(1)
    )
    row = (await session.scalars(stmt)).one_or_none()
    return None if row is None else _gate(row)


async def latest_gate(
    session: AsyncSession, job_request_id: int, task_type: str, *, organization_id: str | None = None
) -> ApprovalGateRecord | None:
    """The newest gate of the request's task type (of any execution), or None; with `organization_id`,
    None also for another organisation's gate."""
    stmt = _select_gates().where(
        ApprovalGateRow.job_request_id == job_request_id, ApprovalGateRow.task_type == task_type
    )
    if organization_id is not None:
        stmt = stmt.where(ApprovalGateRow.organization_id == organization_id)
    row = (await session.scalars(stmt.order_by(ApprovalGateRow.id.desc()).limit(1))).one_or_none()
    return None if row is None else _gate(row)


async def open_gates(
    session: AsyncSession,
    *,
    organization_id: str | None = None,
    job_request_id: int | None = None,
    limit: int = 1000,
) -> list[ApprovalGateRecord]:
    """OPEN gates whose task still waits, oldest first (an OPEN gate whose task went away is not
    pending any more, whether or not the reconciliation has closed it yet)."""
    stmt = (
        _select_gates()
        .join(TaskExecutionRow, TaskExecutionRow.id == ApprovalGateRow.task_execution_id)
        .where(
            ApprovalGateRow.state == GateState.OPEN,
            TaskExecutionRow.task_state == TaskState.MANUAL_APPROVAL_REQUIRED,
        )
    )
    if organization_id is not None:
        stmt = stmt.where(ApprovalGateRow.organization_id == organization_id)
    if job_request_id is not None:
        stmt = stmt.where(ApprovalGateRow.job_request_id == job_request_id)
    stmt = stmt.order_by(ApprovalGateRow.created_at, ApprovalGateRow.id).limit(limit)
    return [_gate(row) for row in (await session.scalars(stmt)).all()]


async def gates(
    session: AsyncSession,
    *,
    organization_id: str | None = None,
    job_request_id: int | None = None,
    states: Collection[GateState] | None = None,
) -> list[ApprovalGateRecord]:
    """Gates of every state (for the ledger's export and verification), in creation order."""
    stmt = _select_gates()
    if organization_id is not None:
        stmt = stmt.where(ApprovalGateRow.organization_id == organization_id)
    if job_request_id is not None:
        stmt = stmt.where(ApprovalGateRow.job_request_id == job_request_id)
    if states is not None:
        stmt = stmt.where(ApprovalGateRow.state.in_(sorted(states)))
    return [_gate(row) for row in (await session.scalars(stmt.order_by(ApprovalGateRow.id))).all()]


async def orphaned_open_gates(session: AsyncSession, limit: int = 100) -> list[ApprovalGateRecord]:
    """OPEN gates whose task no longer waits (its job was cancelled or restarted): to be closed."""
    stmt = (
        _select_gates()
        .join(TaskExecutionRow, TaskExecutionRow.id == ApprovalGateRow.task_execution_id)
        .where(
            ApprovalGateRow.state == GateState.OPEN,
            TaskExecutionRow.task_state != TaskState.MANUAL_APPROVAL_REQUIRED,
        )
        .order_by(ApprovalGateRow.id)
        .limit(limit)
    )
    return [_gate(row) for row in (await session.scalars(stmt)).all()]


@dataclass(frozen=True, slots=True)
class WaitingTask:
    """A MANUAL task waiting at its gate with no OPEN gate record (its opener did not record one)."""

    task_execution_id: str
    job_request_id: int
    task_type: str


async def waiting_tasks_without_gate(
    session: AsyncSession,
    *,
    organization_id: str | None = None,
    job_request_id: int | None = None,
    limit: int = 100,
) -> list[WaitingTask]:
    """Tasks in MANUAL_APPROVAL_REQUIRED without an OPEN gate, oldest first."""
    has_open_gate = exists().where(
        ApprovalGateRow.task_execution_id == TaskExecutionRow.id, ApprovalGateRow.state == GateState.OPEN
    )
    stmt = (
        select(TaskExecutionRow.id, JobExecutionRow.job_request_id, TaskExecutionRow.task_type)
        .join(JobExecutionRow, JobExecutionRow.id == TaskExecutionRow.job_execution_id)
        .where(TaskExecutionRow.task_state == TaskState.MANUAL_APPROVAL_REQUIRED, ~has_open_gate)
    )
    if organization_id is not None:
        stmt = stmt.join(JobRequestRow, JobRequestRow.id == JobExecutionRow.job_request_id).where(
            JobRequestRow.organization_id == organization_id
        )
    if job_request_id is not None:
        stmt = stmt.where(JobExecutionRow.job_request_id == job_request_id)
    stmt = stmt.order_by(TaskExecutionRow.started_at, TaskExecutionRow.id).limit(limit)
    rows = (await session.execute(stmt)).all()
    return [WaitingTask(task_id, request_id, task_type) for task_id, request_id, task_type in rows]


async def next_due_at(session: AsyncSession) -> datetime | None:
    """When the earliest SLA rung of any OPEN gate is due, or None."""
    stmt = (
        select(ApprovalGateRow.next_due_at)
        .where(ApprovalGateRow.state == GateState.OPEN, ApprovalGateRow.next_due_at.is_not(None))
        .order_by(ApprovalGateRow.next_due_at)
        .limit(1)
    )
    found: datetime | None = await session.scalar(stmt)
    return found


async def due_gates(session: AsyncSession, now: datetime, limit: int = 100) -> list[ApprovalGateRecord]:
    """OPEN gates whose next SLA rung is due at `now`, earliest first."""
    stmt = (
        _select_gates()
        .where(ApprovalGateRow.state == GateState.OPEN, ApprovalGateRow.next_due_at <= now)
        .order_by(ApprovalGateRow.next_due_at, ApprovalGateRow.id)
        .limit(limit)
    )
    return [_gate(row) for row in (await session.scalars(stmt)).all()]


async def update_gate(
    session: AsyncSession,
    gate_id: int,
    *,
    expected_revision: int,
    expected_state: GateState = GateState.OPEN,
    expected_version: int | None = None,
    expected_sla_step: int | None = None,
    now: datetime | None = None,
    **values: Any,
) -> ApprovalGateRecord | None:
    """Write `values` and bump the revision, only if the gate is still as the caller read it; None when
    another writer got there first (the caller re-reads and decides again)."""
    conditions = [
        ApprovalGateRow.id == gate_id,
        ApprovalGateRow.revision == expected_revision,
        ApprovalGateRow.state == expected_state,
    ]
    if expected_version is not None:
        conditions.append(ApprovalGateRow.version == expected_version)
    if expected_sla_step is not None:
        conditions.append(ApprovalGateRow.sla_step == expected_sla_step)
    changes = dict(values)
    for key in ("policy", "decision_inputs"):
        if key in changes:
            changes[key] = to_json_object(changes[key])
    if "artifact_digests" in changes:
        changes["artifact_digests"] = to_json_list(changes["artifact_digests"])
    stmt = (
        update(ApprovalGateRow)
        .where(and_(*conditions))
        .values(revision=expected_revision + 1, updated_at=now or utc_now(), **changes)
        .returning(ApprovalGateRow)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    row = (await session.execute(stmt)).scalars().one_or_none()
    return None if row is None else _gate(row)


# -- votes ---------------------------------------------------------------------------------------------


async def add_vote(
    session: AsyncSession,
    *,
    gate_id: int,
    version: int,
    user_id: str,
    roles: Collection[str],
    decision: Vote,
    comment: str,
    inputs: Mapping[str, Any],
    channel: Channel,
    idempotency_key: str | None,
    outcome: GateState,
    now: datetime,
) -> ApprovalVoteRecord:
    """Record one vote. IntegrityError (DuplicateKey out of the transaction, which is then rolled back)
    when the user already voted on this version or used this idempotency key on this gate."""
    row = ApprovalVoteRow(
        gate_id=gate_id,
        version=version,
        user_id=user_id,
        roles=sorted(roles),
        decision=decision,
        comment=comment,
        inputs=to_json_object(inputs),
        channel=channel,
        idempotency_key=idempotency_key,
        outcome=outcome,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return _vote(row)


async def votes_of(session: AsyncSession, gate_id: int) -> list[ApprovalVoteRecord]:
    """The gate's votes of every version, oldest first."""
    stmt = (
        select(ApprovalVoteRow)
        .where(ApprovalVoteRow.gate_id == gate_id)
        .order_by(ApprovalVoteRow.id)
        .execution_options(populate_existing=True)
    )
    return [_vote(row) for row in (await session.scalars(stmt)).all()]


async def find_vote_by_key(
    session: AsyncSession, gate_id: int, user_id: str, idempotency_key: str
) -> ApprovalVoteRecord | None:
    stmt = select(ApprovalVoteRow).where(
        ApprovalVoteRow.gate_id == gate_id,
        ApprovalVoteRow.user_id == user_id,
        ApprovalVoteRow.idempotency_key == idempotency_key,
    )
    row = (await session.scalars(stmt)).one_or_none()
    return None if row is None else _vote(row)


# -- the ledger ----------------------------------------------------------------------------------------


async def append_entry(
    session: AsyncSession,
    gate_id: int,
    kind: LedgerKind,
    actor: str,
    data: Mapping[str, Any],
    *,
    now: datetime | None = None,
) -> ApprovalLedgerRecord:
    """Append one entry to the gate's chain: numbered after the last, hashed over the last's hash.

    The gate row's length is incremented first, which holds its row lock (PostgreSQL) until the caller
    commits: concurrent appends to one gate queue instead of both taking the same number.
    """
    now = now or utc_now()
    claimed = (
        await session.execute(
            update(ApprovalGateRow)
            .where(ApprovalGateRow.id == gate_id)
            .values(ledger_length=ApprovalGateRow.ledger_length + 1)
            .returning(
                ApprovalGateRow.ledger_length,
                ApprovalGateRow.ledger_head,
                ApprovalGateRow.task_execution_id,
                ApprovalGateRow.opening,
            )
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if claimed is None:
        raise NotFound(f"{_ENTITY} {gate_id} does not exist")
    sequence, previous, task_execution_id, opening = claimed
    previous = previous or GENESIS_HASH
    plain = to_json_object(data)
    body = entry_body(
        gate=gate_key(task_execution_id, opening),
        sequence=sequence,
        kind=kind.value,
        actor=actor,
        created_at=now,
        data=plain,
    )
    digest = entry_hash(previous, body)
    row = ApprovalLedgerRow(
        gate_id=gate_id,
        sequence=sequence,
        kind=kind.value,
        actor=actor,
        data=plain,
        prev_hash=previous,
        hash=digest,
        created_at=now,
    )
    session.add(row)
    await session.execute(
        update(ApprovalGateRow)
        .where(ApprovalGateRow.id == gate_id)
        .values(ledger_head=digest)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return _entry(row)


async def ledger_of(session: AsyncSession, gate_id: int) -> list[ApprovalLedgerRecord]:
    """The gate's entries in order."""
    stmt = (
        select(ApprovalLedgerRow)
        .where(ApprovalLedgerRow.gate_id == gate_id)
        .order_by(ApprovalLedgerRow.sequence)
        .execution_options(populate_existing=True)
    )
    return [_entry(row) for row in (await session.scalars(stmt)).all()]


# -- rows to records -----------------------------------------------------------------------------------


def _select_gates() -> Select[ApprovalGateRow]:
    return select(ApprovalGateRow).execution_options(populate_existing=True)


def _gate(row: ApprovalGateRow) -> ApprovalGateRecord:
    return ApprovalGateRecord(
        id=row.id,
        task_execution_id=row.task_execution_id,
        opening=row.opening,
        job_request_id=row.job_request_id,
        job_execution_id=row.job_execution_id,
        organization_id=row.organization_id,
        job_type=row.job_type,
        task_type=row.task_type,
        description=row.description,
        state=row.state,
        version=row.version,
        revision=row.revision,
        policy=freeze_mapping(row.policy),
        requester=row.requester,
        separation_of_duties_note=row.separation_of_duties_note,
        artifact_digests=tuple(freeze(item) for item in row.artifact_digests),
        trace_id=row.trace_id,
        traceparent=row.traceparent,
        sla_step=row.sla_step,
        next_due_at=row.next_due_at,
        deadline_at=row.deadline_at,
        decided_by=row.decided_by,
        decided_channel=row.decided_channel,
        decision_comment=row.decision_comment,
        decision_inputs=freeze_mapping(row.decision_inputs),
        ledger_length=row.ledger_length,
        ledger_head=row.ledger_head,
        created_at=row.created_at,
        updated_at=row.updated_at,
        decided_at=row.decided_at,
    )


def _vote(row: ApprovalVoteRow) -> ApprovalVoteRecord:
    return ApprovalVoteRecord(
        id=row.id,
        gate_id=row.gate_id,
        version=row.version,
        user_id=row.user_id,
        roles=tuple(row.roles),
        decision=row.decision,
        comment=row.comment,
        inputs=freeze_mapping(row.inputs),
        channel=row.channel,
        idempotency_key=row.idempotency_key,
        outcome=row.outcome,
        created_at=row.created_at,
    )


def _entry(row: ApprovalLedgerRow) -> ApprovalLedgerRecord:
    return ApprovalLedgerRecord(
        id=row.id,
        gate_id=row.gate_id,
        sequence=row.sequence,
        kind=row.kind,
        actor=row.actor,
        data=freeze_mapping(row.data),
        prev_hash=row.prev_hash,
        hash=row.hash,
        created_at=row.created_at,
    )
