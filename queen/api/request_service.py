"""JobRequestService servicer: submit and follow job requests (state, events, logs) and operate on them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator
from datetime import datetime
from typing import Any, cast

import grpc

from formicary.v1 import job_request_service_pb2 as pb
from formicary.v1 import job_request_service_pb2_grpc as pb_grpc
from queen.api import _convert as convert
from queen.api.errors import stream_rpc, unary_rpc
from queen.domain.errors import InvalidArgument, NotFound
from queen.domain.identity import Identity
from queen.domain.states import JobState
from queen.services.following import RequestChanged, follow_request
from queen.services.requests import Submission
from queen.services.service_set import Services
from queen.store import EventRecord
from queen.task_logs import StoredLine

__all__ = ["JobRequestServicer"]

_MAX_REQUEST_ID = 2**63 - 1  # ids are BIGINT: anything above cannot exist (and would overflow the driver)
_MAX_NAME = 256  # job types, task types, groups
_MAX_REASON = 4096
# One StreamTaskLogs message carries at most this many lines / bytes of text (lines are up to 64 KiB).
_LINES_PER_MESSAGE = 1000
_BYTES_PER_MESSAGE = 1024 * 1024

_Context = grpc.aio.ServicerContext[Any, Any]


def _request_id(value: int) -> int:
    if value == 0:
        raise InvalidArgument("job_request_id is required", field="job_request_id")
    if value > _MAX_REQUEST_ID:
        raise InvalidArgument(f"job_request_id {value} is not a job request id", field="job_request_id")
    return value


def _bounded(value: str, field: str, limit: int = _MAX_NAME) -> str:
    if len(value) > limit:
        raise InvalidArgument(f"{field} is longer than {limit} characters", field=field)
    return value


def _job_version(text: str) -> int:
    """JobRequest versions travel as text; empty means the latest (0 for the service)."""
    if not text:
        return 0
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) < 1:
        raise InvalidArgument(f"job_version {text[:20]!r} is not a version number", field="job_version")
    return int(text)


def _scheduled_time(request: pb.SubmitJobRequestRequest) -> datetime | None:
    if not request.HasField("scheduled_time"):
        return None
    try:
        return convert.to_datetime(request.scheduled_time)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument("scheduled_time is not a valid time", field="scheduled_time") from exc


class JobRequestServicer(pb_grpc.JobRequestServiceServicer):
    """Thin: convert, call `RequestService` (and `LogHub` for logs) as the caller, convert back."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._requests = services.requests

    def _identity(self, context: _Context) -> Identity:
        return convert.identity_of(context)

    @unary_rpc
    async def SubmitJobRequest(
        self, request: pb.SubmitJobRequestRequest, context: _Context
    ) -> pb.SubmitJobRequestResponse:
        if not request.job_type:
            raise InvalidArgument("job_type is required", field="job_type")
        # `description` has nowhere to go yet: neither Submission nor the request record holds one.
        submission = Submission(
            job_type=_bounded(request.job_type, "job_type"),
            params=dict(request.params),
            priority=request.job_priority,
            scheduled_at=_scheduled_time(request),
            user_key=request.user_key,
            job_version=_job_version(request.job_version),
            job_group=_bounded(request.job_group, "job_group"),
        )
        record = await self._requests.submit(self._identity(context), submission)
        return pb.SubmitJobRequestResponse(job_request=convert.job_request(record))

    @unary_rpc
    async def GetJobRequest(
        self, request: pb.GetJobRequestRequest, context: _Context
    ) -> pb.GetJobRequestResponse:
        details = await self._requests.get(self._identity(context), _request_id(request.job_request_id))
        return pb.GetJobRequestResponse(
            job_request=convert.job_request(details.request, details.execution, details.tasks)
        )

    @unary_rpc
    async def ListJobRequests(
        self, request: pb.ListJobRequestsRequest, context: _Context
    ) -> pb.ListJobRequestsResponse:
        identity = self._identity(context)
        if request.parent_id:
            # RequestService.list_requests cannot filter by parent yet; ignoring the filter would list
            # requests the caller did not ask for.
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the parent_id filter is not supported yet")
        job_type = _bounded(request.job_type, "job_type")
        if len(request.states) > 64:
            raise InvalidArgument("at most 64 states", field="states")
        states = {convert.job_state_from_proto(value) for value in request.states}
        # JOB_STATE_UNSPECIFIED in the filter means "any state"
        wanted = None if not states or None in states else {s for s in states if s is not None}
        filters = (job_type, tuple(sorted(wanted or ())), request.parent_id)
        page = convert.page_request(request.page_size, request.page_token, filters)
        records, total = await self._requests.list_requests(
            identity, job_type=job_type or None, states=wanted, limit=page.limit, offset=page.offset
        )
        messages = []
        for record in records:
            if request.include_execution and record.job_execution_id:
                details = await self._requests.get(identity, record.id)
                messages.append(convert.job_request(details.request, details.execution, details.tasks))
            else:
                messages.append(convert.job_request(record))
        end = page.offset + len(records)
        return pb.ListJobRequestsResponse(
            job_requests=messages, next_page_token=page.next_token(end) if end < total else ""
        )

    @unary_rpc
    async def CancelJobRequest(
        self, request: pb.CancelJobRequestRequest, context: _Context
    ) -> pb.CancelJobRequestResponse:
        record = await self._requests.cancel(
            self._identity(context),
            _request_id(request.job_request_id),
            _bounded(request.reason, "reason", _MAX_REASON),
        )
        return pb.CancelJobRequestResponse(job_request=convert.job_request(record))

    @unary_rpc
    async def RestartJobRequest(
        self, request: pb.RestartJobRequestRequest, context: _Context
    ) -> pb.RestartJobRequestResponse:
        record = await self._requests.restart(
            self._identity(context), _request_id(request.job_request_id), hard=request.hard
        )
        return pb.RestartJobRequestResponse(job_request=convert.job_request(record))

    @unary_rpc
    async def PauseJobRequest(
        self, request: pb.PauseJobRequestRequest, context: _Context
    ) -> pb.PauseJobRequestResponse:
        record = await self._requests.pause(self._identity(context), _request_id(request.job_request_id))
        return pb.PauseJobRequestResponse(job_request=convert.job_request(record))

    @unary_rpc
    async def ResumeJobRequest(
        self, request: pb.ResumeJobRequestRequest, context: _Context
    ) -> pb.ResumeJobRequestResponse:
        record = await self._requests.resume(self._identity(context), _request_id(request.job_request_id))
        return pb.ResumeJobRequestResponse(job_request=convert.job_request(record))

    @stream_rpc
    async def WatchJobRequest(
        self, request: pb.WatchJobRequestRequest, context: _Context
    ) -> AsyncGenerator[pb.WatchJobRequestResponse, None]:
        """The request's event log from its submission on, then live, until it is terminal.

        Each event carries the request's state after it, tracked along the log (task events do not
        store it). The service ends the stream once the request is terminal and every event was sent.
        """
        identity = self._identity(context)
        request_id = _request_id(request.job_request_id)
        job_type = (await self._requests.get(identity, request_id)).request.job_type
        state = JobState.PENDING
        # RequestService.watch is an async generator; closing it at once releases its wait.
        events = cast(AsyncGenerator[EventRecord, None], self._requests.watch(identity, request_id))
        async with contextlib.aclosing(events):
            async for event in events:
                state = convert.job_state_after(event, state)
                message = convert.job_request_event(event, job_type=job_type, job_state=state)
                yield pb.WatchJobRequestResponse(event=message)

    @stream_rpc
    async def StreamTaskLogs(
        self, request: pb.StreamTaskLogsRequest, context: _Context
    ) -> AsyncGenerator[pb.StreamTaskLogsResponse, None]:
        """Stored lines of the request's current execution, task by task; with follow, then new lines as
        they arrive, until the request is terminal (or the client goes away).

        Lines are kept per task (LogHub), so lines of different tasks come task by task, not in the
        order the Queen received them.
        """
        identity = self._identity(context)
        request_id = _request_id(request.job_request_id)
        task_type = _bounded(request.task_type, "task_type")
        checked = not task_type
        items = follow_request(
            self._requests,
            self._services.logs,
            identity,
            request_id,
            task_type=task_type,
            follow=request.follow,
        )
        async with contextlib.aclosing(items):
            async for item in items:
                if isinstance(item, RequestChanged):
                    if not checked:
                        await self._check_task_type(
                            identity, item.details.request.job_definition_id, task_type
                        )
                        checked = True
                    continue
                for batch in _batches(list(item.lines)):
                    yield pb.StreamTaskLogsResponse(
                        task_type=item.task_type,
                        task_execution_id=item.task_execution_id,
                        task_retry=item.task_retry,
                        lines=[convert.log_line(line) for line in batch],
                    )

    async def _check_task_type(self, identity: Identity, definition_id: str, task_type: str) -> None:
        """NOT_FOUND for a task type the request's definition lacks (else `follow` would wait for lines
        that never come). A deleted definition cannot be checked: then any name is accepted."""
        try:
            record = await self._services.definitions.get(identity, definition_id=definition_id)
        except NotFound:
            return
        if record.definition().task(task_type) is None:
            raise NotFound(f"job type {record.job_type!r} has no task {task_type!r}")


def _batches(lines: list[StoredLine]) -> Iterator[list[StoredLine]]:
    """Consecutive lines of one attempt, within the per-message limits."""
    batch: list[StoredLine] = []
    size = 0
    for line in lines:
        if batch and (
            line.task_retry != batch[0].task_retry
            or len(batch) >= _LINES_PER_MESSAGE
            or size + len(line.text) > _BYTES_PER_MESSAGE
        ):
            yield batch
            batch, size = [], 0
        batch.append(line)
        size += len(line.text)
    if batch:
        yield batch
