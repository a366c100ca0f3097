"""The Ant's stream client against a fake Queen: registration, dispatch answers, logs and results in
order, flow control, cancel, ping, drain, shutdown, and a cut stream resumed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from ant.errors import AntIdConflict, QueenRefused
from ant.executors import (
    ExecutionContext,
    ExecutionResult,
    ExecutionStatus,
    ExecutorRegistry,
    LogStream,
    Method,
    TaskSpec,
)
from ant.executors.shell import ShellExecutor
from ant.settings import AntSettings
from ant.stream import AntClient, AntPhase
from formicary.v1 import log_line_pb2, state_pb2, task_pb2
from tests.fixtures.waiting import assert_eventually
from tests.integration.ant.fake_queen import (
    QueenStream,
    Req,
    Resp,
    ack,
    cancel,
    dispatch,
    drain,
    ping,
    registered,
    running_queen,
)

pytestmark = pytest.mark.integration


class GatedExecutor:
    """Logs its script lines, then waits until the test opens the task's gate, or a cancel."""

    def __init__(self) -> None:
        self.started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.gates: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.cancelled: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.runs: list[str] = []

    async def run(self, spec: TaskSpec, ctx: ExecutionContext) -> ExecutionResult:
        task = spec.task_execution_id
        self.runs.append(task)
        for line in spec.script:
            await ctx.sink.emit(LogStream.STDOUT, line)
        self.started[task].set()
        waits = {asyncio.ensure_future(self.gates[task].wait()), asyncio.ensure_future(ctx.cancel.wait())}
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()
        if ctx.cancel.is_set():
            self.cancelled[task].set()
            return ExecutionResult(
                status=ExecutionStatus.CANCELLED, exit_code="FAILED", error_code="ERR_TASK_CANCELLED"
            )
        await ctx.sink.emit(LogStream.STDOUT, "finished")
        return ExecutionResult(status=ExecutionStatus.COMPLETED, exit_code="0")


def ant_settings(address: str, tmp_path: Path, **overrides: Any) -> AntSettings:
    values: dict[str, Any] = {
        "queen_address": address,
        "ant_id": "ant-test",
        "methods": [Method.SHELL],
        "tags": ["linux"],
        "labels": {"zone": "test"},
        "capacity": 2,
        "work_dir": tmp_path / "work",
        "reconnect_initial_backoff": timedelta(milliseconds=50),
        "reconnect_backoff_cap": timedelta(milliseconds=200),
        "shutdown_grace": timedelta(milliseconds=200),
        "ack_timeout": timedelta(milliseconds=500),
        "log_flush_interval": timedelta(milliseconds=50),
        "kill_grace": timedelta(milliseconds=200),
    }
    values.update(overrides)
    return AntSettings(**values)


async def connect(queen_stream: QueenStream, session_id: str = "s1", **kwargs: Any) -> Req.Register:
    """Answer the Ant's Register and take its first Heartbeat."""
    register = (await queen_stream.next("register")).register
    queen_stream.send(registered(session_id, **kwargs))
    await queen_stream.next("heartbeat")
    return register


def log_lines(stream: QueenStream, task: str) -> list[log_line_pb2.LogLine]:
    return [
        line
        for frame in stream.received
        if frame.WhichOneof("frame") == "log_lines" and frame.log_lines.task_execution_id == task
        for line in frame.log_lines.lines
    ]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    await assert_eventually(condition, timeout=timeout, interval=0.01)


async def test_registers_runs_a_shell_task_and_reports_it_in_order(tmp_path: Path) -> None:
    registry = ExecutorRegistry({Method.SHELL: ShellExecutor(kill_grace=0.2)})
    async with running_queen() as queen, AntClient(ant_settings(queen.address, tmp_path), registry):
        stream = await queen.next_stream()
        register = (await stream.next("register")).register
        assert register.ant_id == "ant-test"
        assert list(register.methods) == [task_pb2.TASK_METHOD_SHELL]
        assert list(register.tags) == ["linux"]
        assert dict(register.labels) == {"zone": "test"}
        assert register.max_capacity == 2
        assert register.protocol_version == 3
        assert register.host
        assert register.version
        assert not register.HasField("resume")
        assert "authorization" not in stream.metadata

        stream.send(registered("s1"))
        first = (await stream.next("heartbeat")).heartbeat
        assert stream.kinds() == ["register", "heartbeat"]
        assert (first.free_slots, first.last_acked_sequence, list(first.running_task_execution_ids)) == (
            2,
            0,
            [],
        )

        stream.send(
            dispatch(1, "t1", "echo hello", "echo '::set-output name=answer::42'", report_stdout=True)
        )
        accepted = (await stream.next("task_accepted")).task_accepted
        assert (accepted.sequence, accepted.task_execution_id) == (1, "t1")
        result = (await stream.next("task_result")).task_result
        response = result.response
        assert response.status == state_pb2.TASK_STATE_COMPLETED
        assert response.exit_code == "0"
        assert response.correlation_id == "corr-t1"
        assert response.task_execution_id == "t1"
        assert response.ant_id == "ant-test"
        assert dict(response.task_context) == {"answer": "42"}
        assert "hello" in response.stdout
        assert response.timings.HasField("receive_time")

        kinds = stream.kinds("t1")
        assert kinds[0] == "task_accepted"
        assert kinds[-1] == "task_result"
        assert set(kinds[1:-1]) == {"log_lines"}
        lines = log_lines(stream, "t1")
        assert [line.sequence for line in lines] == list(range(1, len(lines) + 1))
        assert (log_line_pb2.LOG_STREAM_SYSTEM, "$ echo hello") in [
            (line.stream, line.text) for line in lines
        ]
        assert (log_line_pb2.LOG_STREAM_STDOUT, "hello") in [(line.stream, line.text) for line in lines]

        # The slot is held until the result is acknowledged; the ack frees it at once (the interval is 30 s).
        stream.send(ack(result.sequence))
        beat = await stream.next_heartbeat(lambda b: not b.running_task_execution_ids, timeout=5)
        assert (beat.free_slots, beat.last_acked_sequence) == (2, 1)


async def test_protocol_2_carries_the_last_lines_in_the_result_and_acks_in_a_dispatch(tmp_path: Path) -> None:
    """On a protocol-2 stream no line is lost or repeated whichever frame carries it, an ack inside a
    DispatchTask frees the slot like a ResultAck, and the Ant's capacity-4 window needs no Heartbeat
    per task (ant_service.proto, PROTOCOL VERSIONS and section 3)."""
    registry = ExecutorRegistry({Method.SHELL: ShellExecutor(kill_grace=0.2)})
    async with (
        running_queen() as queen,
        AntClient(ant_settings(queen.address, tmp_path, capacity=4), registry),
    ):
        stream = await queen.next_stream()
        assert (await stream.next("register")).register.protocol_version == 3
        stream.send(registered("s1", protocol_version=2))
        await stream.next("heartbeat")
        results = []
        for number in (1, 2, 3):
            frame = dispatch(number, f"t{number}", "echo one", "echo two")
            if results:  # the previous task's ack rides along
                frame.dispatch_task.acked_result_sequences.append(results[-1].sequence)
            stream.send(frame)
            results.append((await stream.next("task_result")).task_result)
        for number, result in enumerate(results, start=1):
            task = f"t{number}"
            lines = [*log_lines(stream, task), *result.lines]
            assert [line.sequence for line in lines] == list(range(1, len(lines) + 1))
            assert [line.text for line in lines] == ["$ echo one", "one", "$ echo two", "two"]
            assert result.response.status == state_pb2.TASK_STATE_COMPLETED

        # t1 and t2 were acknowledged inside dispatches; the window (4 - 2 dispatches since the first
        # Heartbeat) reached half the capacity at t2's ack: one Heartbeat then, showing only t3 held
        def beats() -> list[list[str]]:
            return [
                list(frame.heartbeat.running_task_execution_ids)
                for frame in stream.received
                if frame.WhichOneof("frame") == "heartbeat"
            ]

        await until(lambda: len(beats()) == 2)
        assert beats() == [[], ["t3"]]


async def test_protocol_3_frames_travel_in_batches_both_ways(tmp_path: Path) -> None:
    """A Batch from the Queen is handled frame by frame, in order; what the Ant queues while handling it
    (three TaskAccepted) leaves as one Batch (ant_service.proto, PROTOCOL VERSIONS)."""
    gated = GatedExecutor()
    registry = ExecutorRegistry({Method.SHELL: gated})
    async with (
        running_queen() as queen,
        AntClient(ant_settings(queen.address, tmp_path, capacity=4), registry),
    ):
        stream = await queen.next_stream()
        await connect(stream, protocol_version=3)
        assert stream.batches == []  # a lone frame (the first Heartbeat) is sent bare

        dispatches = [dispatch(n, task, "echo") for n, task in enumerate(("a", "b", "c"), start=1)]
        stream.send(Resp(batch=Resp.Batch(frames=dispatches)))
        answers = [(await stream.next("task_accepted")).task_accepted for _ in range(3)]
        assert [(a.sequence, a.task_execution_id) for a in answers] == [(1, "a"), (2, "b"), (3, "c")]
        assert stream.batches[0][:3] == ["task_accepted"] * 3

        for task in ("a", "b", "c"):
            gated.gates[task].set()
        results = {}
        for _ in range(3):
            result = (await stream.next("task_result")).task_result
            results[result.response.task_execution_id] = result.sequence
        assert sorted(results) == ["a", "b", "c"]

        # acks and a ping in one Batch: each handled as if it came alone
        stream.send(Resp(batch=Resp.Batch(frames=[*(ack(n) for n in results.values()), ping(7)])))
        assert (await stream.next("pong")).pong.nonce == 7
        beat = await stream.next_heartbeat(lambda b: not b.running_task_execution_ids)
        assert beat.free_slots == 4


async def test_a_batch_inside_a_batch_is_ignored_and_the_frames_around_it_are_handled(tmp_path: Path) -> None:
    registry = ExecutorRegistry({Method.SHELL: GatedExecutor()})
    async with running_queen() as queen, AntClient(ant_settings(queen.address, tmp_path), registry):
        stream = await queen.next_stream()
        await connect(stream, protocol_version=3)
        nested = Resp(batch=Resp.Batch(frames=[ping(2)]))
        stream.send(Resp(batch=Resp.Batch(frames=[ping(1), nested, ping(3)])))
        nonces = [(await stream.next("pong")).pong.nonce for _ in range(2)]
        assert nonces == [1, 3]  # the pongs come in order: one for the nested ping would come between


async def test_an_ant_offers_the_protocol_version_it_is_told(tmp_path: Path) -> None:
    registry = ExecutorRegistry({Method.SHELL: GatedExecutor()})
    async with (
        running_queen() as queen,
        AntClient(ant_settings(queen.address, tmp_path, protocol_version=2), registry),
    ):
        stream = await queen.next_stream()
        assert (await stream.next("register")).register.protocol_version == 2


async def test_a_short_tasks_lines_linger_into_its_result_a_long_tasks_go_out_while_it_runs(
    tmp_path: Path,
) -> None:
    registry = ExecutorRegistry({Method.SHELL: ShellExecutor(kill_grace=0.2)})
    # generous, so that `true` ends within it even on a loaded machine (flushing waits no longer either)
    waits = {"log_linger": timedelta(milliseconds=450), "log_flush_interval": timedelta(milliseconds=500)}
    async with (
        running_queen() as queen,
        AntClient(ant_settings(queen.address, tmp_path, **waits), registry),
    ):
        stream = await queen.next_stream()
        await stream.next("register")
        stream.send(registered("s1", protocol_version=2))
        await stream.next("heartbeat")
        stream.send(dispatch(1, "short", "true"))
        result = (await stream.next("task_result")).task_result
        assert [line.text for line in result.lines] == ["$ true"]
        assert "log_lines" not in stream.kinds("short")

        stream.send(dispatch(2, "long", "echo started", "sleep 2"))
        lines = (await stream.next("log_lines", timeout=1.5)).log_lines
        assert lines.task_execution_id == "long"
        assert [line.text for line in lines.lines] == ["$ echo started", "started", "$ sleep 2"]
        assert "task_result" not in stream.kinds("long")  # out while the task runs


async def test_the_bearer_credential_travels_as_metadata(tmp_path: Path) -> None:
    registry = ExecutorRegistry({Method.SHELL: GatedExecutor()})
    async with (
        running_queen() as queen,
        AntClient(ant_settings(queen.address, tmp_path, credential="tok"), registry),
    ):
        stream = await queen.next_stream()
        await connect(stream)
        assert stream.metadata["authorization"] == "Bearer tok"


async def test_artifact_transfers_get_the_channel_of_the_registered_connection(tmp_path: Path) -> None:
    registry = ExecutorRegistry({Method.SHELL: GatedExecutor()})
    async with running_queen() as queen:
        ant = AntClient(ant_settings(queen.address, tmp_path), registry)
        async with ant:
            first_stream = await queen.next_stream()
            await first_stream.next("register")
            first = asyncio.create_task(ant.artifact_channel())
            done, _ = await asyncio.wait({first}, timeout=0.2)
            assert not done  # not before the Queen registered the Ant
            first_stream.send(registered("s1"))
            channel = await asyncio.wait_for(first, 5)
            assert isinstance(channel, grpc.aio.Channel)

            first_stream.end(grpc.StatusCode.UNAVAILABLE, "restarting")
            second_stream = await queen.next_stream()
            await second_stream.next("register")
            second = asyncio.create_task(ant.artifact_channel())
            done, _ = await asyncio.wait({second}, timeout=0.2)
            assert not done  # the old connection's channel is no longer handed out
            second_stream.send(registered("s1", resumed=True))
            assert await asyncio.wait_for(second, 5) is not channel


async def test_flow_control_duplicates_and_new_attempts(tmp_path: Path) -> None:
    gated = GatedExecutor()
    registry = ExecutorRegistry({Method.SHELL: gated})
    async with running_queen() as queen, AntClient(ant_settings(queen.address, tmp_path), registry):
        stream = await queen.next_stream()
        await connect(stream, heartbeat_interval=timedelta(milliseconds=100))

        # A Queen that ignores the window: the third dispatch finds no slot.
        stream.send(dispatch(1, "a"), dispatch(2, "b"), dispatch(3, "c"))
        answers = [await stream.next("task_accepted"), await stream.next("task_accepted")]
        rejected = (await stream.next("task_rejected")).task_rejected
        assert [a.task_accepted.sequence for a in answers] == [1, 2]
        assert (rejected.sequence, rejected.task_execution_id, rejected.reason) == (3, "c", "no free slot")
        beat = await stream.next_heartbeat(lambda b: b.last_acked_sequence == 3)
        assert beat.free_slots == 0
        assert list(beat.running_task_execution_ids) == ["a", "b"]

        # A dispatch re-sent for an attempt the Ant holds: accepted again, nothing new starts.
        stream.send(dispatch(4, "a"))
        assert (await stream.next("task_accepted")).task_accepted.sequence == 4
        await gated.started["a"].wait()  # the two attempts start in either order
        await gated.started["b"].wait()
        assert sorted(gated.runs) == ["a", "b"]

        # Methods the Ant does not run are refused.
        stream.send(
            dispatch(5, "h", method=task_pb2.TASK_METHOD_HTTP_GET),
            dispatch(6, "m", method=task_pb2.TASK_METHOD_MANUAL),
        )
        assert "method" in (await stream.next("task_rejected")).task_rejected.reason
        assert "TASK_METHOD_MANUAL" in (await stream.next("task_rejected")).task_rejected.reason

        gated.gates["a"].set()
        result = (await stream.next("task_result")).task_result
        assert result.response.task_execution_id == "a"
        stream.send(ack(result.sequence))
        beat = await stream.next_heartbeat(lambda b: b.free_slots == 1)
        assert list(beat.running_task_execution_ids) == ["b"]

        # A new attempt of a held task: the old one is stopped and its result never sent.
        stream.send(dispatch(7, "b", correlation_id="corr-b-2"))
        assert (await stream.next("task_accepted")).task_accepted.task_execution_id == "b"
        await asyncio.wait_for(gated.cancelled["b"].wait(), 10)
        await until(lambda: sorted(gated.runs) == ["a", "b", "b"])
        gated.gates["b"].set()
        result = (await stream.next("task_result")).task_result
        assert result.response.correlation_id == "corr-b-2"
        assert result.response.status == state_pb2.TASK_STATE_COMPLETED
        results = [f.task_result for f in stream.received if f.WhichOneof("frame") == "task_result"]
        assert [r.response.correlation_id for r in results] == ["corr-a", "corr-b-2"]
        assert len({r.sequence for r in results}) == 2


async def test_lines_go_out_at_once_on_a_quiet_stream_and_answers_precede_the_heartbeat(
    tmp_path: Path,
) -> None:
    gated = GatedExecutor()
    settings = ant_settings("", tmp_path, log_flush_interval=timedelta(milliseconds=500), capacity=4)
    async with running_queen() as queen:
        ant = AntClient(
            settings.model_copy(update={"queen_address": queen.address}),
            ExecutorRegistry({Method.SHELL: gated}),
        )
        async with ant:
            stream = await queen.next_stream()
            await connect(stream, heartbeat_interval=timedelta(milliseconds=100))
            loop = asyncio.get_running_loop()
            sent = loop.time()
            stream.send(dispatch(1, "a", "first line"))
            await gated.started["a"].wait()
            # nothing else to send: the line does not wait for log_flush_interval (500 ms)
            await until(lambda: [line.text for line in log_lines(stream, "a")] == ["first line"], timeout=5)
            assert loop.time() - sent < 0.45
            assert stream.kinds("a") == ["task_accepted", "log_lines"]

            # several answers, then a (periodic) heartbeat that counts them all: built when its turn came
            stream.send(dispatch(2, "b"), dispatch(3, "c"), dispatch(4, "d"))
            beat = await stream.next_heartbeat(lambda b: b.last_acked_sequence == 4)
            answered = [
                f.task_accepted.sequence for f in stream.received if f.WhichOneof("frame") == "task_accepted"
            ]
            assert answered == [1, 2, 3, 4]
            assert beat.free_slots == 0
            assert sorted(beat.running_task_execution_ids) == ["a", "b", "c", "d"]
            for task in "abcd":
                gated.gates[task].set()


async def test_cancel_stops_a_shell_task(tmp_path: Path) -> None:
    registry = ExecutorRegistry({Method.SHELL: ShellExecutor(kill_grace=0.2)})
    async with running_queen() as queen, AntClient(ant_settings(queen.address, tmp_path), registry):
        stream = await queen.next_stream()
        await connect(stream)
        stream.send(dispatch(1, "t1", "echo started", "sleep 300"))
        await stream.next("task_accepted")
        await until(lambda: any(line.text == "$ sleep 300" for line in log_lines(stream, "t1")))
        stream.send(cancel("t1", "job cancelled by alice"), cancel("not-held"))
        result = (await stream.next("task_result")).task_result.response
        assert result.status == state_pb2.TASK_STATE_CANCELLED
        assert result.error_code == "ERR_TASK_CANCELLED"
        assert result.failed_command == "sleep 300"
        texts = [line.text for line in log_lines(stream, "t1")]
        assert "cancel requested: job cancelled by alice" in texts


async def test_a_ping_is_answered_with_a_pong(tmp_path: Path) -> None:
    registry = ExecutorRegistry({Method.SHELL: GatedExecutor()})
    async with running_queen() as queen, AntClient(ant_settings(queen.address, tmp_path), registry):
        stream = await queen.next_stream()
        await connect(stream)
        stream.send(ping(42), ping(43))
        assert (await stream.next("pong")).pong.nonce == 42
        assert (await stream.next("pong")).pong.nonce == 43


async def test_drain_finishes_running_work_then_leaves(tmp_path: Path) -> None:
    gated = GatedExecutor()
    async with running_queen() as queen:
        ant = AntClient(ant_settings(queen.address, tmp_path), ExecutorRegistry({Method.SHELL: gated}))
        await ant.start()
        try:
            stream = await queen.next_stream()
            await connect(stream)
            stream.send(dispatch(1, "a"))
            await stream.next("task_accepted")
            await gated.started["a"].wait()

            stream.send(drain("maintenance"))
            beat = await stream.next_heartbeat(lambda b: b.free_slots == 0)
            assert list(beat.running_task_execution_ids) == ["a"]
            await until(lambda: ant.status().phase is AntPhase.DRAINING)
            stream.send(dispatch(2, "b"))
            assert "leaving" in (await stream.next("task_rejected")).task_rejected.reason

            gated.gates["a"].set()
            result = (await stream.next("task_result")).task_result
            assert not stream.half_closed.is_set()
            stream.send(ack(result.sequence))
            await asyncio.wait_for(stream.half_closed.wait(), 10)
            await asyncio.wait_for(ant.wait(), 10)  # the Queen ended the call with OK: the Ant is gone
        finally:
            await ant.stop()


async def test_shutdown_cancels_tasks_that_outlive_the_grace(tmp_path: Path) -> None:
    gated = GatedExecutor()
    settings = ant_settings(
        "", tmp_path, shutdown_grace=timedelta(milliseconds=300), ack_timeout=timedelta(seconds=5)
    )
    async with running_queen() as queen:
        ant = AntClient(
            settings.model_copy(update={"queen_address": queen.address}),
            ExecutorRegistry({Method.SHELL: gated}),
        )
        await ant.start()
        stream = await queen.next_stream()
        await connect(stream)
        stream.send(dispatch(1, "a"))
        await stream.next("task_accepted")
        await gated.started["a"].wait()

        stopping = asyncio.create_task(ant.stop())
        beat = await stream.next_heartbeat(lambda b: b.free_slots == 0)
        assert list(beat.running_task_execution_ids) == ["a"]
        result = (await stream.next("task_result")).task_result
        assert result.response.status == state_pb2.TASK_STATE_CANCELLED
        assert "cancelled: the Ant is shutting down" in [line.text for line in log_lines(stream, "a")]
        stream.send(ack(result.sequence))
        await asyncio.wait_for(stopping, 10)
        assert stream.half_closed.is_set()


async def test_a_cut_stream_is_resumed_and_the_unacknowledged_result_resent(tmp_path: Path) -> None:
    gated = GatedExecutor()
    async with (
        running_queen() as queen,
        AntClient(ant_settings(queen.address, tmp_path), ExecutorRegistry({Method.SHELL: gated})),
    ):
        first = await queen.next_stream()
        await connect(first, "s1")
        first.send(dispatch(1, "t1", "line one", "line two"))
        await first.next("task_accepted")
        await gated.started["t1"].wait()
        gated.gates["t1"].set()
        result = (await first.next("task_result")).task_result
        assert [line.text for line in log_lines(first, "t1")] == ["line one", "line two", "finished"]

        # The Queen stored only the first line and never acknowledged the result; the stream breaks.
        first.end(grpc.StatusCode.UNAVAILABLE, "queen restarting")
        second = await queen.next_stream()
        register = (await second.next("register")).register
        assert register.resume.session_id == "s1"
        assert register.resume.last_acked_sequence == 1
        assert list(register.resume.running_task_execution_ids) == ["t1"]
        second.send(registered("s1", resumed=True, resumed_tasks=[("t1", 1)]))
        beat = (await second.next("heartbeat")).heartbeat
        assert (list(beat.running_task_execution_ids), beat.free_slots) == (["t1"], 1)

        again = (await second.next("task_result")).task_result
        assert again.sequence == result.sequence
        assert again.response == result.response
        assert [(line.sequence, line.text) for line in log_lines(second, "t1")] == [
            (2, "line two"),
            (3, "finished"),
        ]
        assert second.kinds("t1")[-1] == "task_result"

        second.send(ack(again.sequence))
        await second.next_heartbeat(lambda b: not b.running_task_execution_ids)


async def test_a_new_session_stops_what_the_old_one_held(tmp_path: Path) -> None:
    gated = GatedExecutor()
    async with (
        running_queen() as queen,
        AntClient(ant_settings(queen.address, tmp_path), ExecutorRegistry({Method.SHELL: gated})),
    ):
        first = await queen.next_stream()
        await connect(first, "s1")
        first.send(dispatch(1, "t1"))
        await first.next("task_accepted")
        await gated.started["t1"].wait()
        first.end(grpc.StatusCode.UNAVAILABLE)

        second = await queen.next_stream()
        assert (await second.next("register")).register.resume.session_id == "s1"
        second.send(registered("s2", resumed=False))
        beat = (await second.next("heartbeat")).heartbeat
        assert (list(beat.running_task_execution_ids), beat.free_slots, beat.last_acked_sequence) == (
            [],
            2,
            0,
        )
        await asyncio.wait_for(gated.cancelled["t1"].wait(), 10)
        second.send(ping(1))
        await second.next("pong")
        assert "task_result" not in second.kinds()

        # The next cut resumes the new session.
        second.end(grpc.StatusCode.UNAVAILABLE)
        third = await queen.next_stream()
        assert (await third.next("register")).register.resume.session_id == "s2"


async def test_a_resume_stops_tasks_the_queen_gave_up(tmp_path: Path) -> None:
    gated = GatedExecutor()
    async with (
        running_queen() as queen,
        AntClient(ant_settings(queen.address, tmp_path), ExecutorRegistry({Method.SHELL: gated})),
    ):
        first = await queen.next_stream()
        await connect(first, "s1")
        first.send(dispatch(1, "t1"), dispatch(2, "t2"))
        await first.next("task_accepted")
        await first.next("task_accepted")
        first.end(grpc.StatusCode.UNAVAILABLE)

        second = await queen.next_stream()
        register = (await second.next("register")).register
        assert list(register.resume.running_task_execution_ids) == ["t1", "t2"]
        second.send(registered("s1", resumed=True, resumed_tasks=[("t2", 0)]))
        beat = (await second.next("heartbeat")).heartbeat
        assert list(beat.running_task_execution_ids) == ["t2"]
        await asyncio.wait_for(gated.cancelled["t1"].wait(), 10)
        assert not gated.cancelled["t2"].is_set()


async def test_a_silent_queen_is_left_and_the_session_resumed(tmp_path: Path) -> None:
    async with (
        running_queen() as queen,
        AntClient(ant_settings(queen.address, tmp_path), ExecutorRegistry({Method.SHELL: GatedExecutor()})),
    ):
        first = await queen.next_stream()
        await connect(
            first,
            "s1",
            heartbeat_interval=timedelta(milliseconds=100),
            heartbeat_timeout=timedelta(milliseconds=500),
        )
        second = await queen.next_stream(timeout=5)  # nothing came for heartbeat_timeout: a new stream
        assert (await second.next("register")).register.resume.session_id == "s1"


async def test_aborted_means_another_process_has_this_ant_id(tmp_path: Path) -> None:
    async with running_queen() as queen:
        ant = AntClient(
            ant_settings(queen.address, tmp_path), ExecutorRegistry({Method.SHELL: GatedExecutor()})
        )
        await ant.start()
        try:
            stream = await queen.next_stream()
            await connect(stream)
            stream.end(grpc.StatusCode.ABORTED, "a newer stream took over ant-test")
            with pytest.raises(AntIdConflict, match="ant-test"):
                await asyncio.wait_for(ant.wait(), 10)
        finally:
            with pytest.raises(AntIdConflict):
                await ant.stop()


async def test_a_refusal_is_reported_not_retried_fast(tmp_path: Path) -> None:
    settings = ant_settings("", tmp_path, refused_retry_interval=timedelta(0))
    async with running_queen() as queen:
        ant = AntClient(
            settings.model_copy(update={"queen_address": queen.address}),
            ExecutorRegistry({Method.SHELL: GatedExecutor()}),
        )
        await ant.start()
        try:
            stream = await queen.next_stream()
            await stream.next("register")
            stream.end(grpc.StatusCode.UNAUTHENTICATED, "bad token")
            with pytest.raises(QueenRefused, match="UNAUTHENTICATED"):
                await asyncio.wait_for(ant.wait(), 10)
        finally:
            with pytest.raises(QueenRefused):
                await ant.stop()
