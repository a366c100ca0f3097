"""The `formicary` client commands as a user runs them: real processes (a Queen, an Ant, the CLI) on
loopback, exit codes that follow the job's outcome, one-line errors."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.fixtures.processes import ManagedProcess, admin_token, mint_token, start_ant, start_queen

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

_COMMAND_TIMEOUT = 60.0
PLAYBOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"
AS_PUBLISHED = PLAYBOOKS / "aws-region-failover.as-published.yaml"

STRICT = """\
job_type: cli-strict-gate
tasks:
- task_type: go-ahead
  method: MANUAL
  on_exit_code:
    APPROVED: finish
    REJECTED: FATAL
- task_type: finish
  method: SHELL
  script: [echo finished]
"""

HELLO = """\
job_type: cli-hello
description: two shell tasks
required_params: [who]
tasks:
- task_type: greet
  method: SHELL
  script:
    - echo hello {{.who}}
  on_completed: bye
- task_type: bye
  method: SHELL
  script: [echo bye]
"""

FAILING = """\
job_type: cli-fails
tasks:
- task_type: boom
  method: SHELL
  script: [echo about to fail, exit 3]
"""

GATED = """\
job_type: cli-gated
tasks:
- task_type: prepare
  method: SHELL
  script: [echo prepared]
  on_completed: go-ahead
- task_type: go-ahead
  method: MANUAL
  description: Approve to finish.
  on_exit_code:
    APPROVED: finish
    REJECTED: finish
- task_type: finish
  method: SHELL
  script: [echo finished]
"""


@dataclass(frozen=True, slots=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True, slots=True)
class Cli:
    """Runs `python -m sdk ...` (the `formicary` command) against one Queen, chosen by FORMICARY_URL."""

    address: str
    cwd: Path

    def environment(self) -> dict[str, str]:
        port = int(self.address.rsplit(":", 1)[1])
        return {
            **os.environ,
            "FORMICARY_URL": self.address,
            "FORMICARY_TOKEN": admin_token(port),
            "PYTHONUNBUFFERED": "1",
        }

    async def spawn(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sdk",
            *args,
            cwd=self.cwd,
            env=self.environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def __call__(self, *args: str) -> Result:
        process = await self.spawn(*args)
        try:
            async with asyncio.timeout(_COMMAND_TIMEOUT):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())


@pytest.fixture(scope="module")
async def system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[ManagedProcess, Path]]:
    """A Queen (SQLite) and a SHELL Ant as processes, shared by this module's tests."""
    root = tmp_path_factory.mktemp("cli")
    port = free_port()
    url = f"sqlite+aiosqlite:///{root / 'formicary.db'}"
    queen = await start_queen(root / "queen", database_url=url, grpc_port=port)
    try:
        ant = await start_ant(root / "ant", queen_port=port, ant_id="cli-ant", methods="SHELL")
        try:
            yield queen, root
        finally:
            await ant.stop()
    finally:
        await queen.stop()


@pytest.fixture(scope="module")
async def cli(system: tuple[ManagedProcess, Path]) -> Cli:
    queen, root = system
    folder = root / "playbooks"
    folder.mkdir()
    playbooks = {"hello.yaml": HELLO, "failing.yaml": FAILING, "gated.yaml": GATED, "strict.yaml": STRICT}
    for name, text in playbooks.items():
        (folder / name).write_text(text)
    runner = Cli(f"127.0.0.1:{queen.port}", folder)
    uploaded = await runner("definitions", "upload", *playbooks)
    assert uploaded.exit_code == 0, uploaded
    return runner


def request_id_of(result: Result) -> int:
    """The id in `submitted job request N (...)`."""
    first = result.stdout.splitlines()[0]
    assert first.startswith("submitted job request "), result
    return int(first.split()[3])


async def test_submit_wait_follow_of_a_shell_job_prints_progress_and_logs_and_exits_0(cli: Cli) -> None:
    result = await cli("submit", "cli-hello", "--param", "who=world", "--wait", "--follow")

    assert result.exit_code == 0, result
    assert "[greet] hello world" in result.stdout
    assert "[bye] bye" in result.stdout
    assert "task 1 of 2 greet" in result.stderr
    assert "task 2 of 2 bye" in result.stderr
    assert "COMPLETED after" in result.stderr.splitlines()[-1]

    request_id = request_id_of(result)
    status = await cli("status", str(request_id))
    assert status.exit_code == 0, status
    assert f"request {request_id}: cli-hello v1 COMPLETED" in status.stdout
    rows = {line.split()[0]: line.split()[1:4] for line in status.stdout.splitlines()[3:]}
    assert rows == {"greet": ["COMPLETED", "0", "cli-ant"], "bye": ["COMPLETED", "0", "cli-ant"]}


async def test_a_failing_job_exits_1_and_its_status_and_logs_say_why(cli: Cli) -> None:
    result = await cli("submit", "cli-fails", "--wait")

    assert result.exit_code == 1, result
    assert "FAILED after" in result.stderr.splitlines()[-1]
    assert "exit code 3" in result.stderr.splitlines()[-1]

    request_id = request_id_of(result)
    status, logs = await asyncio.gather(cli("status", str(request_id)), cli("logs", str(request_id)))
    assert "FAILED" in status.stdout.splitlines()[0]
    assert any(line.split()[:3] == ["boom", "FAILED", "3"] for line in status.stdout.splitlines())
    assert logs.exit_code == 0, logs
    assert "[boom] about to fail" in logs.stdout.splitlines()


async def test_waiting_at_a_manual_gate_says_so_and_keeps_waiting_until_the_job_ends(cli: Cli) -> None:
    waiting, request_id = await _wait_at_gate(cli, "cli-gated", "go-ahead")
    try:
        assert waiting.stderr is not None
        await asyncio.sleep(0.5)
        assert waiting.returncode is None, "it stopped waiting at the gate"

        cancelled = await cli("cancel", str(request_id), "--reason", "not today")
        assert cancelled.exit_code == 0, cancelled

        async with asyncio.timeout(_COMMAND_TIMEOUT):
            rest = (await waiting.stderr.read()).decode()
            assert await waiting.wait() == 2, rest  # CANCELLED
        assert "CANCELLED after" in rest
    finally:
        if waiting.returncode is None:
            waiting.kill()
            await waiting.wait()


async def _wait_at_gate(cli: Cli, job_type: str, gate: str) -> tuple[asyncio.subprocess.Process, int]:
    """`submit JOB_TYPE --wait` in the background, returned once it says it waits at `gate`."""
    waiting = await cli.spawn("submit", job_type, "--wait")
    assert waiting.stdout is not None
    assert waiting.stderr is not None
    request_id = int((await waiting.stdout.readline()).split()[3])
    said = ""
    async with asyncio.timeout(_COMMAND_TIMEOUT):
        while f"waits at manual gate {gate!r}" not in said:
            line = await waiting.stderr.readline()
            assert line, f"the command ended before reaching the gate: {said}"
            said += line.decode()
    return waiting, request_id


@pytest.mark.parametrize(("verb", "outcome"), [("approve", 0), ("reject", 1)])
async def test_approve_and_reject_decide_the_gate_and_the_waiting_submit_exits_with_the_outcome(
    cli: Cli, system: tuple[ManagedProcess, Path], verb: str, outcome: int
) -> None:
    waiting, request_id = await _wait_at_gate(cli, "cli-strict-gate", "go-ahead")
    # another person decides (the submitter may not: separation of duties), with `--token`
    url = f"sqlite+aiosqlite:///{system[1] / 'formicary.db'}"
    approver = await mint_token(url, None, "operator", user="e2e-approver")
    try:
        decided = await cli(
            "--token", approver, verb, str(request_id), "go-ahead", "--comment", f"{verb} by the test"
        )
        if decided.exit_code == 1 and "not supported by this Queen" in decided.stderr:
            pytest.skip("this Queen does not serve ApprovalService yet")
        assert decided.exit_code == 0, decided
        past = {"approve": "approved", "reject": "rejected"}[verb]
        assert decided.stdout.startswith(f"{past} gate 'go-ahead' of job request {request_id}: ")
        async with asyncio.timeout(_COMMAND_TIMEOUT):
            assert await waiting.wait() == outcome  # 0 COMPLETED (approved), 1 FAILED (rejected: FATAL)
        again = await cli("--token", approver, verb, str(request_id), "go-ahead")
        assert again.exit_code == 1, again  # the gate is closed
    finally:
        if waiting.returncode is None:
            waiting.kill()
            await waiting.wait()


async def test_refusals_are_one_line_and_an_invalid_definition_lists_file_line_column(
    cli: Cli, tmp_path: Path
) -> None:
    invalid, missing, twice, bad_param = await asyncio.gather(
        cli("definitions", "upload", str(AS_PUBLISHED)),
        cli("status", "999999"),
        cli("restart", "999999", "--hard"),
        cli("submit", "cli-hello", "--param", "who"),
    )

    assert invalid.exit_code == 1
    (problem,) = invalid.stderr.splitlines()
    assert problem.startswith(f"{AS_PUBLISHED}:21:38: error: ")
    assert "(fix: quote the whole value" in problem
    for result in (missing, twice):
        assert result.exit_code == 1
        assert result.stderr.splitlines() == ["formicary: not found: job request 999999 does not exist"]
        assert "Traceback" not in result.stderr
    assert bad_param.exit_code == 2
    assert "is not NAME=VALUE" in bad_param.stderr


async def test_an_unreachable_queen_is_one_line_and_exit_3(tmp_path: Path) -> None:
    nowhere = Cli(f"127.0.0.1:{free_port()}", tmp_path)

    result = await nowhere("status", "1")

    assert result.exit_code == 3
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"formicary: cannot reach the Queen at {nowhere.address}: ")
