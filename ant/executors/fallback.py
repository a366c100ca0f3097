"""`--local-fallback`: DOCKER and KUBERNETES tasks run with SHELL when their engine is not available,
so that playbooks can be demonstrated on a machine without Docker or a cluster, said loudly."""

from __future__ import annotations

import posixpath
from dataclasses import replace

from ant.executors.context import ExecutionContext, LogStream
from ant.executors.methods import Method
from ant.executors.registry import Executor
from ant.executors.result import ExecutionResult
from ant.executors.spec import TaskSpec

__all__ = ["LocalFallbackExecutor", "fallback_note"]


def fallback_note(spec: TaskSpec, host: str) -> str:
    """The line that tells the log and the task record what happened instead."""
    image = spec.container.image if spec.container is not None and spec.container.image else "(none)"
    note = f"local fallback: {spec.method} task run with SHELL on {host}, image {image} ignored"
    if posixpath.isabs(spec.working_dir):
        note += f", working_dir {spec.working_dir} ignored"
    return note


class LocalFallbackExecutor:
    """Stands in for the DOCKER or KUBERNETES executor and runs the task with `shell` on this host.

    The container's image, resources and placement are ignored (the host's tools are used), an absolute
    working_dir (a path inside the image) is replaced by the attempt's directory. The task's log gets
    a SYSTEM line saying so, the Ant's log a warning event, and the result carries the same sentence in
    `warnings` and `fallback_note`, so the Queen records it with the task execution. Only used when the
    Ant was started with --local-fallback and the engine was not reachable at start.
    """

    def __init__(self, shell: Executor, *, replaced: Method, host: str, reason: str) -> None:
        self._shell = shell
        self._replaced = replaced
        self._host = host
        self._reason = reason

    async def run(self, spec: TaskSpec, ctx: ExecutionContext) -> ExecutionResult:
        note = fallback_note(spec, self._host)
        await ctx.sink.emit(LogStream.SYSTEM, note)
        await ctx.sink.emit(LogStream.SYSTEM, f"local fallback: why: {self._reason}")
        ctx.logger.warning(
            "local_fallback_used",
            method=str(spec.method),
            image=spec.container.image if spec.container else "",
            reason=self._reason,
        )
        working_dir = "" if posixpath.isabs(spec.working_dir) else spec.working_dir
        result = await self._shell.run(
            replace(spec, method=Method.SHELL, container=None, working_dir=working_dir), ctx
        )
        return replace(result, warnings=(note, *result.warnings), fallback_note=note)
