"""JobRequestService through a real Queen: submission and its refusals, reading and listing, the operator
actions, the watch stream, and a job run by a scripted Ant (events, execution, logs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2

from formicary.v1 import admin_service_pb2 as admin_pb
from formicary.v1 import job_definition_service_pb2 as def_pb
from formicary.v1 import job_request_pb2, state_pb2
from formicary.v1 import job_request_service_pb2 as pb
from tests.fixtures.waiting import assert_eventually

from .conftest import SHELL_YAML, Api, ScriptedAnt, failure, playbook

pytestmark = pytest.mark.integration

J = state_pb2


async def submit(api: Api, job_type: str = "secure-go-cicd", **fields: object) -> job_request_pb2.JobRequest:
    response = await api.requests.SubmitJobRequest(pb.SubmitJobRequestRequest(job_type=job_type, **fields))  # type: ignore[arg-type]
    return response.job_request


async def watch(api: Api, request_id: int) -> list[job_request_pb2.JobRequestEvent]:
    """Every event the watch stream sends until it ends by itself."""
    stream = api.requests.WatchJobRequest(pb.WatchJobRequestRequest(job_request_id=request_id))
    return [message.event async for message in stream]


async def collect(
    stream: AsyncIterator[pb.WatchJobRequestResponse], into: list[job_request_pb2.JobRequestEvent]
) -> None:
    async for message in stream:
        into.append(message.event)


async def test_submitted_request_waits_for_an_ant(api: Api) -> None:
    await api.upload(playbook("secure-go-cicd.yaml"))
    request = await submit(api, params={"branch": "main"}, job_priority=5, job_group="release")
    assert request.job_state == J.JOB_STATE_PENDING
    assert (request.job_type, request.job_version, request.job_priority) == ("secure-go-cicd", "1", 5)
    assert request.params == {"branch": "main"}

    events: list[job_request_pb2.JobRequestEvent] = []
    call = api.requests.WatchJobRequest(pb.WatchJobRequestRequest(job_request_id=request.id))
    reader = asyncio.create_task(collect(call, events))
    try:
        # no Ant is connected: the scheduler says why the request waits, and the watch stream shows it
        waiting = await assert_eventually(
            lambda: [e for e in events if "no connected Ant runs KUBERNETES tasks" in e.message],
            message="wait reason event",
        )
    finally:
        call.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    assert waiting[0].job_state == J.JOB_STATE_PENDING

    # following the logs of a request that never runs: nothing comes until the client gives up
    logs = api.requests.StreamTaskLogs(pb.StreamTaskLogsRequest(job_request_id=request.id, follow=True))
    read = asyncio.ensure_future(logs.read())
    done, _ = await asyncio.wait([read], timeout=0.3)
    assert not done
    logs.cancel()
    await asyncio.gather(read, return_exceptions=True)
    assert await logs.code() is grpc.StatusCode.CANCELLED
    assert events[0].message.startswith("submitted by")
    fetched = await api.requests.GetJobRequest(pb.GetJobRequestRequest(job_request_id=request.id))
    assert fetched.job_request.job_state == J.JOB_STATE_PENDING
    assert not fetched.job_request.HasField("execution")


async def test_submissions_are_refused_with_the_right_status(api: Api) -> None:
    await api.upload(SHELL_YAML)

    unknown = await failure(api.requests.SubmitJobRequest(pb.SubmitJobRequestRequest(job_type="nope")))
    assert unknown.code is grpc.StatusCode.NOT_FOUND

    missing = await failure(api.requests.SubmitJobRequest(pb.SubmitJobRequestRequest(job_type="shell-hello")))
    assert missing.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "who" in missing.message
    (bad_request,) = missing.unpacked(error_details_pb2.BadRequest)
    assert bad_request.field_violations[0].field == "params"

    for version in ("x", "0", "-1", "²", "1" * 12):
        refused = await failure(
            api.requests.SubmitJobRequest(
                pb.SubmitJobRequestRequest(job_type="shell-hello", params={"who": "me"}, job_version=version)
            )
        )
        assert refused.code is grpc.StatusCode.INVALID_ARGUMENT, version
    no_such_version = await failure(
        api.requests.SubmitJobRequest(
            pb.SubmitJobRequestRequest(job_type="shell-hello", params={"who": "me"}, job_version="9")
        )
    )
    assert no_such_version.code is grpc.StatusCode.NOT_FOUND

    first = await submit(api, "shell-hello", params={"who": "me"}, user_key="deploy-42", job_version="1")
    duplicate = await failure(
        api.requests.SubmitJobRequest(
            pb.SubmitJobRequestRequest(job_type="shell-hello", params={"who": "me"}, user_key="deploy-42")
        )
    )
    assert duplicate.code is grpc.StatusCode.ALREADY_EXISTS
    assert duplicate.info.reason == "DUPLICATE_USER_KEY"
    assert duplicate.info.metadata["existing_job_request_id"] == str(first.id)
    (resource,) = duplicate.unpacked(error_details_pb2.ResourceInfo)
    assert resource.resource_name == str(first.id)

    for request_id, code in (
        (0, grpc.StatusCode.INVALID_ARGUMENT),
        (2**64 - 1, grpc.StatusCode.INVALID_ARGUMENT),
        (999_999, grpc.StatusCode.NOT_FOUND),
    ):
        got = await failure(api.requests.GetJobRequest(pb.GetJobRequestRequest(job_request_id=request_id)))
        assert got.code is code, request_id
    listed = await api.requests.ListJobRequests(pb.ListJobRequestsRequest())
    assert [r.id for r in listed.job_requests] == [first.id]


async def test_cancel_restart_pause_resume_and_watch(api: Api) -> None:
    await api.upload(playbook("secure-go-cicd.yaml"))
    request = await submit(api)

    cancelled = await api.requests.CancelJobRequest(
        pb.CancelJobRequestRequest(job_request_id=request.id, reason="not today")
    )
    assert cancelled.job_request.job_state == J.JOB_STATE_CANCELLED
    assert (cancelled.job_request.error_code, cancelled.job_request.error_message) == (
        "ERR_CANCELLED",
        "not today",
    )
    again = await failure(
        api.requests.CancelJobRequest(pb.CancelJobRequestRequest(job_request_id=request.id))
    )
    assert again.code is grpc.StatusCode.FAILED_PRECONDITION
    assert again.info.metadata["current_state"] == "CANCELLED"
    assert again.unpacked(error_details_pb2.PreconditionFailure)

    # the stream replays the request's events and ends by itself once it is terminal
    events = await asyncio.wait_for(watch(api, request.id), 10)
    assert events[0].job_state == J.JOB_STATE_PENDING
    assert events[-1].job_state == J.JOB_STATE_CANCELLED
    (ended,) = [e for e in events if "not today" in e.message]
    assert (ended.job_state, ended.task_type) == (J.JOB_STATE_CANCELLED, "")
    assert all(e.job_request_id == request.id and e.job_type == "secure-go-cicd" for e in events)

    restarted = await api.requests.RestartJobRequest(
        pb.RestartJobRequestRequest(job_request_id=request.id, hard=True)
    )
    assert restarted.job_request.job_state == J.JOB_STATE_PENDING
    paused = await api.requests.PauseJobRequest(pb.PauseJobRequestRequest(job_request_id=request.id))
    assert paused.job_request.job_state == J.JOB_STATE_PAUSED
    not_paused = await failure(
        api.requests.PauseJobRequest(pb.PauseJobRequestRequest(job_request_id=request.id))
    )
    assert not_paused.code is grpc.StatusCode.FAILED_PRECONDITION
    resumed = await api.requests.ResumeJobRequest(pb.ResumeJobRequestRequest(job_request_id=request.id))
    assert resumed.job_request.job_state == J.JOB_STATE_PENDING
    not_resumable = await failure(
        api.requests.ResumeJobRequest(pb.ResumeJobRequestRequest(job_request_id=request.id))
    )
    assert not_resumable.code is grpc.StatusCode.FAILED_PRECONDITION
    not_restartable = await failure(
        api.requests.RestartJobRequest(pb.RestartJobRequestRequest(job_request_id=request.id))
    )
    assert not_restartable.code is grpc.StatusCode.FAILED_PRECONDITION
    unknown = await failure(api.requests.CancelJobRequest(pb.CancelJobRequestRequest(job_request_id=424242)))
    assert unknown.code is grpc.StatusCode.NOT_FOUND

    await api.requests.CancelJobRequest(pb.CancelJobRequestRequest(job_request_id=request.id))
    events = await asyncio.wait_for(watch(api, request.id), 10)
    states = [e.job_state for e in events]
    assert states.count(J.JOB_STATE_CANCELLED) >= 2
    assert J.JOB_STATE_PAUSED in states
    assert states[-1] == J.JOB_STATE_CANCELLED

    missing = api.requests.WatchJobRequest(pb.WatchJobRequestRequest(job_request_id=424242))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in missing:
            pass
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_list_filters_and_pages(api: Api) -> None:
    await api.upload(playbook("secure-go-cicd.yaml"))
    await api.upload(SHELL_YAML)
    a = await submit(api)
    b = await submit(api, "shell-hello", params={"who": "a"})
    c = await submit(api, "shell-hello", params={"who": "b"})
    await api.requests.CancelJobRequest(pb.CancelJobRequestRequest(job_request_id=b.id))

    async def ids(**filters: object) -> list[int]:
        listed = await api.requests.ListJobRequests(pb.ListJobRequestsRequest(**filters))  # type: ignore[arg-type]
        return [r.id for r in listed.job_requests]

    assert await ids() == [c.id, b.id, a.id]
    assert await ids(job_type="shell-hello") == [c.id, b.id]
    assert await ids(states=[J.JOB_STATE_CANCELLED]) == [b.id]
    assert await ids(states=[J.JOB_STATE_PENDING, J.JOB_STATE_CANCELLED], job_type="shell-hello") == [
        c.id,
        b.id,
    ]
    assert await ids(states=[J.JOB_STATE_UNSPECIFIED]) == [c.id, b.id, a.id]
    assert await ids(states=[J.JOB_STATE_COMPLETED]) == []

    first = await api.requests.ListJobRequests(pb.ListJobRequestsRequest(page_size=2, include_execution=True))
    assert [r.id for r in first.job_requests] == [c.id, b.id]
    assert not any(r.HasField("execution") for r in first.job_requests)  # none was launched
    second = await api.requests.ListJobRequests(
        pb.ListJobRequestsRequest(page_size=2, page_token=first.next_page_token)
    )
    assert [r.id for r in second.job_requests] == [a.id]
    assert not second.next_page_token

    changed = await failure(
        api.requests.ListJobRequests(
            pb.ListJobRequestsRequest(page_token=first.next_page_token, job_type="shell-hello")
        )
    )
    assert changed.code is grpc.StatusCode.INVALID_ARGUMENT
    bad_state = await failure(api.requests.ListJobRequests(pb.ListJobRequestsRequest(states=[99])))  # type: ignore[list-item]
    assert bad_state.code is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.requests.ListJobRequests(pb.ListJobRequestsRequest(parent_id=a.id))
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("protocol_version", [1, 3], ids=["protocol-1", "protocol-3-batches"])
async def test_a_job_run_by_an_ant_streams_events_and_logs(api: Api, protocol_version: int) -> None:
    await api.upload(SHELL_YAML)
    ant = ScriptedAnt(api.channel, protocol_version=protocol_version)
    await ant.start()
    try:
        listed_ants = await api.admin.ListAnts(admin_pb.ListAntsRequest())
        assert [a.ant_id for a in listed_ants.ants] == ["ant-test"]

        request = await submit(api, "shell-hello", params={"who": "world"})
        logs = api.requests.StreamTaskLogs(pb.StreamTaskLogsRequest(job_request_id=request.id, follow=True))
        greet = await ant.run_next(["hello world", "greeted"])
        assert greet.task_type == "greet"
        followed: list[pb.StreamTaskLogsResponse] = []
        first = await asyncio.wait_for(logs.read(), 10)
        assert isinstance(first, pb.StreamTaskLogsResponse)
        followed.append(first)
        await ant.run_next(["bye"])
        # the stream ends by itself once the request is terminal
        while (message := await asyncio.wait_for(logs.read(), 10)) is not grpc.aio.EOF:
            assert isinstance(message, pb.StreamTaskLogsResponse)
            followed.append(message)
        assert await logs.code() is grpc.StatusCode.OK
        lines = [(m.task_type, line.sequence, line.text) for m in followed for line in m.lines]
        assert lines == [("greet", 1, "hello world"), ("greet", 2, "greeted"), ("bye", 1, "bye")]

        events = await asyncio.wait_for(watch(api, request.id), 10)
        assert events[-1].job_state == J.JOB_STATE_COMPLETED
        task_events = [(e.task_type, e.task_state) for e in events if e.task_type]
        assert ("greet", J.TASK_STATE_COMPLETED) in task_events
        assert ("bye", J.TASK_STATE_COMPLETED) in task_events
        done = [e for e in events if e.task_type == "greet" and e.task_state == J.TASK_STATE_COMPLETED]
        assert done[0].exit_code == "0"

        fetched = (
            await api.requests.GetJobRequest(pb.GetJobRequestRequest(job_request_id=request.id))
        ).job_request
        assert fetched.job_state == J.JOB_STATE_COMPLETED
        assert [(t.task_type, t.task_state, t.ant_id) for t in fetched.execution.tasks] == [
            ("greet", J.TASK_STATE_COMPLETED, "ant-test"),
            ("bye", J.TASK_STATE_COMPLETED, "ant-test"),
        ]
        assert fetched.execution.job_state == J.JOB_STATE_COMPLETED

        # after the fact: the stored lines of one task, then the end
        stored = api.requests.StreamTaskLogs(
            pb.StreamTaskLogsRequest(job_request_id=request.id, task_type="bye")
        )
        assert [[line.text for line in m.lines] async for m in stored] == [["bye"]]
        listed = await api.requests.ListJobRequests(pb.ListJobRequestsRequest(include_execution=True))
        assert listed.job_requests[0].execution.id == fetched.execution.id
        unknown_task = api.requests.StreamTaskLogs(
            pb.StreamTaskLogsRequest(job_request_id=request.id, task_type="nope")
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in unknown_task:
                pass
        assert info.value.code() is grpc.StatusCode.NOT_FOUND
    finally:
        await ant.stop()


async def test_submit_to_a_disabled_job_type_is_a_failed_precondition(api: Api) -> None:
    await api.upload(playbook("secure-go-cicd.yaml"))
    await api.definitions.DisableJobDefinition(def_pb.DisableJobDefinitionRequest(job_type="secure-go-cicd"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await submit(api)
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "disabled" in (caught.value.details() or "")
    listed = await api.requests.ListJobRequests(pb.ListJobRequestsRequest())
    assert list(listed.job_requests) == []


async def test_waiting_request_shows_its_wait_reason(api: Api) -> None:
    await api.upload(playbook("secure-go-cicd.yaml"))
    request = await submit(api)

    async def reason() -> str:
        fetched = await api.requests.GetJobRequest(pb.GetJobRequestRequest(job_request_id=request.id))
        return fetched.job_request.wait_reason

    assert await assert_eventually(reason) == "task build: no connected Ant runs KUBERNETES tasks"
