"""Waiting for a job request: its progress (task n of m, the current task, elapsed time) from its events,
shown on stderr: a live line on a terminal, a line per change otherwise (logs, CI)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from sdk.models import JobRequestEvent, JobState, TaskState

__all__ = ["Display", "Progress", "open_display"]


def _elapsed(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{rest:02d}s"
    if minutes:
        return f"{minutes}m{rest:02d}s"
    return f"{seconds:.1f}s"


@dataclass
class Progress:
    """What the events of one request say so far. `total_tasks` is the definition's task count: the
    most tasks a run can reach (routes may skip some)."""

    request_id: int
    job_type: str
    total_tasks: int
    started: float = field(default_factory=time.monotonic)
    job_state: JobState | None = None
    tasks: dict[str, TaskState | None] = field(default_factory=dict)

    def apply(self, event: JobRequestEvent) -> None:
        if event.job_state is not None:
            self.job_state = event.job_state
        if event.task_type:
            self.tasks[event.task_type] = event.task_state

    def restart(self) -> None:
        """A new watch replays every event: forget the tasks seen (the job state stays until replaced)."""
        self.tasks.clear()

    @property
    def current_task(self) -> str:
        """The latest task that has not ended, else the latest task."""
        running = [name for name, state in self.tasks.items() if state is None or not state.is_terminal]
        return (running or list(self.tasks) or [""])[-1]

    @property
    def gate(self) -> str:
        """The task waiting at a manual gate, if any."""
        waiting = [n for n, s in self.tasks.items() if s is TaskState.MANUAL_APPROVAL_REQUIRED]
        return waiting[-1] if waiting else ""

    def elapsed(self) -> str:
        return _elapsed(time.monotonic() - self.started)

    def summary(self) -> str:
        """`request 7 (deploy) EXECUTING: task 2 of 5 security-scan EXECUTING` (no time: it changes
        whenever something happens)."""
        state = self.job_state.value if self.job_state else "SUBMITTED"
        text = f"request {self.request_id} ({self.job_type}) {state}"
        current = self.current_task
        if current:
            number = list(self.tasks).index(current) + 1
            total = max(self.total_tasks, len(self.tasks))
            task_state = self.tasks[current]
            text += f": task {number} of {total} {current} {task_state.value if task_state else ''}".rstrip()
        return text

    def line(self) -> str:
        return f"{self.summary()} · {self.elapsed()}"


class Display(Protocol):
    def update(self, progress: Progress) -> None: ...
    def note(self, text: str) -> None: ...
    def close(self) -> None: ...


class _PlainDisplay:
    """A line on stderr whenever the summary changes, with the time it happened at."""

    def __init__(self) -> None:
        self._last = ""

    def update(self, progress: Progress) -> None:
        summary = progress.summary()
        if summary != self._last:
            self._last = summary
            typer.echo(f"[{progress.elapsed()}] {summary}", err=True)

    def note(self, text: str) -> None:
        typer.echo(text, err=True)

    def close(self) -> None:
        return None


class _LiveLine:
    """A renderable that reads the progress at each refresh, so the elapsed time ticks."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def __rich__(self) -> Text:
        return Text(self.progress.line(), style="bold")


class _LiveDisplay:
    """One live line at the bottom of the terminal; notes and logs scroll above it."""

    def __init__(self, console: Console, progress: Progress) -> None:
        self._live = Live(_LiveLine(progress), console=console, refresh_per_second=4, transient=True)
        self._live.start()

    def update(self, progress: Progress) -> None:
        self._live.update(_LiveLine(progress))

    def note(self, text: str) -> None:
        self._live.console.print(text, highlight=False)

    def close(self) -> None:
        self._live.stop()


def open_display(progress: Progress) -> Display:
    console = Console(stderr=True)
    if console.is_terminal:
        return _LiveDisplay(console, progress)
    return _PlainDisplay()
