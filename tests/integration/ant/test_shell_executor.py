"""The SHELL executor on real processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ant.executors import ExecutionContext, ExecutionStatus, LogStream, Method, TaskSpec, Variable
from ant.executors.shell import ShellExecutor
from tests.integration.ant.recording import RecordingSink

pytestmark = pytest.mark.integration

MakeContext = Callable[..., ExecutionContext]


def shell_spec(*script: str, **overrides: Any) -> TaskSpec:
    return TaskSpec(
        task_execution_id="te-1",
        job_request_id=7,
        task_type="build",
        method=Method.SHELL,
        script=script,
        **overrides,
    )


@pytest.fixture
def shell() -> ShellExecutor:
    return ShellExecutor(kill_grace=0.3, pipe_drain_timeout=1.0)


def process_gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody reaped yet (it runs nothing any more)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_a_successful_script_shares_one_session(
    shell: ShellExecutor, make_context: MakeContext, sink: RecordingSink
) -> None:
    ctx = make_context()
    result = await shell.run(
        shell_spec(
            "mkdir sub && cd sub",
            "export GREETING=hello",
            'echo "$GREETING from $(basename "$PWD")"',
            "echo oops >&2",
            "echo '::set-output name=version::1.2.3'",
            before_script=("echo before",),
        ),
        ctx,
    )
    assert result.status is ExecutionStatus.COMPLETED
    assert result.exit_code == "0"
    assert result.failed_command == ""
    assert sink.texts(LogStream.STDOUT)[:2] == ["before", "hello from sub"]
    assert sink.texts(LogStream.STDERR) == ["oops"]
    assert "$ export GREETING=hello" in sink.texts(LogStream.SYSTEM)
    assert result.task_context == {"version": "1.2.3"}
    assert result.stdout == ("before", "hello from sub", "::set-output name=version::1.2.3")
    assert (ctx.work_dir / "sub").is_dir()
    assert result.timings.start_time is not None
    assert result.timings.script_finish_time is not None


async def test_the_first_failing_command_stops_the_script(
    shell: ShellExecutor, make_context: MakeContext, sink: RecordingSink
) -> None:
    result = await shell.run(shell_spec("echo one", "ls /nonexistent-dir", "echo never"), make_context())
    assert result.status is ExecutionStatus.FAILED
    assert result.exit_code == "2"
    assert result.failed_command == "ls /nonexistent-dir"
    assert "ls /nonexistent-dir" in result.error_message
    assert result.error_code == ""
    assert "never" not in sink.texts(LogStream.STDOUT)


@pytest.mark.parametrize(
    ("command", "code"),
    [("exit 7", "7"), ("false | true", "1"), ("echo 'unclosed", "2"), ("kill -9 $$", "137")],
)
async def test_the_failing_command_is_named_however_the_shell_stops(
    shell: ShellExecutor, make_context: MakeContext, command: str, code: str
) -> None:
    result = await shell.run(shell_spec("echo ok", command, "echo never"), make_context())
    assert result.status is ExecutionStatus.FAILED
    assert result.exit_code == code
    assert result.failed_command == command


@pytest.mark.parametrize("direct", [True, False], ids=["without-shell", "shell"])
async def test_one_simple_command_reports_the_same_with_or_without_the_shell(
    make_context: MakeContext, sink: RecordingSink, direct: bool
) -> None:
    shell = ShellExecutor(kill_grace=0.3, direct=direct)
    result = await shell.run(
        shell_spec("ls no-such-entry", after_script=("rmdir no-such-dir",)), make_context()
    )
    assert result.status is ExecutionStatus.FAILED
    assert result.exit_code == "2"
    assert result.failed_command == "ls no-such-entry"
    assert result.error_message == "command 'ls no-such-entry' exited with status 2"
    assert result.warnings == ("after_script command 'rmdir no-such-dir' exited with status 1",)
    assert sink.texts(LogStream.SYSTEM)[:2] == ["$ ls no-such-entry", "$ rmdir no-such-dir"]
    (stderr_ls, stderr_rmdir) = sink.texts(LogStream.STDERR)
    assert "no-such-entry" in stderr_ls
    assert "no-such-dir" in stderr_rmdir
    ok = await shell.run(shell_spec("pwd"), make_context())
    assert ok.status is ExecutionStatus.COMPLETED
    assert ok.stdout[-1] == str(make_context().work_dir)


async def test_after_script_runs_after_a_failure_and_its_failure_is_a_warning(
    shell: ShellExecutor, make_context: MakeContext, sink: RecordingSink
) -> None:
    result = await shell.run(
        shell_spec("false", after_script=("echo cleaning up", "exit 4", "echo never")), make_context()
    )
    assert result.status is ExecutionStatus.FAILED
    assert result.exit_code == "1"
    assert result.failed_command == "false"
    assert "cleaning up" in sink.texts(LogStream.STDOUT)
    assert "never" not in sink.texts(LogStream.STDOUT)
    assert result.warnings == ("after_script command 'exit 4' exited with status 4",)


async def test_the_environment_is_clean_plus_the_task_variables(
    shell: ShellExecutor, make_context: MakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORMICARY_ANT_CREDENTIAL", "must-not-leak")
    clean = ShellExecutor()  # reads the Ant's environment when built
    result = await clean.run(
        shell_spec(
            'echo "NAME=$NAME"',
            'echo "SHARED=$SHARED"',
            'echo "LEAK=${FORMICARY_ANT_CREDENTIAL:-none}"',
            'echo "JOB=$FORMICARY_JOB_REQUEST_ID"',
            'test -n "$PATH"',
            variables={
                "NAME": Variable("ant"),
                "SHARED": Variable("from-variables"),
                "bad-name": Variable("x"),
            },
            environment={"SHARED": "from-environment"},
        ),
        make_context(),
    )
    assert result.status is ExecutionStatus.COMPLETED, result
    assert result.stdout == ("NAME=ant", "SHARED=from-environment", "LEAK=none", "JOB=7")
    assert any("'bad-name'" in w for w in result.warnings)


async def test_output_lines_arrive_while_the_task_runs(
    shell: ShellExecutor, make_context: MakeContext, sink: RecordingSink
) -> None:
    gate = make_context().work_dir / "gate"
    ctx = make_context()
    run = asyncio.create_task(
        shell.run(shell_spec("echo first", f"while [ ! -e {gate} ]; do sleep 0.02; done", "echo second"), ctx)
    )
    await sink.wait_for("first")
    assert not run.done()
    assert "second" not in sink.texts()
    gate.touch()
    result = await asyncio.wait_for(run, 10)
    assert result.status is ExecutionStatus.COMPLETED
    assert sink.texts(LogStream.STDOUT) == ["first", "second"]


async def test_a_timeout_kills_the_whole_process_group(
    shell: ShellExecutor, make_context: MakeContext, sink: RecordingSink
) -> None:
    ctx = make_context()
    started = time.monotonic()
    result = await shell.run(
        shell_spec(
            "sh -c 'sleep 300 & echo $! > grandchild.pid; wait'",
            timeout=timedelta(milliseconds=500),
        ),
        ctx,
    )
    assert time.monotonic() - started < 5
    assert result.status is ExecutionStatus.FAILED
    assert result.error_code == "ERR_TASK_TIMEOUT"
    assert result.exit_code in {"143", "137"}
    assert result.failed_command.startswith("sh -c 'sleep 300")
    grandchild = int((ctx.work_dir / "grandchild.pid").read_text())
    assert process_gone(grandchild)


async def test_a_process_that_ignores_sigterm_is_killed_after_the_grace(
    shell: ShellExecutor, make_context: MakeContext
) -> None:
    ctx = make_context()
    result = await shell.run(
        shell_spec(
            "trap '' TERM; echo $$ > shell.pid; while true; do sleep 0.05; done",
            timeout=timedelta(seconds=0.3),
        ),
        ctx,
    )
    assert result.error_code == "ERR_TASK_TIMEOUT"
    assert result.exit_code == "137"
    assert process_gone(int((ctx.work_dir / "shell.pid").read_text()))


async def test_cancel_stops_the_task_and_after_script_still_runs(
    shell: ShellExecutor, make_context: MakeContext, sink: RecordingSink
) -> None:
    cancel = asyncio.Event()
    ctx = make_context(cancel=cancel)
    run = asyncio.create_task(
        shell.run(
            shell_spec("echo started; echo $$ > shell.pid", "sleep 300", after_script=("echo after",)), ctx
        )
    )
    await sink.wait_for("$ sleep 300")
    cancel.set()
    result = await asyncio.wait_for(run, 10)
    assert result.status is ExecutionStatus.CANCELLED
    assert result.error_code == "ERR_TASK_CANCELLED"
    assert result.failed_command == "sleep 300"
    assert "after" in sink.texts(LogStream.STDOUT)
    assert process_gone(int((ctx.work_dir / "shell.pid").read_text()))


async def test_background_leftovers_are_ended_when_the_script_exits(
    shell: ShellExecutor, make_context: MakeContext
) -> None:
    ctx = make_context()
    result = await shell.run(shell_spec("sleep 300 & echo $! > leftover.pid", "echo done"), ctx)
    assert result.status is ExecutionStatus.COMPLETED
    assert process_gone(int((ctx.work_dir / "leftover.pid").read_text()))


async def test_a_relative_working_dir_is_inside_the_attempt_directory(
    shell: ShellExecutor, make_context: MakeContext, tmp_path: Path
) -> None:
    ctx = make_context()
    result = await shell.run(shell_spec("pwd", working_dir="src/app"), ctx)
    assert result.stdout == (str(ctx.work_dir / "src" / "app"),)
