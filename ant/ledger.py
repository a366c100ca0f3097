"""The Ant's side of flow control: which task executions it holds, how many slots are free, which
dispatch sequence it answered last, which results await their ack (AntService sections 3 to 5).
Pure bookkeeping: no I/O, no asyncio."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DispatchDecision", "DispatchVerdict", "HeldTask", "TaskLedger"]


class DispatchVerdict(StrEnum):
    """What to do with a DispatchTask."""

    ACCEPT = "accept"
    """A new task: take a slot, answer TaskAccepted, start it."""
    ACCEPT_AGAIN = "accept_again"
    """The attempt is already held (a dispatch re-sent after a resume): answer TaskAccepted, start nothing."""
    REPLACE = "replace"
    """A new attempt of a held task: stop and forget the old one, answer TaskAccepted, start the new one."""
    REJECT = "reject"
    """Answer TaskRejected with the reason."""


@dataclass(frozen=True, slots=True)
class DispatchDecision:
    verdict: DispatchVerdict
    reason: str = ""


@dataclass(slots=True)
class HeldTask:
    """A task execution the Ant holds: accepted, result not yet acknowledged."""

    task_execution_id: str
    correlation_id: str
    dispatch_sequence: int
    result_sequence: int | None = None


class TaskLedger:
    """Holds at most `capacity` tasks. `accepting` is False while draining or shutting down."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.last_acked_sequence = 0
        self._held: dict[str, HeldTask] = {}
        self._results: dict[int, str] = {}  # result sequence -> task execution id
        self._next_result = 1

    @property
    def held_ids(self) -> list[str]:
        """The held task executions, in the order they were accepted."""
        return list(self._held)

    def get(self, task_execution_id: str) -> HeldTask | None:
        return self._held.get(task_execution_id)

    def free_slots(self, *, accepting: bool) -> int:
        """The dispatch window to report: 0 when not accepting."""
        if not accepting:
            return 0
        return max(0, self.capacity - len(self._held))

    def decide(
        self, task_execution_id: str, correlation_id: str, *, supported: bool, accepting: bool
    ) -> DispatchDecision:
        """How to answer a dispatch of this attempt; changes nothing (see `hold`)."""
        held = self._held.get(task_execution_id)
        if held is not None:
            if held.correlation_id == correlation_id:
                return DispatchDecision(DispatchVerdict.ACCEPT_AGAIN)
            if supported and accepting:
                return DispatchDecision(DispatchVerdict.REPLACE)
        if not accepting:
            return DispatchDecision(DispatchVerdict.REJECT, "the Ant is leaving: it takes no new tasks")
        if not supported:
            return DispatchDecision(DispatchVerdict.REJECT, "method not served by this Ant")
        if len(self._held) >= self.capacity:
            return DispatchDecision(DispatchVerdict.REJECT, "no free slot")
        return DispatchDecision(DispatchVerdict.ACCEPT)

    def answered(self, sequence: int) -> None:
        """A DispatchTask with this sequence was answered (accepted or rejected)."""
        self.last_acked_sequence = max(self.last_acked_sequence, sequence)

    def hold(self, task_execution_id: str, correlation_id: str, sequence: int) -> HeldTask:
        """Take a slot for an accepted attempt (replacing a held older attempt of the same task)."""
        self.release(task_execution_id)
        held = HeldTask(task_execution_id, correlation_id, sequence)
        self._held[task_execution_id] = held
        return held

    def release(self, task_execution_id: str) -> HeldTask | None:
        """Forget a held task (acknowledged, or given up); its slot is free again."""
        held = self._held.pop(task_execution_id, None)
        if held is not None and held.result_sequence is not None:
            self._results.pop(held.result_sequence, None)
        return held

    def record_result(self, task_execution_id: str) -> int:
        """The attempt ended: its result gets a sequence (kept if it already has one)."""
        held = self._held[task_execution_id]
        if held.result_sequence is None:
            held.result_sequence = self._next_result
            self._next_result += 1
            self._results[held.result_sequence] = task_execution_id
        return held.result_sequence

    def acknowledge(self, result_sequence: int) -> str | None:
        """ResultAck: the task whose result it was is released; None for an unknown sequence."""
        task_execution_id = self._results.pop(result_sequence, None)
        if task_execution_id is not None:
            self._held.pop(task_execution_id, None)
        return task_execution_id

    def new_session(self) -> list[str]:
        """A new session began: the Queen failed every held task; forget them all. Returns their ids."""
        dropped = list(self._held)
        for task_execution_id in dropped:
            self.release(task_execution_id)
        self.last_acked_sequence = 0
        return dropped

    def keep_only(self, task_execution_ids: Iterable[str]) -> list[str]:
        """A resume: forget held tasks the Queen did not re-attach. Returns the ids forgotten."""
        keep = set(task_execution_ids)
        dropped = [t for t in self._held if t not in keep]
        for task_execution_id in dropped:
            self.release(task_execution_id)
        return dropped
