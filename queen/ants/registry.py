"""The connected Ants, and dispatch of task attempts to them (the Queen side of the Ant stream).

Routing (least loaded Ant that serves the method and every tag, never beyond its window) happens in
`_pump`, which runs whenever capacity may have appeared: an Ant registered or heartbeated, a result
arrived, a dispatch was refused. Attempts wait in FIFO order, each with the reason it waits.

Sessions are kept in memory. After a Queen restart an Ant's resume names a session the new Queen never
saw; the session is rebuilt from what the supervisors still expect (`reattach`), so tasks running
through a Queen restart are re-attached, not lost (ant_service.proto §2).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from google.protobuf.duration_pb2 import Duration

from formicary.v1 import ant_service_pb2, log_line_pb2
from queen.ants._convert import task_report
from queen.ants.session import AntSession, Dispatch, DispatchEvent, EventKind, StreamEnd, StreamHandle
from queen.ants.waiting import WaitingAttempts
from queen.domain.job_definition import TaskMethod
from queen.domain.states import TaskState
from queen.domain.work import TaskReport, TaskWork
from queen.supervisor.dispatch import Acceptance, DispatchOutcome, DispatchProgress
from queen.telemetry.metrics import METRICS

__all__ = ["ERR_ANT_LOST", "AntRegistry", "AntSnapshot", "LogSink", "RegistrationError"]

ERR_ANT_LOST = "ERR_ANT_LOST"
# When a waiting attempt's reason is written on its request (one transaction each, and one more to clear
# it): soon when no connected Ant can run it at all (an operator must act), only if it lasts when the Ants
# that can run it are busy (a burst of submissions queues for slots without writing one row per job).
_NO_ANT_REPORT_DELAY = timedelta(seconds=0.5)
_BUSY_REPORT_DELAY = timedelta(seconds=5)
# The highest version of the Ant stream protocol this Queen speaks (ant_service.proto, PROTOCOL VERSIONS).
PROTOCOL_VERSION = 3
# How long an acceptance waits for the attempt's result before it is reported on its own (see _follow).
_ACCEPT_WRITE_DELAY = timedelta(milliseconds=10)


class LogSink(Protocol):
    """Where log lines from Ants go (live followers and storage)."""

    def lines(
        self, task_execution_id: str, task_retry: int, lines: Iterable[log_line_pb2.LogLine]
    ) -> None: ...


class RegistrationError(Exception):
    """A Register frame the Queen refuses; `code` is the gRPC status name to end the stream with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class AntSnapshot:
    """A connected Ant as operators see it."""

    ant_id: str
    session_id: str
    methods: tuple[str, ...]
    tags: tuple[str, ...]
    max_capacity: int
    running: int
    free_slots: int
    load: float
    version: str
    host: str
    labels: dict[str, str]
    connected: bool
    connected_at: float
    last_heartbeat_at: float | None


@dataclass(slots=True, eq=False)
class _Reattach:
    """An attempt dispatched before a Queen restart, waiting for its Ant to come back."""

    dispatch: Dispatch
    ant_id: str
    deadline: float


def _lost_report(ant_id: str, why: str) -> TaskReport:
    return TaskReport(state=TaskState.FAILED, error_code=ERR_ANT_LOST, error_message=why, ant_id=ant_id)


def _duration(value: timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(value)
    return duration


class AntRegistry:
    """Connected Ants and the attempts waiting for, or running on, them. Implements `TaskDispatcher`."""

    def __init__(
        self,
        *,
        heartbeat_interval: timedelta,
        heartbeat_timeout: timedelta,
        log_sink: LogSink,
        on_capacity: Callable[[], None] = lambda: None,
        queen_methods: frozenset[TaskMethod] = frozenset(),
        accept_write_delay: timedelta = _ACCEPT_WRITE_DELAY,
        no_ant_report_delay: timedelta = _NO_ANT_REPORT_DELAY,
        busy_report_delay: timedelta = _BUSY_REPORT_DELAY,
    ) -> None:
        self._heartbeat_interval = heartbeat_interval
        self._accept_write_delay = accept_write_delay.total_seconds()
        self._no_ant_report_delay = no_ant_report_delay.total_seconds()
        self._busy_report_delay = max(busy_report_delay, no_ant_report_delay).total_seconds()
        self._heartbeat_timeout = heartbeat_timeout
        self._ping_interval = heartbeat_interval
        self._log_sink = log_sink
        self._on_capacity = on_capacity
        self._queen_methods = queen_methods
        self._sessions: dict[str, AntSession] = {}
        self._pending = WaitingAttempts()
        self._reattach: dict[str, _Reattach] = {}
        self._monitor: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._monitor = asyncio.create_task(self._watch_liveness(), name="ant-liveness")

    async def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
            self._monitor = None
        for session in self._sessions.values():
            if session.stream is not None:
                session.stream.send(StreamEnd.SHUTDOWN)

    @property
    def ping_interval(self) -> timedelta:
        return self._ping_interval

    # -- what operators and the scheduler see ------------------------------------------------------

    def snapshot(self) -> list[AntSnapshot]:
        return [
            AntSnapshot(
                ant_id=s.ant_id,
                session_id=s.session_id,
                methods=tuple(sorted(m.value for m in s.methods)),
                tags=tuple(sorted(s.tags)),
                max_capacity=s.max_capacity,
                running=s.running,
                free_slots=max(s.window, 0),
                load=s.load,
                version=s.version,
                host=s.host,
                labels=dict(s.labels),
                connected=s.stream is not None,
                connected_at=s.connected_at,
                last_heartbeat_at=s.last_heartbeat_at,
            )
            for s in sorted(self._sessions.values(), key=lambda s: s.ant_id)
        ]

    def unavailable_reason(self, method: TaskMethod, tags: frozenset[str]) -> str | None:
        if any(session.serves(method, tags) for session in self._sessions.values()):
            return None
        if not tags:
            return f"no connected Ant runs {method} tasks"
        return f"no connected Ant runs {method} tasks with tags {', '.join(sorted(tags))}"

    @property
    def waiting(self) -> int:
        return len(self._pending)

    # -- TaskDispatcher --------------------------------------------------------------------------

    async def run(self, work: TaskWork, progress: DispatchProgress) -> DispatchOutcome:
        dispatch = Dispatch(work)
        self._pending.append(dispatch)
        self._pump()
        return await self._follow(dispatch, progress, report_wait=True)

    async def reattach(self, work: TaskWork, ant_id: str, progress: DispatchProgress) -> DispatchOutcome:
        dispatch = Dispatch(work, accepted=True)
        session = self._sessions.get(ant_id)
        if session is not None and work.task_execution_id in session.by_task:
            dispatch = session.by_task[work.task_execution_id]
        else:
            deadline = time.monotonic() + self._heartbeat_timeout.total_seconds()
            self._reattach[work.task_execution_id] = _Reattach(dispatch, ant_id, deadline)
        return await self._follow(dispatch, progress)

    async def cancel(self, task_execution_id: str, reason: str) -> None:
        for dispatch in self._pending:
            if dispatch.work.task_execution_id == task_execution_id:
                self._pending.remove(dispatch)
                dispatch.finish(DispatchOutcome(TaskReport(TaskState.CANCELLED, error_message=reason)))
                return
        for session in self._sessions.values():
            if session.cancel(task_execution_id, reason):
                return
        waiting = self._reattach.get(task_execution_id)
        if waiting is not None:
            # the Ant is away; it is told when it returns (its task is left out of resumed_tasks)
            del self._reattach[task_execution_id]
            waiting.dispatch.finish(DispatchOutcome(TaskReport(TaskState.CANCELLED, error_message=reason)))

    async def _follow(
        self, dispatch: Dispatch, progress: DispatchProgress, *, report_wait: bool = False
    ) -> DispatchOutcome:
        """Relay the dispatch's events to `progress` in order, until its outcome.

        A wait is reported (`report_wait`) only if it lasts: `no_ant_report_delay` when no connected Ant
        can run the task, `busy_report_delay` when the Ants that can are all busy. A slot usually frees
        within milliseconds, and writing the reason (and clearing it) costs two transactions per job;
        in a burst of submissions (bench/dispatch.py W2) most jobs waited half a second for a slot.
        Likewise an acceptance is reported only if no result follows within `accept_write_delay`: a
        short task's acceptance goes with its outcome (`DispatchOutcome.accepted`) and is recorded in
        the result's transaction, one transaction fewer per task.
        """
        try:
            early: DispatchEvent | None = None
            if report_wait:
                early = await _next_event(dispatch, self._no_ant_report_delay)
                work = dispatch.work
                if early is None and not self.unavailable_reason(work.method, work.tags):
                    early = await _next_event(dispatch, self._busy_report_delay - self._no_ant_report_delay)
                if early is None:
                    await progress.waiting(self._wait_reason(work))
            unwritten: Acceptance | None = None
            while True:
                event = early if early is not None else await dispatch.events.get()
                early = None
                match event.kind:
                    case EventKind.DISPATCHED:
                        await progress.dispatched(event.ant_id, event.ant_host)
                    case EventKind.ACCEPTED:
                        unwritten = Acceptance(event.ant_id, event.at or datetime.now(UTC))
                        if not dispatch.finished:
                            early = await _next_event(dispatch, self._accept_write_delay)
                        if not dispatch.finished:
                            await progress.accepted(unwritten.ant_id, unwritten.at)
                            unwritten = None
                    case EventKind.REJECTED:
                        await progress.waiting(f"Ant {event.ant_id} refused the task: {event.reason}")
                    case EventKind.FINISHED:
                        assert event.outcome is not None
                        if unwritten is not None:
                            return replace(event.outcome, accepted=unwritten)
                        return event.outcome
        except asyncio.CancelledError:
            self._abandon(dispatch)
            raise

    def _abandon(self, dispatch: Dispatch) -> None:
        """The supervisor stopped waiting (Queen stopping, job cancelled): forget the attempt."""
        self._pending.remove(dispatch)
        self._reattach.pop(dispatch.work.task_execution_id, None)
        session = dispatch.session
        if session is not None and session.by_task.get(dispatch.work.task_execution_id) is dispatch:
            session.by_task.pop(dispatch.work.task_execution_id, None)
            session.by_sequence.pop(dispatch.sequence, None)
        dispatch.finished = True

    def _wait_reason(self, work: TaskWork) -> str:
        reason = self.unavailable_reason(work.method, work.tags)
        return reason or f"waiting for a free slot on an Ant that runs {work.method} tasks"

    def _pump(self) -> None:
        """Give waiting attempts to the least loaded fitting Ants, within their windows (FIFO).

        It runs on every heartbeat, result and refusal, with possibly many attempts waiting: it ends as
        soon as no Ant has room left, and skips a group of attempts that route alike at once when no Ant
        with room serves its oldest (see `WaitingAttempts`).
        """
        if not self._pending:
            return
        open_sessions = [session for session in self._sessions.values() if session.window > 0]

        def place(dispatch: Dispatch) -> bool:
            session = self._pick(dispatch.work, open_sessions)
            if session is None:
                return False
            session.dispatch(dispatch)
            if session.window <= 0:
                open_sessions.remove(session)
            return True

        self._pending.offer(place, lambda: bool(open_sessions))

    def _pick(self, work: TaskWork, sessions: Iterable[AntSession]) -> AntSession | None:
        best: AntSession | None = None
        method, tags = work.method, work.tags
        for session in sessions:
            if (
                session.window <= 0
                or not session.serves(method, tags)
                or not session.admits(work.organization_id)
            ):
                continue
            if best is None or (session.load, session.running) < (best.load, best.running):
                best = session
        return best

    # -- the stream (called by the AntService servicer) --------------------------------------------

    def connect(
        self,
        register: ant_service_pb2.ConnectRequest.Register,
        methods: frozenset[TaskMethod],
        *,
        organization_id: str | None = None,
    ) -> tuple[AntSession, StreamHandle, ant_service_pb2.ConnectResponse]:
        """Open or resume the session of a registering Ant (§1, §2); returns its first response frame.
        `organization_id` binds the Ant to one organisation's tasks (None: any)."""
        self._validate(register, methods)
        previous = self._sessions.get(register.ant_id)
        if previous is not None and previous.organization_id != organization_id:
            # an Ant of another organisation (or an unbound one) must not take over this session's tasks
            raise RegistrationError(
                "PERMISSION_DENIED", f"ant_id {register.ant_id!r} is in use by another organisation's Ant"
            )
        protocol = min(max(register.protocol_version, 1), PROTOCOL_VERSION)
        stream = StreamHandle(fold_acks=protocol >= 2, batch=protocol >= 3)
        resume = register.resume if register.HasField("resume") else None
        resumed_tasks: list[ant_service_pb2.ConnectResponse.Registered.ResumedTask] = []
        reported = set(resume.running_task_execution_ids) if resume is not None else set()
        if resume is not None and previous is not None and previous.session_id == resume.session_id:
            session = previous
            self._retake_stream(session)
            session.stream = stream
            for dispatch in list(session.by_task.values()):
                if dispatch.accepted and dispatch.work.task_execution_id not in reported:
                    session.by_task.pop(dispatch.work.task_execution_id, None)
                    session.by_sequence.pop(dispatch.sequence, None)
                    dispatch.finish(
                        DispatchOutcome(_lost_report(session.ant_id, "the Ant no longer holds the task"))
                    )
            resumed_tasks = [
                ant_service_pb2.ConnectResponse.Registered.ResumedTask(task_execution_id=task_id)
                for task_id in sorted(reported)
                if task_id in session.by_task
            ]
            resumed = True
        else:
            if previous is not None:
                self._close(previous, StreamEnd.TAKEN_OVER, "the Ant registered again with a new session")
            session_id = resume.session_id if resume is not None and resume.session_id else uuid.uuid4().hex
            next_sequence = resume.last_acked_sequence + 1 if resume is not None else 1
            session = AntSession(
                ant_id=register.ant_id,
                session_id=session_id,
                methods=methods,
                tags=frozenset(register.tags),
                max_capacity=register.max_capacity,
                version=register.version,
                host=register.host,
                labels=dict(register.labels),
                next_sequence=next_sequence,
            )
            session.organization_id = organization_id
            session.stream = stream
            self._sessions[session.ant_id] = session
            resumed_tasks = self._adopt_reattached(session, reported)
            resumed = resume is not None and bool(resumed_tasks)
        session.last_seen = time.monotonic()
        METRICS.ant_connected(resumed=resume is not None)  # a resume is a reconnect of the stream
        registered = ant_service_pb2.ConnectResponse(
            registered=ant_service_pb2.ConnectResponse.Registered(
                session_id=session.session_id,
                resumed=resumed,
                resumed_tasks=resumed_tasks,
                heartbeat_interval=_duration(self._heartbeat_interval),
                heartbeat_timeout=_duration(self._heartbeat_timeout),
                ping_interval=_duration(self._ping_interval),
                protocol_version=protocol,
            )
        )
        stream.send(registered)
        if resumed and resume is not None and session is previous:
            session.resend_unanswered(resume.last_acked_sequence)
        self._on_capacity()
        return session, stream, registered

    def _validate(
        self, register: ant_service_pb2.ConnectRequest.Register, methods: frozenset[TaskMethod]
    ) -> None:
        if not register.ant_id:
            raise RegistrationError("INVALID_ARGUMENT", "Register.ant_id is empty")
        if register.max_capacity < 1:
            raise RegistrationError("INVALID_ARGUMENT", "Register.max_capacity must be at least 1")
        if not methods:
            raise RegistrationError("INVALID_ARGUMENT", "Register.methods names no method this Queen knows")
        queen_side = methods & self._queen_methods
        if queen_side:
            names = ", ".join(sorted(m.value for m in queen_side))
            raise RegistrationError("INVALID_ARGUMENT", f"only the Queen runs {names}")

    def _adopt_reattached(
        self, session: AntSession, reported: set[str]
    ) -> list[ant_service_pb2.ConnectResponse.Registered.ResumedTask]:
        """Attach the attempts that supervisors expect from this Ant after a Queen restart."""
        resumed = []
        for task_id, waiting in list(self._reattach.items()):
            if waiting.ant_id != session.ant_id:
                continue
            del self._reattach[task_id]
            dispatch = waiting.dispatch
            if task_id not in reported:
                dispatch.finish(
                    DispatchOutcome(_lost_report(session.ant_id, "the Ant came back without the task"))
                )
                continue
            dispatch.session = session
            dispatch.accepted = True
            dispatch.sequence = 0  # dispatched by an earlier Queen: no sequence in this session
            session.by_task[task_id] = dispatch
            resumed.append(ant_service_pb2.ConnectResponse.Registered.ResumedTask(task_execution_id=task_id))
        return resumed

    def _retake_stream(self, session: AntSession) -> None:
        if session.stream is not None:
            session.stream.send(StreamEnd.TAKEN_OVER)
            session.stream = None

    def received(self, session: AntSession, frame: ant_service_pb2.ConnectRequest) -> str | None:
        """Handle one message after Register: a frame, or a protocol-3 Batch frame by frame, in order.
        A protocol error (a second Register, a Batch holding a Register or a Batch) is returned, after the
        frames before it."""
        kind = frame.WhichOneof("frame")
        if kind == "register":
            return "Register sent twice on one stream"
        if kind != "batch":
            self._received_frame(session, frame)
            return None
        for inner in frame.batch.frames:
            kind = inner.WhichOneof("frame")
            if kind in ("register", "batch"):
                return f"a Batch may not hold a {kind.capitalize()} frame"
            self._received_frame(session, inner)
        return None

    def _received_frame(self, session: AntSession, frame: ant_service_pb2.ConnectRequest) -> None:
        session.last_seen = time.monotonic()
        kind = frame.WhichOneof("frame")
        if kind == "heartbeat":
            beat = frame.heartbeat
            for dispatch in session.heartbeat(
                beat.running_task_execution_ids, beat.free_slots, beat.load, beat.last_acked_sequence
            ):
                dispatch.finish(
                    DispatchOutcome(_lost_report(session.ant_id, "the Ant stopped reporting the task"))
                )
            # free slots feed the pump only: the scheduler's verdicts depend on which Ants exist, not on
            # their load, so a heartbeat does not wake it (registration and loss do)
            self._pump()
        elif kind == "task_accepted":
            session.accepted(frame.task_accepted.sequence)
        elif kind == "task_rejected":
            refused = session.rejected(frame.task_rejected.sequence, frame.task_rejected.reason)
            if refused is not None:
                self._pending.put_back(refused)
            self._pump()
        elif kind == "task_result":
            response = frame.task_result.response
            if frame.task_result.lines:  # protocol 2: the attempt's last lines, before its result (§6)
                self._log_sink.lines(
                    response.task_execution_id, frame.task_result.task_retry, frame.task_result.lines
                )
            report = task_report(response, ant_id=session.ant_id, ant_host=session.host)
            session.result(
                frame.task_result.sequence, response.correlation_id, response.task_execution_id, report
            )
        elif kind == "log_lines":
            lines = frame.log_lines
            self._log_sink.lines(lines.task_execution_id, lines.task_retry, lines.lines)
        # pong and unknown frames only prove the Ant alive (§8)

    def disconnected(self, session: AntSession, stream: StreamHandle) -> None:
        """The stream ended; the session waits for a resume until it expires (§8)."""
        if session.stream is stream:
            session.stream = None

    def drain(self, ant_id: str, reason: str) -> bool:
        session = self._sessions.get(ant_id)
        if session is None or session.stream is None:
            return False
        session.draining = True
        session.stream.send(
            ant_service_pb2.ConnectResponse(drain=ant_service_pb2.ConnectResponse.Drain(reason=reason))
        )
        return True

    def _close(self, session: AntSession, end: StreamEnd, why: str) -> None:
        """End a session: its stream, if any, is closed and its unfinished attempts are lost."""
        if self._sessions.get(session.ant_id) is session:
            del self._sessions[session.ant_id]
        if session.stream is not None:
            session.stream.send(end)
            session.stream = None
        for dispatch in session.take_all():
            if dispatch.accepted or dispatch.sequence <= session.last_acked_sequence:
                dispatch.finish(DispatchOutcome(_lost_report(session.ant_id, why)))
            else:
                # never answered: nothing ran; route it elsewhere without counting a retry
                dispatch.session = None
                self._pending.put_back(dispatch)
        self._pump()
        self._on_capacity()  # what the connected Ants can run changed: waiting requests get new reasons

    async def _watch_liveness(self) -> None:
        """Expire silent sessions and overdue re-attachments (§8)."""
        period = max(min(self._heartbeat_interval.total_seconds(), 1.0), 0.05)
        timeout = self._heartbeat_timeout.total_seconds()
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                if now - session.last_seen > timeout:
                    self._close(
                        session, StreamEnd.EXPIRED, f"no word from Ant {session.ant_id} for {timeout:g}s"
                    )
            for task_id, waiting in list(self._reattach.items()):
                if now > waiting.deadline:
                    del self._reattach[task_id]
                    waiting.dispatch.finish(
                        DispatchOutcome(
                            _lost_report(waiting.ant_id, f"Ant {waiting.ant_id} did not come back")
                        )
                    )


async def _next_event(dispatch: Dispatch, within: float) -> DispatchEvent | None:
    """The dispatch's next event if one comes within `within` seconds, else None (nothing is lost)."""
    if not dispatch.events.empty():
        return dispatch.events.get_nowait()
    try:
        async with asyncio.timeout(within):
            return await dispatch.events.get()
    except TimeoutError:
        return None
