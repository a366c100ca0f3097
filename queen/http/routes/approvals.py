"""Approvals, Formicary-compatible: vote on a MANUAL task's gate, read it, list what waits for people
(once, or followed as server-sent events), over `ApprovalService` (the same calls, and so the same rules,
as the gRPC ApprovalService).

The decider is the caller's identity (`queen.http.caller`), never a field of the body; the vote is
recorded with the REST channel.
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time, and the
# dependency aliases they use (`Caller`) are local to the router factories.

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse

from queen.domain.approvals import Channel, Vote
from queen.domain.errors import InvalidArgument
from queen.domain.identity import Identity
from queen.http import _convert as convert
from queen.http.paging import Paging, page_of
from queen.http.schemas import ApprovalDecisionOut, ApprovalOut, ApprovalVoteIn, ErrorOut, Page
from queen.http.sse import EventStreams, ServerEvent
from queen.services.approvals import ApprovalService, Ballot, GateView

__all__ = ["approvals_router"]

_MAX_REQUEST_ID = 2**63 - 1  # ids are BIGINT
_MAX_NAME = 256

RequestId = Annotated[int, Path(ge=1, le=_MAX_REQUEST_ID, description="A job request id.")]
TaskType = Annotated[
    str, Path(min_length=1, max_length=_MAX_NAME, description="The MANUAL task's task_type.")
]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Invalid input."},
    404: {"model": ErrorOut, "description": "No such job request, or no gate of that task type."},
}
_VOTE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorOut,
        "description": "Invalid input: a decision other than APPROVED or REJECTED, a REJECTED without "
        "comments, input values that do not fit the gate's inputs.",
    },
    403: {"model": ErrorOut, "description": "The policy does not let the caller decide this gate."},
    409: {
        "model": ErrorOut,
        "description": "FAILED_PRECONDITION: the gate is closed, or changed since `gate_version`; "
        "ALREADY_EXISTS: the caller already voted on this version (under another idempotency key).",
    },
}


def _input_text(name: str, value: Any) -> str:
    """A JSON scalar as the text the service takes (`true`, `3`); the service validates its type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise InvalidArgument(f"input {name[:64]!r} must be text, a number or a boolean", field=f"inputs.{name}")


def _inputs(values: Mapping[str, Any]) -> dict[str, str]:
    return {name: _input_text(name, value) for name, value in values.items()}


def approvals_router(
    approvals: ApprovalService, caller: Callable[[Request], Awaitable[Identity]], *, streams: EventStreams
) -> APIRouter:
    router = APIRouter(responses=_ERRORS)
    Caller = Annotated[Identity, Depends(caller)]

    @router.post(
        "/api/jobs/requests/{request_id}/tasks/{task_type}/vote",
        summary="Approve or reject a MANUAL task",
        description="Records the caller's decision (`APPROVED` or `REJECTED`, as Formicary's clients "
        "send it; `comments` required for REJECTED) and answers the gate after it. When the vote "
        "decides the gate, the job continues on the matching route. A repeat with the same "
        "`idempotency_key` answers again with `duplicate: true`.",
        responses=_VOTE_ERRORS,
    )
    async def vote_on_task(
        request_id: RequestId, task_type: TaskType, body: ApprovalVoteIn, identity: Caller
    ) -> ApprovalDecisionOut:
        ballot = Ballot(
            decision=Vote.from_text(body.decision),
            comment=body.comments,
            inputs=_inputs(body.inputs),
            idempotency_key=body.idempotency_key,
            gate_version=body.gate_version,
            channel=Channel.REST,
        )
        result = await approvals.decide(identity, request_id, task_type, ballot)
        return convert.approval_decision(result)

    @router.get(
        "/api/jobs/requests/{request_id}/tasks/{task_type}/approval",
        summary="Get a MANUAL task's approval gate",
        description="The latest gate of that task (open or closed): state, version, policy, votes, "
        "tally, deadlines, the artifact digests the decision is bound to, the requester.",
    )
    async def get_task_approval(request_id: RequestId, task_type: TaskType, identity: Caller) -> ApprovalOut:
        return convert.approval(await approvals.get(identity, request_id, task_type))

    @router.get(
        "/api/approvals/pending",
        summary="List open approval gates, oldest first",
        description="Gates waiting for people; `job_request_id` keeps one request's, "
        "`only_decidable_by_me` those the caller may decide now.",
    )
    async def list_pending_approvals(
        identity: Caller,
        paging: Paging,
        job_request_id: Annotated[
            int | None, Query(ge=1, le=_MAX_REQUEST_ID, description="Only this job request's gates.")
        ] = None,
        only_decidable_by_me: Annotated[
            bool, Query(description="Only the gates the caller may decide now.")
        ] = False,
    ) -> Page[ApprovalOut]:
        views, more = await approvals.list_pending(
            identity,
            job_request_id=job_request_id,
            only_decidable_by_me=only_decidable_by_me,
            limit=paging.page_size,
            offset=paging.offset,
        )
        return page_of([convert.approval(view) for view in views], paging, has_more=more)

    @router.get(
        "/api/approvals/pending/stream",
        summary="Follow the open approval gates (server-sent events)",
        description="An `approval` event for each open gate now, then `snapshot_complete`, then an "
        "`approval` event whenever a gate opens, changes (a vote, a new version, an SLA step) or closes "
        "(sent once more as it closed: `state` is then no longer OPEN). Filters as "
        "`GET /api/approvals/pending`. Woken by committed changes; lasts until the client leaves.",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "A server-sent event stream.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    async def stream_pending_approvals(
        identity: Caller,
        job_request_id: Annotated[
            int | None, Query(ge=1, le=_MAX_REQUEST_ID, description="Only this job request's gates.")
        ] = None,
        only_decidable_by_me: Annotated[
            bool, Query(description="Only the gates the caller may decide now.")
        ] = False,
    ) -> StreamingResponse:
        async def gates() -> AsyncGenerator[ServerEvent, None]:
            # ApprovalService.watch_pending is an async generator; closing it at once releases its wait.
            views = cast(
                AsyncGenerator[GateView | None, None],
                approvals.watch_pending(
                    identity, job_request_id=job_request_id, only_decidable_by_me=only_decidable_by_me
                ),
            )
            async with contextlib.aclosing(views):
                async for view in views:
                    if view is None:
                        yield ServerEvent("snapshot_complete")
                    else:
                        yield ServerEvent("approval", convert.approval(view))

        return streams.response(gates())

    return router
