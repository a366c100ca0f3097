"""A scripted Queen for the Ant's stream tests: a real `grpc.aio` server on 127.0.0.1, port 0, whose
Connect hands each stream to the test, which reads the Ant's frames and sends the Queen's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import timedelta

import grpc
from google.protobuf.duration_pb2 import Duration

from formicary.v1 import ant_service_pb2, ant_service_pb2_grpc, task_pb2

Req = ant_service_pb2.ConnectRequest
Resp = ant_service_pb2.ConnectResponse

WAIT = 10.0  # seconds a test waits for any one frame


@dataclass(frozen=True)
class _End:
    code: grpc.StatusCode
    details: str


class QueenStream:
    """One Connect call, seen from the Queen: every frame the Ant sent, in order, in `received` (the
    frames of a protocol-3 Batch one by one, as the Queen handles them; `batches` has each Batch's kinds)."""

    def __init__(self, metadata: dict[str, str]) -> None:
        self.metadata = metadata
        self.received: list[Req] = []
        self.batches: list[list[str]] = []
        self._inbox: asyncio.Queue[Req | None] = asyncio.Queue()
        self._outbox: asyncio.Queue[Resp | _End] = asyncio.Queue()
        self.half_closed = asyncio.Event()
        self.ended = asyncio.Event()
        self.close_on_half_close = True

    def send(self, *frames: Resp) -> None:
        for frame in frames:
            self._outbox.put_nowait(frame)

    def end(self, code: grpc.StatusCode = grpc.StatusCode.OK, details: str = "") -> None:
        """End the call with this status (after the frames already sent)."""
        self._outbox.put_nowait(_End(code, details))

    async def next(self, kind: str, *, timeout: float = WAIT) -> Req:  # noqa: ASYNC109
        """The next frame of this kind from the Ant; frames of other kinds before it are passed over
        (they stay in `received`)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._inbox.get()
                if frame is None:
                    raise AssertionError(f"the Ant half-closed the stream while the test waited for {kind}")
                if frame.WhichOneof("frame") == kind:
                    return frame

    async def next_heartbeat(self, predicate: object = None, *, timeout: float = WAIT) -> Req.Heartbeat:  # noqa: ASYNC109
        """The next Heartbeat for which predicate(heartbeat) holds."""
        async with asyncio.timeout(timeout):
            while True:
                beat = (await self.next("heartbeat")).heartbeat
                if predicate is None or predicate(beat):  # type: ignore[operator]
                    return beat

    def kinds(self, task_execution_id: str | None = None) -> list[str]:
        """Kinds of the frames received so far (only those about one task, if given)."""
        out: list[str] = []
        for frame in self.received:
            kind = frame.WhichOneof("frame")
            if task_execution_id is None or _task_of(frame) == task_execution_id:
                out.append(kind or "")
        return out

    async def _pump(self, context: grpc.aio.ServicerContext[Req, Resp]) -> None:
        while True:
            frame = await context.read()
            if not isinstance(frame, Req):
                self.half_closed.set()
                self._inbox.put_nowait(None)
                if self.close_on_half_close:  # as the Queen does after a drain (section 9)
                    self.end(grpc.StatusCode.OK)
                return
            frames = [frame]
            if frame.WhichOneof("frame") == "batch":
                frames = list(frame.batch.frames)
                self.batches.append([inner.WhichOneof("frame") or "" for inner in frames])
            for one in frames:
                self.received.append(one)
                self._inbox.put_nowait(one)


def _task_of(frame: Req) -> str | None:
    kind = frame.WhichOneof("frame")
    if kind == "task_accepted":
        return frame.task_accepted.task_execution_id
    if kind == "task_rejected":
        return frame.task_rejected.task_execution_id
    if kind == "log_lines":
        return frame.log_lines.task_execution_id
    if kind == "task_result":
        return frame.task_result.response.task_execution_id
    return None


class FakeQueen(ant_service_pb2_grpc.AntServiceServicer):
    def __init__(self) -> None:
        self._streams: asyncio.Queue[QueenStream] = asyncio.Queue()
        self.address = ""

    async def next_stream(self, timeout: float = WAIT) -> QueenStream:  # noqa: ASYNC109
        return await asyncio.wait_for(self._streams.get(), timeout)

    async def Connect(  # type: ignore[override]
        self, request_iterator: AsyncIterator[Req], context: grpc.aio.ServicerContext[Req, Resp]
    ) -> None:
        stream = QueenStream({k: str(v) for k, v in context.invocation_metadata() or ()})
        self._streams.put_nowait(stream)
        reader = asyncio.create_task(stream._pump(context))
        try:
            while True:
                item = await stream._outbox.get()
                if isinstance(item, _End):
                    if item.code is not grpc.StatusCode.OK:
                        await context.abort(item.code, item.details)
                    return
                await context.write(item)
        finally:
            stream.ended.set()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


@contextlib.asynccontextmanager
async def running_queen() -> AsyncIterator[FakeQueen]:
    server = grpc.aio.server()
    queen = FakeQueen()
    ant_service_pb2_grpc.add_AntServiceServicer_to_server(queen, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    queen.address = f"127.0.0.1:{port}"
    try:
        yield queen
    finally:
        await server.stop(grace=None)


def _duration(value: timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(value)
    return duration


def registered(
    session_id: str = "s1",
    *,
    resumed: bool = False,
    resumed_tasks: Iterable[tuple[str, int]] = (),
    heartbeat_interval: timedelta = timedelta(seconds=30),
    heartbeat_timeout: timedelta = timedelta(seconds=60),
    protocol_version: int = 1,
) -> Resp:
    return Resp(
        registered=Resp.Registered(
            session_id=session_id,
            protocol_version=protocol_version,
            resumed=resumed,
            resumed_tasks=[
                Resp.Registered.ResumedTask(task_execution_id=t, last_log_sequence=n)
                for t, n in resumed_tasks
            ],
            heartbeat_interval=_duration(heartbeat_interval),
            heartbeat_timeout=_duration(heartbeat_timeout),
            ping_interval=_duration(heartbeat_interval),
        )
    )


def dispatch(
    sequence: int,
    task_execution_id: str,
    *script: str,
    correlation_id: str = "",
    method: task_pb2.TaskMethod.ValueType = task_pb2.TASK_METHOD_SHELL,
    report_stdout: bool = False,
) -> Resp:
    return Resp(
        dispatch_task=Resp.DispatchTask(
            sequence=sequence,
            request=task_pb2.TaskRequest(
                job_request_id=100,
                job_type="test-job",
                task_execution_id=task_execution_id,
                task_type=f"type-{task_execution_id}",
                correlation_id=correlation_id or f"corr-{task_execution_id}",
                action=task_pb2.TASK_ACTION_EXECUTE,
                script=list(script),
                report_stdout=report_stdout,
                executor_opts=task_pb2.ExecutorOptions(method=method),
            ),
        )
    )


def ack(sequence: int) -> Resp:
    return Resp(result_ack=Resp.ResultAck(sequence=sequence))


def cancel(task_execution_id: str, reason: str = "") -> Resp:
    return Resp(cancel_task=Resp.CancelTask(task_execution_id=task_execution_id, reason=reason))


def ping(nonce: int) -> Resp:
    return Resp(ping=Resp.Ping(nonce=nonce))


def drain(reason: str = "") -> Resp:
    return Resp(drain=Resp.Drain(reason=reason))
