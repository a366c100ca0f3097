"""SLA ladders fired by GateTimers from the database: in order, through the notification hook, and again
after the engine restarts (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from queen.domain.approvals import GateState
from queen.domain.states import JobState, TaskState
from queen.services.approvals import ApprovalService
from tests.fixtures.engine import Engine, start_engine, stop_engine
from tests.integration.approvals.conftest import BOB, Gatehouse, dr_job, start_gatehouse

pytestmark = pytest.mark.integration

DONE = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)

LADDER = """\
sla:
  - {after: 100ms, action: REMIND, to: ["http://hooks.test/remind"]}
  - {after: 200ms, action: ESCALATE, to: ["http://hooks.test/fail", "http://hooks.test/down", "sre-oncall"]}
sla_deadline: 300ms
timeout_action: AUTO_REJECT
escalation_message: the DR gate is waiting
"""


async def test_the_ladder_fires_in_order_and_auto_rejects(gatehouse: Gatehouse) -> None:
    await gatehouse.engine.upload(dr_job(LADDER))
    request_id = await gatehouse.engine.submit("dr")
    details = await gatehouse.engine.wait_for(request_id, *DONE)
    assert details.request.job_state is JobState.COMPLETED
    assert gatehouse.engine.dispatcher.ran() == ["provision", "teardown", "notify"]
    verify = {t.task_type: t for t in details.tasks}["verify"]
    assert (verify.task_state, verify.exit_code) == (TaskState.REJECTED, "REJECTED")

    entries = await gatehouse.ledger(request_id)
    rungs = [(e["kind"], e["data"].get("sla_action")) for e in entries if e["kind"] != "NOTIFIED"]
    assert rungs == [
        ("REQUESTED", None),
        ("REMINDED", "REMIND"),
        ("ESCALATED", "ESCALATE"),
        ("DECIDED", "AUTO_REJECT"),
    ]
    decided = entries[-1]
    assert (decided["actor"], decided["data"]["outcome"], decided["data"]["channel"]) == (
        "formicary:sla",
        "REJECTED",
        "SLA",
    )
    # every delivery attempt is on record, failures included, right after its rung
    notified = [
        (e["data"]["recipient"], e["data"]["delivered"], e["data"]["status_code"])
        for e in entries
        if e["kind"] == "NOTIFIED"
    ]
    assert notified[0] == ("http://hooks.test/remind", True, 204)
    assert sorted(notified[1:]) == [
        ("http://hooks.test/down", False, None),
        ("http://hooks.test/fail", False, 500),
        ("sre-oncall", False, None),
    ]
    kinds = [e["kind"] for e in entries]
    assert kinds.index("ESCALATED") > kinds.index("NOTIFIED")  # the reminder's delivery came first
    bodies = [json.loads(post.content) for post in gatehouse.posts]
    assert [b["event"] for b in bodies] == ["approval.reminder", "approval.escalation", "approval.escalation"]
    assert bodies[0]["job_request_id"] == request_id
    assert bodies[1]["message"] == "the DR gate is waiting"


async def test_a_deadline_without_timeout_action_times_out_and_is_routable(gatehouse: Gatehouse) -> None:
    routes = "{APPROVED: switch-dns, REJECTED: teardown, TIMED_OUT: teardown}"
    await gatehouse.engine.upload(dr_job("sla_deadline: 100ms", routes=routes))
    request_id = await gatehouse.engine.submit("dr")
    details = await gatehouse.engine.wait_for(request_id, *DONE)
    assert details.request.job_state is JobState.COMPLETED
    verify = {t.task_type: t for t in details.tasks}["verify"]
    assert (verify.task_state, verify.exit_code, verify.error_code) == (
        TaskState.FAILED,
        "TIMED_OUT",
        "ERR_APPROVAL_TIMED_OUT",
    )
    assert gatehouse.engine.dispatcher.ran() == ["provision", "teardown", "notify"]
    view = await gatehouse.gate(request_id)
    assert view.state is GateState.TIMED_OUT
    assert (await gatehouse.ledger_kinds(request_id))[-1] == "TIMED_OUT"


async def test_timers_are_rearmed_from_the_database_after_a_restart(database_url: str) -> None:
    """The gate (and its due times) is recorded by a Queen whose timers never run; a new Queen on the
    same database fires its rungs at their times, from the rows alone."""
    policy = "sla:\n  - {after: 300ms, action: REMIND}\nsla_deadline: 450ms\ntimeout_action: AUTO_APPROVE"
    first = await start_engine(database_url)
    try:
        await first.upload(dr_job(policy))
        request_id = await first.submit("dr")
        await first.wait_for(request_id, JobState.MANUAL_APPROVAL_REQUIRED)
        service = ApprovalService(db=first.db, notifier=first.notifier, launch=first.supervisors.launch)
        opened = await service.get(BOB, request_id, "verify")
        assert (opened.state, opened.gate.sla_step) == (GateState.OPEN, 0)
        assert opened.gate.next_due_at is not None
    finally:
        await stop_engine(first)

    second: Engine = await start_engine(database_url)
    house, client = await start_gatehouse(second, [])
    try:
        details = await second.wait_for(request_id, *DONE)
        assert details.request.job_state is JobState.COMPLETED
        assert second.dispatcher.ran() == ["switch-dns", "notify"]
        entries = await house.ledger(request_id)
        assert [e["kind"] for e in entries] == ["REQUESTED", "REMINDED", "DECIDED"]
        reminded = datetime.fromisoformat(entries[1]["created_at"])
        assert reminded >= opened.gate.next_due_at  # not early
        assert (await house.gate(request_id)).gate.decided_by == "formicary:sla"
    finally:
        await house.timers.stop()
        await client.aclose()
        await stop_engine(second)


async def test_rungs_that_came_due_while_no_queen_ran_fire_in_order(database_url: str) -> None:
    """The first engine has no approvals at all: the gate is adopted by the second, as of when its task
    started waiting, so every rung is overdue and fires at once, one after the other, in ladder order."""
    policy = (
        "sla:\n  - {after: 10ms, action: REMIND}\n  - {after: 20ms, action: ESCALATE}\n"
        "sla_deadline: 30ms\ntimeout_action: AUTO_APPROVE"
    )
    first = await start_engine(database_url)
    try:
        await first.upload(dr_job(policy))
        request_id = await first.submit("dr")
        await first.wait_for(request_id, JobState.MANUAL_APPROVAL_REQUIRED)
    finally:
        await stop_engine(first)
    second = await start_engine(database_url)
    house, client = await start_gatehouse(second, [])
    try:
        assert (await second.wait_for(request_id, *DONE)).request.job_state is JobState.COMPLETED
        assert await house.ledger_kinds(request_id) == ["REQUESTED", "REMINDED", "ESCALATED", "DECIDED"]
    finally:
        await house.timers.stop()
        await client.aclose()
        await stop_engine(second)
