"""Around the executor: the attempt's directory, secrets masked, artifacts said not transferred."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog

from ant.artifacts import UnavailableArtifactTransfer
from ant.attempt import AttemptRequest, AttemptRunner
from ant.executors import (
    ExecutionContext,
    ExecutionResult,
    ExecutionStatus,
    ExecutorRegistry,
    LogStream,
    Method,
    TaskSpec,
    Variable,
)
from ant.executors.shell import ShellExecutor
from tests.integration.ant.recording import RecordingSink

pytestmark = pytest.mark.integration


class Broken:
    async def run(self, spec: TaskSpec, ctx: ExecutionContext) -> ExecutionResult:
        raise RuntimeError("kaput")


def runner(tmp_path: Path, *, keep: bool = False) -> AttemptRunner:
    return AttemptRunner(
        ExecutorRegistry({Method.SHELL: ShellExecutor(), Method.HTTP_GET: Broken()}),
        work_root=tmp_path / "work",
        artifacts=UnavailableArtifactTransfer(),
        ant_id="a",
        host="h",
        logger=structlog.get_logger(),
        keep_work_dirs=keep,
    )


async def test_secrets_are_masked_in_logs_and_in_the_result(tmp_path: Path, sink: RecordingSink) -> None:
    spec = TaskSpec(
        task_execution_id="te/1",
        job_request_id=1,
        task_type="deploy",
        method=Method.SHELL,
        script=(
            'echo "token is $API_TOKEN"',
            'echo "::set-output name=t::$API_TOKEN"',
            'test "$API_TOKEN" = x',
        ),
        variables={"API_TOKEN": Variable("hunter2-secret", secret=True), "PIN": Variable("12", secret=True)},
    )
    result = await runner(tmp_path).run(AttemptRequest(spec=spec, correlation_id="c"), sink, asyncio.Event())
    everything = "\n".join(sink.texts()) + repr(result)
    assert "hunter2-secret" not in everything
    assert "token is [MASKED]" in sink.texts(LogStream.STDOUT)
    assert result.task_context == {"t": "[MASKED]"}
    assert result.failed_command == 'test "$API_TOKEN" = x'
    assert any("1 secret values shorter than 4" in line for line in sink.texts(LogStream.SYSTEM))
    assert result.cost_factor == 1.0
    assert result.timings.receive_time is not None
    assert result.timings.finish_time is not None


async def test_each_attempt_gets_a_fresh_directory_that_is_removed(
    tmp_path: Path, sink: RecordingSink
) -> None:
    spec = TaskSpec(
        task_execution_id="te-2",
        job_request_id=1,
        task_type="t",
        method=Method.SHELL,
        script=("pwd", "ls -A"),
        task_retry=3,
    )
    stale = tmp_path / "work" / "te-2-3-c"  # left by an Ant that crashed during the same attempt
    stale.mkdir(parents=True)
    (stale / "old-file").touch()
    result = await runner(tmp_path).run(AttemptRequest(spec=spec, correlation_id="c"), sink, asyncio.Event())
    assert result.stdout == (str(stale),)
    assert not stale.exists()


async def test_artifacts_are_said_not_transferred(tmp_path: Path, sink: RecordingSink) -> None:
    spec = TaskSpec(
        task_execution_id="te-3", job_request_id=1, task_type="t", method=Method.SHELL, script=("true",)
    )
    request = AttemptRequest(
        spec=spec, correlation_id="c", dependent_artifact_ids=("a1",), artifact_paths=("terraform.tfstate",)
    )
    result = await runner(tmp_path).run(request, sink, asyncio.Event())
    assert result.status is ExecutionStatus.COMPLETED
    assert result.artifacts == ()
    assert any("dependent artifacts were not downloaded" in w for w in result.warnings)
    assert any("artifacts not uploaded (terraform.tfstate)" in w for w in result.warnings)


async def test_a_broken_executor_gives_a_failed_result(tmp_path: Path, sink: RecordingSink) -> None:
    spec = TaskSpec(task_execution_id="te-4", job_request_id=1, task_type="t", method=Method.HTTP_GET)
    result = await runner(tmp_path).run(AttemptRequest(spec=spec, correlation_id="c"), sink, asyncio.Event())
    assert result.status is ExecutionStatus.FAILED
    assert result.error_code == "ERR_EXECUTOR"
    assert "kaput" in result.error_message


async def test_a_task_cancelled_before_it_started_does_not_run(tmp_path: Path, sink: RecordingSink) -> None:
    cancel = asyncio.Event()
    cancel.set()
    spec = TaskSpec(
        task_execution_id="te-5", job_request_id=1, task_type="t", method=Method.SHELL, script=("echo x",)
    )
    result = await runner(tmp_path).run(AttemptRequest(spec=spec, correlation_id="c"), sink, cancel)
    assert result.status is ExecutionStatus.CANCELLED
    assert sink.texts(LogStream.STDOUT) == []
