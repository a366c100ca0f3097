"""Dispatch through the registry without a network: the window of ant_service.proto §3, FIFO, tags, and
the stream handle the servicer's writer drains (queen.ants)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from formicary.v1 import ant_service_pb2, log_line_pb2, state_pb2, task_pb2
from queen.ants.registry import AntRegistry
from queen.ants.session import BATCH_BYTES, AntSession, StreamEnd, StreamHandle
from queen.domain.job_definition import TaskDefinition, TaskMethod
from queen.domain.states import TaskState
from queen.domain.work import TaskWork
from queen.supervisor.dispatch import DispatchOutcome
from tests.fixtures.waiting import assert_eventually

pytestmark = pytest.mark.unit

Req = ant_service_pb2.ConnectRequest


class NoLogs:
    def lines(self, task_execution_id: str, task_retry: int, lines: Iterable[log_line_pb2.LogLine]) -> None:
        return None


class Progress:
    async def waiting(self, reason: str) -> None:
        return None

    async def dispatched(self, ant_id: str, ant_host: str) -> None:
        return None

    async def accepted(self, ant_id: str, at: datetime | None = None) -> None:
        return None


def work(name: str, *, tags: tuple[str, ...] = ()) -> TaskWork:
    return TaskWork(
        job_request_id=1,
        job_definition_id="d",
        job_type="j",
        job_version=1,
        job_execution_id="e",
        task_execution_id=name,
        correlation_id=f"{name}:0.0",
        task=TaskDefinition(task_type=name, method=TaskMethod.SHELL, script=("true",), tags=tags),
        variables={},
    )


def registry() -> AntRegistry:
    return AntRegistry(
        heartbeat_interval=timedelta(seconds=10), heartbeat_timeout=timedelta(seconds=60), log_sink=NoLogs()
    )


def connect(
    ants: AntRegistry, ant_id: str, *, tags: tuple[str, ...] = (), capacity: int = 2
) -> tuple[AntSession, StreamHandle]:
    register = Req.Register(
        ant_id=ant_id, methods=[task_pb2.TASK_METHOD_SHELL], tags=list(tags), max_capacity=capacity
    )
    session, stream, _ = ants.connect(register, frozenset({TaskMethod.SHELL}))
    assert isinstance(stream.take(), ant_service_pb2.ConnectResponse)  # Registered
    return session, stream


def heartbeat(ants: AntRegistry, session: AntSession, *, free: int, acked: int, running: list[str]) -> None:
    beat = Req.Heartbeat(free_slots=free, last_acked_sequence=acked, running_task_execution_ids=running)
    ants.received(session, Req(heartbeat=beat))


def dispatched(stream: StreamHandle) -> list[str]:
    names = []
    while (frame := stream.take()) is not None:
        assert isinstance(frame, ant_service_pb2.ConnectResponse)
        if frame.WhichOneof("frame") == "dispatch_task":
            names.append(frame.dispatch_task.request.task_execution_id)
    return names


async def test_dispatches_stay_within_the_window_in_arrival_order() -> None:
    ants = registry()
    session, stream = connect(ants, "a1", capacity=2)
    runs = [asyncio.create_task(ants.run(work(f"t{n}"), Progress())) for n in range(5)]
    await asyncio.sleep(0)
    assert dispatched(stream) == []  # nothing before the first heartbeat (§1)
    heartbeat(ants, session, free=2, acked=0, running=[])
    assert dispatched(stream) == ["t0", "t1"]
    assert ants.waiting == 3
    # t0's result comes back and is acknowledged; the Ant frees the slot and says so
    ants.received(session, Req(task_accepted=Req.TaskAccepted(sequence=1, task_execution_id="t0")))
    ants.received(session, Req(task_accepted=Req.TaskAccepted(sequence=2, task_execution_id="t1")))
    response = task_pb2.TaskResponse(
        task_execution_id="t0", correlation_id="t0:0.0", status=state_pb2.TASK_STATE_COMPLETED
    )
    ants.received(session, Req(task_result=Req.TaskResult(sequence=1, response=response)))
    assert dispatched(stream) == []  # the result frees nothing until the Ant's heartbeat says so
    heartbeat(ants, session, free=1, acked=2, running=["t1"])
    assert dispatched(stream) == ["t2"]
    assert ants.waiting == 2
    outcome = await runs[0]
    assert isinstance(outcome, DispatchOutcome)
    assert outcome.report.state is TaskState.COMPLETED
    for run in runs[1:]:
        run.cancel()
    await asyncio.gather(*runs[1:], return_exceptions=True)
    assert ants.waiting == 0


async def test_attempts_for_a_tag_nobody_offers_do_not_hold_up_the_others() -> None:
    ants = registry()
    plain, plain_stream = connect(ants, "plain", capacity=3)
    gpu_runs = [asyncio.create_task(ants.run(work(f"g{n}", tags=("gpu",)), Progress())) for n in range(50)]
    runs = [asyncio.create_task(ants.run(work(f"t{n}"), Progress())) for n in range(5)]
    await asyncio.sleep(0)
    heartbeat(ants, plain, free=3, acked=0, running=[])
    assert dispatched(plain_stream) == ["t0", "t1", "t2"]
    gpu, gpu_stream = connect(ants, "gpu", tags=("gpu",), capacity=2)
    heartbeat(ants, gpu, free=2, acked=0, running=[])
    assert dispatched(gpu_stream) == ["g0", "g1"]  # the oldest first: the gpu group waited longest
    assert ants.waiting == 48 + 2
    for run in [*gpu_runs, *runs]:
        run.cancel()
    await asyncio.gather(*gpu_runs, *runs, return_exceptions=True)
    assert ants.waiting == 0


async def test_a_refused_attempt_goes_back_to_the_head_of_the_queue() -> None:
    ants = registry()
    first, first_stream = connect(ants, "first", capacity=1)
    runs = [asyncio.create_task(ants.run(work(f"t{n}"), Progress())) for n in range(3)]
    await asyncio.sleep(0)
    heartbeat(ants, first, free=1, acked=0, running=[])
    assert dispatched(first_stream) == ["t0"]
    rejected = Req.TaskRejected(sequence=1, task_execution_id="t0", reason="no free slot")
    ants.received(first, Req(task_rejected=rejected))
    second, second_stream = connect(ants, "second", capacity=1)
    heartbeat(ants, second, free=1, acked=0, running=[])
    assert dispatched(second_stream) == ["t0"]
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)


async def test_the_stream_handle_hands_frames_over_in_order_and_wakes_its_writer() -> None:
    stream = StreamHandle()
    waiter = asyncio.create_task(stream.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    ping = ant_service_pb2.ConnectResponse(ping=ant_service_pb2.ConnectResponse.Ping(nonce=1))
    stream.send(ping)
    stream.send(StreamEnd.DRAINED)
    await asyncio.wait_for(waiter, 1)
    await asyncio.wait_for(stream.wait(), 1)  # frames are queued: returns at once
    assert stream.take() is ping
    assert stream.take() is StreamEnd.DRAINED
    assert stream.take() is None
    waiter = asyncio.create_task(stream.wait())
    await asyncio.sleep(0)
    stream.wake()  # the reader ended: the writer looks again
    await asyncio.wait_for(waiter, 1)


class RecordingProgress(Progress):
    def __init__(self) -> None:
        self.accepted_by: list[tuple[str, datetime | None]] = []

    async def accepted(self, ant_id: str, at: datetime | None = None) -> None:
        self.accepted_by.append((ant_id, at))


def result_frame(name: str, sequence: int) -> Req:
    response = task_pb2.TaskResponse(
        task_execution_id=name, correlation_id=f"{name}:0.0", status=state_pb2.TASK_STATE_COMPLETED
    )
    return Req(task_result=Req.TaskResult(sequence=sequence, response=response))


async def accepted_attempt(
    accept_write_delay: timedelta,
) -> tuple[AntRegistry, AntSession, RecordingProgress, asyncio.Task[DispatchOutcome]]:
    """An attempt dispatched to Ant a1, whose TaskAccepted has just arrived."""
    ants = AntRegistry(
        heartbeat_interval=timedelta(seconds=10),
        heartbeat_timeout=timedelta(seconds=60),
        log_sink=NoLogs(),
        accept_write_delay=accept_write_delay,
    )
    session, stream = connect(ants, "a1", capacity=2)
    progress = RecordingProgress()
    run = asyncio.create_task(ants.run(work("t"), progress))
    await asyncio.sleep(0)
    heartbeat(ants, session, free=2, acked=0, running=[])
    assert dispatched(stream) == ["t"]
    ants.received(session, Req(task_accepted=Req.TaskAccepted(sequence=1, task_execution_id="t")))
    return ants, session, progress, run


async def test_an_acceptance_is_reported_with_the_result_when_the_result_follows_soon() -> None:
    before = datetime.now(UTC)
    ants, session, progress, run = await accepted_attempt(timedelta(seconds=30))  # "soon": before the end
    await asyncio.sleep(0.01)
    ants.received(session, result_frame("t", 1))
    outcome = await run
    assert progress.accepted_by == []  # left for the result's transaction
    assert outcome.accepted is not None
    assert outcome.accepted.ant_id == "a1"
    assert before <= outcome.accepted.at <= datetime.now(UTC) - timedelta(seconds=0.01)


async def test_an_acceptance_is_reported_alone_when_no_result_follows_within_the_delay() -> None:
    ants, session, progress, run = await accepted_attempt(timedelta(0))

    async def reported() -> bool:
        return bool(progress.accepted_by)

    await assert_eventually(reported, timeout=5)
    ants.received(session, result_frame("t", 1))
    outcome = await run
    assert [ant for ant, _ in progress.accepted_by] == ["a1"]
    assert outcome.accepted is None


def test_waiting_acks_ride_in_the_next_dispatch_on_a_protocol_2_stream() -> None:
    for fold, expected in ((True, ["dispatch_task"]), (False, ["dispatch_task", "result_ack"])):
        stream = StreamHandle(fold_acks=fold)
        stream.send_ack(7)
        frame = ant_service_pb2.ConnectResponse(
            dispatch_task=ant_service_pb2.ConnectResponse.DispatchTask(sequence=3)
        )
        stream.send(frame)
        taken = []
        while (out := stream.take()) is not None:
            assert isinstance(out, ant_service_pb2.ConnectResponse)
            taken.append(out)
        assert [f.WhichOneof("frame") for f in taken] == expected
        acked = list(taken[0].dispatch_task.acked_result_sequences)
        assert acked == ([7] if fold else [])
        if not fold:
            assert taken[1].result_ack.sequence == 7


def test_a_protocol_3_stream_sends_what_is_queued_as_one_batch_and_a_lone_frame_bare() -> None:
    Resp = ant_service_pb2.ConnectResponse
    stream = StreamHandle(fold_acks=True, batch=True)
    stream.send(Resp(ping=Resp.Ping(nonce=1)))
    alone = stream.take()
    assert isinstance(alone, Resp)
    assert alone.WhichOneof("frame") == "ping"

    stream.send_ack(7)
    stream.send_ack(8)
    for sequence in (3, 4):
        stream.send(Resp(dispatch_task=Resp.DispatchTask(sequence=sequence)))
    stream.send(Resp(cancel_task=Resp.CancelTask(task_execution_id="t")))
    stream.send(StreamEnd.DRAINED)
    batch = stream.take()
    assert isinstance(batch, Resp)
    assert batch.WhichOneof("frame") == "batch"
    frames = list(batch.batch.frames)
    assert [f.WhichOneof("frame") for f in frames] == ["dispatch_task", "dispatch_task", "cancel_task"]
    assert [f.dispatch_task.sequence for f in frames[:2]] == [3, 4]
    assert list(frames[0].dispatch_task.acked_result_sequences) == [7, 8]  # the acks ride in the first
    assert stream.take() is StreamEnd.DRAINED  # never inside a Batch: after it
    assert stream.take() is None

    # acks with no dispatch to ride in go as ResultAcks, in the Batch; a batch stops at its bound
    stream.send_ack(9)
    stream.send(Resp(ping=Resp.Ping(nonce=2)))
    batch = stream.take()
    assert isinstance(batch, Resp)
    assert [f.WhichOneof("frame") for f in batch.batch.frames] == ["ping", "result_ack"]
    big = "x" * (BATCH_BYTES // 2)
    for reason in (big, big, "c"):
        stream.send(Resp(drain=Resp.Drain(reason=reason)))
    first, second = stream.take(), stream.take()
    assert isinstance(first, Resp)
    assert first.WhichOneof("frame") == "drain"  # alone: the next would take it over the bound
    assert isinstance(second, Resp)
    assert [f.drain.reason for f in second.batch.frames] == [big, "c"]


async def test_the_last_lines_in_a_result_are_stored_before_the_result_is_handled() -> None:
    stored: list[tuple[str, int, list[str]]] = []
    finished_when_stored: list[bool] = []

    class Lines:
        def lines(
            self, task_execution_id: str, task_retry: int, lines: Iterable[log_line_pb2.LogLine]
        ) -> None:
            stored.append((task_execution_id, task_retry, [line.text for line in lines]))
            finished_when_stored.append(run.done())

    ants = AntRegistry(
        heartbeat_interval=timedelta(seconds=10), heartbeat_timeout=timedelta(seconds=60), log_sink=Lines()
    )
    session, stream = connect(ants, "a1", capacity=2)
    run = asyncio.create_task(ants.run(work("t"), Progress()))
    await asyncio.sleep(0)
    heartbeat(ants, session, free=2, acked=0, running=[])
    assert dispatched(stream) == ["t"]
    frame = result_frame("t", 1)
    frame.task_result.task_retry = 2
    frame.task_result.lines.append(log_line_pb2.LogLine(sequence=1, text="$ true"))
    ants.received(session, frame)
    outcome = await run
    assert outcome.report.state is TaskState.COMPLETED
    assert stored == [("t", 2, ["$ true"])]
    assert finished_when_stored == [False]


class WaitReasons(Progress):
    """Records when (seconds after `start`) and why the registry reported a wait."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.reported: list[tuple[float, str]] = []

    async def waiting(self, reason: str) -> None:
        self.reported.append((time.monotonic() - self.start, reason))


async def test_a_wait_for_a_busy_ant_is_reported_only_if_it_lasts_and_one_no_ant_runs_soon() -> None:
    ants = AntRegistry(
        heartbeat_interval=timedelta(seconds=10),
        heartbeat_timeout=timedelta(seconds=60),
        log_sink=NoLogs(),
        no_ant_report_delay=timedelta(seconds=0.05),
        busy_report_delay=timedelta(seconds=0.4),
    )
    session, stream = connect(ants, "a1", capacity=1)
    heartbeat(ants, session, free=1, acked=0, running=[])
    busy, queued, nobody = WaitReasons(), WaitReasons(), WaitReasons()
    runs = [
        asyncio.create_task(ants.run(work("t0"), busy)),  # takes the only slot
        asyncio.create_task(ants.run(work("t1"), queued)),  # waits for it
        asyncio.create_task(ants.run(work("g0", tags=("gpu",)), nobody)),  # no Ant offers gpu
    ]
    assert await assert_eventually(lambda: nobody.reported)
    ((when, why),) = nobody.reported
    assert why.startswith("no connected Ant runs SHELL tasks with tags gpu")
    assert 0.05 <= when < 0.4
    ((when, why),) = await assert_eventually(lambda: queued.reported)
    assert why == "waiting for a free slot on an Ant that runs SHELL tasks"
    assert when >= 0.4  # not at the first delay: an Ant that runs it exists, it is busy
    assert busy.reported == []  # dispatched at once
    assert dispatched(stream) == ["t0"]
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)
