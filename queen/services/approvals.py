"""Approvals: read gates, list and watch what waits for people, take their decisions, audit the ledger.

Every call acts as the caller's `Identity` (from authentication, never from a request body) and sees
only its organisation's gates; another organisation's gate is NotFound like a missing one.

A decision is one transaction: the vote, the gate's guarded update (on the revision the decider read,
so of two concurrent decisions one wins and the other re-reads and is refused because the gate closed),
the ledger entries, and — when the vote decides the gate — the task's outcome and the request's return
to EXECUTING. After the commit the request is announced and, if the gate closed, its supervisor launched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from queen.approvals import gates, ledger
from queen.approvals.ledger import LedgerReport
from queen.domain.approvals import (
    Channel,
    GateClosed,
    GateState,
    LadderStep,
    LedgerKind,
    StaleGate,
    Vote,
    VoteCast,
    evaluate,
    ladder,
    policy_from_json,
    policy_summary,
    refusal,
    separation_of_duties_note,
    validate_inputs,
)
from queen.domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from queen.domain.identity import Identity
from queen.domain.job_definition import ApprovalPolicy
from queen.domain.states import TaskState
from queen.notifier import ChangeNotifier
from queen.store import Database, DuplicateKey, executions
from queen.store import approvals as store
from queen.store._clock import utc_now
from queen.store.records import ApprovalGateRecord, ApprovalVoteRecord

__all__ = ["ApprovalService", "Ballot", "DecideResult", "GateView"]

log = structlog.get_logger(__name__)

_MAX_COMMENT = 8192
_MAX_KEY = 128
_MAX_INPUTS = 64
_MAX_PENDING = 10_000
_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Ballot:
    """One person's decision as they send it (the person is the caller's identity, not a field here)."""

    decision: Vote
    comment: str = ""
    inputs: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str = ""
    gate_version: int = 0  # the version the decider saw; 0 skips the check
    channel: Channel = Channel.GRPC


@dataclass(frozen=True, slots=True)
class GateView:
    """A gate as one caller sees it."""

    gate: ApprovalGateRecord
    policy: ApprovalPolicy
    votes: tuple[ApprovalVoteRecord, ...]
    summary: str  # the policy in one line
    progress: str  # where it stands, or why it closed
    caller_can_decide: bool
    caller_cannot_decide_reason: str
    separation_of_duties_note: str
    next_step: LadderStep | None  # the SLA rung that fires next (at gate.next_due_at)

    @property
    def state(self) -> GateState:
        return self.gate.state


@dataclass(frozen=True, slots=True)
class DecideResult:
    """The gate after a decision; `duplicate` when the idempotency key named an earlier decision."""

    view: GateView
    duplicate: bool = False


class _Conflict(Exception):
    """Another decision changed the gate between our read and our write: read again and retry."""


class ApprovalService:
    """Gates, votes and the ledger, for the API fronts (gRPC, REST, CLI)."""

    def __init__(self, *, db: Database, notifier: ChangeNotifier, launch: Callable[[int], None]) -> None:
        self._db = db
        self._notifier = notifier
        self._launch = launch

    # -- reading ----------------------------------------------------------------------------------

    async def get(self, identity: Identity, job_request_id: int, task_type: str) -> GateView:
        """The request's gate of that task type (the latest opening, open or closed)."""
        async with self._db.transaction() as session:
            adopted = await _adopt(session, identity, job_request_id)
            gate = await self._find(session, identity, job_request_id, task_type)
            view = await self._view(session, identity, gate)
        self._announce(adopted)
        return view

    async def list_pending(
        self,
        identity: Identity,
        *,
        job_request_id: int | None = None,
        only_decidable_by_me: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[GateView], bool]:
        """Open gates, oldest first, one page; True when more follow."""
        views = await self._pending(identity, job_request_id, only_decidable_by_me)
        return views[offset : offset + limit], len(views) > offset + limit

    async def _pending(
        self, identity: Identity, job_request_id: int | None, only_decidable_by_me: bool
    ) -> list[GateView]:
        async with self._db.transaction() as session:
            adopted = await _adopt(session, identity, job_request_id)
            found = await store.open_gates(
                session,
                organization_id=identity.organization_id,
                job_request_id=job_request_id,
                limit=_MAX_PENDING,
            )
            views = [await self._view(session, identity, gate) for gate in found]
        self._announce(adopted)
        return [v for v in views if v.caller_can_decide or not only_decidable_by_me]

    async def watch_pending(
        self, identity: Identity, *, job_request_id: int | None = None, only_decidable_by_me: bool = False
    ) -> AsyncIterator[GateView | None]:
        """Open gates now, then None (the end of that snapshot), then each gate again whenever it changes,
        opens or closes (a gate leaving the list is sent once more, as it is then). Woken by the notifier
        after commits; never polls."""
        sent: dict[int, tuple[Any, ...]] = {}
        snapshot_done = False
        while True:
            if job_request_id is not None:
                change = self._notifier.next_change(job_request_id)
            else:
                change = self._notifier.next_change_of_any()
            views = await self._pending(identity, job_request_id, only_decidable_by_me)
            current = {view.gate.id: view for view in views}
            for gate_id, view in current.items():
                mark = _fingerprint(view)
                if sent.get(gate_id) != mark:
                    sent[gate_id] = mark
                    yield view
            for gate_id in [g for g in sent if g not in current]:
                del sent[gate_id]
                async with self._db.transaction() as session:
                    gone = await self._view(session, identity, await store.get_gate(session, gate_id))
                yield gone
            if not snapshot_done:
                snapshot_done = True
                yield None
            await change.wait()

    def _announce(self, adopted: list[ApprovalGateRecord]) -> None:
        for gate in adopted:
            self._notifier.changed(gate.job_request_id)
        if adopted:
            self._notifier.gates_changed()

    async def _find(
        self, session: AsyncSession, identity: Identity, job_request_id: int, task_type: str
    ) -> ApprovalGateRecord:
        gate = await store.latest_gate(
            session, job_request_id, task_type, organization_id=identity.organization_id
        )
        if gate is None:
            raise NotFound(
                f'job request {job_request_id} has no approval gate "{task_type}" (not a MANUAL task, or it '
                "has not been reached)"
            )
        return gate

    async def _view(self, session: AsyncSession, identity: Identity, gate: ApprovalGateRecord) -> GateView:
        policy = policy_from_json(gate.policy)
        votes = tuple(await store.votes_of(session, gate.id))
        state = gate.state
        if state.is_open:
            task = await executions.get_task_execution(session, gate.task_execution_id)
            if task.task_state is not TaskState.MANUAL_APPROVAL_REQUIRED:
                state = GateState.CANCELLED  # its job was cancelled; the timers record it shortly
        current = [v for v in votes if v.version == gate.version]
        if state.is_open:
            progress = evaluate(policy, (_cast(v) for v in current)).progress
            reason = refusal(
                policy,
                user_id=identity.user_id,
                roles=identity.roles,
                authenticated=identity.authenticated,
                requester=gate.requester,
                already_voted=any(v.user_id == identity.user_id for v in current),
            )
        else:
            progress = _closed_progress(gate, state)
            reason = f"the gate is closed ({state.value})"
        note = gate.separation_of_duties_note
        if not note and identity.user_id == gate.requester:
            note = separation_of_duties_note(policy, authenticated=identity.authenticated)
        steps = ladder(policy)
        next_step = steps[gate.sla_step] if state.is_open and gate.sla_step < len(steps) else None
        return GateView(
            gate=gate,
            policy=policy,
            votes=votes,
            summary=policy_summary(policy),
            progress=progress,
            caller_can_decide=state.is_open and not reason,
            caller_cannot_decide_reason=reason,
            separation_of_duties_note=note,
            next_step=next_step,
        )

    # -- deciding ---------------------------------------------------------------------------------

    async def decide(
        self, identity: Identity, job_request_id: int, task_type: str, ballot: Ballot
    ) -> DecideResult:
        """Record the caller's vote; close the gate when it decides it (see the module's docstring).

        NotFound, GateClosed / StaleGate (FailedPrecondition), PermissionDenied, AlreadyExists (voted on
        this version already, under another key), InvalidArgument (a REJECT without comment, bad inputs).
        """
        _check_ballot(ballot)
        for _ in range(_ATTEMPTS):
            try:
                async with self._db.transaction() as session:
                    await _adopt(session, identity, job_request_id)
                    gate = await self._find(session, identity, job_request_id, task_type)
                    outcome = await self._decide_in(session, identity, gate, ballot)
                    if outcome is None:
                        # its job was cancelled: record the gate as cancelled, then refuse
                        await gates.cancel_gate(session, gate, "its task no longer waits for approval")
            except (_Conflict, DuplicateKey) as exc:
                # another decision changed the gate, or the same user's concurrent vote (or key) landed
                # first: read again and answer from what is there now
                log.info(
                    "approval_decision_retried",
                    job_request_id=job_request_id,
                    task_type=task_type,
                    reason=type(exc).__name__,
                )
                continue
            if outcome is None:
                self._notifier.changed(job_request_id)
                raise GateClosed(GateState.CANCELLED.value)
            result, closed = outcome
            if not result.duplicate:
                self._notifier.changed(job_request_id)
                if closed:
                    self._launch(job_request_id)
            return result
        raise FailedPrecondition("the gate kept changing while the decision was recorded; try again")

    async def _decide_in(
        self, session: AsyncSession, identity: Identity, gate: ApprovalGateRecord, ballot: Ballot
    ) -> tuple[DecideResult, bool] | None:
        """The decision inside the transaction: (result, whether it closed the gate), or None when the
        gate's task no longer waits. Raises _Conflict when the guarded write finds the gate changed."""
        if ballot.idempotency_key:
            earlier = await store.find_vote_by_key(session, gate.id, identity.user_id, ballot.idempotency_key)
            if earlier is not None:
                return DecideResult(await self._view(session, identity, gate), duplicate=True), False
        if not gate.state.is_open:
            raise GateClosed(gate.state.value)
        task = await executions.get_task_execution(session, gate.task_execution_id)
        if task.task_state is not TaskState.MANUAL_APPROVAL_REQUIRED:
            return None
        if ballot.gate_version and ballot.gate_version != gate.version:
            raise StaleGate(ballot.gate_version, gate.version)
        policy = policy_from_json(gate.policy)
        votes = await store.votes_of(session, gate.id)
        current = [v for v in votes if v.version == gate.version]
        voted = any(v.user_id == identity.user_id for v in current)
        reason = refusal(
            policy,
            user_id=identity.user_id,
            roles=identity.roles,
            authenticated=identity.authenticated,
            requester=gate.requester,
            already_voted=False,
        )
        if reason:
            raise PermissionDenied(reason)
        if voted:
            raise AlreadyExists(f"{identity.user_id} already voted on version {gate.version} of this gate")
        inputs = validate_inputs(policy.inputs, ballot.inputs, ballot.decision)
        cast = VoteCast(identity.user_id, frozenset(identity.roles), ballot.decision)
        verdict = evaluate(policy, [*(_cast(v) for v in current), cast])
        now = utc_now()
        closes = not verdict.outcome.is_open
        values: dict[str, Any] = {}
        note = ""
        if identity.user_id == gate.requester and not gate.separation_of_duties_note:
            note = separation_of_duties_note(policy, authenticated=identity.authenticated)
            values["separation_of_duties_note"] = note
        if closes:
            values |= gates.close_values(
                verdict.outcome,
                decided_by=identity.user_id,
                channel=ballot.channel,
                comment=ballot.comment,
                inputs=inputs,
                now=now,
            )
        updated = await store.update_gate(
            session,
            gate.id,
            expected_revision=gate.revision,
            expected_version=gate.version,
            now=now,
            **values,
        )
        if updated is None:
            raise _Conflict
        vote = await store.add_vote(
            session,
            gate_id=gate.id,
            version=gate.version,
            user_id=identity.user_id,
            roles=identity.roles,
            decision=ballot.decision,
            comment=ballot.comment,
            inputs=inputs,
            channel=ballot.channel,
            idempotency_key=ballot.idempotency_key or None,
            outcome=verdict.outcome,
            now=now,
        )
        await store.append_entry(
            session,
            gate.id,
            LedgerKind.VOTED,
            identity.user_id,
            {
                "vote_id": vote.id,
                "user_id": identity.user_id,
                "roles": sorted(identity.roles),
                "authenticated": identity.authenticated,
                "decision": ballot.decision.value,
                "comment": ballot.comment,
                "inputs": inputs,
                "channel": ballot.channel.value,
                "version": gate.version,
                "idempotency_key": ballot.idempotency_key,
                "separation_of_duties_note": note,
                "progress": verdict.progress,
            },
            now=now,
        )
        if closes:
            # a paused request keeps its pause: its resume continues from the task's outcome
            closes = await gates.finish_gate(session, updated, now=now, detail={"progress": verdict.progress})
        log.info(
            "approval_recorded",
            job_request_id=gate.job_request_id,
            task_type=gate.task_type,
            user_id=identity.user_id,
            decision=ballot.decision.value,
            outcome=verdict.outcome.value,
        )
        fresh = await store.get_gate(session, gate.id)
        return DecideResult(await self._view(session, identity, fresh)), closes

    # -- staleness --------------------------------------------------------------------------------

    async def invalidate(self, job_request_id: int, *task_types: str, reason: str = "") -> list[GateView]:
        """Upstream tasks of the request ran again: its open gates move to a new version (see
        `gates.invalidate`, which the engine calls inside its own transaction)."""
        async with self._db.transaction() as session:
            changed = await gates.invalidate(session, job_request_id, *task_types, reason=reason)
            system = Identity("", "formicary", frozenset(), authenticated=True)
            views = [await self._view(session, system, gate) for gate in changed]
        if changed:
            self._notifier.changed(job_request_id)
        return views

    # -- the ledger -------------------------------------------------------------------------------

    async def export_ledger(
        self, identity: Identity, *, job_request_id: int | None = None
    ) -> AsyncIterator[str]:
        """The ledger of the organisation's gates (of one request, if given) as JSON Lines."""
        async with self._db.transaction() as session:
            lines = [
                line
                async for line in ledger.export_lines(
                    session, organization_id=identity.organization_id, job_request_id=job_request_id
                )
            ]
        for line in lines:
            yield line

    async def verify_ledger(self, identity: Identity, *, job_request_id: int | None = None) -> LedgerReport:
        """Check that no entry of the organisation's gates was edited or deleted."""
        async with self._db.transaction() as session:
            return await ledger.verify_database(
                session, organization_id=identity.organization_id, job_request_id=job_request_id
            )


async def _adopt(
    session: AsyncSession, identity: Identity, job_request_id: int | None
) -> list[ApprovalGateRecord]:
    """Gates for the caller's waiting MANUAL tasks that have none yet (see `gates.adopt_waiting`)."""
    return await gates.adopt_waiting(
        session, organization_id=identity.organization_id, job_request_id=job_request_id
    )


def _cast(vote: ApprovalVoteRecord) -> VoteCast:
    return VoteCast(vote.user_id, frozenset(vote.roles), vote.decision)


def _fingerprint(view: GateView) -> tuple[Any, ...]:
    return (view.gate.revision, view.gate.state, view.caller_can_decide)


def _closed_progress(gate: ApprovalGateRecord, state: GateState) -> str:
    if state is GateState.CANCELLED:
        return gate.decision_comment or "cancelled: its job no longer waits for it"
    by = gate.decided_by
    said = f": {gate.decision_comment}" if gate.decision_comment else ""
    return f"{state.value.lower().replace('_', ' ')} by {by}{said}" if by else state.value.lower()


def _check_ballot(ballot: Ballot) -> None:
    if ballot.decision is Vote.REJECT and not ballot.comment.strip():
        raise InvalidArgument("a REJECT needs a comment saying why", field="comment")
    if len(ballot.comment) > _MAX_COMMENT:
        raise InvalidArgument(f"comment is longer than {_MAX_COMMENT} characters", field="comment")
    if len(ballot.idempotency_key) > _MAX_KEY:
        raise InvalidArgument(
            f"idempotency_key is longer than {_MAX_KEY} characters", field="idempotency_key"
        )
    if len(ballot.inputs) > _MAX_INPUTS:
        raise InvalidArgument(f"at most {_MAX_INPUTS} inputs", field="inputs")
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in ballot.inputs.items()):
        raise InvalidArgument("input names and values must be text", field="inputs")
    if ballot.gate_version < 0:
        raise InvalidArgument("gate_version must not be negative", field="gate_version")
