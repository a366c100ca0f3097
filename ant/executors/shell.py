"""SHELL: runs a task's scripts on the Ant's host, in the attempt's directory, in a process group of
its own so that a timeout or a cancel ends every process the task started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from ant.executors.child import STDERR, STDOUT, ChildProcess
from ant.executors.context import ExecutionContext, LogStream
from ant.executors.environment import host_base_environment, task_environment
from ant.executors.lines import LineSplitter
from ant.executors.outcome import PhaseOutcome, after_script_warning, script_result
from ant.executors.output import OutputCollector
from ant.executors.result import ErrorCode, ExecutionResult, Timings
from ant.executors.script import ScriptPlan
from ant.executors.spec import TaskSpec
from ant.executors.stopping import run_until_stopped

__all__ = ["ShellExecutor", "default_shell"]


def default_shell() -> str:
    """bash when the host has it (for `pipefail`), else /bin/sh."""
    return shutil.which("bash") or "/bin/sh"


class ShellExecutor:
    """Runs `before_script` + `script` as one shell session (see `ScriptPlan`), then `after_script` as a
    second one, whatever happened to the first (also after a timeout or cancel, limited to
    `after_script_timeout`); a failing after_script is a warning.

    The process environment is a clean base (`host_base_environment`), FORMICARY_* facts, the task's
    variables and its `environment`. Each run is a new session (`start_new_session=True`): on timeout
    or cancel the whole process group gets SIGTERM, then SIGKILL after `kill_grace` seconds. When the
    shell exits, processes it left running in its group are ended the same way, so nothing a task
    started outlives it and its output pipes close; a process that left the group on purpose (setsid)
    is not tracked, and its output is cut off after `pipe_drain_timeout`.

    A phase that is one simple command (`ScriptPlan.direct_program`: `make test`, `true`) is exec'd without
    the shell, in the same way otherwise (`direct=False` always starts the shell).
    """

    def __init__(
        self,
        *,
        shell: str | None = None,
        kill_grace: float = 2.0,
        after_script_timeout: float = 300.0,
        pipe_drain_timeout: float = 2.0,
        base_environment: Mapping[str, str] | None = None,
        direct: bool = True,
    ) -> None:
        self._shell = shell or default_shell()
        self._direct = direct  # a phase of one simple command runs without the shell (ScriptPlan)
        # bash has pipefail: say so, rather than let every script probe for it in a subshell (a fork)
        self._pipefail = True if Path(self._shell).name == "bash" else None
        self._kill_grace = kill_grace
        self._after_timeout = after_script_timeout
        self._drain_timeout = pipe_drain_timeout
        self._base_env = host_base_environment(base_environment)

    async def run(self, spec: TaskSpec, ctx: ExecutionContext) -> ExecutionResult:
        if spec.working_dir:
            work_dir = await asyncio.to_thread(_working_dir, spec, ctx.work_dir)
        else:  # the attempt's own directory, which exists: nothing to wait for
            work_dir = ctx.work_dir
        env, warnings = task_environment(spec, self._base_env, str(work_dir))
        collector = OutputCollector(ctx.sink)
        for warning in warnings:
            await collector.system(f"warning: {warning}")
        main = ScriptPlan.build([*spec.before_script, *spec.script])
        collector.track(main)
        start_time = datetime.now(UTC)
        outcome = await self._run_script(
            main, work_dir, env, collector, ctx.logger, timeout=spec.timeout_seconds, cancel=ctx.cancel
        )
        if spec.after_script:
            after = ScriptPlan.build(spec.after_script)
            collector.track(after)
            after_outcome = await self._run_script(
                after, work_dir, env, collector, ctx.logger, timeout=self._after_timeout, cancel=None
            )
            after_warning = after_script_warning(after, after_outcome, collector)
            if after_warning is not None:
                warnings.append(after_warning)
                await collector.system(f"warning: {after_warning}")
        timings = Timings(start_time=start_time, script_finish_time=datetime.now(UTC))
        return script_result(
            main, outcome, collector, timeout=spec.timeout, timings=timings, warnings=warnings
        )

    async def _run_script(
        self,
        plan: ScriptPlan,
        work_dir: Path,
        env: dict[str, str],
        collector: OutputCollector,
        logger: FilteringBoundLogger,
        *,
        timeout: float | None,  # noqa: ASYNC109 - enforced by killing the process group
        cancel: asyncio.Event | None,
    ) -> PhaseOutcome:
        direct = plan.direct_program(env.get("PATH", "")) if self._direct else None
        if direct is not None:
            executable, argv = direct
            await collector.step(plan, 1)  # what the shell's step marker would have said
        else:
            executable, argv = self._shell, [self._shell, "-c", plan.render(pipefail=self._pipefail)]
        try:
            child = ChildProcess.start(argv, cwd=work_dir, env=env, executable=executable)
        except OSError as exc:
            return PhaseOutcome(
                returncode=None,
                error_code=ErrorCode.EXECUTOR,
                error_message=f"cannot start {self._shell}: {exc.strerror or exc}",
            )
        pgid = child.pid  # a new session: the shell leads its own process group
        reader = asyncio.create_task(_deliver(child, collector))
        try:
            returncode, stopped = await run_until_stopped(
                child.wait(),
                cancel=cancel,
                timeout=timeout,
                stop=lambda: self._terminate(child, pgid),
            )
            if stopped is not None:
                logger.info("shell_script_stopped", pid=pgid, reason=str(stopped), returncode=returncode)
            # The shell is gone; whatever it left running in its group still holds the pipes open.
            await self._end_group(pgid)
            if not reader.done():
                _, unfinished = await asyncio.wait({reader}, timeout=self._drain_timeout)
                if unfinished:
                    await collector.system(
                        "warning: output cut off: a process that left the task's process group "
                        "keeps its pipes open"
                    )
            return PhaseOutcome(returncode=returncode, stopped=stopped)
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            if child.returncode is None:  # we are being cancelled ourselves: leave nothing behind
                _signal_group(pgid, signal.SIGKILL)
                await child.wait()
            child.close()

    async def _terminate(self, child: ChildProcess, pgid: int) -> None:
        """SIGTERM to the group, SIGKILL to whatever is left after the grace period."""
        _signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._kill_grace):
                await child.wait()
        _signal_group(pgid, signal.SIGKILL)

    async def _end_group(self, pgid: int) -> None:
        """End the processes still in the group once its leader exited."""
        if not _signal_group(pgid, signal.SIGTERM):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._kill_grace
        # No event tells when a process group becomes empty: check at a short interval, bounded by
        # the grace period (zombies still count as members, so this may run the full grace).
        while loop.time() < deadline and _signal_group(pgid, 0):  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)


async def _deliver(child: ChildProcess, collector: OutputCollector) -> None:
    """Hand the child's output to the collector, line by line, until both pipes are closed."""
    splitters = {STDOUT: LineSplitter(), STDERR: LineSplitter()}
    streams = {STDOUT: LogStream.STDOUT, STDERR: LogStream.STDERR}
    open_fds = {STDOUT, STDERR}
    while open_fds:
        fd, data = await child.next_chunk()
        if data is None:
            open_fds.discard(fd)
            lines = splitters[fd].flush()
        else:
            lines = splitters[fd].feed(data)
        for line in lines:
            await collector.line(streams[fd], line)


def _signal_group(pgid: int, signum: int) -> bool:
    """Send `signum` to the process group; False if it has no member left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # the pgid was reused by a process we do not own
        return False
    return True


def _working_dir(spec: TaskSpec, attempt_dir: Path) -> Path:
    """`spec.working_dir` (relative to the attempt's directory unless absolute), created."""
    work_dir = Path(spec.working_dir)
    if not work_dir.is_absolute():
        work_dir = attempt_dir / work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir
