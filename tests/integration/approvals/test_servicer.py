"""ApprovalService over gRPC on a real Queen (SQLite and PostgreSQL): what clients see, codes included.

The servicer is served here on a server of its own next to the Queen's, over the Queen's database,
notifier and supervisors, exactly as the Queen wires it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from grpc_status import rpc_status

from formicary.v1 import approval_pb2
from formicary.v1 import approval_service_pb2 as pb
from formicary.v1 import approval_service_pb2_grpc as pb_grpc
from queen.api.approval_service import ApprovalServicer
from queen.api.auth_interceptor import AuthInterceptor
from queen.app import Queen
from queen.domain.states import JobState
from queen.security.authenticator import Authenticator, AuthSettings
from queen.services.approvals import ApprovalService
from queen.services.requests import Submission
from queen.settings import QueenSettings
from tests.fixtures.waiting import assert_eventually

pytestmark = pytest.mark.integration

GATE_ONLY = """\
job_type: release
tasks:
- task_type: go-live
  method: MANUAL
  description: ship it?
  on_exit_code: {APPROVED: COMPLETED, REJECTED: COMPLETED}
  approval_policy:
    inputs: [{name: ticket, required: true}, {name: canary, type: boolean, default: true}]
"""


@dataclass(frozen=True, slots=True)
class Setup:
    queen: Queen
    stub: pb_grpc.ApprovalServiceAsyncStub


@pytest.fixture
async def setup(database_url: str, tmp_path: Path) -> AsyncIterator[Setup]:
    settings = QueenSettings(
        grpc_port=0, data_dir=tmp_path, database_url=database_url, sweep_interval=timedelta(seconds=1)
    )
    queen = Queen(settings)
    await queen.start()
    service = ApprovalService(db=queen.db, notifier=queen.notifier, launch=queen.supervisors.launch)
    # the servicer as the embedded mode serves it: every call is the local identity (authenticated
    # calls are covered by tests/integration/security)
    local = Authenticator(AuthSettings(required=False, local=queen.services.local_identity), tokens=None)
    server = grpc.aio.server(interceptors=[AuthInterceptor(local)])
    pb_grpc.add_ApprovalServiceServicer_to_server(ApprovalServicer(service), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Setup(queen, pb_grpc.ApprovalServiceStub(channel))  # type: ignore[arg-type]
    finally:
        await server.stop(None)
        await queen.stop()


async def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    status = await rpc_status.aio.from_call(call)  # type: ignore[arg-type]
    assert status is not None
    return caught.value.code(), status.message


async def _submit(queen: Queen) -> int:
    identity = queen.services.local_identity
    await queen.services.definitions.upload(identity, GATE_ONLY)
    record = await queen.services.requests.submit(identity, Submission(job_type="release", params={}))
    return record.id


async def _state(queen: Queen, request_id: int) -> JobState:
    return (await queen.services.requests.get(queen.services.local_identity, request_id)).request.job_state


async def test_list_watch_get_and_decide_over_grpc(setup: Setup) -> None:
    queen, stub = setup.queen, setup.stub
    watch = stub.WatchPendingApprovals(pb.WatchPendingApprovalsRequest(only_decidable_by_me=True))
    first = await asyncio.wait_for(watch.read(), 10)
    assert first.snapshot_complete
    assert not first.HasField("approval")

    request_id = await _submit(queen)
    opened = await asyncio.wait_for(watch.read(), 10)
    gate = opened.approval
    assert (gate.job_request_id, gate.task_type, gate.state) == (
        request_id,
        "go-live",
        approval_pb2.APPROVAL_STATE_PENDING,
    )
    assert gate.caller_can_decide
    assert gate.version == 1
    assert "without authentication" in gate.separation_of_duties_note  # the local identity requested it
    assert gate.policy.approver_roles == ["operator", "admin"]
    assert [(i.name, i.required, i.HasField("default_value")) for i in gate.policy.inputs] == [
        ("ticket", True, False),
        ("canary", False, True),
    ]
    assert gate.policy_summary.startswith("1 approval from holders of admin or operator")

    code, _ = await _code(stub.GetApproval(pb.GetApprovalRequest(job_request_id=request_id, task_type="x")))
    assert code is grpc.StatusCode.NOT_FOUND
    code, _ = await _code(stub.GetApproval(pb.GetApprovalRequest(task_type="go-live")))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    listed = await stub.ListPendingApprovals(pb.ListPendingApprovalsRequest(job_request_id=request_id))
    assert [a.task_type for a in listed.approvals] == ["go-live"]
    got = await stub.GetApproval(pb.GetApprovalRequest(job_request_id=request_id, task_type="go-live"))
    assert got.approval.description == "ship it?"

    base = {"job_request_id": request_id, "task_type": "go-live"}
    code, message = await _code(
        stub.Decide(pb.DecideRequest(**base, decision=approval_pb2.APPROVAL_DECISION_REJECT))
    )
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, "a REJECT needs a comment saying why")
    code, message = await _code(
        stub.Decide(pb.DecideRequest(**base, decision=approval_pb2.APPROVAL_DECISION_APPROVE))
    )
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, 'invalid inputs: "ticket" is required')
    code, _ = await _code(
        stub.Decide(
            pb.DecideRequest(
                **base,
                decision=approval_pb2.APPROVAL_DECISION_APPROVE,
                inputs={"ticket": "T-1"},
                gate_version=7,
            )
        )
    )
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    code, _ = await _code(stub.Decide(pb.DecideRequest(**base)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT

    approve = pb.DecideRequest(
        **base,
        decision=approval_pb2.APPROVAL_DECISION_APPROVE,
        comment="go",
        inputs={"ticket": "T-1"},
        idempotency_key="k-1",
        gate_version=1,
    )
    decided = await stub.Decide(approve)
    assert (decided.duplicate, decided.approval.state) == (False, approval_pb2.APPROVAL_STATE_APPROVED)
    assert decided.approval.decided_by_user_id == "local-admin"
    assert dict(decided.approval.decision_inputs) == {"ticket": "T-1", "canary": "true"}
    assert decided.approval.votes[0].channel == approval_pb2.APPROVAL_CHANNEL_GRPC
    again = await stub.Decide(approve)
    assert (again.duplicate, again.approval.state) == (True, approval_pb2.APPROVAL_STATE_APPROVED)
    approve.idempotency_key = "k-2"
    code, _ = await _code(stub.Decide(approve))
    assert code is grpc.StatusCode.FAILED_PRECONDITION  # closed

    # the watcher is told the gate left its list, once, with its final state
    closed = await asyncio.wait_for(watch.read(), 10)
    assert closed.approval.state == approval_pb2.APPROVAL_STATE_APPROVED
    watch.cancel()

    async def completed() -> bool:
        return await _state(queen, request_id) is JobState.COMPLETED

    await assert_eventually(completed)
    empty = await stub.ListPendingApprovals(pb.ListPendingApprovalsRequest())
    assert list(empty.approvals) == []
