"""The KUBERNETES executor against a mocked `CoreV1Api`: the pod it builds, the log it streams, the exit
code it reports, and that the pod is always deleted. (No cluster can run here.)"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import structlog
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from ant.executors import (
    ContainerSpec,
    ExecutionContext,
    ExecutionStatus,
    LogStream,
    Method,
    ResourceSpec,
    TaskSpec,
    Variable,
)
from ant.executors.kubernetes import KubernetesExecutor

pytestmark = pytest.mark.unit

TOKEN = re.compile(r"::formicary-[0-9a-f]+::")


class ListSink:
    def __init__(self) -> None:
        self.lines: list[tuple[LogStream, str]] = []

    async def emit(self, stream: LogStream, text: str) -> None:
        self.lines.append((stream, text))


def pod_in(phase: str, *, exit_code: int | None = None, reason: str = "", waiting: str = "") -> k8s.V1Pod:
    state = k8s.V1ContainerState()
    if exit_code is not None:
        state.terminated = k8s.V1ContainerStateTerminated(exit_code=exit_code, reason=reason or None)
    elif waiting:
        state.waiting = k8s.V1ContainerStateWaiting(reason=waiting, message="pull access denied")
    status = k8s.V1ContainerStatus(
        name="main", image="alpine", image_id="", ready=False, restart_count=0, state=state
    )
    return k8s.V1Pod(status=k8s.V1PodStatus(phase=phase, container_statuses=[status]))


class FakeCluster:
    """A CoreV1Api stand-in: the pod goes through `phases`; its log is `log_lines` (with {step:N} and
    {exit:N} placeholders for the script's markers)."""

    def __init__(self, phases: list[k8s.V1Pod], log_lines: list[str]) -> None:
        self.api = mock.create_autospec(k8s.CoreV1Api, instance=True)
        self.phases = phases
        self.log_lines = log_lines
        self.created: Any = None  # the V1Pod the executor built
        self.deleted = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.api.create_namespaced_pod.side_effect = self.create
        self.api.read_namespaced_pod.side_effect = self.read
        self.api.read_namespaced_pod_log.side_effect = self.log
        self.api.delete_namespaced_pod.side_effect = self.delete

    def create(self, namespace: str, body: k8s.V1Pod, **_: Any) -> k8s.V1Pod:
        self.created = body
        return body

    @property
    def script(self) -> str:
        assert self.created is not None
        return str(self.created.spec.containers[0].command[2])

    def read(self, name: str, namespace: str, **_: Any) -> k8s.V1Pod:
        if self.deleted.is_set():
            raise ApiException(status=404, reason="Not Found")
        return self.phases.pop(0) if len(self.phases) > 1 else self.phases[0]

    def log(self, name: str, namespace: str, **kwargs: Any) -> Any:
        tokens = TOKEN.findall(self.script)
        assert kwargs["follow"] is True
        assert kwargs["container"] == "main"
        assert kwargs["_preload_content"] is False

        def chunks() -> Iterator[bytes]:
            for line in self.log_lines:
                text = line.format(step=f"{tokens[0]} step", exit=f"{tokens[-1]} exit")
                yield (text + "\n").encode()

        response = mock.Mock()
        response.stream.return_value = chunks()
        return response

    def delete(self, name: str, namespace: str, **_: Any) -> None:
        self.loop.call_soon_threadsafe(self.deleted.set)


def spec(**overrides: Any) -> TaskSpec:
    values: dict[str, Any] = {
        "task_execution_id": "te-Ab_1",
        "job_request_id": 42,
        "task_type": "check_primary",
        "method": Method.KUBERNETES,
        "script": ("echo hello", "exit 3"),
        "variables": {"REGION": Variable("us-west-2"), "TOKEN": Variable("s3cret", secret=True)},
        "environment": {"MODE": "dr"},
        "container": ContainerSpec(
            image="alpine:latest",
            resources=ResourceSpec(cpu_limit="500m", memory_request="64Mi"),
            node_selector={"disk": "ssd"},
            pod_labels={"team": "ops"},
        ),
        "executor_name": "frm-42-Check_Primary-0",
        "timeout": timedelta(seconds=30),
    }
    values.update(overrides)
    return TaskSpec(**values)


def context(tmp_path: Path, cancel: asyncio.Event | None = None) -> tuple[ExecutionContext, ListSink]:
    sink = ListSink()
    ctx = ExecutionContext(
        logger=structlog.get_logger(),
        sink=sink,
        cancel=cancel or asyncio.Event(),
        work_dir=tmp_path,
        ant_id="ant-1",
    )
    return ctx, sink


def executor(cluster: FakeCluster) -> KubernetesExecutor:
    return KubernetesExecutor(cluster.api, ant_id="ant-1", namespace="ci", poll_interval=0.001)


async def test_the_pod_runs_the_script_and_reports_the_failing_command(tmp_path: Path) -> None:
    cluster = FakeCluster(
        [pod_in("Pending"), pod_in("Running"), pod_in("Failed", exit_code=3, reason="Error")],
        ["{step} 1", "hello", "{step} 2"],
    )
    ctx, sink = context(tmp_path)
    result = await executor(cluster).run(spec(), ctx)

    assert result.status is ExecutionStatus.FAILED
    assert result.exit_code == "3"
    assert result.exit_message == "Error"
    assert result.failed_command == "exit 3"
    assert result.namespace == "ci"
    assert (LogStream.STDOUT, "hello") in sink.lines
    assert (LogStream.SYSTEM, "$ exit 3") in sink.lines
    cluster.api.delete_namespaced_pod.assert_called_once()
    assert cluster.api.delete_namespaced_pod.call_args.kwargs["name"] == "frm-42-check-primary-0"
    assert cluster.api.delete_namespaced_pod.call_args.kwargs["namespace"] == "ci"


async def test_the_pod_spec(tmp_path: Path) -> None:
    cluster = FakeCluster([pod_in("Succeeded", exit_code=0, reason="Completed")], ["{step} 1", "{step} 2"])
    ctx, _ = context(tmp_path)
    result = await executor(cluster).run(spec(script=("echo hi",)), ctx)
    assert result.status is ExecutionStatus.COMPLETED
    assert result.exit_code == "0"

    pod: Any = cluster.created
    assert pod is not None
    assert cluster.api.create_namespaced_pod.call_args.kwargs["namespace"] == "ci"
    assert pod.metadata.name == "frm-42-check-primary-0"
    assert pod.metadata.labels["formicary.task_execution_id"] == "te-Ab_1"
    assert pod.metadata.labels["formicary.ant_id"] == "ant-1"
    assert pod.metadata.labels["team"] == "ops"
    assert pod.metadata.annotations["formicary.io/job-request-id"] == "42"
    assert pod.spec.restart_policy == "Never"
    assert pod.spec.node_selector == {"disk": "ssd"}
    assert pod.spec.active_deadline_seconds == 90
    (main,) = pod.spec.containers
    assert main.name == "main"
    assert main.image == "alpine:latest"
    assert main.image_pull_policy == "IfNotPresent"
    assert main.command[:2] == ["/bin/sh", "-c"]
    assert "eval 'echo hi'" in main.command[2]
    assert main.working_dir == "/workspace"
    env = {e.name: e.value for e in main.env}
    assert env["REGION"] == "us-west-2"
    assert env["MODE"] == "dr"
    assert env["FORMICARY_TASK_EXECUTION_ID"] == "te-Ab_1"
    assert main.resources.limits == {"cpu": "500m"}
    assert main.resources.requests == {"memory": "64Mi"}
    assert [m.mount_path for m in main.volume_mounts] == ["/workspace"]
    assert pod.spec.volumes[0].empty_dir is not None


async def test_after_script_runs_in_the_pod_and_its_failure_is_a_warning(tmp_path: Path) -> None:
    cluster = FakeCluster(
        [pod_in("Running"), pod_in("Succeeded", exit_code=0)], ["{step} 1", "ok", "after", "{exit} 4"]
    )
    ctx, _ = context(tmp_path)
    result = await executor(cluster).run(spec(script=("echo ok",), after_script=("cleanup",)), ctx)
    assert result.status is ExecutionStatus.COMPLETED
    assert any("after_script" in w and "4" in w for w in result.warnings)
    assert cluster.script.count("::formicary-") >= 2


async def test_an_image_that_cannot_be_pulled(tmp_path: Path) -> None:
    cluster = FakeCluster([pod_in("Pending", waiting="ImagePullBackOff")], [])
    ctx, _ = context(tmp_path)
    result = await executor(cluster).run(spec(), ctx)
    assert result.status is ExecutionStatus.FAILED
    assert result.error_code == "ERR_IMAGE_PULL"
    assert result.exit_code == "FAILED"
    assert "ImagePullBackOff" in result.error_message
    cluster.api.delete_namespaced_pod.assert_called()


async def test_a_timeout_deletes_the_pod(tmp_path: Path) -> None:
    cluster = FakeCluster([pod_in("Running")], ["{step} 1"])
    ctx, _ = context(tmp_path)
    result = await executor(cluster).run(spec(timeout=timedelta(milliseconds=200)), ctx)
    assert result.status is ExecutionStatus.FAILED
    assert result.error_code == "ERR_TASK_TIMEOUT"
    assert result.exit_code == "FAILED"
    assert result.failed_command == "echo hello"
    assert cluster.deleted.is_set()


async def test_a_cancel_deletes_the_pod(tmp_path: Path) -> None:
    cluster = FakeCluster([pod_in("Running")], [])
    cancel = asyncio.Event()
    ctx, _ = context(tmp_path, cancel)
    run = asyncio.create_task(executor(cluster).run(spec(timeout=None), ctx))
    await asyncio.wait_for(_until_called(cluster.api.read_namespaced_pod), 5)
    cancel.set()
    result = await asyncio.wait_for(run, 5)
    assert result.status is ExecutionStatus.CANCELLED
    assert result.error_code == "ERR_TASK_CANCELLED"
    assert cluster.deleted.is_set()


async def test_the_pod_is_deleted_when_the_api_fails_midway(tmp_path: Path) -> None:
    cluster = FakeCluster([pod_in("Running")], [])
    cluster.api.read_namespaced_pod.side_effect = ApiException(status=500, reason="Internal Server Error")
    ctx, _ = context(tmp_path)
    result = await executor(cluster).run(spec(), ctx)
    assert result.status is ExecutionStatus.FAILED
    assert result.error_code == "ERR_CONTAINER"
    cluster.api.delete_namespaced_pod.assert_called_once()


async def test_a_pod_that_cannot_be_created(tmp_path: Path) -> None:
    cluster = FakeCluster([pod_in("Running")], [])
    cluster.api.create_namespaced_pod.side_effect = ApiException(status=403, reason="Forbidden")
    ctx, _ = context(tmp_path)
    result = await executor(cluster).run(spec(), ctx)
    assert result.error_code == "ERR_CONTAINER"
    assert "Forbidden" in result.error_message
    cluster.api.delete_namespaced_pod.assert_not_called()


async def test_a_task_without_image_is_refused(tmp_path: Path) -> None:
    cluster = FakeCluster([pod_in("Running")], [])
    ctx, _ = context(tmp_path)
    result = await executor(cluster).run(spec(container=None), ctx)
    assert result.error_code == "ERR_INVALID_TASK"
    cluster.api.create_namespaced_pod.assert_not_called()


async def _until_called(method: mock.Mock) -> None:
    while not method.called:  # noqa: ASYNC110 - a mock has no event to wait on
        await asyncio.sleep(0.001)
