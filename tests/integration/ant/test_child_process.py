"""A child process watched without threads: exit through a pidfd, output through loop readers, and the
thread fallback where pidfds are missing (ant.executors.child)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from ant.executors.child import STDERR, STDOUT, ChildProcess

pytestmark = pytest.mark.integration


async def output_of(child: ChildProcess) -> dict[int, bytes]:
    received = {STDOUT: b"", STDERR: b""}
    open_fds = {STDOUT, STDERR}
    while open_fds:
        fd, data = await child.next_chunk()
        if data is None:
            open_fds.discard(fd)
        else:
            received[fd] += data
    return received


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "thread"])
async def test_output_and_exit_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pidfd: bool) -> None:
    if not pidfd:

        def no_pidfd(pid: int) -> int:
            raise OSError("pidfd_open is not allowed here")

        monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    before = open_fds()
    child = ChildProcess.start(
        ["/bin/sh", "-c", 'echo "out in $PWD"; echo err >&2; exit 3'], cwd=tmp_path, env={"PATH": "/bin"}
    )
    try:
        received = await asyncio.wait_for(output_of(child), 10)
        assert await asyncio.wait_for(child.wait(), 10) == 3
        assert child.returncode == 3
    finally:
        child.close()
    assert received == {STDOUT: f"out in {tmp_path}\n".encode(), STDERR: b"err\n"}
    assert open_fds() == before  # pipes and pidfd closed


async def test_a_signal_is_a_negative_status_and_the_child_leads_its_own_group(tmp_path: Path) -> None:
    child = ChildProcess.start(["/bin/sh", "-c", "sleep 30"], cwd=tmp_path, env={"PATH": "/bin"})
    try:
        assert os.getpgid(child.pid) == child.pid
        assert child.returncode is None
        os.killpg(child.pid, signal.SIGKILL)
        assert await asyncio.wait_for(child.wait(), 10) == -signal.SIGKILL
    finally:
        child.close()


async def test_much_output_is_delivered_whole_while_reading_pauses_and_resumes(tmp_path: Path) -> None:
    # far more chunks than may wait at once: the reader pauses, the consumer catches up, it resumes
    script = "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done"
    child = ChildProcess.start(["/bin/sh", "-c", script], cwd=tmp_path, env={"PATH": "/bin"})
    try:
        await asyncio.sleep(0.2)  # let chunks pile up before reading
        received = await asyncio.wait_for(output_of(child), 30)
        assert await asyncio.wait_for(child.wait(), 10) == 0
    finally:
        child.close()
    assert received[STDOUT].decode().splitlines() == [f"line-{i}" for i in range(3000)]


async def test_a_program_that_cannot_start_raises_and_leaks_nothing(tmp_path: Path) -> None:
    before = open_fds()
    with pytest.raises(FileNotFoundError):
        ChildProcess.start(["/nonexistent/program"], cwd=tmp_path, env={})
    assert open_fds() == before
