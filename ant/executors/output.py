"""Collecting a task's output: forwarding lines to the sink, keeping a bounded stdout tail, reading
`::set-output` lines and the step markers of `ScriptPlan`."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from ant.executors.context import LogSink, LogStream
from ant.executors.script import ScriptPlan

__all__ = ["ContextScope", "ContextValue", "OutputCollector", "parse_set_output"]


class ContextScope(StrEnum):
    """Where a value set by the task goes: its own record, or the job's context for later tasks."""

    TASK = "task"
    JOB = "job"


@dataclass(frozen=True, slots=True)
class ContextValue:
    scope: ContextScope
    name: str
    value: str


_SET_OUTPUT = re.compile(r"::set-(output|job-output) name=([A-Za-z_][A-Za-z0-9_.-]*)::(.*)", re.DOTALL)


def parse_set_output(line: str) -> ContextValue | None:
    """`::set-output name=K::V` (task context) or `::set-job-output name=K::V` (job context), else None.

    Leading spaces are allowed; the value is everything after the second `::`, kept as is (it may be
    empty or contain `::`).
    """
    match = _SET_OUTPUT.fullmatch(line.lstrip())
    if match is None:
        return None
    scope = ContextScope.TASK if match.group(1) == "output" else ContextScope.JOB
    return ContextValue(scope, match.group(2), match.group(3))


class OutputCollector:
    """Receives every line an executor reads and decides what becomes of it.

    Marker lines of the tracked `ScriptPlan`s are consumed (a step marker becomes a SYSTEM line
    `$ <command>`); every other line goes to the sink. Standard output lines are also kept, the last
    `max_stdout_lines` / `max_stdout_bytes` of them, and scanned for `::set-output`; a task sets at most
    `max_context_values` values of at most `max_value_bytes` each and `max_context_bytes` in all, so a
    result stays far below the 4 MiB frame limit.
    """

    def __init__(
        self,
        sink: LogSink,
        *,
        max_stdout_lines: int = 1000,
        max_stdout_bytes: int = 256 * 1024,
        max_context_values: int = 256,
        max_value_bytes: int = 64 * 1024,
        max_context_bytes: int = 1024 * 1024,
    ) -> None:
        self._sink = sink
        self._max_lines = max_stdout_lines
        self._max_bytes = max_stdout_bytes
        self._max_values = max_context_values
        self._max_value_bytes = max_value_bytes
        self._max_context_bytes = max_context_bytes
        self._context_bytes = 0
        self._stdout: deque[str] = deque()
        self._stdout_bytes = 0
        self._omitted = 0
        self._plans: list[ScriptPlan] = []
        self._steps: dict[str, int] = {}
        self._exits: dict[str, int] = {}
        self.task_context: dict[str, str] = {}
        self.job_context: dict[str, str] = {}
        self.warnings: list[str] = []

    def track(self, *plans: ScriptPlan) -> None:
        """Recognise the markers of these plans (in addition to earlier ones)."""
        self._plans.extend(plans)

    def last_step(self, plan: ScriptPlan) -> int | None:
        """Number of the last command of `plan` that started, if any."""
        return self._steps.get(plan.token)

    def exit_status(self, plan: ScriptPlan) -> int | None:
        """Exit status `plan` reported with an exit marker (combined scripts only)."""
        return self._exits.get(plan.token)

    @property
    def stdout(self) -> tuple[str, ...]:
        """The kept standard output; a first line says how many earlier lines were left out."""
        if self._omitted:
            return (f"[formicary: {self._omitted} earlier lines omitted]", *self._stdout)
        return tuple(self._stdout)

    async def line(self, stream: LogStream, text: str) -> None:
        """One line the task printed (or a marker)."""
        for plan in self._plans:
            found = plan.parse_marker(text)
            if found is None:
                continue
            before, marker = found
            if before:  # output without a final newline, then the marker
                await self._output(stream, before)
            if marker.kind == "step":
                await self.step(plan, marker.value)
            else:
                self._exits[plan.token] = marker.value
            return
        await self._output(stream, text)

    async def step(self, plan: ScriptPlan, number: int) -> None:
        """Command `number` of `plan` starts (its marker was read, or it runs without a shell)."""
        self._steps[plan.token] = number
        await self._sink.emit(LogStream.SYSTEM, f"$ {plan.command(number)}")

    async def _output(self, stream: LogStream, text: str) -> None:
        if stream is LogStream.STDOUT:
            self._keep_stdout(text)
            value = parse_set_output(text)
            if value is not None:
                self._set(value)
        await self._sink.emit(stream, text)

    async def system(self, text: str) -> None:
        """A line the executor writes about the task."""
        await self._sink.emit(LogStream.SYSTEM, text)

    def _keep_stdout(self, text: str) -> None:
        size = len(text.encode("utf-8", errors="replace")) + 1
        self._stdout.append(text)
        self._stdout_bytes += size
        while self._stdout and (len(self._stdout) > self._max_lines or self._stdout_bytes > self._max_bytes):
            dropped = self._stdout.popleft()
            self._stdout_bytes -= len(dropped.encode("utf-8", errors="replace")) + 1
            self._omitted += 1

    def _set(self, value: ContextValue) -> None:
        target = self.task_context if value.scope is ContextScope.TASK else self.job_context
        if value.name not in target and len(target) >= self._max_values:
            self.warnings.append(
                f"{value.scope} context value {value.name!r} ignored: more than {self._max_values}"
            )
            return
        text = value.value
        if len(text.encode("utf-8", errors="replace")) > self._max_value_bytes:
            text = text.encode("utf-8", errors="replace")[: self._max_value_bytes].decode(
                "utf-8", errors="ignore"
            )
            self.warnings.append(
                f"{value.scope} context value {value.name!r} cut to {self._max_value_bytes} bytes"
            )
        size = len(text.encode("utf-8", errors="replace")) + len(value.name)
        previous = target.get(value.name)
        freed = 0 if previous is None else len(previous.encode("utf-8", errors="replace")) + len(value.name)
        if self._context_bytes - freed + size > self._max_context_bytes:
            self.warnings.append(
                f"{value.scope} context value {value.name!r} ignored: the task's values exceed "
                f"{self._max_context_bytes} bytes"
            )
            return
        self._context_bytes += size - freed
        target[value.name] = text
