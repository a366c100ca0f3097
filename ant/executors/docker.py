"""DOCKER: runs a task's scripts in a container of its image on the Docker engine (`DOCKER_HOST`).

The blocking `docker` SDK is only called through `asyncio.to_thread`. The attempt's directory on the
Ant is bind-mounted at /workspace (the default working directory), so downloaded dependencies are
visible to the script and the files it writes are there for the artifact upload: the engine must
therefore see the Ant's filesystem (a local engine, or the Ant running on the engine's host).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from structlog.typing import FilteringBoundLogger

from ant.executors.context import ExecutionContext, LogStream
from ant.executors.environment import task_environment
from ant.executors.lines import LineSplitter
from ant.executors.outcome import PhaseOutcome, after_script_warning, script_result
from ant.executors.output import OutputCollector
from ant.executors.quantity import InvalidQuantity, parse_bytes, parse_cpu
from ant.executors.result import EXIT_CODE_FAILED, ErrorCode, ExecutionResult, ExecutionStatus, Timings
from ant.executors.script import ScriptPlan
from ant.executors.spec import ContainerSpec, PullPolicy, TaskSpec
from ant.executors.stopping import run_until_stopped

__all__ = ["LABEL_ANT_ID", "LABEL_TASK_EXECUTION_ID", "WORKSPACE", "DockerExecutor"]

WORKSPACE = "/workspace"
"""Where the attempt's directory is mounted in the container, and the default working directory."""
LABEL_TASK_EXECUTION_ID = "formicary.task_execution_id"
LABEL_ANT_ID = "formicary.ant_id"
LABEL_TASK_RETRY = "formicary.task_retry"

_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]")


@dataclass(frozen=True, slots=True)
class _Chunk:
    stream: LogStream
    data: bytes | None  # None: that stream ended


class _ImageUnavailable(Exception):
    pass


class DockerExecutor:
    """Runs `before_script` + `script` in one container (`/bin/sh -c`, see `ScriptPlan`), then
    `after_script`, if any, in a second container of the same image on the same /workspace, whatever
    happened to the first (limited to `after_script_timeout`).

    Containers are labelled `formicary.task_execution_id` / `formicary.ant_id` / `formicary.task_retry`
    and named after ExecutorOptions.name; a leftover container of that name carrying our label (a crashed
    Ant's) is removed and replaced. Every container is removed when its run ends, also on errors and
    cancellation. On timeout or cancel the container is killed (SIGKILL, exit status 137). Standard
    output and error are streamed separately and live.

    The image is pulled according to its pull policy (default IfNotPresent). An entrypoint or command of
    the container definition is not used: the scripts always run through `sh -c` (a warning says so).
    CPU and memory limits become `--cpus` / `--memory`; requests are ignored.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        ant_id: str,
        after_script_timeout: float = 300.0,
        log_drain_timeout: float = 5.0,
    ) -> None:
        self._client = client
        self._ant_id = ant_id
        self._after_timeout = after_script_timeout
        self._drain_timeout = log_drain_timeout

    async def aclose(self) -> None:
        await asyncio.to_thread(self._client.close)

    async def run(self, spec: TaskSpec, ctx: ExecutionContext) -> ExecutionResult:
        container = spec.container
        if container is None or not container.image:
            return ExecutionResult(
                status=ExecutionStatus.FAILED,
                exit_code=EXIT_CODE_FAILED,
                error_code=ErrorCode.INVALID_TASK,
                error_message="a DOCKER task needs container.image",
            )
        working_dir = spec.working_dir or WORKSPACE
        env, warnings = task_environment(spec, {}, working_dir)
        if container.entrypoint or container.command:
            warnings.append("container entrypoint/command not used: the scripts run with /bin/sh -c")
        collector = OutputCollector(ctx.sink)
        for warning in warnings:
            await collector.system(f"warning: {warning}")
        main = ScriptPlan.build([*spec.before_script, *spec.script])
        collector.track(main)
        start_time = datetime.now(UTC)
        try:
            options = _container_options(container)
            await self._ensure_image(container, collector)
        except (_ImageUnavailable, InvalidQuantity) as exc:
            code = ErrorCode.IMAGE_PULL if isinstance(exc, _ImageUnavailable) else ErrorCode.INVALID_TASK
            outcome = PhaseOutcome(returncode=None, error_code=code, error_message=str(exc))
            timings = Timings(start_time=start_time, script_finish_time=datetime.now(UTC))
            return script_result(
                main, outcome, collector, timeout=spec.timeout, timings=timings, warnings=warnings
            )

        name = _container_name(spec.resource_name())
        common = {
            "image": container.image,
            "entrypoint": ["/bin/sh", "-c"],
            "environment": env,
            "working_dir": working_dir,
            "volumes": {str(ctx.work_dir): {"bind": WORKSPACE, "mode": "rw"}},
            "labels": {
                LABEL_TASK_EXECUTION_ID: spec.task_execution_id,
                LABEL_ANT_ID: self._ant_id,
                LABEL_TASK_RETRY: str(spec.task_retry),
            },
            **options,
        }
        outcome = await self._run_container(
            {**common, "name": name, "command": [main.render()]},
            collector,
            ctx.logger,
            timeout=spec.timeout_seconds,
            cancel=ctx.cancel,
        )
        if spec.after_script:
            after = ScriptPlan.build(spec.after_script)
            collector.track(after)
            after_outcome = await self._run_container(
                {**common, "name": f"{name}-after", "command": [after.render()]},
                collector,
                ctx.logger,
                timeout=self._after_timeout,
                cancel=None,
            )
            after_warning = after_script_warning(after, after_outcome, collector)
            if after_warning is not None:
                warnings.append(after_warning)
                await collector.system(f"warning: {after_warning}")
        timings = Timings(start_time=start_time, script_finish_time=datetime.now(UTC))
        return script_result(
            main, outcome, collector, timeout=spec.timeout, timings=timings, warnings=warnings
        )

    async def _ensure_image(self, container: ContainerSpec, collector: OutputCollector) -> None:
        image = container.image
        if container.pull_policy is not PullPolicy.ALWAYS:
            try:
                await asyncio.to_thread(self._client.images.get, image)
                return
            except ImageNotFound:
                if container.pull_policy is PullPolicy.NEVER:
                    raise _ImageUnavailable(
                        f"image {image} is not present and its pull policy is Never"
                    ) from None
            except DockerException as exc:
                raise _ImageUnavailable(f"cannot inspect image {image}: {exc}") from exc
        await collector.system(f"pulling image {image}")
        try:
            await asyncio.to_thread(self._client.images.pull, image)
        except DockerException as exc:
            raise _ImageUnavailable(f"cannot pull image {image}: {exc}") from exc

    async def _run_container(
        self,
        create_args: dict[str, Any],
        collector: OutputCollector,
        logger: FilteringBoundLogger,
        *,
        timeout: float | None,  # noqa: ASYNC109 - enforced by killing the container
        cancel: asyncio.Event | None,
    ) -> PhaseOutcome:
        log = logger.bind(container=create_args["name"])
        try:
            container = await asyncio.to_thread(self._create, create_args)
        except DockerException as exc:
            return PhaseOutcome(
                returncode=None,
                error_code=ErrorCode.CONTAINER,
                error_message=f"cannot create the container: {exc}",
            )
        log.info("container_created", container_id=container.id)
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[_Chunk] = asyncio.Queue()
        helpers: list[asyncio.Task[Any]] = []
        try:
            await asyncio.to_thread(container.start)
            for stream in (LogStream.STDOUT, LogStream.STDERR):
                helpers.append(
                    asyncio.create_task(asyncio.to_thread(_pump_logs, container, stream, loop, chunks))
                )
            consumer = asyncio.create_task(_consume(chunks, collector))
            helpers.append(consumer)
            status, stopped = await run_until_stopped(
                asyncio.to_thread(_wait, container),
                cancel=cancel,
                timeout=timeout,
                stop=lambda: asyncio.to_thread(_kill, container),
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._drain_timeout):
                    await consumer
            exit_message = await asyncio.to_thread(_exit_message, container)
            if stopped is not None:
                log.info("container_stopped", reason=str(stopped), status=status)
            return PhaseOutcome(returncode=status, stopped=stopped, exit_message=exit_message)
        except DockerException as exc:
            return PhaseOutcome(
                returncode=None, error_code=ErrorCode.CONTAINER, error_message=f"the container failed: {exc}"
            )
        finally:
            # Removal ends the log streams, so the pump threads finish too.
            try:
                await asyncio.to_thread(_remove, container)
                log.info("container_removed", container_id=container.id)
            except DockerException as exc:
                log.error("container_remove_failed", container_id=container.id, error=str(exc))
            for helper in helpers:
                helper.cancel()
            for helper in helpers:
                with contextlib.suppress(asyncio.CancelledError, DockerException):
                    await helper

    def _create(self, args: dict[str, Any]) -> Container:
        try:
            return self._client.containers.create(**args)
        except APIError as exc:
            if exc.status_code != 409:
                raise
        # A container of that name exists: a leftover of ours (same task, an Ant that crashed) is replaced.
        stale = self._client.containers.get(args["name"])
        if LABEL_TASK_EXECUTION_ID not in (stale.labels or {}):
            raise APIError(f"a container named {args['name']} exists and is not Formicary's")
        stale.remove(force=True)
        return self._client.containers.create(**args)


def _container_options(container: ContainerSpec) -> dict[str, Any]:
    options: dict[str, Any] = {"privileged": container.privileged}
    if container.host_network:
        options["network_mode"] = "host"
    elif container.network_mode:
        options["network_mode"] = container.network_mode
    if container.user:
        options["user"] = container.user
    if container.resources.memory_limit:
        options["mem_limit"] = parse_bytes(container.resources.memory_limit)
    if container.resources.cpu_limit:
        options["nano_cpus"] = int(parse_cpu(container.resources.cpu_limit) * 1_000_000_000)
    return options


def _container_name(name: str) -> str:
    cleaned = _NAME_CHARS.sub("-", name).lstrip("_.-")
    return cleaned or "frm-task"


def _pump_logs(
    container: Container, stream: LogStream, loop: asyncio.AbstractEventLoop, out: asyncio.Queue[_Chunk]
) -> None:
    """In a thread: follow one of the container's output streams until it ends."""

    def put(chunk: _Chunk) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
            loop.call_soon_threadsafe(out.put_nowait, chunk)

    try:
        chunks: Iterator[bytes] = container.logs(
            stdout=stream is LogStream.STDOUT, stderr=stream is LogStream.STDERR, stream=True, follow=True
        )
        for data in chunks:
            put(_Chunk(stream, data))
    except DockerException:
        pass  # the container was removed under us: the stream simply ends
    finally:
        put(_Chunk(stream, None))


async def _consume(chunks: asyncio.Queue[_Chunk], collector: OutputCollector) -> None:
    splitters = {LogStream.STDOUT: LineSplitter(), LogStream.STDERR: LineSplitter()}
    open_streams = set(splitters)
    while open_streams:
        chunk = await chunks.get()
        splitter = splitters[chunk.stream]
        if chunk.data is None:
            open_streams.discard(chunk.stream)
            lines = splitter.flush()
        else:
            lines = splitter.feed(chunk.data)
        for line in lines:
            await collector.line(chunk.stream, line)


def _wait(container: Container) -> int:
    result = container.wait()
    return int(result.get("StatusCode", -1))


def _kill(container: Container) -> None:
    with contextlib.suppress(NotFound, APIError):  # already gone, or not running any more
        container.kill()


def _exit_message(container: Container) -> str:
    with contextlib.suppress(DockerException):
        container.reload()
        state = container.attrs.get("State", {})
        if state.get("OOMKilled"):
            return "OOMKilled"
        return str(state.get("Error") or "")
    return ""


def _remove(container: Container) -> None:
    with contextlib.suppress(NotFound):
        container.remove(force=True)
