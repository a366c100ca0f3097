"""A child process watched from the event loop without threads: its exit through a pidfd, its output
pipes through loop readers.

Why not `loop.subprocess_exec`: on Python 3.11 asyncio's default child watcher starts a thread per
child to wait for it, and the subprocess transport connects each pipe in a few more loop iterations;
for a short task that is about as much time as the shell itself takes (SHELL `true`: the Ant's run took
about twice a bare `bash -c true`). Here the child is started with `subprocess.Popen` (vfork + exec,
in the calling thread: it returns once the child has exec'd), its exit is a readable pidfd
(`os.pidfd_open`, Linux 5.3+) and its stdout/stderr are non-blocking pipes read in loop callbacks.
Where pidfds are not available (another OS, a seccomp filter) one thread per child waits for it
instead, as asyncio would.

Output is kept as chunks `(fd, bytes)`, with `(fd, None)` when that pipe closes, for one consumer
(`next_chunk`); reading pauses while too many chunks wait, so a chatty process cannot fill the Ant's
memory faster than its lines are handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["STDERR", "STDOUT", "ChildProcess"]

STDOUT = 1
STDERR = 2
_READ_SIZE = 64 * 1024
_PAUSE_AT = 256
_RESUME_AT = 16


class ChildProcess:
    """A running child in a new session (it leads its own process group, whose id is `pid`).

    `start()` raises OSError when the program cannot be started. The owner reads the output with
    `next_chunk()`, awaits `wait()` and finally calls `close()` (also when it is cancelled).
    """

    def __init__(self, popen: subprocess.Popen[bytes], pipes: dict[int, int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._popen = popen
        self._pipes = pipes  # our end of the child's fd 1 and 2 -> read fd; removed once closed
        self._reading = True
        self._chunks: deque[tuple[int, bytes | None]] = deque()
        self._chunk_ready: asyncio.Future[None] | None = None
        self._exited = self._loop.create_future()
        self._pidfd = -1
        for fd, read_fd in pipes.items():
            os.set_blocking(read_fd, False)
            self._loop.add_reader(read_fd, self._on_readable, fd)
        try:
            self._pidfd = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):  # no pidfd here: a thread waits for the child
            threading.Thread(target=self._wait_in_thread, name=f"wait-{popen.pid}", daemon=True).start()
        else:
            self._loop.add_reader(self._pidfd, self._on_pidfd)

    @classmethod
    def start(
        cls, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], executable: str | None = None
    ) -> ChildProcess:
        """Start `argv` with stdin from /dev/null and stdout/stderr piped to us, in a new session;
        `executable` is the program's path when known (else `argv[0]` is searched on env's PATH)."""
        pipes: dict[int, int] = {}
        child_ends: list[int] = []
        try:
            for fd in (STDOUT, STDERR):
                read_fd, write_fd = os.pipe()  # close-on-exec; Popen dup2s the write end onto fd 1 / 2
                pipes[fd] = read_fd
                child_ends.append(write_fd)
            popen = subprocess.Popen(
                list(argv),
                executable=executable,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=child_ends[0],
                stderr=child_ends[1],
                start_new_session=True,
            )
        except BaseException:
            for read_fd in pipes.values():
                os.close(read_fd)
            raise
        finally:
            for write_fd in child_ends:
                os.close(write_fd)
        return cls(popen, pipes)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the child was reaped (-N when killed by signal N); None before."""
        return self._popen.returncode if self._exited.done() else None

    async def wait(self) -> int:
        """Wait until the child exits (not until its pipes close: processes it left behind may hold
        them open) and return its exit status."""
        await asyncio.shield(self._exited)
        returncode = self._popen.returncode
        assert returncode is not None
        return returncode

    async def next_chunk(self) -> tuple[int, bytes | None]:
        """The next piece of output: (fd, data), or (fd, None) once pipe `fd` is closed (the last chunk
        of that pipe; after both are closed this waits for ever)."""
        while not self._chunks:
            self._chunk_ready = self._loop.create_future()
            try:
                await self._chunk_ready
            finally:
                self._chunk_ready = None
        chunk = self._chunks.popleft()
        if not self._reading and len(self._chunks) <= _RESUME_AT:
            self._set_reading(True)
        return chunk

    def close(self) -> None:
        """Stop watching: the pipes and the pidfd are closed (a child still running is not waited for)."""
        for read_fd in self._pipes.values():
            self._loop.remove_reader(read_fd)
            os.close(read_fd)
        self._pipes.clear()
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    # -- loop callbacks ------------------------------------------------------------------------------

    def _on_readable(self, fd: int) -> None:
        read_fd = self._pipes.get(fd)
        if read_fd is None:
            return
        try:
            data = os.read(read_fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # treated as the end of the pipe
        if data:
            self._push((fd, data))
            if self._reading and len(self._chunks) >= _PAUSE_AT:
                self._set_reading(False)
            return
        self._loop.remove_reader(read_fd)
        os.close(read_fd)
        del self._pipes[fd]
        self._push((fd, None))

    def _push(self, chunk: tuple[int, bytes | None]) -> None:
        self._chunks.append(chunk)
        if self._chunk_ready is not None and not self._chunk_ready.done():
            self._chunk_ready.set_result(None)

    def _set_reading(self, reading: bool) -> None:
        self._reading = reading
        for fd, read_fd in self._pipes.items():
            if reading:
                self._loop.add_reader(read_fd, self._on_readable, fd)
            else:
                self._loop.remove_reader(read_fd)

    def _on_pidfd(self) -> None:
        if self._popen.poll() is None:  # cannot happen for a readable pidfd; wait for the next wake-up
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self._set_exited()

    def _wait_in_thread(self) -> None:
        self._popen.wait()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._set_exited)

    def _set_exited(self) -> None:
        if not self._exited.done():
            self._exited.set_result(None)
