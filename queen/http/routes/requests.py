"""`/api/jobs/requests`: submit, list (filters and paging), read, the controls cancel, pause, resume,
restart and trigger, over `RequestService` (the same calls, and so the same rules, as the gRPC
JobRequestService), and two server-sent event streams for pages that follow requests live:
`GET /stream` (a listing, sent again whenever it changes) and `GET /{id}/stream` (one request as it
changes, with its tasks' log lines as they arrive).
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time, and the
# dependency aliases they use (`Caller`) are local to the router factories.

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse

from queen.domain.errors import InvalidArgument
from queen.domain.identity import Identity
from queen.domain.states import JobState
from queen.http import _convert as convert
from queen.http.paging import Paging, page_of
from queen.http.schemas import ErrorOut, JobRequestOut, LogLineOut, Page, SubmitJobRequestIn, TaskLogLinesOut
from queen.http.sse import EventStreams, ServerEvent
from queen.services.following import LogLines, RequestChanged, follow_request
from queen.services.requests import RequestService, Submission
from queen.store import JobRequestRecord
from queen.task_logs import LogHub

__all__ = ["requests_router"]

_MAX_REQUEST_ID = 2**63 - 1  # ids are BIGINT
_MAX_NAME = 256
_MAX_REASON = 4096
# A followed listing is read again at most this often, however many requests change meanwhile.
_LIST_STREAM_PACE = 0.5

RequestId = Annotated[int, Path(ge=1, le=_MAX_REQUEST_ID, description="A job request id.")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Invalid input."},
    404: {"model": ErrorOut, "description": "No such job request (or job type)."},
    409: {
        "model": ErrorOut,
        "description": "Not allowed in the request's state (INVALID_TRANSITION, FAILED_PRECONDITION), "
        "or a duplicate user_key (DUPLICATE_USER_KEY; the existing request's id is in the details).",
    },
}


def _param_text(name: str, value: Any) -> Any:
    """JSON scalars as the text the service takes (`true`, `3`); anything else is passed on for the
    service to refuse with its own message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    del name
    return value


def _job_version(value: str | int | None) -> int:
    if value is None or value == "":
        return 0
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) < 1:
        raise InvalidArgument(f"job_version {text[:20]!r} is not a version number", field="job_version")
    return int(text)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _states(values: list[str]) -> set[JobState] | None:
    """`job_state=FAILED&job_state=CANCELLED` or `job_state=FAILED,CANCELLED`; none means any state."""
    names = [name.strip().upper() for value in values for name in value.split(",") if name.strip()]
    if len(names) > 64:
        raise InvalidArgument("at most 64 states", field="job_state")
    try:
        return {JobState(name) for name in names} or None
    except ValueError:
        known = ", ".join(state.value for state in JobState)
        raise InvalidArgument(f"job_state must be one of {known}", field="job_state") from None


_STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A server-sent event stream (see the route's description).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


def _log_lines(batch: LogLines) -> TaskLogLinesOut:
    return TaskLogLinesOut(
        task_type=batch.task_type,
        task_execution_id=batch.task_execution_id,
        task_retry=batch.task_retry,
        lines=[
            LogLineOut(sequence=line.sequence, time=line.time, stream=line.stream, text=line.text)
            for line in batch.lines
        ],
    )


def requests_router(
    requests: RequestService,
    caller: Callable[[Request], Awaitable[Identity]],
    *,
    logs: LogHub,
    streams: EventStreams,
) -> APIRouter:
    router = APIRouter(responses=_ERRORS)
    Caller = Annotated[Identity, Depends(caller)]

    @router.post(
        "",
        status_code=201,
        summary="Submit a job request",
        description="Queues a request for the latest (or `job_version`) definition of `job_type`; it "
        "starts PENDING. 404 for an unknown job type, 409 for a disabled one or a used `user_key`.",
    )
    async def submit_job_request(body: SubmitJobRequestIn, identity: Caller) -> JobRequestOut:
        # `description` has nowhere to go yet (as over gRPC): neither Submission nor the record holds one.
        submission = Submission(
            job_type=body.job_type,
            params={name: _param_text(name, value) for name, value in body.params.items()},
            priority=body.job_priority,
            scheduled_at=_utc(body.scheduled_at),
            user_key=body.user_key,
            job_version=_job_version(body.job_version),
            job_group=body.job_group,
        )
        return convert.job_request(await requests.submit(identity, submission))

    @router.get("", summary="List job requests, newest first")
    async def list_job_requests(
        identity: Caller,
        paging: Paging,
        job_type: Annotated[str, Query(max_length=_MAX_NAME, description="Only this job type.")] = "",
        job_state: Annotated[
            list[str],
            Query(description="Only these states (repeat the parameter, or separate with commas)."),
        ] = [],  # noqa: B006 - FastAPI copies query defaults; a list is how it declares repeatable ones
        include_execution: Annotated[
            bool, Query(description="Include each request's current execution and its tasks.")
        ] = False,
    ) -> Page[JobRequestOut]:
        records, total = await requests.list_requests(
            identity,
            job_type=job_type or None,
            states=_states(job_state),
            limit=paging.page_size,
            offset=paging.offset,
        )
        found = []
        for record in records:
            if include_execution and record.job_execution_id:
                found.append(convert.job_request(await requests.get(identity, record.id)))
            else:
                found.append(convert.job_request(record))
        return page_of(found, paging, total=total)

    # Before `/{request_id}`: routes match in order, and "stream" is no request id.
    @router.get(
        "/stream",
        summary="Follow a listing of job requests (server-sent events)",
        description="The listing `GET /api/jobs/requests` would answer (same filters and paging), as a "
        "`page` event now and again whenever it changes (a request on it moves, one enters or leaves "
        "it). Woken by committed changes, at most one page every half second. Comment lines keep an "
        "idle stream open; the stream lasts until the client leaves.",
        response_class=StreamingResponse,
        responses=_STREAM_RESPONSE,
    )
    async def stream_job_requests(
        identity: Caller,
        paging: Paging,
        job_type: Annotated[str, Query(max_length=_MAX_NAME, description="Only this job type.")] = "",
        job_state: Annotated[
            list[str],
            Query(description="Only these states (repeat the parameter, or separate with commas)."),
        ] = [],  # noqa: B006 - FastAPI copies query defaults; a list is how it declares repeatable ones
    ) -> StreamingResponse:
        states = _states(job_state)

        async def pages() -> AsyncGenerator[ServerEvent, None]:
            # RequestService.watch_list is an async generator; closing it at once releases its wait.
            found = cast(
                AsyncGenerator[tuple[list[JobRequestRecord], int], None],
                requests.watch_list(
                    identity,
                    job_type=job_type or None,
                    states=states,
                    limit=paging.page_size,
                    offset=paging.offset,
                ),
            )
            sent: Page[JobRequestOut] | None = None
            async with contextlib.aclosing(found):
                async for records, total in found:
                    page = page_of([convert.job_request(r) for r in records], paging, total=total)
                    if page != sent:
                        sent = page
                        yield ServerEvent("page", page)
                    await asyncio.sleep(_LIST_STREAM_PACE)  # changes meanwhile are read as one

        return streams.response(pages())

    @router.get("/{request_id}", summary="Get a job request with its current execution and tasks")
    async def get_job_request(request_id: RequestId, identity: Caller) -> JobRequestOut:
        return convert.job_request(await requests.get(identity, request_id))

    @router.post(
        "/{request_id}/cancel",
        summary="Cancel a job request",
        description="A waiting request ends CANCELLED at once; a running one stops its task, runs the "
        "always_run tasks it owes, then ends CANCELLED (the response shows it still EXECUTING).",
    )
    async def cancel_job_request(
        request_id: RequestId,
        identity: Caller,
        reason: Annotated[str, Query(max_length=_MAX_REASON, description="Recorded with the request.")] = "",
    ) -> JobRequestOut:
        return convert.job_request(await requests.cancel(identity, request_id, reason))

    @router.post(
        "/{request_id}/pause",
        summary="Pause a job request (a PENDING one at once, an EXECUTING one after its current task)",
    )
    async def pause_job_request(request_id: RequestId, identity: Caller) -> JobRequestOut:
        return convert.job_request(await requests.pause(identity, request_id))

    @router.post("/{request_id}/resume", summary="Resume a PAUSED job request where it stopped")
    async def resume_job_request(request_id: RequestId, identity: Caller) -> JobRequestOut:
        return convert.job_request(await requests.resume(identity, request_id))

    @router.post(
        "/{request_id}/restart",
        summary="Run a finished (COMPLETED, FAILED, CANCELLED) job request again",
        description="Soft by default: tasks that completed keep their results. `hard=true` runs every "
        "task again.",
    )
    async def restart_job_request(
        request_id: RequestId,
        identity: Caller,
        hard: Annotated[bool, Query(description="Run every task again.")] = False,
    ) -> JobRequestOut:
        return convert.job_request(await requests.restart(identity, request_id, hard=hard))

    @router.post(
        "/{request_id}/trigger",
        summary="Run a scheduled job request now",
        description="Formicary's trigger: a PENDING request waiting for its `scheduled_at` becomes due "
        "now (its `scheduled_at` is set to now) and the scheduler looks at once; priority, the job "
        "type's `max_concurrency` and Ant capacity still apply. A PENDING request already due is "
        "answered unchanged. 409 INVALID_TRANSITION in any other state.",
    )
    async def trigger_job_request(request_id: RequestId, identity: Caller) -> JobRequestOut:
        return convert.job_request(await requests.trigger(identity, request_id))

    @router.get(
        "/{request_id}/stream",
        summary="Follow a job request and its tasks' logs (server-sent events)",
        description="A `request` event with the request, its execution and tasks (as `GET "
        "/api/jobs/requests/{id}` answers it) now and whenever any of it changes; `logs` events with "
        "its tasks' console lines (those kept so far, then new ones as the Ants send them; "
        "`task_type` keeps one task's, `logs=false` none); an `end` event once the request is "
        "terminal and everything was sent. Lines are identified by task execution, `task_retry` and "
        "`sequence`, so a client that reconnects can drop the ones it has. 404 for an unknown request.",
        response_class=StreamingResponse,
        responses=_STREAM_RESPONSE,
    )
    async def stream_job_request(
        request_id: RequestId,
        identity: Caller,
        task_type: Annotated[str, Query(max_length=_MAX_NAME, description="Only this task's lines.")] = "",
        logs_wanted: Annotated[
            bool, Query(alias="logs", description="Send the tasks' console lines.")
        ] = True,
    ) -> StreamingResponse:
        await requests.get(identity, request_id)  # 404 now, rather than a problem event in a 200 stream

        async def changes() -> AsyncGenerator[ServerEvent, None]:
            followed = follow_request(
                requests, logs, identity, request_id, task_type=task_type, with_logs=logs_wanted
            )
            async with contextlib.aclosing(followed):
                async for item in followed:
                    if isinstance(item, RequestChanged):
                        yield ServerEvent("request", convert.job_request(item.details))
                    else:
                        yield ServerEvent("logs", _log_lines(item))

        return streams.response(changes())

    return router
