"""KUBERNETES: runs a task's scripts in a pod through the official `kubernetes` client (in threads)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from structlog.typing import FilteringBoundLogger

from ant.executors.context import ExecutionContext, LogStream
from ant.executors.environment import task_environment
from ant.executors.lines import LineSplitter
from ant.executors.outcome import PhaseOutcome, after_script_warning, script_result
from ant.executors.output import OutputCollector
from ant.executors.result import EXIT_CODE_FAILED, ErrorCode, ExecutionResult, ExecutionStatus, Timings
from ant.executors.script import ScriptPlan
from ant.executors.spec import ContainerSpec, TaskSpec
from ant.executors.stopping import run_until_stopped

__all__ = ["MAIN_CONTAINER", "WORKSPACE", "KubernetesExecutor", "build_pod"]

MAIN_CONTAINER = "main"
WORKSPACE = "/workspace"
_IMAGE_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
_FINISHED = frozenset({"Succeeded", "Failed"})
# A pod outliving its Ant (the Ant crashed) is still stopped by Kubernetes this long after its timeout.
_DEADLINE_MARGIN_SECONDS = 60


def _dns_label(text: str, limit: int = 63) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return cleaned or "frm-task"


def _label_value(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def build_pod(
    spec: TaskSpec, *, script: str, name: str, namespace: str, ant_id: str, env: dict[str, str]
) -> k8s.V1Pod:
    """The pod of one attempt: one container `main` running `script` with `/bin/sh -c` in /workspace
    (an emptyDir), never restarted, labelled with the task and the Ant."""
    container: ContainerSpec = spec.container or ContainerSpec(image="")
    resources = container.resources
    limits = {
        key: value
        for key, value in (
            ("cpu", resources.cpu_limit),
            ("memory", resources.memory_limit),
            ("ephemeral-storage", resources.ephemeral_storage_limit),
        )
        if value
    }
    requests = {
        key: value
        for key, value in (
            ("cpu", resources.cpu_request),
            ("memory", resources.memory_request),
            ("ephemeral-storage", resources.ephemeral_storage_request),
        )
        if value
    }
    main = k8s.V1Container(
        name=MAIN_CONTAINER,
        image=container.image,
        image_pull_policy=container.pull_policy.value,
        command=["/bin/sh", "-c", script],
        env=[k8s.V1EnvVar(name=key, value=value) for key, value in env.items()],
        working_dir=spec.working_dir or WORKSPACE,
        volume_mounts=[k8s.V1VolumeMount(name="workspace", mount_path=WORKSPACE)],
        resources=k8s.V1ResourceRequirements(limits=limits or None, requests=requests or None),
        security_context=k8s.V1SecurityContext(privileged=True) if container.privileged else None,
    )
    if container.user:
        uid, _, gid = container.user.partition(":")
        if uid.isdigit():
            main.security_context = main.security_context or k8s.V1SecurityContext()
            main.security_context.run_as_user = int(uid)
            if gid.isdigit():
                main.security_context.run_as_group = int(gid)
    labels = {
        **container.pod_labels,
        "app.kubernetes.io/managed-by": "formicary",
        "formicary.task_execution_id": _label_value(spec.task_execution_id),
        "formicary.ant_id": _label_value(ant_id),
        "formicary.task_retry": str(spec.task_retry),
    }
    annotations = {
        **container.pod_annotations,
        # Label values are limited to 63 characters: the exact ids are annotations.
        "formicary.io/task-execution-id": spec.task_execution_id,
        "formicary.io/ant-id": ant_id,
        "formicary.io/job-request-id": str(spec.job_request_id),
        "formicary.io/task-type": spec.task_type,
    }
    timeout = spec.timeout_seconds
    return k8s.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels=labels, annotations=annotations),
        spec=k8s.V1PodSpec(
            containers=[main],
            restart_policy="Never",
            volumes=[k8s.V1Volume(name="workspace", empty_dir=k8s.V1EmptyDirVolumeSource())],
            node_selector=dict(container.node_selector) or None,
            host_network=container.host_network or None,
            active_deadline_seconds=(math.ceil(timeout) + _DEADLINE_MARGIN_SECONDS) if timeout else None,
        ),
    )


class KubernetesExecutor:
    """Creates a pod running `before_script` + `script` and then `after_script` in one `/bin/sh -c`
    (see `ScriptPlan.render_with_after`), streams its log, waits for it to finish and deletes it,
    always (also on errors and cancellation).

    Differences from SHELL and DOCKER, by design or not yet done:
    - stdout and stderr arrive as one stream (the pod log): every line is reported as STDOUT.
    - after_script runs in the same pod after the main commands; on timeout or cancel the pod is
      deleted, so after_script does not run then.
    - /workspace is an emptyDir: dependencies are not downloaded into it and artifacts are not
      collected from it (that needs a helper container, ExecutorOptions.helper_container: not built).
    - Variables, secret ones included, are plain `env` of the container (not a Kubernetes Secret).
    - The pod's progress is polled every `poll_interval` seconds (a watch would wake sooner).
    Image pull failures (ErrImagePull, ImagePullBackOff, ...) fail the task with ERR_IMAGE_PULL; the
    exit code is the main container's; a pod deleted under the task gives exit code FAILED.
    """

    def __init__(
        self,
        api: k8s.CoreV1Api,
        *,
        ant_id: str,
        namespace: str = "default",
        poll_interval: float = 1.0,
        api_timeout: float = 30.0,
        log_drain_timeout: float = 5.0,
    ) -> None:
        self._api = api
        self._ant_id = ant_id
        self._namespace = namespace
        self._poll = poll_interval
        self._api_timeout = api_timeout
        self._drain_timeout = log_drain_timeout

    async def aclose(self) -> None:
        api_client = getattr(self._api, "api_client", None)
        close = getattr(api_client, "close", None)
        if callable(close):
            await asyncio.to_thread(close)

    async def run(self, spec: TaskSpec, ctx: ExecutionContext) -> ExecutionResult:
        if spec.container is None or not spec.container.image:
            return ExecutionResult(
                status=ExecutionStatus.FAILED,
                exit_code=EXIT_CODE_FAILED,
                error_code=ErrorCode.INVALID_TASK,
                error_message="a KUBERNETES task needs container.image",
            )
        env, warnings = task_environment(spec, {}, spec.working_dir or WORKSPACE)
        if spec.container.entrypoint or spec.container.command:
            warnings.append("container entrypoint/command not used: the scripts run with /bin/sh -c")
        collector = OutputCollector(ctx.sink)
        for warning in warnings:
            await collector.system(f"warning: {warning}")
        main = ScriptPlan.build([*spec.before_script, *spec.script])
        after = ScriptPlan.build(spec.after_script) if spec.after_script else None
        collector.track(main, *([after] if after else []))
        script = main.render_with_after(after) if after else main.render()
        name = _dns_label(spec.resource_name())
        pod = build_pod(
            spec, script=script, name=name, namespace=self._namespace, ant_id=self._ant_id, env=env
        )
        log = ctx.logger.bind(pod=name, namespace=self._namespace)
        start_time = datetime.now(UTC)
        try:
            await self._call(self._api.create_namespaced_pod, namespace=self._namespace, body=pod)
            log.info("pod_created")
        except ApiException as exc:
            outcome = PhaseOutcome(
                returncode=None,
                error_code=ErrorCode.CONTAINER,
                error_message=f"cannot create pod {name}: {exc.reason}",
            )
        else:
            try:
                await collector.system(f"pod {self._namespace}/{name} created (image {spec.container.image})")
                outcome, stopped = await run_until_stopped(
                    self._follow(name, collector, log),
                    cancel=ctx.cancel,
                    timeout=spec.timeout_seconds,
                    stop=lambda: self._delete(name, log),
                )
                if stopped is not None:
                    outcome = PhaseOutcome(returncode=outcome.returncode, stopped=stopped)
            except ApiException as exc:
                outcome = PhaseOutcome(
                    returncode=None,
                    error_code=ErrorCode.CONTAINER,
                    error_message=f"pod {name} failed: {exc.reason}",
                )
            finally:
                await self._delete(name, log)
        if after is not None and outcome.stopped is None and not outcome.error_code:
            status = collector.exit_status(after)
            after_warning = after_script_warning(after, PhaseOutcome(returncode=status), collector)
            if after_warning is not None:
                warnings.append(after_warning)
                await collector.system(f"warning: {after_warning}")
        timings = Timings(start_time=start_time, script_finish_time=datetime.now(UTC))
        return script_result(
            main,
            outcome,
            collector,
            timeout=spec.timeout,
            timings=timings,
            warnings=warnings,
            namespace=self._namespace,
        )

    async def _call(self, method: Any, /, **kwargs: Any) -> Any:
        return await asyncio.to_thread(method, _request_timeout=self._api_timeout, **kwargs)

    async def _read_pod(self, name: str) -> k8s.V1Pod | None:
        try:
            pod: k8s.V1Pod = await self._call(
                self._api.read_namespaced_pod, name=name, namespace=self._namespace
            )
            return pod
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def _follow(self, name: str, collector: OutputCollector, log: FilteringBoundLogger) -> PhaseOutcome:
        """Wait for the pod to start, stream its log, wait for it to end; the main container's outcome."""
        while True:
            pod = await self._read_pod(name)
            if pod is None:
                return PhaseOutcome(returncode=None, exit_message="the pod was deleted")
            waiting = _main_state(pod, "waiting")
            if waiting is not None and waiting.reason in _IMAGE_ERRORS:
                return PhaseOutcome(
                    returncode=None,
                    error_code=ErrorCode.IMAGE_PULL,
                    error_message=f"{waiting.reason}: {waiting.message or ''}".strip(),
                )
            if pod.status is not None and pod.status.phase not in (None, "Pending"):
                break
            await asyncio.sleep(self._poll)
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        pump = asyncio.create_task(asyncio.to_thread(self._pump_log, name, loop, chunks))
        consumer = asyncio.create_task(_consume(chunks, collector))
        try:
            while True:
                pod = await self._read_pod(name)
                if pod is None:
                    return PhaseOutcome(returncode=None, exit_message="the pod was deleted")
                if pod.status is not None and pod.status.phase in _FINISHED:
                    break
                await asyncio.sleep(self._poll)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._drain_timeout):
                    await consumer
            terminated = _main_state(pod, "terminated")
            if terminated is None:
                log.warning("pod_finished_without_exit_code", phase=pod.status.phase if pod.status else None)
                return PhaseOutcome(
                    returncode=None, exit_message=str(pod.status.reason or "") if pod.status else ""
                )
            return PhaseOutcome(returncode=int(terminated.exit_code), exit_message=terminated.reason or "")
        finally:
            for task in (consumer, pump):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ApiException):
                    await task

    def _pump_log(self, name: str, loop: asyncio.AbstractEventLoop, out: asyncio.Queue[bytes | None]) -> None:
        """In a thread: follow the main container's log until it ends."""

        def put(data: bytes | None) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(out.put_nowait, data)

        try:
            # With _preload_content=False the client returns the urllib3 response, not the str it declares.
            response: Any = self._api.read_namespaced_pod_log(
                name=name,
                namespace=self._namespace,
                container=MAIN_CONTAINER,
                follow=True,
                _preload_content=False,
            )
            try:
                stream: Iterator[bytes] = response.stream(64 * 1024)
                for data in stream:
                    put(data)
            finally:
                with contextlib.suppress(Exception):
                    response.release_conn()
        except ApiException:
            pass  # the pod went away: the log simply ends
        finally:
            put(None)

    async def _delete(self, name: str, log: FilteringBoundLogger) -> None:
        try:
            await self._call(
                self._api.delete_namespaced_pod, name=name, namespace=self._namespace, grace_period_seconds=0
            )
            log.info("pod_deleted")
        except ApiException as exc:
            if exc.status != 404:
                log.error("pod_delete_failed", status=exc.status, reason=exc.reason)


def _main_state(pod: k8s.V1Pod, kind: str) -> Any:
    statuses = pod.status.container_statuses if pod.status is not None else None
    for status in statuses or ():
        if status.name == MAIN_CONTAINER and status.state is not None:
            return getattr(status.state, kind, None)
    return None


async def _consume(chunks: asyncio.Queue[bytes | None], collector: OutputCollector) -> None:
    splitter = LineSplitter()
    while (data := await chunks.get()) is not None:
        for line in splitter.feed(data):
            await collector.line(LogStream.STDOUT, line)
    for line in splitter.flush():
        await collector.line(LogStream.STDOUT, line)
