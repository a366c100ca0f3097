"""The DOCKER executor against the test dockerd (DOCKER_HOST) and its local busybox image."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import docker
import pytest

from ant.executors import (
    ContainerSpec,
    ExecutionContext,
    ExecutionStatus,
    LogStream,
    Method,
    PullPolicy,
    TaskSpec,
    Variable,
)
from ant.executors.docker import LABEL_ANT_ID, LABEL_TASK_EXECUTION_ID, DockerExecutor
from tests.integration.ant.recording import RecordingSink

pytestmark = pytest.mark.integration

MakeContext = Callable[..., ExecutionContext]


@pytest.fixture
def executor(docker_client: docker.DockerClient) -> Iterator[DockerExecutor]:
    client = docker.from_env(timeout=60)  # its own client: the session's may be used by other threads
    yield DockerExecutor(client, ant_id="test-ant", log_drain_timeout=2.0)
    client.close()


def docker_spec(image: str, *script: str, task_id: str, **overrides: Any) -> TaskSpec:
    return TaskSpec(
        task_execution_id=task_id,
        job_request_id=9,
        task_type="docker",
        method=Method.DOCKER,
        container=ContainerSpec(image=image),
        script=script,
        **overrides,
    )


def our_containers(client: docker.DockerClient, task_id: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL_TASK_EXECUTION_ID}={task_id}"}))


async def test_a_script_runs_in_a_container_and_the_container_is_removed(
    executor: DockerExecutor,
    docker_client: docker.DockerClient,
    docker_image: str,
    make_context: MakeContext,
    sink: RecordingSink,
) -> None:
    ctx = make_context()
    result = await executor.run(
        docker_spec(
            docker_image,
            'echo "hello $WHO from $(pwd)"',
            "echo to-stderr >&2",
            "echo '::set-output name=answer::42'",
            task_id="docker-ok",
            variables={"WHO": Variable("busybox")},
        ),
        ctx,
    )
    assert result.status is ExecutionStatus.COMPLETED, result
    assert result.exit_code == "0"
    assert "hello busybox from /workspace" in sink.texts(LogStream.STDOUT)
    assert sink.texts(LogStream.STDERR) == ["to-stderr"]
    assert "$ echo to-stderr >&2" in sink.texts(LogStream.SYSTEM)
    assert result.task_context == {"answer": "42"}
    assert our_containers(docker_client, "docker-ok") == []


async def test_a_failing_command_is_reported(
    executor: DockerExecutor, docker_image: str, make_context: MakeContext, sink: RecordingSink
) -> None:
    result = await executor.run(
        docker_spec(docker_image, "echo one", "cat /missing", "echo never", task_id="docker-fail"),
        make_context(),
    )
    assert result.status is ExecutionStatus.FAILED
    assert result.exit_code == "1"
    assert result.failed_command == "cat /missing"
    assert "never" not in sink.texts()


async def test_files_written_in_workspace_are_in_the_attempt_directory(
    executor: DockerExecutor, docker_image: str, make_context: MakeContext, sink: RecordingSink
) -> None:
    ctx = make_context()
    (ctx.work_dir / "dependency.txt").write_text("from an earlier task\n")
    result = await executor.run(
        docker_spec(
            docker_image,
            "cat dependency.txt",
            "mkdir -p dist && echo built > dist/app.txt",
            task_id="docker-mount",
            after_script=("ls dist", "false"),
        ),
        ctx,
    )
    assert result.status is ExecutionStatus.COMPLETED, result
    assert "from an earlier task" in sink.texts(LogStream.STDOUT)
    assert (ctx.work_dir / "dist" / "app.txt").read_text() == "built\n"
    assert "app.txt" in sink.texts(LogStream.STDOUT)  # after_script ran in a second container, same workspace
    assert result.warnings == ("after_script command 'false' exited with status 1",)


async def test_a_timeout_kills_and_removes_the_container(
    executor: DockerExecutor,
    docker_client: docker.DockerClient,
    docker_image: str,
    make_context: MakeContext,
) -> None:
    result = await executor.run(
        docker_spec(
            docker_image, "echo start", "sleep 300", task_id="docker-timeout", timeout=timedelta(seconds=1)
        ),
        make_context(),
    )
    assert result.status is ExecutionStatus.FAILED
    assert result.error_code == "ERR_TASK_TIMEOUT"
    assert result.exit_code == "137"
    assert result.failed_command == "sleep 300"
    assert our_containers(docker_client, "docker-timeout") == []


async def test_cancel_kills_the_container(
    executor: DockerExecutor,
    docker_client: docker.DockerClient,
    docker_image: str,
    make_context: MakeContext,
    sink: RecordingSink,
) -> None:
    cancel = asyncio.Event()
    run = asyncio.create_task(
        executor.run(
            docker_spec(docker_image, "echo up", "sleep 300", task_id="docker-cancel"), make_context(cancel)
        )
    )
    await sink.wait_for("$ sleep 300")
    running = our_containers(docker_client, "docker-cancel")
    assert len(running) == 1
    assert running[0].labels[LABEL_ANT_ID] == "test-ant"
    cancel.set()
    result = await asyncio.wait_for(run, 30)
    assert result.status is ExecutionStatus.CANCELLED
    assert our_containers(docker_client, "docker-cancel") == []


async def test_an_image_that_is_missing_and_may_not_be_pulled(
    executor: DockerExecutor, make_context: MakeContext
) -> None:
    spec = replace(
        docker_spec("local/does-not-exist:1", "true", task_id="docker-noimage"),
        container=ContainerSpec(image="local/does-not-exist:1", pull_policy=PullPolicy.NEVER),
    )
    result = await executor.run(spec, make_context())
    assert result.status is ExecutionStatus.FAILED
    assert result.error_code == "ERR_IMAGE_PULL"
