"""`--local-fallback`: DOCKER/KUBERNETES tasks run with SHELL when no engine answers, said loudly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from ant.errors import ConfigurationError
from ant.executors import ContainerSpec, ExecutionContext, ExecutionStatus, LogStream, Method, TaskSpec
from ant.executors.fallback import LocalFallbackExecutor
from ant.executors.selection import ExecutorTuning, select_executors
from ant.executors.shell import ShellExecutor
from tests.integration.ant.recording import RecordingSink

pytestmark = pytest.mark.integration

MakeContext = Callable[..., ExecutionContext]
TUNING = ExecutorTuning(api_timeout=2.0, kill_grace=0.3)


@pytest.fixture
def no_engines(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.mark.usefixtures("no_engines")
async def test_without_the_option_a_missing_engine_stops_the_ant() -> None:
    with pytest.raises(ConfigurationError, match="--local-fallback"):
        await select_executors(
            [Method.SHELL, Method.DOCKER],
            ant_id="a",
            host="h",
            local_fallback=False,
            logger=structlog.get_logger(),
            tuning=TUNING,
        )


@pytest.mark.usefixtures("no_engines")
@pytest.mark.parametrize("method", [Method.KUBERNETES, Method.DOCKER])
async def test_container_tasks_run_with_shell_and_say_so(
    method: Method, make_context: MakeContext, sink: RecordingSink
) -> None:
    registry = await select_executors(
        [method],
        ant_id="a",
        host="demo-host",
        local_fallback=True,
        logger=structlog.get_logger(),
        tuning=TUNING,
    )
    assert isinstance(registry[method], LocalFallbackExecutor)
    spec = TaskSpec(
        task_execution_id="te-f",
        job_request_id=1,
        task_type="check-primary-status",
        method=method,
        container=ContainerSpec(image="alpine:latest"),
        working_dir="/workspace",
        script=('echo "Pinging primary region endpoint... it\'s down!"', "exit 1"),
    )
    ctx = make_context()
    result = await registry[method].run(spec, ctx)

    note = f"local fallback: {method} task run with SHELL on demo-host, image alpine:latest ignored"
    assert sink.lines[0] == (LogStream.SYSTEM, note + ", working_dir /workspace ignored")
    assert "no " in sink.lines[1][1]  # the reason: no Docker engine / no cluster answers
    assert result.warnings[0] == result.fallback_note == note + ", working_dir /workspace ignored"
    assert result.status is ExecutionStatus.FAILED
    assert result.exit_code == "1"
    assert result.failed_command == "exit 1"
    assert "Pinging primary region endpoint... it's down!" in sink.texts(LogStream.STDOUT)
    await registry.aclose()


async def test_the_fallback_wraps_any_shell(make_context: MakeContext, sink: RecordingSink) -> None:
    fallback = LocalFallbackExecutor(ShellExecutor(), replaced=Method.DOCKER, host="h", reason="test")
    spec = TaskSpec(
        task_execution_id="t", job_request_id=1, task_type="x", method=Method.DOCKER, script=("pwd",)
    )
    ctx = make_context()
    result = await fallback.run(spec, ctx)
    assert result.status is ExecutionStatus.COMPLETED
    assert result.stdout == (str(ctx.work_dir),)
    assert "image (none) ignored" in result.fallback_note
