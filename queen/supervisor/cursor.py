"""Where a job is in its DAG, saved with every decision so that a restarted Queen continues right there."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from queen.domain.states import JobState

__all__ = ["Cursor", "Ending"]


@dataclass(frozen=True, slots=True)
class Ending:
    """How the job will end once the always_run tasks it still owes have run."""

    state: JobState
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class Cursor:
    """The next task to run (None: the job is ending), the ending decided so far, and for a soft
    restart or job retry, the earlier execution whose completed tasks are reused."""

    next_task: str | None
    ending: Ending | None = None
    reuse_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        ending = None
        if self.ending is not None:
            ending = {
                "state": self.ending.state.value,
                "error_code": self.ending.error_code,
                "error_message": self.ending.error_message,
            }
        return {"next_task": self.next_task, "ending": ending, "reuse_from": self.reuse_from}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None, first_task: str) -> Cursor:
        if not data:
            return cls(next_task=first_task)
        raw_ending = data.get("ending")
        ending = None
        if raw_ending:
            ending = Ending(
                JobState(raw_ending["state"]),
                raw_ending.get("error_code", ""),
                raw_ending.get("error_message", ""),
            )
        return cls(next_task=data.get("next_task"), ending=ending, reuse_from=data.get("reuse_from"))

    def ending_with(self, ending: Ending) -> Cursor:
        """Keep the first failure's ending: a later one (e.g. a failing clean-up) does not replace it."""
        if self.ending is not None and self.ending.state is not JobState.COMPLETED:
            return replace(self, next_task=None)
        return replace(self, next_task=None, ending=ending)
