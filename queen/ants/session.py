"""One Ant's session on the Queen: its capacity window, dispatches in flight, and the stream it is on.

The protocol is specified in `protos/formicary/v1/ant_service.proto`; section numbers below refer to it.
A session outlives a broken stream: an Ant that reconnects with its session id continues it (§2).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from formicary.v1 import ant_service_pb2
from queen.ants._convert import task_request
from queen.domain.job_definition import TaskMethod
from queen.domain.work import TaskReport, TaskWork
from queen.supervisor.dispatch import DispatchOutcome

__all__ = ["AntSession", "Dispatch", "DispatchEvent", "EventKind", "StreamEnd", "StreamHandle"]


class EventKind(enum.Enum):
    """What happened to a dispatch, in the order the dispatcher's caller sees it."""

    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class DispatchEvent:
    kind: EventKind
    ant_id: str = ""
    ant_host: str = ""
    reason: str = ""
    outcome: DispatchOutcome | None = None
    at: datetime | None = None  # when the Queen received it (ACCEPTED)


@dataclass(slots=True, eq=False)
class Dispatch:
    """One attempt on its way to, or running on, an Ant."""

    work: TaskWork
    events: asyncio.Queue[DispatchEvent] = field(default_factory=asyncio.Queue)
    sequence: int = 0
    session: AntSession | None = None
    accepted: bool = False
    finished: bool = False

    def finish(self, outcome: DispatchOutcome) -> None:
        if not self.finished:
            self.finished = True
            self.events.put_nowait(DispatchEvent(EventKind.FINISHED, outcome=outcome))


class StreamEnd(enum.Enum):
    """Why the Queen ends a stream (§10)."""

    TAKEN_OVER = "ABORTED"  # another stream registered the same ant_id
    EXPIRED = "UNAVAILABLE"  # no frame for heartbeat_timeout
    SHUTDOWN = "UNAVAILABLE"  # the Queen is stopping
    DRAINED = "OK"  # drain finished


Outgoing = ant_service_pb2.ConnectResponse | StreamEnd

# A protocol-3 Batch (ant_service.proto, PROTOCOL VERSIONS) holds at most this many frames, and frames of
# at most this many bytes in all unless a single frame is larger: far below gRPC's 4 MiB message limit.
BATCH_FRAMES = 64
BATCH_BYTES = 1 << 20


class StreamHandle:
    """The outgoing side of one Connect call: frames queued by the session, for the servicer's writer
    (`take`, and `wait` when there is none), in order, except that ResultAcks wait behind the other frames.

    On a protocol-3 stream (`batch`) `take` returns everything queued (up to `BATCH_FRAMES` frames and
    `BATCH_BYTES`) as one Batch frame: gRPC writes one message at a time, each after the previous write
    completed, so what is queued meanwhile goes in one message instead of one per frame.

    Why acks go last: the supervisor acknowledges a result and then dispatches the next task, and gRPC
    writes one frame at a time, each after the previous write completed (a few hundred microseconds
    here): the DispatchTask would wait for the ack's write. Nothing depends on the order of an ack and
    another frame (ant_service.proto §5: acks arrive in any order); the Ant only frees a slot sooner.
    On a protocol-2 stream (`fold_acks`) the waiting acks ride in the next DispatchTask instead
    (`acked_result_sequences`): a chain of short tasks costs one frame from the Queen per task, not two.
    """

    __slots__ = ("_acks", "_frames", "_waiter", "batch", "fold_acks")

    def __init__(self, *, fold_acks: bool = False, batch: bool = False) -> None:
        self._frames: deque[Outgoing] = deque()
        self._acks: deque[int] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.fold_acks = fold_acks
        self.batch = batch

    def send(self, frame: Outgoing) -> None:
        self._frames.append(frame)
        self.wake()

    def send_ack(self, sequence: int) -> None:
        """Queue the acknowledgement of result `sequence`, behind every other frame queued before it is
        taken (or inside the next DispatchTask, see the class)."""
        self._acks.append(sequence)
        self.wake()

    @property
    def only_acks(self) -> bool:
        """Only ResultAcks are queued."""
        return not self._frames and bool(self._acks)

    def take(self) -> Outgoing | None:
        """The next frame to write (on a `batch` stream, a Batch of all that is queued and fits, or a lone
        frame); None if none is queued. A StreamEnd is never inside a Batch: it comes after it."""
        frame = self._take_one()
        if not self.batch or frame is None or isinstance(frame, StreamEnd) or not self._more_frames():
            return frame
        frames = [frame]
        size = frame.ByteSize()
        while len(frames) < BATCH_FRAMES and self._more_frames():
            head = self._frames[0] if self._frames else None
            if isinstance(head, ant_service_pb2.ConnectResponse):
                size += head.ByteSize()
                if size > BATCH_BYTES:
                    break
            following = self._take_one()
            assert isinstance(following, ant_service_pb2.ConnectResponse)
            frames.append(following)
        if len(frames) == 1:
            return frame
        return ant_service_pb2.ConnectResponse(batch=ant_service_pb2.ConnectResponse.Batch(frames=frames))

    def _more_frames(self) -> bool:
        """A frame (not a StreamEnd) is queued."""
        if self._frames:
            return not isinstance(self._frames[0], StreamEnd)
        return bool(self._acks)

    def _take_one(self) -> Outgoing | None:
        if self._frames:
            frame = self._frames.popleft()
            if (
                self._acks
                and self.fold_acks
                and isinstance(frame, ant_service_pb2.ConnectResponse)
                and frame.HasField("dispatch_task")
            ):
                frame.dispatch_task.acked_result_sequences.extend(self._acks)
                self._acks.clear()
            return frame
        if not self._acks:
            return None
        ack = ant_service_pb2.ConnectResponse.ResultAck(sequence=self._acks.popleft())
        return ant_service_pb2.ConnectResponse(result_ack=ack)

    async def wait(self) -> None:
        """Return once a frame is queued (at once if one is) or `wake()` is called."""
        if self._frames or self._acks:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def wake(self) -> None:
        """End a `wait()` in progress."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class AntSession:
    """State of one registered Ant, kept across reconnects of its stream (§2) until it expires (§8)."""

    def __init__(
        self,
        *,
        ant_id: str,
        session_id: str,
        methods: frozenset[TaskMethod],
        tags: frozenset[str],
        max_capacity: int,
        version: str,
        host: str,
        labels: dict[str, str],
        next_sequence: int = 1,
    ) -> None:
        self.ant_id = ant_id
        self.session_id = session_id
        self.methods = methods
        self.tags = tags
        self.max_capacity = max_capacity
        self.version = version
        self.host = host
        self.labels = labels
        self.connected_at = time.time()
        self.last_seen = time.monotonic()
        self.last_heartbeat_at: float | None = None
        self.free_slots = 0  # nothing is dispatched before the first heartbeat (§1)
        self.load = 0.0
        self.last_acked_sequence = next_sequence - 1
        self.next_sequence = next_sequence
        self.draining = False
        self.stream: StreamHandle | None = None
        self.by_task: dict[str, Dispatch] = {}
        self.by_sequence: dict[int, Dispatch] = {}
        # The organisation the Ant's credential binds it to; None: any (a Queen without authentication).
        self.organization_id: str | None = None

    # -- capacity (§3) ---------------------------------------------------------------------------

    @property
    def window(self) -> int:
        """How many more dispatches may be sent now."""
        if self.draining or self.stream is None:
            return 0
        # ant_service.proto §3: every dispatch sent after the heartbeat's last_acked_sequence is not yet
        # counted in its free_slots, whether or not its result came back since (the Ant frees the slot
        # only on ResultAck, and says so in a later heartbeat)
        unanswered = (self.next_sequence - 1) - self.last_acked_sequence
        return self.free_slots - unanswered

    @property
    def running(self) -> int:
        return len(self.by_task)

    def serves(self, method: TaskMethod, tags: Iterable[str]) -> bool:
        return method in self.methods and self.tags.issuperset(tags)

    def admits(self, organization_id: str) -> bool:
        """Whether a task of this organisation may go to this Ant (its secrets and artifacts with it)."""
        return self.organization_id is None or self.organization_id == organization_id

    # -- dispatch (§4) ---------------------------------------------------------------------------

    def dispatch(self, dispatch: Dispatch) -> None:
        """Send a dispatch on the current stream; the caller checked the window."""
        assert self.stream is not None
        dispatch.sequence = self.next_sequence
        dispatch.session = self
        self.next_sequence += 1
        self.by_task[dispatch.work.task_execution_id] = dispatch
        self.by_sequence[dispatch.sequence] = dispatch
        self.stream.send(self._dispatch_frame(dispatch))
        dispatch.events.put_nowait(
            DispatchEvent(EventKind.DISPATCHED, ant_id=self.ant_id, ant_host=self.host)
        )

    def _dispatch_frame(self, dispatch: Dispatch) -> ant_service_pb2.ConnectResponse:
        return ant_service_pb2.ConnectResponse(
            dispatch_task=ant_service_pb2.ConnectResponse.DispatchTask(
                sequence=dispatch.sequence, request=task_request(dispatch.work)
            )
        )

    def resend_unanswered(self, after_sequence: int) -> None:
        """Re-send, with their sequence numbers, the dispatches the Ant may never have received (§2)."""
        assert self.stream is not None
        for sequence in sorted(self.by_sequence):
            dispatch = self.by_sequence[sequence]
            if sequence > after_sequence and not dispatch.finished:
                self.stream.send(self._dispatch_frame(dispatch))

    def accepted(self, sequence: int) -> None:
        dispatch = self.by_sequence.get(sequence)
        if dispatch is None or dispatch.accepted or dispatch.finished:
            return
        dispatch.accepted = True
        dispatch.events.put_nowait(
            DispatchEvent(EventKind.ACCEPTED, ant_id=self.ant_id, at=datetime.now(UTC))
        )

    def rejected(self, sequence: int, reason: str) -> Dispatch | None:
        """Forget a refused dispatch and return it, to be routed again."""
        dispatch = self.by_sequence.pop(sequence, None)
        if dispatch is None or dispatch.finished:
            return None
        self.by_task.pop(dispatch.work.task_execution_id, None)
        dispatch.session = None
        dispatch.events.put_nowait(DispatchEvent(EventKind.REJECTED, ant_id=self.ant_id, reason=reason))
        return dispatch

    def result(self, sequence: int, correlation_id: str, task_execution_id: str, report: TaskReport) -> None:
        """Deliver a result to its attempt; duplicates and late results are only acknowledged (§5)."""
        dispatch = self.by_task.get(task_execution_id)
        if dispatch is None or dispatch.finished or dispatch.work.correlation_id != correlation_id:
            self._send_ack(sequence)
            return
        self._forget(dispatch)

        async def ack() -> None:
            # acknowledged on whatever stream the session is on by the time the result is committed
            self._send_ack(sequence)

        dispatch.finish(DispatchOutcome(report, ack))

    def _send_ack(self, sequence: int) -> None:
        if self.stream is not None:
            self.stream.send_ack(sequence)

    def _forget(self, dispatch: Dispatch) -> None:
        self.by_task.pop(dispatch.work.task_execution_id, None)
        self.by_sequence.pop(dispatch.sequence, None)

    # -- liveness (§4 loss detection, §8) --------------------------------------------------------

    def heartbeat(
        self, running: Iterable[str], free_slots: int, load: float, last_acked: int
    ) -> list[Dispatch]:
        """Record a heartbeat; return the accepted dispatches it shows lost."""
        self.last_heartbeat_at = time.time()
        self.free_slots = max(free_slots, 0)
        self.load = load
        self.last_acked_sequence = max(self.last_acked_sequence, last_acked)
        still_running = set(running)
        lost = [
            dispatch
            for dispatch in self.by_task.values()
            if dispatch.accepted
            and dispatch.sequence <= self.last_acked_sequence
            and dispatch.work.task_execution_id not in still_running
        ]
        for dispatch in lost:
            self._forget(dispatch)
        return lost

    def cancel(self, task_execution_id: str, reason: str) -> bool:
        if task_execution_id not in self.by_task or self.stream is None:
            return False
        self.stream.send(
            ant_service_pb2.ConnectResponse(
                cancel_task=ant_service_pb2.ConnectResponse.CancelTask(
                    task_execution_id=task_execution_id, reason=reason
                )
            )
        )
        return True

    def take_all(self) -> list[Dispatch]:
        """Every dispatch still held, removed from the session (when it closes)."""
        dispatches = list(self.by_task.values())
        dispatches.extend(d for d in self.by_sequence.values() if d not in dispatches)
        self.by_task.clear()
        self.by_sequence.clear()
        return dispatches
