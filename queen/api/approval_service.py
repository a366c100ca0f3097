"""ApprovalService servicer: gates and decisions over gRPC (thin: convert, call the service, convert back).

The decider is the caller's identity (`identity_of`), never a field of the request. The conversions of
approval types live here rather than in `_convert.py` because only this servicer (and the REST gateway,
through `approval_to_proto`) sends them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from formicary.v1 import approval_pb2, artifact_pb2
from formicary.v1 import approval_service_pb2 as pb
from formicary.v1 import approval_service_pb2_grpc as pb_grpc
from queen.api import _convert as convert
from queen.api.errors import stream_rpc, unary_rpc
from queen.domain.approvals import DEFAULT_APPROVER_ROLES, Channel, GateState, Vote, ladder
from queen.domain.errors import InvalidArgument
from queen.domain.identity import Identity
from queen.domain.job_definition import ApprovalPolicy, InputType, SlaAction
from queen.services.approvals import ApprovalService, Ballot, GateView

__all__ = ["ApprovalServicer", "approval_to_proto", "policy_to_proto"]

_MAX_REQUEST_ID = 2**63 - 1
_MAX_NAME = 256

_Context = grpc.aio.ServicerContext[Any, Any]

_STATES = {
    GateState.OPEN: approval_pb2.APPROVAL_STATE_PENDING,
    GateState.APPROVED: approval_pb2.APPROVAL_STATE_APPROVED,
    GateState.REJECTED: approval_pb2.APPROVAL_STATE_REJECTED,
    GateState.TIMED_OUT: approval_pb2.APPROVAL_STATE_TIMED_OUT,
    GateState.CANCELLED: approval_pb2.APPROVAL_STATE_CANCELLED,
}
_CHANNELS = {
    Channel.GRPC: approval_pb2.APPROVAL_CHANNEL_GRPC,
    Channel.REST: approval_pb2.APPROVAL_CHANNEL_REST,
    Channel.DASHBOARD: approval_pb2.APPROVAL_CHANNEL_DASHBOARD,
    Channel.SLA: approval_pb2.APPROVAL_CHANNEL_SLA,
}
_VOTES = {
    Vote.APPROVE: approval_pb2.APPROVAL_DECISION_APPROVE,
    Vote.REJECT: approval_pb2.APPROVAL_DECISION_REJECT,
}
_VOTES_FROM_PROTO = {value: vote for vote, value in _VOTES.items()}
_SLA_ACTIONS = {
    SlaAction.REMIND: approval_pb2.APPROVAL_SLA_ACTION_REMIND,
    SlaAction.ESCALATE: approval_pb2.APPROVAL_SLA_ACTION_ESCALATE,
    SlaAction.AUTO_APPROVE: approval_pb2.APPROVAL_SLA_ACTION_AUTO_APPROVE,
    SlaAction.AUTO_REJECT: approval_pb2.APPROVAL_SLA_ACTION_AUTO_REJECT,
    SlaAction.TIME_OUT: approval_pb2.APPROVAL_SLA_ACTION_TIME_OUT,
}
_INPUT_TYPES = {
    InputType.STRING: approval_pb2.APPROVAL_INPUT_TYPE_STRING,
    InputType.NUMBER: approval_pb2.APPROVAL_INPUT_TYPE_NUMBER,
    InputType.BOOLEAN: approval_pb2.APPROVAL_INPUT_TYPE_BOOLEAN,
    InputType.ENUM: approval_pb2.APPROVAL_INPUT_TYPE_ENUM,
}


def _request_id(value: int) -> int:
    if value == 0:
        raise InvalidArgument("job_request_id is required", field="job_request_id")
    if value > _MAX_REQUEST_ID:
        raise InvalidArgument(f"job_request_id {value} is not a job request id", field="job_request_id")
    return value


def _task_type(value: str) -> str:
    if not value:
        raise InvalidArgument("task_type is required", field="task_type")
    if len(value) > _MAX_NAME:
        raise InvalidArgument(f"task_type is longer than {_MAX_NAME} characters", field="task_type")
    return value


def _timestamp(value: datetime | None) -> Timestamp | None:
    return convert.timestamp(value)


def _duration(value: timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(value)
    return duration


def _text(value: Any) -> str:
    """A typed input value as text (booleans as YAML writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _texts(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): _text(value) for key, value in values.items()}


def policy_to_proto(policy: ApprovalPolicy) -> approval_pb2.ApprovalPolicy:
    """The policy in force, defaults filled in (what approvers are told)."""
    roles = list(policy.allowed_roles)
    if not roles and not policy.allowed_users and not policy.quorum:
        roles = list(DEFAULT_APPROVER_ROLES)
    message = approval_pb2.ApprovalPolicy(
        required_approvals=max(policy.min_approvals, 1),
        approver_roles=roles,
        approver_user_ids=list(policy.allowed_users),
        allow_requester_approval=policy.allow_self_approval,
        inputs=[
            approval_pb2.ApprovalInputSpec(
                name=spec.name,
                description=spec.description,
                required=spec.required,
                type=_INPUT_TYPES[spec.type],
                allowed_values=list(spec.values),
                default_value=None if spec.default is None else _text(spec.default),
            )
            for spec in policy.inputs
        ],
        require_unanimous=policy.require_unanimous,
        quorum=[
            approval_pb2.ApprovalQuorum(group=rule.group, min_approvals=rule.min) for rule in policy.quorum
        ],
        reject_vetoes=policy.reject_vetoes,
        sla_steps=[
            approval_pb2.ApprovalSlaStep(
                after=_duration(step.after),
                action=_SLA_ACTIONS[step.action],
                recipients=list(step.recipients),
                message=step.message,
            )
            for step in ladder(policy)
        ],
        escalation_recipients=list(policy.escalation_recipients),
        escalation_message=policy.escalation_message,
    )
    if policy.sla_deadline is not None:
        message.decision_timeout.CopyFrom(_duration(policy.sla_deadline))
    return message


def approval_to_proto(view: GateView) -> approval_pb2.Approval:
    """A gate as the caller of the RPC sees it."""
    gate = view.gate
    message = approval_pb2.Approval(
        job_request_id=gate.job_request_id,
        task_type=gate.task_type,
        task_execution_id=gate.task_execution_id,
        job_type=gate.job_type,
        organization_id=gate.organization_id,
        description=gate.description,
        state=_STATES[view.state],
        version=gate.version,
        policy=policy_to_proto(view.policy),
        policy_summary=view.summary,
        votes=[
            approval_pb2.ApprovalVote(
                user_id=vote.user_id,
                decision=_VOTES[vote.decision],
                comment=vote.comment,
                inputs=_texts(vote.inputs),
                vote_time=_timestamp(vote.created_at),
                channel=_CHANNELS[vote.channel],
                gate_version=vote.version,
            )
            for vote in view.votes
        ],
        requester_user_id=gate.requester,
        separation_of_duties_note=view.separation_of_duties_note,
        artifact_digests=[
            artifact_pb2.ArtifactDigest(
                artifact_id=str(digest.get("artifact_id", "")),
                name=str(digest.get("name", "")),
                sha256=str(digest.get("sha256", "")),
            )
            for digest in gate.artifact_digests
        ],
        create_time=_timestamp(gate.created_at),
        deadline_time=_timestamp(gate.deadline_at),
        close_time=_timestamp(gate.decided_at),
        caller_can_decide=view.caller_can_decide,
        caller_cannot_decide_reason=view.caller_cannot_decide_reason,
        progress=view.progress,
        trace_id=gate.trace_id,
        decided_by_user_id=gate.decided_by,
        decision_comment=gate.decision_comment if not view.state.is_open else "",
        decision_inputs=_texts(gate.decision_inputs),
    )
    if view.next_step is not None and gate.next_due_at is not None:
        message.next_sla_time.CopyFrom(convert.timestamp(gate.next_due_at))
        message.next_sla_action = _SLA_ACTIONS[view.next_step.action]
    if gate.decided_channel is not None:
        message.decided_channel = _CHANNELS[gate.decided_channel]
    return message


class ApprovalServicer(pb_grpc.ApprovalServiceServicer):
    """Thin: convert, call `ApprovalService` as the caller, convert back."""

    def __init__(self, approvals: ApprovalService) -> None:
        self._approvals = approvals

    def _identity(self, context: _Context) -> Identity:
        return convert.identity_of(context)

    @unary_rpc
    async def GetApproval(self, request: pb.GetApprovalRequest, context: _Context) -> pb.GetApprovalResponse:
        view = await self._approvals.get(
            self._identity(context), _request_id(request.job_request_id), _task_type(request.task_type)
        )
        return pb.GetApprovalResponse(approval=approval_to_proto(view))

    @unary_rpc
    async def ListPendingApprovals(
        self, request: pb.ListPendingApprovalsRequest, context: _Context
    ) -> pb.ListPendingApprovalsResponse:
        identity = self._identity(context)
        job_request_id = request.job_request_id or None
        if job_request_id is not None:
            _request_id(job_request_id)
        filters = (request.job_request_id, request.only_decidable_by_me)
        page = convert.page_request(request.page_size, request.page_token, filters)
        views, more = await self._approvals.list_pending(
            identity,
            job_request_id=job_request_id,
            only_decidable_by_me=request.only_decidable_by_me,
            limit=page.limit,
            offset=page.offset,
        )
        return pb.ListPendingApprovalsResponse(
            approvals=[approval_to_proto(view) for view in views],
            next_page_token=page.next_token(page.offset + len(views)) if more else "",
        )

    @stream_rpc
    async def WatchPendingApprovals(
        self, request: pb.WatchPendingApprovalsRequest, context: _Context
    ) -> AsyncGenerator[pb.WatchPendingApprovalsResponse, None]:
        identity = self._identity(context)
        job_request_id = request.job_request_id or None
        if job_request_id is not None:
            _request_id(job_request_id)
        # ApprovalService.watch_pending is an async generator; closing it at once releases its wait.
        views = cast(
            AsyncGenerator[GateView | None, None],
            self._approvals.watch_pending(
                identity, job_request_id=job_request_id, only_decidable_by_me=request.only_decidable_by_me
            ),
        )
        async with contextlib.aclosing(views):
            async for view in views:
                if view is None:
                    yield pb.WatchPendingApprovalsResponse(snapshot_complete=True)
                else:
                    yield pb.WatchPendingApprovalsResponse(approval=approval_to_proto(view))

    @unary_rpc
    async def Decide(self, request: pb.DecideRequest, context: _Context) -> pb.DecideResponse:
        identity = self._identity(context)
        decision = _VOTES_FROM_PROTO.get(request.decision)
        if decision is None:
            raise InvalidArgument("decision must be APPROVE or REJECT", field="decision")
        ballot = Ballot(
            decision=decision,
            comment=request.comment,
            inputs=dict(request.inputs),
            idempotency_key=request.idempotency_key,
            gate_version=request.gate_version,
            channel=Channel.GRPC,
        )
        result = await self._approvals.decide(
            identity, _request_id(request.job_request_id), _task_type(request.task_type), ballot
        )
        return pb.DecideResponse(approval=approval_to_proto(result.view), duplicate=result.duplicate)
