"""The Ant's protocol client: one AntService.Connect stream to the Queen, kept for the Ant's whole life.

This module implements the Ant side of the protocol specified in `protos/formicary/v1/ant_service.proto`
(sections 1-10); the section numbers below refer to it.

- Frames out go through one `OutboundQueue` (the call's request iterator) with a CONTROL lane
  (Register, Heartbeat, TaskAccepted/TaskRejected, Pong) ahead of a BULK lane (LogLines, TaskResult),
  so heartbeats and pongs never wait behind log volume and one writer never interleaves with another.
  A Heartbeat is built when its turn comes, so slots freed in a burst make one Heartbeat (section 3).
- Frames in are handled one at a time, without awaiting: a DispatchTask is answered (in sequence
  order, before any later Heartbeat) before its executor starts.
- Log lines are sent when the stream has nothing else to send (one line on a quiet stream, batches on
  a busy one), at the latest `log_flush_interval` after they came; an ended attempt's lines and result
  are queued at once (section 6).
- Task attempts run in tasks owned by `run()`'s TaskGroup and outlive a broken stream: after a
  reconnect the Ant resumes its session and re-attaches them (section 2).
- Each connection owns four helper tasks (reader, heartbeats, liveness watchdog, leave watcher); the
  first to decide how the stream ends resolves `_Connection.ended`. A fresh channel is opened for
  each connection attempt, so gRPC's own reconnect back-off never adds to ours.
- The credential travels as `authorization: Bearer` metadata; Register.credential is left empty.
- Log lines sent before a reconnect are kept (bounded: `log_resend_lines`) and re-sent from the
  Queen's `last_log_sequence`; lines no longer kept are reported as lost in a SYSTEM line.
- The session and the held tasks live only in this process: an Ant that restarts registers afresh and
  the Queen fails the old session's tasks (section 2); a reconnecting Ant resumes.
- Artifact bytes travel on ArtifactService calls on the channel of the current connection (OVERVIEW),
  with the same credential: `artifact_channel()` hands it to `ant.artifact_transfer`, once the Queen
  has registered the Ant; while the Ant reconnects, transfers wait for the next channel.

The job's trace continues from each attempt's `traceparent` in `AttemptRunner` (`ant.telemetry`).

Not implemented (said here so nobody relies on it): TLS channels (plaintext only); throttling free_slots
on disk or load pressure; Registered.config and ping_interval are read but not used (the Ant only
answers pings).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import grpc
import structlog
from structlog.typing import FilteringBoundLogger

from ant import _convert
from ant._convert import InvalidTaskRequest, SessionTerms
from ant.artifact_transfer import GrpcArtifactTransfer, TransferTimeouts
from ant.artifacts import ArtifactTransfer
from ant.attempt import AttemptRequest, AttemptRunner
from ant.backoff import Backoff
from ant.errors import AntError, AntIdConflict, QueenRefused
from ant.executors.context import LogStream
from ant.executors.registry import ExecutorRegistry
from ant.executors.result import EXIT_CODE_FAILED, ErrorCode, ExecutionResult, ExecutionStatus
from ant.ledger import DispatchVerdict, TaskLedger
from ant.log_buffer import MAX_FRAME_LINES, AttemptLog, LogEntry
from ant.outbound import OutboundQueue
from ant.settings import AntSettings
from formicary.v1 import ant_service_pb2, ant_service_pb2_grpc, task_pb2

__all__ = ["AntClient", "AntPhase", "AntStatus"]

Req = ant_service_pb2.ConnectRequest
Resp = ant_service_pb2.ConnectResponse

_REFUSALS = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


class AntPhase(StrEnum):
    """Where the Ant is in its life."""

    RUNNING = "running"
    """Takes tasks while it has free slots."""
    DRAINING = "draining"
    """The Queen sent Drain: no new tasks; leaves once every result is acknowledged."""
    SHUTTING_DOWN = "shutting_down"
    """Leaving on its own (SIGTERM): as DRAINING, and tasks still running after the grace are cancelled."""


class _End(StrEnum):
    """How one stream ended, for the reconnect loop."""

    RETRY = "retry"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class AntStatus:
    """A snapshot of the client, for logs, health checks and tests."""

    phase: AntPhase
    session_id: str | None
    connected: bool
    held: tuple[str, ...]
    last_acked_sequence: int


@dataclass(eq=False)
class _Attempt:
    """A held task attempt: its log on the way out, its cancel event, its result once it ended."""

    request: AttemptRequest
    log: AttemptLog
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    result: ExecutionResult | None = None
    result_sequence: int | None = None
    result_sent_on: int = 0  # number of the connection the result was last sent on; 0: never
    waiting_since: float | None = None  # loop time of the oldest line waiting to be sent

    @property
    def task_execution_id(self) -> str:
        return self.request.spec.task_execution_id


class _AttemptSink:
    """The executor's log sink: lines go to the attempt's log, to be sent (`on_output`)."""

    def __init__(self, attempt: _Attempt, on_output: Callable[[_Attempt, bool], None]) -> None:
        self._attempt = attempt
        self._on_output = on_output

    async def emit(self, stream: LogStream, text: str) -> None:
        log = self._attempt.log
        log.append(stream, text)
        self._on_output(self._attempt, log.pending_count >= MAX_FRAME_LINES)


@dataclass(eq=False)
class _Connection:
    number: int
    out: OutboundQueue[Req]
    terms: SessionTerms
    last_received: float
    ended: asyncio.Future[_End]
    log_deadline: asyncio.TimerHandle | None = None  # when waiting lines are sent even on a busy stream
    linger_end: asyncio.TimerHandle | None = None  # when lingering lines may go on an idle stream
    reported: tuple[int, int] = (0, 0)  # free_slots and last_acked_sequence of the last Heartbeat built

    def finish(self, end: _End) -> None:
        if not self.ended.done():
            self.ended.set_result(end)

    def fail(self, error: BaseException) -> None:
        if not self.ended.done():
            self.ended.set_exception(error)


def _ant_version() -> str:
    try:
        return version("formicary")
    except PackageNotFoundError:
        return "0.0.0"


@functools.cache
def _cpus() -> int:
    return os.cpu_count() or 1  # reads /sys each time: not per heartbeat


def _load() -> float:
    try:
        return os.getloadavg()[0] / _cpus()
    except OSError:
        return 0.0


class AntClient:
    """The Ant's connection to the Queen and the tasks it runs.

    Use `async with AntClient(...)` (or `start()` / `stop()`), or await `run()` directly: it returns when
    the Ant has left (after a Drain or `request_shutdown()`), and raises AntIdConflict when another
    process took over the ant_id, or QueenRefused when the Queen refused it and
    `refused_retry_interval` is 0.

    Artifacts move over the Queen's ArtifactService on this client's channel (`GrpcArtifactTransfer`)
    unless another `artifacts` transfer is given.
    """

    def __init__(
        self,
        settings: AntSettings,
        executors: ExecutorRegistry,
        *,
        artifacts: ArtifactTransfer | None = None,
        logger: FilteringBoundLogger | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._settings = settings
        self._executors = executors
        self._log: FilteringBoundLogger = (logger or structlog.get_logger("ant")).bind(ant_id=settings.ant_id)
        self._channel: grpc.aio.Channel | None = None  # the current connection's, once registered
        self._channel_ready = asyncio.Event()  # set exactly while _channel is not None
        self._runner = AttemptRunner(
            executors,
            work_root=Path(settings.work_dir),
            artifacts=artifacts
            or GrpcArtifactTransfer(
                self.artifact_channel,
                metadata=self._metadata(),
                timeouts=TransferTimeouts(
                    stall=settings.artifact_stall_timeout.total_seconds(),
                    transfer=settings.artifact_transfer_timeout.total_seconds(),
                    reconnect=settings.artifact_reconnect_timeout.total_seconds(),
                ),
                logger=self._log,
            ),
            ant_id=settings.ant_id,
            host=settings.host,
            logger=self._log,
            keep_work_dirs=settings.keep_work_dirs,
            default_cost_factor=settings.cost_factor,
        )
        self._backoff = backoff or Backoff(
            settings.reconnect_initial_backoff.total_seconds(),
            max(settings.reconnect_backoff_cap, settings.reconnect_initial_backoff).total_seconds(),
        )
        self._version = _ant_version()
        self._ledger = TaskLedger(settings.capacity)
        self._attempts: dict[str, _Attempt] = {}
        self._to_send: dict[str, _Attempt] = {}  # held attempts with lines or a result to send
        self._attempt_tasks: set[asyncio.Task[None]] = set()
        self._phase = AntPhase.RUNNING
        self._session_id: str | None = None
        self._connection: _Connection | None = None
        self._connections = 0
        self._changed = asyncio.Event()  # attempts or phase changed
        self._give_up = asyncio.Event()  # stop waiting for acknowledgements: leave now
        self._shutdown_requested = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self._shutdown_timer: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------------------ life

    async def __aenter__(self) -> AntClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Run the client in a task this object owns; `stop()` ends it."""
        if self._run_task is not None:
            raise RuntimeError("the Ant client is already started")
        self._run_task = asyncio.create_task(self.run(), name=f"ant-{self._settings.ant_id}")

    async def stop(self) -> None:
        """Leave as on SIGTERM (section 9) and wait until the client has ended."""
        task = self._run_task
        if task is None:
            return
        self.request_shutdown()
        try:
            await task
        finally:
            self._run_task = None

    async def wait(self) -> None:
        """Wait for the started client to end by itself (after a Drain); raises what `run()` raised."""
        if self._run_task is not None:
            await asyncio.shield(self._run_task)

    def request_shutdown(self) -> None:
        """Leave on our own: no new tasks (a Heartbeat with free_slots = 0), let running tasks finish
        for `shutdown_grace`, cancel the rest (reported CANCELLED), wait `ack_timeout` for the Queen's
        acknowledgements, half-close, exit."""
        if self._phase is AntPhase.SHUTTING_DOWN:
            return
        self._log.info("ant_shutdown_requested", held=len(self._attempts))
        self._phase = AntPhase.SHUTTING_DOWN
        self._shutdown_requested.set()
        self._changed.set()
        self._request_heartbeat()

    async def artifact_channel(self) -> grpc.aio.Channel:
        """The channel of the current connection, once the Queen has registered the Ant on it; waits
        (without limit: callers set their own) while the Ant connects or reconnects."""
        while (channel := self._channel) is None:
            await self._channel_ready.wait()
        return channel

    def _use_channel(self, channel: grpc.aio.Channel | None) -> None:
        self._channel = channel
        if channel is None:
            self._channel_ready.clear()
        else:
            self._channel_ready.set()

    def status(self) -> AntStatus:
        return AntStatus(
            phase=self._phase,
            session_id=self._session_id,
            connected=self._connection is not None,
            held=tuple(self._ledger.held_ids),
            last_acked_sequence=self._ledger.last_acked_sequence,
        )

    async def run(self) -> None:
        """Connect, serve, reconnect, until the Ant leaves."""
        self._log.info(
            "ant_started",
            queen=self._settings.queen_address,
            methods=[str(m) for m in self._executors.methods],
            capacity=self._settings.capacity,
            version=self._version,
        )
        fatal: AntError | None = None
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                self._shutdown_timer = tasks.create_task(
                    self._shutdown_deadlines(), name="ant-shutdown-timer"
                )
                try:
                    await self._reconnect_loop()
                except AntError as exc:  # raised below, not wrapped in the TaskGroup's ExceptionGroup
                    fatal = exc
                finally:
                    self._stop_everything()
        finally:
            self._tasks = None
            self._runner.close()
            self._log.info("ant_stopped", unacknowledged=len(self._attempts))
        if fatal is not None:
            raise fatal

    def _stop_everything(self) -> None:
        """Leaving: whatever still runs is stopped hard (executors release their resources)."""
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
        for task in self._attempt_tasks:
            task.cancel()

    async def _shutdown_deadlines(self) -> None:
        """Once a shutdown is requested: cancel what still runs after the grace, give up waiting for
        acknowledgements ack_timeout later."""
        await self._shutdown_requested.wait()
        await asyncio.sleep(self._settings.shutdown_grace.total_seconds())
        for attempt in list(self._attempts.values()):
            if attempt.result is None and not attempt.cancel.is_set():
                attempt.log.append(LogStream.SYSTEM, "cancelled: the Ant is shutting down")
                attempt.cancel.set()
                self._output_waiting(attempt, urgent=True)
        await asyncio.sleep(self._settings.ack_timeout.total_seconds())
        self._give_up.set()
        self._changed.set()

    def _leaving_done(self) -> bool:
        return self._phase is not AntPhase.RUNNING and not self._attempts

    async def _reconnect_loop(self) -> None:
        while True:
            if self._leaving_done():
                return
            try:
                end = await self._connect_once()
                delay = self._backoff.next_delay()
            except QueenRefused as exc:
                retry = self._settings.refused_retry_interval.total_seconds()
                self._log.error("queen_refused_ant", code=exc.code, details=exc.details, retry_in=retry)
                if retry <= 0:
                    raise
                end, delay = _End.RETRY, retry
            if end is _End.DONE or self._give_up.is_set() or self._leaving_done():
                if self._attempts:
                    self._log.error("ant_left_with_unacknowledged_tasks", tasks=list(self._attempts))
                return
            self._log.info("ant_reconnect_scheduled", delay=round(delay, 3), session_id=self._session_id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._free_to_leave()

    def _attempts_changed(self) -> None:
        """Wake `_free_to_leave` waiters; while RUNNING they wait for the phase, not for the attempts."""
        if self._phase is not AntPhase.RUNNING:
            self._changed.set()

    async def _free_to_leave(self) -> None:
        """Return once the Ant may leave without waiting for anything more."""
        while not (self._leaving_done() or self._give_up.is_set()):
            self._changed.clear()
            await self._changed.wait()

    async def _registration(self, call: grpc.aio.StreamStreamCall[Req, Resp]) -> Resp | None:
        """The Queen's first frame; None if the stream ended first or the Ant may leave meanwhile.
        Raises TimeoutError after register_timeout."""
        read = asyncio.ensure_future(call.read())
        leave = asyncio.ensure_future(self._free_to_leave())
        try:
            done, _ = await asyncio.wait(
                {read, leave},
                timeout=self._settings.register_timeout.total_seconds(),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            leave.cancel()
            if not read.done():
                read.cancel()
        if read in done:
            first = read.result()
            return first if isinstance(first, Resp) else None
        if leave in done:
            return None
        raise TimeoutError

    # ------------------------------------------------------------------------------------ one stream

    def _metadata(self) -> tuple[tuple[str, str], ...] | None:
        credential = self._settings.credential
        if credential is None or not credential.get_secret_value():
            return None
        return (("authorization", f"Bearer {credential.get_secret_value()}"),)

    def _register_frame(self) -> Req:
        resume = None
        if self._session_id is not None:
            resume = (self._session_id, self._ledger.last_acked_sequence, self._ledger.held_ids)
        return _convert.register_frame(
            ant_id=self._settings.ant_id,
            methods=self._executors.methods,
            tags=self._settings.tags,
            max_capacity=self._settings.capacity,
            version=self._version,
            labels=self._settings.labels,
            host=self._settings.host,
            resume=resume,
            protocol_version=self._settings.protocol_version,
        )

    async def _connect_once(self) -> _End:
        self._connections += 1
        number = self._connections
        log = self._log.bind(connection=number)
        out: OutboundQueue[Req] = OutboundQueue(when_idle=lambda: self._send_waiting(number))
        out.put_control(self._register_frame())
        async with grpc.aio.insecure_channel(self._settings.queen_address) as channel:
            stub = ant_service_pb2_grpc.AntServiceStub(channel)
            call = stub.Connect(out.frames(), metadata=self._metadata())
            try:
                first = await self._registration(call)
                if first is None:
                    if self._leaving_done() or self._give_up.is_set():
                        return _End.DONE
                    log.warning("queen_closed_before_registered", code=str(await call.code()))
                    return _End.RETRY
                if first.WhichOneof("frame") != "registered":
                    log.error("queen_protocol_error", first_frame=first.WhichOneof("frame"))
                    return _End.RETRY
                self._use_channel(channel)
                return await self._serve(
                    call, out, number, _convert.session_from_proto(first.registered), log
                )
            except TimeoutError:
                log.warning("queen_did_not_register", timeout=self._settings.register_timeout.total_seconds())
                return _End.RETRY
            except grpc.aio.AioRpcError as exc:
                return self._stream_error(exc, log)
            finally:
                self._use_channel(None)  # before the channel closes: no new transfer starts on it
                out.close()
                call.cancel()

    def _stream_error(self, exc: grpc.aio.AioRpcError, log: FilteringBoundLogger) -> _End:
        code = exc.code()
        details = exc.details() or ""
        if code is grpc.StatusCode.ABORTED:
            self._abandon_all("another process registered with this ant_id")
            raise AntIdConflict(self._settings.ant_id, details) from exc
        if code in _REFUSALS:
            raise QueenRefused(code.name, details) from exc
        if code is grpc.StatusCode.OK:  # pragma: no cover - an OK end is EOF, not an error
            return _End.DONE if self._phase is not AntPhase.RUNNING else _End.RETRY
        log.warning("ant_stream_broken", code=code.name, details=details)
        return _End.RETRY

    async def _serve(
        self,
        call: grpc.aio.StreamStreamCall[Req, Resp],
        out: OutboundQueue[Req],
        number: int,
        terms: SessionTerms,
        log: FilteringBoundLogger,
    ) -> _End:
        loop = asyncio.get_running_loop()
        conn = _Connection(
            number=number, out=out, terms=terms, last_received=loop.time(), ended=loop.create_future()
        )
        self._adopt_session(terms, log)
        self._backoff.reset()
        self._backoff.limit_to(terms.heartbeat_timeout.total_seconds())
        self._connection = conn
        if terms.protocol_version >= 3:  # what is queued at each write goes as one frame
            out.batch_with(_convert.batch_frame, Req.ByteSize)
        self._send_heartbeat(conn)  # the first frame after Registered (section 1)
        self._to_send.update(self._attempts)  # re-send what the Queen is missing at once
        self._send_logs(conn)
        helpers = [
            asyncio.create_task(self._read(call, conn), name="ant-reader"),
            asyncio.create_task(self._heartbeats(conn), name="ant-heartbeats"),
            asyncio.create_task(self._watch_liveness(conn, log), name="ant-watchdog"),
            asyncio.create_task(self._leave_when_done(conn, log), name="ant-leaver"),
        ]
        for helper in helpers:
            helper.add_done_callback(lambda task: _report_crash(task, conn))
        try:
            return await conn.ended
        finally:
            self._connection = None
            if conn.log_deadline is not None:
                conn.log_deadline.cancel()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    def _adopt_session(self, terms: SessionTerms, log: FilteringBoundLogger) -> None:
        """Apply the re-attach rules of section 2 to what the Ant holds."""
        resumed = terms.resumed and terms.session_id == self._session_id
        if resumed:
            for task_execution_id in self._ledger.keep_only(terms.resumed_tasks):
                self._abandon(task_execution_id, "the Queen gave the task up while the Ant was away")
            for task_execution_id, last_stored in terms.resumed_tasks.items():
                attempt = self._attempts.get(task_execution_id)
                if attempt is None:
                    continue
                lost = attempt.log.rewind(last_stored)
                if lost:
                    attempt.log.append(
                        LogStream.SYSTEM, f"formicary: {lost} log lines were lost while the Ant reconnected"
                    )
        else:
            for task_execution_id in self._ledger.new_session():
                self._abandon(
                    task_execution_id, "the Queen started a new session and failed the old one's tasks"
                )
        log.info(
            "ant_registered",
            session_id=terms.session_id,
            resumed=resumed,
            held=self._ledger.held_ids,
            heartbeat_interval=terms.heartbeat_interval.total_seconds(),
            heartbeat_timeout=terms.heartbeat_timeout.total_seconds(),
        )
        self._session_id = terms.session_id
        self._changed.set()

    async def _read(self, call: grpc.aio.StreamStreamCall[Req, Resp], conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        log = self._log.bind(connection=conn.number)
        try:
            while isinstance(response := await call.read(), Resp):  # else EOF
                conn.last_received = loop.time()
                self._handle(response, conn)
        except grpc.aio.AioRpcError as exc:
            try:
                conn.finish(self._stream_error(exc, log))
            except (AntIdConflict, QueenRefused) as error:
                conn.fail(error)
            return
        log.info("queen_closed_stream", phase=str(self._phase))
        conn.finish(_End.DONE if self._phase is not AntPhase.RUNNING else _End.RETRY)

    def _handle(self, response: Resp, conn: _Connection) -> None:
        kind = response.WhichOneof("frame")
        if kind == "dispatch_task":
            self._on_dispatch(response.dispatch_task, conn)
        elif kind == "cancel_task":
            self._on_cancel(response.cancel_task.task_execution_id, response.cancel_task.reason)
        elif kind == "ping":
            conn.out.put_control(_convert.pong_frame(response.ping.nonce))
        elif kind == "result_ack":
            self._on_ack(response.result_ack.sequence)
        elif kind == "drain":
            self._on_drain(response.drain.reason)
        elif kind == "batch":  # protocol 3: the frames in order, each as if it had come alone
            for frame in response.batch.frames:
                if frame.WhichOneof("frame") == "batch":
                    self._log.warning("queen_sent_nested_batch")
                else:
                    self._handle(frame, conn)
        elif kind == "registered":
            self._log.warning("queen_sent_registered_twice")
        # A frame with nothing set or of a newer kind is ignored (FRAMES).

    # ------------------------------------------------------------------------------------ dispatches

    def _on_dispatch(self, dispatch: Resp.DispatchTask, conn: _Connection) -> None:
        for result_sequence in dispatch.acked_result_sequences:  # protocol 2: acks ride along (section 5)
            self._on_ack(result_sequence)
        sequence = dispatch.sequence
        request = dispatch.request
        task_execution_id = request.task_execution_id
        if request.action == task_pb2.TASK_ACTION_CANCEL:
            if task_execution_id in self._attempts:
                self._on_cancel(task_execution_id, "cancel action in a dispatch")
                conn.out.put_control(_convert.accepted_frame(sequence, task_execution_id))
            else:
                reason = "a cancel for a task this Ant does not hold"
                conn.out.put_control(_convert.rejected_frame(sequence, task_execution_id, reason))
            self._ledger.answered(sequence)
            return
        try:
            attempt = _convert.attempt_from_proto(request, receive_time=datetime.now(UTC))
        except InvalidTaskRequest as exc:
            conn.out.put_control(_convert.rejected_frame(sequence, task_execution_id, str(exc)))
            self._ledger.answered(sequence)
            self._log.warning(
                "task_rejected", task_execution_id=task_execution_id, sequence=sequence, reason=str(exc)
            )
            return
        decision = self._ledger.decide(
            task_execution_id,
            request.correlation_id,
            supported=attempt.spec.method in self._executors,
            accepting=self._phase is AntPhase.RUNNING,
        )
        if decision.verdict is DispatchVerdict.REJECT:
            conn.out.put_control(_convert.rejected_frame(sequence, task_execution_id, decision.reason))
            self._window_may_be_short()
            self._log.info(
                "task_rejected",
                task_execution_id=task_execution_id,
                sequence=sequence,
                reason=decision.reason,
                method=str(attempt.spec.method),
            )
        elif decision.verdict is DispatchVerdict.ACCEPT_AGAIN:
            conn.out.put_control(_convert.accepted_frame(sequence, task_execution_id))
            self._log.info("task_accepted_again", task_execution_id=task_execution_id, sequence=sequence)
        else:
            if decision.verdict is DispatchVerdict.REPLACE:
                self._abandon(task_execution_id, "a new attempt of the task was dispatched")
            self._ledger.hold(task_execution_id, request.correlation_id, sequence)
            # Started first: the attempt's first step (its directory, the spawn) runs before the writer
            # wakes up, and the TaskAccepted is written while the task runs, not before it starts.
            self._start(attempt)
            conn.out.put_control(_convert.accepted_frame(sequence, task_execution_id))
            self._log.info(
                "task_accepted",
                task_execution_id=task_execution_id,
                sequence=sequence,
                method=attempt.spec.method.value,
                task_type=attempt.spec.task_type,
            )
        self._ledger.answered(sequence)

    def _start(self, request: AttemptRequest) -> None:
        settings = self._settings
        attempt = _Attempt(
            request=request,
            log=AttemptLog(
                max_pending_lines=settings.log_max_pending_lines, keep_sent_lines=settings.log_resend_lines
            ),
        )
        self._attempts[attempt.task_execution_id] = attempt
        assert self._tasks is not None, "dispatches are only read while run() is running"
        task = self._tasks.create_task(
            self._run_attempt(attempt), name=f"attempt-{attempt.task_execution_id}"
        )
        self._attempt_tasks.add(task)
        task.add_done_callback(self._attempt_tasks.discard)
        self._attempts_changed()

    async def _run_attempt(self, attempt: _Attempt) -> None:
        sink = _AttemptSink(attempt, self._output_waiting)
        try:
            result = await self._runner.run(
                attempt.request, sink, attempt.cancel, report=lambda r: self._ended(attempt, r)
            )
        except Exception as exc:  # the runner catches executor failures; anything else is a bug here
            self._log.exception("attempt_crashed", task_execution_id=attempt.task_execution_id)
            result = ExecutionResult(
                status=ExecutionStatus.FAILED,
                exit_code=EXIT_CODE_FAILED,
                error_code=ErrorCode.EXECUTOR,
                error_message=f"the Ant failed to run the task: {type(exc).__name__}",
            )
        self._ended(attempt, result)  # if the runner did not report it (it crashed)

    def _ended(self, attempt: _Attempt, result: ExecutionResult) -> None:
        """The attempt's result is final: send it (after its lines), once."""
        if attempt.result is not None or self._attempts.get(attempt.task_execution_id) is not attempt:
            return  # already reported, or given up meanwhile: its result is discarded
        attempt.log.close()
        attempt.result = result
        attempt.result_sequence = self._ledger.record_result(attempt.task_execution_id)
        self._output_waiting(attempt, urgent=True)
        self._attempts_changed()

    def _on_cancel(self, task_execution_id: str, reason: str) -> None:
        attempt = self._attempts.get(task_execution_id)
        if attempt is None or attempt.result is not None or attempt.cancel.is_set():
            return  # not held, already ended, or already being cancelled: nothing to do (section 7)
        self._log.info("task_cancel_requested", task_execution_id=task_execution_id, reason=reason)
        attempt.log.append(LogStream.SYSTEM, f"cancel requested: {reason}" if reason else "cancel requested")
        attempt.cancel.set()
        self._output_waiting(attempt, urgent=False)

    def _abandon(self, task_execution_id: str, reason: str) -> None:
        """Stop an attempt and forget it: its result, if any, is never sent."""
        attempt = self._attempts.pop(task_execution_id, None)
        self._to_send.pop(task_execution_id, None)
        self._ledger.release(task_execution_id)
        if attempt is None:
            return
        self._log.warning("task_abandoned", task_execution_id=task_execution_id, reason=reason)
        attempt.cancel.set()
        self._request_heartbeat()
        self._attempts_changed()

    def _abandon_all(self, reason: str) -> None:
        for task_execution_id in list(self._attempts):
            self._abandon(task_execution_id, reason)

    def _on_ack(self, result_sequence: int) -> None:
        task_execution_id = self._ledger.acknowledge(result_sequence)
        if task_execution_id is None:
            self._log.debug("unknown_result_acknowledged", sequence=result_sequence)
            return
        self._attempts.pop(task_execution_id, None)
        self._to_send.pop(task_execution_id, None)
        self._log.info(
            "task_result_acknowledged", task_execution_id=task_execution_id, sequence=result_sequence
        )
        self._window_may_be_short()  # a slot is free again (section 3)
        self._attempts_changed()

    def _on_drain(self, reason: str) -> None:
        self._log.info("ant_drain_requested", reason=reason, held=len(self._attempts))
        if self._phase is AntPhase.RUNNING:
            self._phase = AntPhase.DRAINING
        self._request_heartbeat()
        self._changed.set()

    # ------------------------------------------------------------------------------ periodic sending

    def _request_heartbeat(self) -> None:
        if self._connection is not None:
            self._send_heartbeat(self._connection)

    def _window_may_be_short(self) -> None:
        """Send a Heartbeat if the Queen's dispatch window, as this Ant can compute it (the last Heartbeat
        sent, minus the dispatches answered since), is at most half of max_capacity (section 3)."""
        conn = self._connection
        if conn is None:
            return
        free, acked = conn.reported
        window = free - (self._ledger.last_acked_sequence - acked)
        if window <= self._settings.capacity // 2:
            self._send_heartbeat(conn)

    def _send_heartbeat(self, conn: _Connection) -> None:
        """A Heartbeat, built when its turn comes: after the answers queued before it, with the state
        as it is then; requests made while one waits are answered by that one (section 3)."""
        conn.out.put_deferred(self._heartbeat_frame)

    def _heartbeat_frame(self) -> Req:
        free_slots = self._ledger.free_slots(accepting=self._phase is AntPhase.RUNNING)
        last_acked = self._ledger.last_acked_sequence
        if self._connection is not None:
            self._connection.reported = (free_slots, last_acked)
        return _convert.heartbeat_frame(
            held=self._ledger.held_ids, free_slots=free_slots, load=_load(), last_acked_sequence=last_acked
        )

    async def _heartbeats(self, conn: _Connection) -> None:
        interval = conn.terms.heartbeat_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            self._send_heartbeat(conn)

    def _output_waiting(self, attempt: _Attempt, urgent: bool) -> None:
        """`attempt` has lines or its result to send: queued now when `urgent` (a full frame, an ended
        attempt), otherwise when the stream is next idle once they waited `log_linger` (so that a short
        task's lines go with its result, protocol 2), and at the latest `log_flush_interval` from now
        (section 6)."""
        self._to_send[attempt.task_execution_id] = attempt
        conn = self._connection
        if conn is None:
            return  # sent after the reconnect
        if urgent:
            self._send_logs(conn)
            return
        loop = asyncio.get_running_loop()
        if attempt.waiting_since is None:
            attempt.waiting_since = loop.time()
        linger = self._settings.log_linger.total_seconds() if conn.terms.protocol_version >= 2 else 0.0
        if linger <= 0:
            conn.out.poke()
        elif conn.linger_end is None:
            conn.linger_end = loop.call_later(linger, self._linger_passed, conn)
        if conn.log_deadline is None:
            conn.log_deadline = asyncio.get_running_loop().call_later(
                self._settings.log_flush_interval.total_seconds(), self._log_deadline_passed, conn
            )

    def _linger_passed(self, conn: _Connection) -> None:
        conn.linger_end = None
        conn.out.poke()  # the writer, if idle, takes the lines that lingered long enough (_send_waiting)

    def _log_deadline_passed(self, conn: _Connection) -> None:
        conn.log_deadline = None
        if self._connection is conn:
            self._send_logs(conn)

    def _send_waiting(self, connection_number: int) -> None:
        """The stream of connection `connection_number` has nothing to send: send the lines that waited
        at least `log_linger` (the others are sent when it has passed)."""
        conn = self._connection
        if conn is None or conn.number != connection_number or not self._to_send:
            return
        linger = self._settings.log_linger.total_seconds() if conn.terms.protocol_version >= 2 else 0.0
        ripe_before = asyncio.get_running_loop().time() - linger
        young = [
            a for a in self._to_send.values() if a.waiting_since is not None and a.waiting_since > ripe_before
        ]
        if young and conn.linger_end is None:
            delay = min(a.waiting_since or 0.0 for a in young) - ripe_before
            conn.linger_end = asyncio.get_running_loop().call_later(delay, self._linger_passed, conn)
        self._send_logs(conn, skip=frozenset(a.task_execution_id for a in young))

    def _send_logs(self, conn: _Connection, skip: frozenset[str] = frozenset()) -> None:
        """Queue the waiting log lines, within the bulk lane's room, and the results that are due, each
        after its attempt's lines; what does not fit waits for the stream's next idle moment."""
        for attempt in list(self._to_send.values()):
            if attempt.task_execution_id in skip:
                continue
            if self._send_attempt(attempt, conn):
                del self._to_send[attempt.task_execution_id]
                attempt.waiting_since = None
            elif not conn.out.bulk_room:
                return

    def _send_attempt(self, attempt: _Attempt, conn: _Connection) -> bool:
        """Queue what `attempt` has to send; False if lines are left for lack of room."""
        spec = attempt.request.spec
        out = conn.out
        result_due = (
            attempt.result is not None
            and attempt.result_sequence is not None
            and attempt.result_sent_on != conn.number
            and self._attempts.get(spec.task_execution_id) is attempt
        )
        last_lines: list[LogEntry] = []
        while attempt.log.pending_count:
            if not out.bulk_room:
                return False
            batch = attempt.log.take_batch()
            if result_due and conn.terms.protocol_version >= 2 and not attempt.log.pending_count:
                last_lines = batch  # protocol 2: the last batch travels in the TaskResult (section 6)
                break
            out.put_bulk(_convert.log_lines_frame(spec.task_execution_id, spec.task_retry, batch))
        if result_due:
            assert attempt.result is not None
            assert attempt.result_sequence is not None
            response = _convert.response_from_result(
                attempt.request,
                attempt.result,
                ant_id=self._settings.ant_id,
                host=self._settings.host,
                tags=self._settings.tags,
            )
            attempt.result_sent_on = conn.number
            frame = _convert.result_frame(
                attempt.result_sequence, response, task_retry=spec.task_retry, lines=last_lines
            )
            out.put_bulk(frame)  # beyond the room: small
            self._log.info(
                "task_result_sent",
                task_execution_id=spec.task_execution_id,
                sequence=attempt.result_sequence,
                status=attempt.result.status.value,
            )
        return True

    async def _watch_liveness(self, conn: _Connection, log: FilteringBoundLogger) -> None:
        """No frame from the Queen for heartbeat_timeout: the stream is dead (section 8)."""
        loop = asyncio.get_running_loop()
        timeout = conn.terms.heartbeat_timeout.total_seconds()
        # A timer re-armed to the latest possible expiry, not a poll: it wakes once per heartbeat_timeout.
        while (remaining := conn.last_received + timeout - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)
        log.warning("queen_went_silent", seconds=timeout)
        conn.finish(_End.RETRY)

    async def _leave_when_done(self, conn: _Connection, log: FilteringBoundLogger) -> None:
        """Leaving and nothing held any more (or no more waiting): half-close and let the Queen end the
        call; if it does not within ack_timeout, end it ourselves (section 9)."""
        await self._free_to_leave()
        log.info("ant_stream_half_closed", unacknowledged=len(self._attempts))
        conn.out.close()
        if not self._give_up.is_set():  # the shutdown timer already waited ack_timeout otherwise
            await asyncio.sleep(self._settings.ack_timeout.total_seconds())
        log.warning("queen_did_not_close_stream")
        conn.finish(_End.DONE)


def _report_crash(task: asyncio.Task[None], conn: _Connection) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        conn.fail(error)
