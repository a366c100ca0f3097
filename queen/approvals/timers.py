"""GateTimers: fires the SLA ladders of open approval gates, from timers kept in the database.

Each OPEN gate row holds its next rung (`sla_step`) and when it is due (`next_due_at`), so a Queen that
starts (or restarts after a crash) re-arms every timer by reading the rows: rungs that came due while it
was down fire at once, in ladder order. The loop sleeps until the earliest due time; the notifier (any
committed change: a gate opening, a decision) or `wake()` wakes it sooner, and `sweep_interval` is only
the safety net. Firing a rung is a guarded UPDATE on (revision, sla_step), so with several Queens each
rung fires once.

A REMIND or ESCALATE rung records itself in the ledger, then goes out through the notification hook;
each delivery's result is recorded too, and a failed delivery changes nothing else. AUTO_APPROVE,
AUTO_REJECT and TIME_OUT close the gate like a decisive vote would (`gates.finish_gate`).

Each pass also keeps gate records in step with the tasks: a MANUAL task waiting without a gate gets one
(`gates.adopt_waiting`), and an OPEN gate whose task no longer waits (its job was cancelled) is closed
CANCELLED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from queen.approvals import gates
from queen.approvals.notify import Delivery, Notice, NotificationHook, WebhookHook
from queen.domain.approvals import (
    SLA_ACTOR,
    Channel,
    GateState,
    LadderStep,
    LedgerKind,
    default_inputs,
    ladder,
    policy_from_json,
)
from queen.domain.job_definition import SlaAction, Webhook
from queen.domain.states import TaskState
from queen.notifier import ChangeNotifier
from queen.store import Database, definitions, executions, requests
from queen.store import approvals as store
from queen.store._clock import utc_now
from queen.store.records import ApprovalGateRecord
from queen.telemetry.metrics import METRICS

__all__ = ["GateTimers"]

log = structlog.get_logger(__name__)

_CLOSING_OUTCOMES = {
    SlaAction.AUTO_APPROVE: GateState.APPROVED,
    SlaAction.AUTO_REJECT: GateState.REJECTED,
    SlaAction.TIME_OUT: GateState.TIMED_OUT,
}
_EVENTS = {SlaAction.REMIND: "approval.reminder", SlaAction.ESCALATE: "approval.escalation"}
_LEDGER_KINDS = {SlaAction.REMIND: LedgerKind.REMINDED, SlaAction.ESCALATE: LedgerKind.ESCALATED}
# A gate whose rung failed to fire (a bug, a lost database) is tried again after this long, not at once.
_RETRY_AFTER = timedelta(seconds=30)


class GateTimers:
    """The background service behind approval SLAs: `start()` / `stop()`, one owned task."""

    def __init__(
        self,
        *,
        db: Database,
        notifier: ChangeNotifier,
        launch: Callable[[int], None],
        hook: NotificationHook | None = None,
        sweep_interval: timedelta = timedelta(minutes=1),
        settle: timedelta = timedelta(milliseconds=50),
        batch: int = 100,
    ) -> None:
        self._db = db
        self._notifier = notifier
        self._launch = launch
        own = WebhookHook()
        self._own_hook = own if hook is None else None  # closed by stop(); a hook passed in is the caller's
        self._hook: NotificationHook = hook if hook is not None else own
        self._sweep = sweep_interval.total_seconds()
        self._settle = settle.total_seconds()
        self._batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing: dict[int, datetime] = {}
        self.passes = 0

    def wake(self) -> None:
        """Run a pass as soon as possible."""
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="gate-timers")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._own_hook is not None:
            await self._own_hook.aclose()

    async def _loop(self) -> None:
        # Woken when gates open or are re-armed (`ChangeNotifier.gates_changed`, announced by whoever
        # committed it), by `wake()`, when the next rung is due, and by the sweep (the safety net that also
        # reconciles). Not by every job's change: a task ending must not cost a pass.
        while True:
            # taken before the pass, so a change committed during the pass wakes the next one
            change = self._notifier.next_gates_change()
            self._wake.clear()
            try:
                due_in = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gate_timers_pass_failed")
                due_in = None
            timeout = self._sweep if due_in is None else min(self._sweep, max(due_in, 0.0))
            changed = asyncio.ensure_future(change.wait())
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                done, _ = await asyncio.wait(
                    {changed, woken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                changed.cancel()
                woken.cancel()
            if changed in done and woken not in done and (due_in is None or due_in > self._settle):
                # several gates opening together make one pass
                await asyncio.sleep(self._settle)

    async def run_once(self) -> float | None:
        """One pass: adopt and reconcile gates, fire every due rung; seconds until the next is due."""
        self.passes += 1
        now = utc_now()
        self._failing = {gate_id: at for gate_id, at in self._failing.items() if at > now}
        await self._keep_in_step(now)
        async with self._db.transaction() as session:
            due = await store.due_gates(session, now, limit=self._batch)
            next_due = await store.next_due_at(session)
        fired = False
        for gate in due:
            if gate.id in self._failing:
                continue
            fired = True
            try:
                await self._fire(gate.id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("approval_sla_step_failed", gate_id=gate.id, job_request_id=gate.job_request_id)
                self._failing[gate.id] = now + _RETRY_AFTER
            else:
                self._failing.pop(gate.id, None)
        if fired:
            async with self._db.transaction() as session:
                next_due = await store.next_due_at(session)
        if next_due is None:
            return None
        wait = (next_due - utc_now()).total_seconds()
        if wait <= 0 and self._failing:
            # only failing gates are due: come back when the first of them may be tried again
            wait = max(min(self._failing.values()) - utc_now(), timedelta(0)).total_seconds()
        return wait

    async def _keep_in_step(self, now: datetime) -> None:
        """Gates for waiting tasks that have none; CANCELLED for open gates whose task went away. A
        failure here is logged and does not keep the due rungs from firing."""
        try:
            async with self._db.transaction() as session:
                adopted = await gates.adopt_waiting(session, limit=self._batch)
                orphans = await store.orphaned_open_gates(session, limit=self._batch)
                for orphan in orphans:
                    await gates.cancel_gate(session, orphan, "its task no longer waits for approval", now=now)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("approval_gates_reconciliation_failed")
            return
        for gate in [*adopted, *orphans]:
            self._notifier.changed(gate.job_request_id)

    async def _fire(self, gate_id: int) -> None:
        """Fire the gate's due rung (and, if the next is also due, it comes in the next pass)."""
        now = utc_now()
        notice: Notice | None = None
        launch = False
        async with self._db.transaction() as session:
            gate = await store.get_gate(session, gate_id)
            if not gate.state.is_open or gate.next_due_at is None or gate.next_due_at > now:
                return
            task = await executions.get_task_execution(session, gate.task_execution_id)
            if task.task_state is not TaskState.MANUAL_APPROVAL_REQUIRED:
                await gates.cancel_gate(session, gate, "its task no longer waits for approval", now=now)
            else:
                fired = await self._fire_in(session, gate, now)
                if fired is None:
                    return
                notice, launch = fired
        self._notifier.changed(gate.job_request_id)
        if launch:
            self._launch(gate.job_request_id)
        if notice is not None:
            await self._deliver(gate, notice)

    async def _fire_in(
        self, session: AsyncSession, gate: ApprovalGateRecord, now: datetime
    ) -> tuple[Notice | None, bool] | None:
        policy = policy_from_json(gate.policy)
        steps = ladder(policy)
        index = gate.sla_step
        if index >= len(steps):
            await store.update_gate(
                session, gate.id, expected_revision=gate.revision, next_due_at=None, now=now
            )
            return None
        step = steps[index]
        following = steps[index + 1] if index + 1 < len(steps) and not step.closes else None
        values: dict[str, Any] = {
            "sla_step": index + 1,
            "next_due_at": gate.created_at + following.after if following is not None else None,
        }
        outcome = _CLOSING_OUTCOMES.get(step.action)
        if outcome is not None:
            comment = _closing_comment(step)
            inputs = default_inputs(policy.inputs) if outcome is GateState.APPROVED else {}
            values |= gates.close_values(
                outcome, decided_by=SLA_ACTOR, channel=Channel.SLA, comment=comment, inputs=inputs, now=now
            )
        updated = await store.update_gate(
            session,
            gate.id,
            expected_revision=gate.revision,
            expected_sla_step=index,
            now=now,
            **values,
        )
        if updated is None:
            return None  # another Queen fired it, or a decision came first
        METRICS.sla_breached(gate.job_type, step.action.value)
        detail = {"sla_step": index + 1, "sla_action": step.action.value, "after": step.after}
        if outcome is not None:
            launch = await gates.finish_gate(session, updated, now=now, detail=detail)
            return None, launch
        webhook = await _job_webhook(session, gate)
        await store.append_entry(
            session,
            gate.id,
            _LEDGER_KINDS[step.action],
            SLA_ACTOR,
            {
                **detail,
                "recipients": list(step.recipients),
                "job_webhook": webhook.url if webhook is not None else "",
                "message": step.message,
                "version": gate.version,
            },
            now=now,
        )
        log.info(
            "approval_sla_step_fired",
            job_request_id=gate.job_request_id,
            task_type=gate.task_type,
            action=step.action.value,
        )
        notice = Notice(
            event=_EVENTS[step.action],
            recipients=step.recipients,
            job_webhook=webhook,
            payload={
                "job_request_id": gate.job_request_id,
                "job_type": gate.job_type,
                "task_type": gate.task_type,
                "description": gate.description,
                "gate_version": gate.version,
                "requester": gate.requester,
                "message": step.message,
                "opened_at": gate.created_at.isoformat(),
                "deadline_at": gate.deadline_at.isoformat() if gate.deadline_at else None,
                "trace_id": gate.trace_id,
            },
        )
        return notice, False

    async def _deliver(self, gate: ApprovalGateRecord, notice: Notice) -> None:
        """Send the notice; record each recipient's result in the ledger. Failures stop nothing."""
        if not notice.recipients and notice.job_webhook is None:
            return
        try:
            deliveries = await self._hook.deliver(notice)
        except Exception as exc:
            log.exception("approval_notification_hook_failed", gate_id=gate.id)
            error = f"{type(exc).__name__}: {exc}"[:300]
            deliveries = [Delivery(recipient, False, error=error) for recipient in notice.recipients]
        if not deliveries:
            return
        async with self._db.transaction() as session:
            for delivery in deliveries:
                await store.append_entry(
                    session,
                    gate.id,
                    LedgerKind.NOTIFIED,
                    SLA_ACTOR,
                    {"event": notice.event, **delivery.as_json()},
                )
        self._notifier.changed(gate.job_request_id)


def _closing_comment(step: LadderStep) -> str:
    what = {
        SlaAction.AUTO_APPROVE: "approved automatically",
        SlaAction.AUTO_REJECT: "rejected automatically",
        SlaAction.TIME_OUT: "timed out",
    }[step.action]
    text = f"no decision within {step.after}: {what} by the SLA"
    return f"{text} ({step.message})" if step.message else text


async def _job_webhook(session: AsyncSession, gate: ApprovalGateRecord) -> Webhook | None:
    request = await requests.get_request(session, gate.job_request_id)
    definition = await definitions.get_definition(session, request.job_definition_id)
    return definition.definition().webhook
