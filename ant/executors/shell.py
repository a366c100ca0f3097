"""SHELL: runs a task's scripts on the Ant's host, in the attempt's directory, in a process group of
its own so that a timeout or a cancel ends every process the task started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from structlog.typing import FilteringBoundLogger

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
    """

    def __init__(
        self,
        *,
        shell: str | None = None,
        kill_grace: float = 2.0,
        after_script_timeout: float = 300.0,
        pipe_drain_timeout: float = 2.0,
        base_environment: Mapping[str, str] | None = None,
    ) -> None:
        self._shell = shell or default_shell()
        self._kill_grace = kill_grace
        self._after_timeout = after_script_timeout
        self._drain_timeout = pipe_drain_timeout
        self._base_env = host_base_environment(base_environment)

    async def run(self, spec: TaskSpec, ctx: ExecutionContext) -> ExecutionResult:
        work_dir = await asyncio.to_thread(_working_dir, spec, ctx.work_dir)
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
        loop = asyncio.get_running_loop()
        protocol = _ShellProtocol()
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: protocol,
                self._shell,
                "-c",
                plan.render(),
                cwd=work_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return PhaseOutcome(
                returncode=None,
                error_code=ErrorCode.EXECUTOR,
                error_message=f"cannot start {self._shell}: {exc.strerror or exc}",
            )
        pgid = transport.get_pid()  # a new session: the shell leads its own process group
        log = logger.bind(pid=pgid)
        reader = asyncio.create_task(protocol.deliver(transport, collector))
        try:
            _, stopped = await run_until_stopped(
                protocol.exited.wait(),
                cancel=cancel,
                timeout=timeout,
                stop=lambda: self._terminate(protocol, pgid),
            )
            returncode = transport.get_returncode()
            if stopped is not None:
                log.info("shell_script_stopped", reason=str(stopped), returncode=returncode)
            # The shell is gone; whatever it left running in its group still holds the pipes open.
            await self._end_group(pgid)
            _, unfinished = await asyncio.wait({reader}, timeout=self._drain_timeout)
            if unfinished:
                await collector.system(
                    "warning: output cut off: a process that left the task's process group "
                    "keeps its pipes open"
                )
            return PhaseOutcome(returncode=returncode, stopped=stopped)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if transport.get_returncode() is None:  # we are being cancelled ourselves: leave nothing behind
                _signal_group(pgid, signal.SIGKILL)
                await protocol.exited.wait()
            transport.close()

    async def _terminate(self, protocol: _ShellProtocol, pgid: int) -> None:
        """SIGTERM to the group, SIGKILL to whatever is left after the grace period."""
        _signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._kill_grace):
                await protocol.exited.wait()
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


class _ShellProtocol(asyncio.SubprocessProtocol):
    """Tells when the shell exits (`exited`), apart from when its pipes close: asyncio's
    `Process.wait()` waits for both, and a background process the task left behind keeps the pipes
    open. Output chunks are queued for `deliver`; reading pauses while too many wait."""

    _PAUSE_AT = 256
    _RESUME_AT = 16

    def __init__(self) -> None:
        self.exited = asyncio.Event()
        self._chunks: asyncio.Queue[tuple[int, bytes | None]] = asyncio.Queue()
        self._paused = False
        self._transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self._transport = transport

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self._chunks.put_nowait((fd, data if isinstance(data, bytes) else data.encode()))
        if not self._paused and self._chunks.qsize() >= self._PAUSE_AT:
            self._set_reading(pause=True)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._chunks.put_nowait((fd, None))

    def process_exited(self) -> None:
        self.exited.set()

    def _set_reading(self, *, pause: bool) -> None:
        if self._transport is None:
            return
        self._paused = pause
        for fd in (1, 2):
            pipe = self._transport.get_pipe_transport(fd)
            if isinstance(pipe, asyncio.ReadTransport) and not pipe.is_closing():
                if pause:
                    pipe.pause_reading()
                else:
                    pipe.resume_reading()

    async def deliver(self, transport: asyncio.SubprocessTransport, collector: OutputCollector) -> None:
        """Hand the output to the collector, line by line, until both pipes are closed."""
        splitters = {1: LineSplitter(), 2: LineSplitter()}
        streams = {1: LogStream.STDOUT, 2: LogStream.STDERR}
        open_fds = {1, 2}
        while open_fds:
            fd, data = await self._chunks.get()
            if self._paused and self._chunks.qsize() <= self._RESUME_AT:
                self._set_reading(pause=False)
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
    """The attempt's directory, or `spec.working_dir` (relative to it unless absolute), created."""
    work_dir = attempt_dir
    if spec.working_dir:
        work_dir = Path(spec.working_dir)
        if not work_dir.is_absolute():
            work_dir = attempt_dir / work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir
