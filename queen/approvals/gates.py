"""Gate records in the caller's transaction: opening, adopting, invalidating, closing and cancelling.

Nothing here commits or announces: callers (the supervisor, `ApprovalService`, `GateTimers`) own the
transaction and, after it committed, tell the notifier and launch the supervisor that follows the gate's
route. Closing a gate is one transaction with its task's outcome and the request's return to EXECUTING,
so the supervisor launched afterwards reads the outcome from the task row like any other result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from queen.domain.approvals import (
    Channel,
    GateClosed,
    GateState,
    InputValue,
    LedgerKind,
    ladder,
    policy_to_json,
    separation_of_duties_note,
)
from queen.domain.errors import FailedPrecondition
from queen.domain.flow import ERR_APPROVAL_TIMED_OUT
from queen.domain.job_definition import ApprovalPolicy, TaskDefinition, TaskMethod
from queen.domain.states import JobState, TaskState
from queen.store import JobRequestRecord, TaskExecutionRecord, definitions, executions, requests
from queen.store import approvals as store
from queen.store import artifacts as artifact_records
from queen.store._clock import utc_now
from queen.store.records import ApprovalGateRecord, ArtifactKind

__all__ = [
    "adopt_waiting",
    "cancel_gate",
    "cancel_gates",
    "close_values",
    "finish_gate",
    "invalidate",
    "open_gate",
]

log = structlog.get_logger(__name__)

# Artifacts approvers are shown (logs and caches are not what a decision is about).
_SHOWN_KINDS = frozenset({ArtifactKind.TASK, ArtifactKind.USER})
_MAX_DIGESTS = 1000
_RETRIES = 3


async def open_gate(
    session: AsyncSession,
    request: JobRequestRecord,
    task_record: TaskExecutionRecord,
    task_definition: TaskDefinition,
    now: datetime,
) -> ApprovalGateRecord:
    """Record the gate of a MANUAL task that has just become MANUAL_APPROVAL_REQUIRED (in the same
    transaction): its policy, version 1, the artifacts of the job so far with their digests, the trace,
    the requester, the SLA ladder's first due time, and the ledger's REQUESTED entry.

    Idempotent: an OPEN gate of the task execution is returned as it is. A task that waits again after
    its earlier gate closed (a retry) gets the next opening.
    """
    gate, _ = await _open(session, request, task_record, task_definition, now)
    return gate


async def _open(
    session: AsyncSession,
    request: JobRequestRecord,
    task_record: TaskExecutionRecord,
    task_definition: TaskDefinition,
    now: datetime,
) -> tuple[ApprovalGateRecord, bool]:
    """`open_gate`, and whether this call created the gate."""
    latest = await store.latest_gate_of_task(session, task_record.id)
    if latest is not None and latest.state.is_open:
        return latest, False
    policy = task_definition.approval_policy or ApprovalPolicy()
    steps = ladder(policy)
    closing = next((step for step in steps if step.closes), None)
    digests = await _artifact_digests(session, request)
    trace_id = request.trace_id
    span_id = task_record.span_id or request.root_span_id
    traceparent = f"00-{trace_id}-{span_id}-01" if trace_id and span_id else ""
    note = separation_of_duties_note(policy, authenticated=True)
    snapshot = policy_to_json(policy)
    gate, created = await store.create_gate(
        session,
        task_execution_id=task_record.id,
        opening=1 if latest is None else latest.opening + 1,
        job_request_id=request.id,
        job_execution_id=task_record.job_execution_id,
        organization_id=request.organization_id,
        job_type=request.job_type,
        task_type=task_record.task_type,
        description=task_definition.description,
        policy=snapshot,
        requester=request.user_id,
        separation_of_duties_note=note,
        artifact_digests=digests,
        trace_id=trace_id,
        traceparent=traceparent,
        next_due_at=now + steps[0].after if steps else None,
        deadline_at=now + closing.after if closing is not None else None,
        now=now,
    )
    if not created:
        return gate, False
    await store.append_entry(
        session,
        gate.id,
        LedgerKind.REQUESTED,
        request.user_id,
        {
            "job_request_id": request.id,
            "job_type": request.job_type,
            "task_type": task_record.task_type,
            "task_execution_id": task_record.id,
            "opening": gate.opening,
            "version": gate.version,
            "requester": request.user_id,
            "description": task_definition.description,
            "policy": snapshot,
            "separation_of_duties_note": note,
            "artifact_digests": digests,
            "trace_id": trace_id,
            "traceparent": traceparent,
            "next_sla_at": gate.next_due_at,
            "deadline_at": gate.deadline_at,
        },
        now=now,
    )
    log.info("approval_gate_opened", job_request_id=request.id, task_type=task_record.task_type)
    return await store.get_gate(session, gate.id), True


async def _artifact_digests(session: AsyncSession, request: JobRequestRecord) -> list[dict[str, Any]]:
    """The request's artifacts as they are now, oldest first: what approvers are shown."""
    found = await artifact_records.list_artifacts(
        session, request.organization_id, job_request_id=request.id, limit=_MAX_DIGESTS
    )
    return [
        {
            "artifact_id": artifact.id,
            "name": artifact.name,
            "sha256": artifact.sha256,
            "task_type": artifact.task_type,
        }
        for artifact in reversed(found)
        if artifact.kind in _SHOWN_KINDS
    ]


async def adopt_waiting(
    session: AsyncSession,
    *,
    organization_id: str | None = None,
    job_request_id: int | None = None,
    limit: int = 100,
) -> list[ApprovalGateRecord]:
    """Open the gate of every MANUAL task that waits without one, as of when the task started waiting.

    The safety net behind the supervisor's `open_gate`: a task that reached MANUAL_APPROVAL_REQUIRED
    without its gate recorded (an older Queen, a crash between two transactions) is never left without
    one. Its SLA counts from when the task started waiting, so late adoption does not extend deadlines.
    Returns the gates this call opened (the caller announces their requests after committing).
    """
    opened = []
    for waiting in await store.waiting_tasks_without_gate(
        session, organization_id=organization_id, job_request_id=job_request_id, limit=limit
    ):
        request = await requests.get_request(session, waiting.job_request_id)
        task = await executions.get_task_execution(session, waiting.task_execution_id)
        definition = (await definitions.get_definition(session, request.job_definition_id)).definition()
        task_definition = definition.task(task.task_type) or TaskDefinition(
            task.task_type, method=TaskMethod.MANUAL
        )
        gate, created = await _open(session, request, task, task_definition, task.started_at or utc_now())
        if created:
            opened.append(gate)
            log.warning("approval_gate_adopted", job_request_id=request.id, task_type=task.task_type)
    return opened


async def invalidate(
    session: AsyncSession, request_id: int, *task_types: str, reason: str = "", now: datetime | None = None
) -> list[ApprovalGateRecord]:
    """An upstream task of the request ran again while its gates wait: every OPEN gate of the request
    (except those of `task_types` themselves) moves to the next version with the artifacts as they are
    now, so votes cast on what was shown before no longer count. Returns the gates changed; the caller
    announces the request after committing."""
    now = now or utc_now()
    request = await requests.get_request(session, request_id)
    digests = await _artifact_digests(session, request)
    changed = []
    for gate in await store.gates(session, job_request_id=request_id, states={GateState.OPEN}):
        if gate.task_type in task_types:
            continue
        updated = await _write_open(
            session, gate, now, lambda g: {"version": g.version + 1, "artifact_digests": digests}
        )
        if updated is None:
            continue
        await store.append_entry(
            session,
            gate.id,
            LedgerKind.INVALIDATED,
            "formicary",
            {
                "previous_version": updated.version - 1,
                "version": updated.version,
                "rerun_tasks": list(task_types),
                "reason": reason,
                "artifact_digests": digests,
            },
            now=now,
        )
        changed.append(updated)
        log.info("approval_gate_invalidated", job_request_id=request_id, task_type=gate.task_type)
    return changed


def close_values(
    outcome: GateState,
    *,
    decided_by: str,
    channel: Channel | None,
    comment: str,
    inputs: Mapping[str, InputValue],
    now: datetime,
) -> dict[str, Any]:
    """The gate columns that record its closing (for `store.update_gate`)."""
    return {
        "state": outcome,
        "decided_by": decided_by,
        "decided_channel": channel,
        "decision_comment": comment,
        "decision_inputs": dict(inputs),
        "decided_at": now,
        "next_due_at": None,
    }


async def finish_gate(
    session: AsyncSession,
    gate: ApprovalGateRecord,
    *,
    now: datetime,
    detail: Mapping[str, Any] | None = None,
) -> bool:
    """Carry a gate just closed (APPROVED, REJECTED or TIMED_OUT, by `store.update_gate` with
    `close_values`) over to its task and request, and write the ledger's closing entry.

    The task ends APPROVED / REJECTED (exit code alike) or FAILED with exit code TIMED_OUT and
    ERR_APPROVAL_TIMED_OUT, with the decision's inputs in its contexts (they become variables of the
    tasks that follow); the request goes back from MANUAL_APPROVAL_REQUIRED to EXECUTING. Returns True
    when the caller must launch the request's supervisor after committing (False for a paused request,
    which its resume continues). GateClosed when the task or request went elsewhere meanwhile.
    """
    outcome = gate.state
    task = await executions.get_task_execution(session, gate.task_execution_id)
    if task.task_state is not TaskState.MANUAL_APPROVAL_REQUIRED:
        raise GateClosed(f"its task is {task.task_state}")
    contexts = {**task.contexts, **gate.decision_inputs}
    by = gate.decided_by
    said = f": {gate.decision_comment}" if gate.decision_comment else ""
    if outcome is GateState.APPROVED:
        await executions.transition_task(
            session,
            task.id,
            task.task_state,
            TaskState.APPROVED,
            message=f"approved by {by}",
            exit_code="APPROVED",
            exit_message=f"approved by {by}{said}",
            contexts=contexts,
            ended_at=now,
            now=now,
        )
    elif outcome is GateState.REJECTED:
        await executions.transition_task(
            session,
            task.id,
            task.task_state,
            TaskState.REJECTED,
            message=f"rejected by {by}",
            exit_code="REJECTED",
            exit_message=f"rejected by {by}{said}",
            error_message=gate.decision_comment or f"rejected by {by}",
            contexts=contexts,
            ended_at=now,
            now=now,
        )
    elif outcome is GateState.TIMED_OUT:
        await executions.transition_task(
            session,
            task.id,
            task.task_state,
            TaskState.FAILED,
            message="approval timed out",
            exit_code="TIMED_OUT",
            exit_message=gate.decision_comment,
            error_code=ERR_APPROVAL_TIMED_OUT,
            error_message=gate.decision_comment or "no decision before the deadline",
            contexts=contexts,
            ended_at=now,
            now=now,
        )
    else:
        raise ValueError(f"finish_gate needs an APPROVED, REJECTED or TIMED_OUT gate, not {outcome}")
    request = await requests.get_request(session, gate.job_request_id)
    if request.job_state is JobState.MANUAL_APPROVAL_REQUIRED:
        await requests.transition_request(
            session,
            request.id,
            JobState.MANUAL_APPROVAL_REQUIRED,
            JobState.EXECUTING,
            message=f'gate "{gate.task_type}" {outcome.value.lower().replace("_", " ")} by {by}',
            now=now,
        )
        launch = True
    elif request.job_state is JobState.PAUSED:
        launch = False
    else:
        raise GateClosed(f"its job request is {request.job_state}")
    kind = LedgerKind.TIMED_OUT if outcome is GateState.TIMED_OUT else LedgerKind.DECIDED
    await store.append_entry(
        session,
        gate.id,
        kind,
        by,
        {
            "outcome": outcome.value,
            "decided_by": by,
            "channel": gate.decided_channel.value if gate.decided_channel else "",
            "comment": gate.decision_comment,
            "inputs": dict(gate.decision_inputs),
            "version": gate.version,
            "artifact_digests": list(gate.artifact_digests),
            "trace_id": gate.trace_id,
            "traceparent": gate.traceparent,
            **(detail or {}),
        },
        now=now,
    )
    log.info(
        "approval_gate_closed",
        job_request_id=gate.job_request_id,
        task_type=gate.task_type,
        outcome=outcome.value,
        decided_by=by,
    )
    return launch


async def cancel_gate(
    session: AsyncSession, gate: ApprovalGateRecord, reason: str, *, now: datetime | None = None
) -> ApprovalGateRecord | None:
    """Close an OPEN gate CANCELLED (its job was cancelled, or its task no longer waits); None when it
    was not open any more. The task and request are the caller's business."""
    now = now or utc_now()
    closing = close_values(
        GateState.CANCELLED, decided_by="", channel=None, comment=reason, inputs={}, now=now
    )
    updated = await _write_open(session, gate, now, lambda _gate: closing)
    if updated is None:
        return None
    await store.append_entry(
        session,
        gate.id,
        LedgerKind.CANCELLED,
        "formicary",
        {"outcome": GateState.CANCELLED.value, "reason": reason, "version": updated.version},
        now=now,
    )
    log.info("approval_gate_cancelled", job_request_id=gate.job_request_id, task_type=gate.task_type)
    return updated


async def _write_open(
    session: AsyncSession,
    gate: ApprovalGateRecord,
    now: datetime,
    values: Callable[[ApprovalGateRecord], Mapping[str, Any]],
) -> ApprovalGateRecord | None:
    """Write `values(gate)` to the gate while it is OPEN, re-reading it after a concurrent write; None
    once it is closed. A gate that keeps changing under us is reported, not overwritten."""
    current = gate
    for _ in range(_RETRIES):
        updated = await store.update_gate(
            session, current.id, expected_revision=current.revision, now=now, **values(current)
        )
        if updated is not None:
            return updated
        current = await store.get_gate(session, gate.id)
        if not current.state.is_open:
            return None
    raise FailedPrecondition(f"approval gate {gate.id} keeps changing; try again")


async def cancel_gates(
    session: AsyncSession, request_id: int, reason: str, *, now: datetime | None = None
) -> Sequence[ApprovalGateRecord]:
    """Close every OPEN gate of the request CANCELLED (for the request's cancel, in its transaction)."""
    closed = []
    for gate in await store.gates(session, job_request_id=request_id, states={GateState.OPEN}):
        cancelled = await cancel_gate(session, gate, reason, now=now)
        if cancelled is not None:
            closed.append(cancelled)
    return closed
