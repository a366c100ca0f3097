"""Approval gates end to end through the engine, ApprovalService and GateTimers, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from queen.approvals import gates
from queen.domain.approvals import GateClosed, GateState, InvalidInputs, StaleGate, Vote
from queen.domain.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from queen.domain.states import JobState, TaskState
from queen.store import TaskExecutionRecord, artifacts, executions, requests
from queen.store import approvals as approval_records
from queen.store._clock import utc_now
from queen.store.records import ArtifactKind
from queen.supervisor.job_supervisor import JobSupervisor
from tests.fixtures.engine import Engine
from tests.fixtures.waiting import assert_eventually
from tests.integration.approvals.conftest import (
    ALICE,
    BOB,
    CAROL,
    OUTSIDER,
    REQUESTER,
    Gatehouse,
    dr_job,
    security,
    sre,
)

pytestmark = pytest.mark.integration

DONE = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)
INPUTS = """\
inputs:
  - {name: ticket, type: string, required: true}
  - {name: weight, type: number, default: 100}
  - {name: dry_run, type: boolean, default: false}
"""


async def test_approved_gate_follows_the_approved_route_with_inputs(gatehouse: Gatehouse) -> None:
    engine = gatehouse.engine
    await engine.upload(dr_job(INPUTS))
    hold = asyncio.Event()
    engine.dispatcher.then("provision", hold)
    request_id = await engine.submit("dr")
    await asyncio.wait_for(engine.dispatcher.started.wait(), 10)
    # the task leaves an artifact behind: approvers are shown its digest, and the decision is bound to it
    provision = (await engine.details(request_id)).tasks[0]
    async with engine.db.transaction() as session:
        await artifacts.create_artifact(
            session,
            artifact_id="0b5a2a54-1111-4d5e-9a77-1d6c3f0e0001",
            organization_id="org-1",
            user_id="alice",
            name="terraform.tfstate",
            kind=ArtifactKind.TASK,
            bucket="b",
            key="k",
            sha256="ab" * 32,
            content_length=2,
            content_type="application/json",
            job_request_id=request_id,
            job_execution_id=provision.job_execution_id,
            task_execution_id=provision.id,
            task_type="provision",
        )
    hold.set()
    await engine.wait_for(request_id, JobState.MANUAL_APPROVAL_REQUIRED)

    view = await gatehouse.gate(request_id)
    assert (view.state, view.gate.version, view.gate.requester) == (GateState.OPEN, 1, "alice")
    assert view.caller_can_decide
    assert view.progress == "0 of 1 approvals"
    assert [(d["name"], d["sha256"]) for d in view.gate.artifact_digests] == [
        ("terraform.tfstate", "ab" * 32)
    ]
    assert view.gate.description == "check the costs"

    # inputs that do not fit: every problem is listed, and nothing is recorded
    with pytest.raises(InvalidInputs) as caught:
        await gatehouse.decide(
            BOB, request_id, Vote.APPROVE, inputs={"weight": "heavy", "dry_run": "perhaps"}
        )
    assert caught.value.problems == (
        '"ticket" is required',
        "\"weight\" must be a number (got 'heavy')",
        "\"dry_run\" must be true or false (got 'perhaps')",
    )
    refused = await gatehouse.gate(request_id)
    assert (refused.votes, refused.gate.ledger_length) == ((), 1)

    result = await gatehouse.decide(
        BOB, request_id, Vote.APPROVE, comment="costs ok", inputs={"ticket": "CHG-7", "dry_run": "yes"}
    )
    assert result.view.state is GateState.APPROVED
    assert result.view.gate.decision_inputs == {"ticket": "CHG-7", "weight": 100, "dry_run": True}
    details = await engine.wait_for(request_id, *DONE)
    assert details.request.job_state is JobState.COMPLETED
    assert engine.dispatcher.ran() == ["provision", "switch-dns", "notify"]
    verify = {t.task_type: t for t in details.tasks}["verify"]
    assert (verify.task_state, verify.exit_code) == (TaskState.APPROVED, "APPROVED")
    # the approver's inputs are variables of the tasks that follow
    switch = engine.dispatcher.calls[1]
    assert (switch.variables["ticket"], switch.variables["weight"], switch.variables["dry_run"]) == (
        "CHG-7",
        "100",
        "true",
    )
    decided = (await gatehouse.ledger(request_id))[-1]
    assert decided["kind"] == "DECIDED"
    assert decided["data"]["artifact_digests"][0]["sha256"] == "ab" * 32
    assert decided["data"]["decided_by"] == "bob"


async def test_rejected_gate_runs_the_rollback_and_the_job_completes(gatehouse: Gatehouse) -> None:
    request_id = await gatehouse.submit_to_gate(dr_job("sla_deadline: 1h\ntimeout_action: AUTO_APPROVE"))
    opened = await gatehouse.gate(request_id)
    assert opened.next_step is not None
    assert (opened.next_step.action, opened.gate.next_due_at) == ("AUTO_APPROVE", opened.gate.deadline_at)
    with pytest.raises(InvalidArgument, match="needs a comment"):
        await gatehouse.decide(BOB, request_id, Vote.REJECT)
    result = await gatehouse.decide(BOB, request_id, Vote.REJECT, comment="too expensive")
    assert (result.view.state, result.view.progress) == (GateState.REJECTED, "rejected by bob: too expensive")
    # a decision before the deadline ends the ladder
    assert (result.view.gate.next_due_at, result.view.next_step) == (None, None)
    details = await gatehouse.engine.wait_for(request_id, *DONE)
    assert details.request.job_state is JobState.COMPLETED
    assert gatehouse.engine.dispatcher.ran() == ["provision", "teardown", "notify"]
    verify = {t.task_type: t for t in details.tasks}["verify"]
    assert (verify.task_state, verify.exit_code) == (TaskState.REJECTED, "REJECTED")
    assert await gatehouse.ledger_kinds(request_id) == ["REQUESTED", "VOTED", "DECIDED"]


async def test_unrouted_reject_fails_the_job_and_always_run_still_runs(gatehouse: Gatehouse) -> None:
    request_id = await gatehouse.submit_to_gate(dr_job(routes="{APPROVED: switch-dns}"))
    await gatehouse.decide(BOB, request_id, Vote.REJECT, comment="no")
    details = await gatehouse.engine.wait_for(request_id, *DONE)
    assert (details.request.job_state, details.request.error_code) == (
        JobState.FAILED,
        "ERR_MANUAL_REJECTION",
    )
    assert gatehouse.engine.dispatcher.ran() == ["provision", "notify"]


async def test_two_concurrent_decisions_exactly_one_wins(gatehouse: Gatehouse) -> None:
    for second in (Vote.APPROVE, Vote.REJECT):
        request_id = await gatehouse.submit_to_gate(dr_job())
        results = await asyncio.gather(
            gatehouse.decide(BOB, request_id, Vote.APPROVE),
            gatehouse.decide(CAROL, request_id, second, comment="no"),
            return_exceptions=True,
        )
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1, results
        assert [type(r) for r in lost] == [GateClosed], results
        view = await gatehouse.gate(request_id)
        assert view.state is won[0].view.state
        assert len(view.votes) == 1
        assert await gatehouse.ledger_kinds(request_id) == ["REQUESTED", "VOTED", "DECIDED"]
        await gatehouse.engine.wait_for(request_id, *DONE)


async def test_stale_version_is_refused_and_earlier_votes_no_longer_count(gatehouse: Gatehouse) -> None:
    request_id = await gatehouse.submit_to_gate(dr_job("min_approvals: 2"))
    first = await gatehouse.decide(BOB, request_id, Vote.APPROVE, gate_version=1)
    assert (first.view.state, first.view.progress) == (GateState.OPEN, "1 of 2 approvals")

    # `provision` ran again while the gate waits: what approvers saw may have changed
    (changed,) = await gatehouse.service.invalidate(request_id, "provision", reason="provision re-run")
    assert changed.gate.version == 2
    with pytest.raises(StaleGate):
        await gatehouse.decide(CAROL, request_id, Vote.APPROVE, gate_version=1)
    second = await gatehouse.decide(CAROL, request_id, Vote.APPROVE, gate_version=2)
    assert (second.view.state, second.view.progress) == (
        GateState.OPEN,
        "1 of 2 approvals",
    )  # bob's v1 vote is gone
    third = await gatehouse.decide(BOB, request_id, Vote.APPROVE, gate_version=2)
    assert third.view.state is GateState.APPROVED
    assert [(v.user_id, v.version) for v in third.view.votes] == [("bob", 1), ("carol", 2), ("bob", 2)]
    assert await gatehouse.ledger_kinds(request_id) == [
        "REQUESTED",
        "VOTED",
        "INVALIDATED",
        "VOTED",
        "VOTED",
        "DECIDED",
    ]
    with pytest.raises(GateClosed):
        await gatehouse.decide(CAROL, request_id, Vote.REJECT, comment="late")


async def test_duplicate_idempotency_key_returns_the_first_answer(gatehouse: Gatehouse) -> None:
    request_id = await gatehouse.submit_to_gate(dr_job("min_approvals: 2"))
    first = await gatehouse.decide(BOB, request_id, Vote.APPROVE, idempotency_key="k1")
    again = await gatehouse.decide(BOB, request_id, Vote.APPROVE, idempotency_key="k1")
    assert (first.duplicate, again.duplicate) == (False, True)
    assert len(again.view.votes) == 1
    with pytest.raises(AlreadyExists):
        await gatehouse.decide(BOB, request_id, Vote.APPROVE, idempotency_key="k2")
    await gatehouse.decide(CAROL, request_id, Vote.APPROVE)
    # a retry after the gate closed still gets the first answer, not an error
    late = await gatehouse.decide(BOB, request_id, Vote.APPROVE, idempotency_key="k1")
    assert late.duplicate
    assert late.view.state is GateState.APPROVED
    assert (await gatehouse.ledger_kinds(request_id)).count("VOTED") == 2


async def test_requester_cannot_approve_their_own_job(gatehouse: Gatehouse) -> None:
    request_id = await gatehouse.submit_to_gate(dr_job())
    view = await gatehouse.gate(request_id, ALICE)
    assert not view.caller_can_decide
    assert "separation of duties" in view.caller_cannot_decide_reason
    with pytest.raises(PermissionDenied, match="submitted this job request"):
        await gatehouse.decide(ALICE, request_id, Vote.APPROVE)
    # the embedded mode's local identity cannot be told apart from others: allowed, and said so
    result = await gatehouse.decide(REQUESTER, request_id, Vote.APPROVE)
    assert result.view.state is GateState.APPROVED
    assert "without authentication" in result.view.gate.separation_of_duties_note
    voted = [e for e in await gatehouse.ledger(request_id) if e["kind"] == "VOTED"]
    assert "without authentication" in voted[0]["data"]["separation_of_duties_note"]

    # the policy can lift the rule, and the gate says so from the start
    other = await gatehouse.submit_to_gate(dr_job("allow_self_approval: true"))
    view = await gatehouse.gate(other, ALICE)
    assert view.caller_can_decide
    assert "allow_self_approval" in view.gate.separation_of_duties_note
    assert (await gatehouse.decide(ALICE, other, Vote.APPROVE)).view.state is GateState.APPROVED


async def test_a_user_outside_the_allowed_groups_is_refused(gatehouse: Gatehouse) -> None:
    request_id = await gatehouse.submit_to_gate(dr_job("allowed_roles: [sre]"))
    view = await gatehouse.gate(request_id, BOB)
    assert (view.caller_can_decide, view.caller_cannot_decide_reason) == (
        False,
        "bob may not decide this gate: only holders of sre may",
    )
    with pytest.raises(PermissionDenied):
        await gatehouse.decide(BOB, request_id, Vote.REJECT, comment="no")
    with pytest.raises(NotFound):  # another organisation does not even see the gate
        await gatehouse.decide(OUTSIDER, request_id, Vote.APPROVE)
    assert (await gatehouse.decide(sre("sam"), request_id, Vote.APPROVE)).view.state is GateState.APPROVED


async def test_per_group_quorum(gatehouse: Gatehouse) -> None:
    request_id = await gatehouse.submit_to_gate(
        dr_job("quorum: [{group: sre, min: 2}, {group: security, min: 1}]")
    )
    await gatehouse.decide(sre("s1"), request_id, Vote.APPROVE)
    second = await gatehouse.decide(sre("s2"), request_id, Vote.APPROVE)
    assert (second.view.state, second.view.progress) == (GateState.OPEN, "security 0 of 1")
    last = await gatehouse.decide(security("sec"), request_id, Vote.APPROVE)
    assert last.view.state is GateState.APPROVED
    assert (await gatehouse.engine.wait_for(request_id, *DONE)).request.job_state is JobState.COMPLETED


async def test_cancelling_the_job_closes_its_gate(gatehouse: Gatehouse) -> None:
    request_id = await gatehouse.submit_to_gate(dr_job())
    await gatehouse.engine.requests.cancel(REQUESTER, request_id, "not today")
    details = await gatehouse.engine.wait_for(request_id, *DONE)
    assert details.request.job_state is JobState.CANCELLED
    with pytest.raises(GateClosed):
        await gatehouse.decide(BOB, request_id, Vote.APPROVE)

    async def cancelled() -> bool:
        return (await gatehouse.gate(request_id)).gate.state is GateState.CANCELLED

    await assert_eventually(cancelled)
    assert (await gatehouse.ledger_kinds(request_id))[-1] == "CANCELLED"


async def test_the_supervisor_hook_records_the_gate_with_the_state_change(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring handed to the supervisor: `open_gate` in the transaction that opens the gate, so the
    gate record exists the moment the request is MANUAL_APPROVAL_REQUIRED (no adoption involved)."""

    async def _open_gate(self: JobSupervisor, record: TaskExecutionRecord) -> None:
        job = self._require_job()
        task = job.task(record.task_type)
        assert task is not None
        now = utc_now()
        async with self.deps.db.transaction() as session:
            record = await executions.transition_task(
                session, record.id, TaskState.READY, TaskState.MANUAL_APPROVAL_REQUIRED, started_at=now
            )
            self._request = await requests.transition_request(
                session, self.request_id, JobState.EXECUTING, JobState.MANUAL_APPROVAL_REQUIRED
            )
            await gates.open_gate(session, self._request, record, task, now)
        self._tasks[record.task_type] = record
        self.announce()

    monkeypatch.setattr(JobSupervisor, "_open_gate", _open_gate)
    await engine.upload(dr_job("sla_deadline: 1h\ntimeout_action: AUTO_REJECT"))
    request_id = await engine.submit("dr")
    details = await engine.wait_for(request_id, JobState.MANUAL_APPROVAL_REQUIRED)
    verify = {t.task_type: t for t in details.tasks}["verify"]
    job = (await engine.definitions.get(REQUESTER, job_type="dr")).definition()
    async with engine.db.transaction() as session:
        assert await approval_records.waiting_tasks_without_gate(session) == []
        gate = await approval_records.latest_gate(session, request_id, "verify")
        assert gate is not None
        entries = await approval_records.ledger_of(session, gate.id)
        # idempotent: a second call (a retried transaction, the adoption safety net) changes nothing
        request = await requests.get_request(session, request_id)
        again = await gates.open_gate(session, request, verify, job.tasks[1], utc_now())
    assert again == gate
    assert (gate.state, gate.version, gate.opening, gate.requester) == (GateState.OPEN, 1, 1, "alice")
    assert verify.started_at is not None
    assert gate.deadline_at == gate.next_due_at == verify.started_at + timedelta(hours=1)
    assert [e.kind for e in entries] == ["REQUESTED"]
    assert entries[0].data["policy"]["timeout_action"] == "AUTO_REJECT"
