"""The attempts' working directories: a new, empty directory for each attempt, removed after it.

A directory is made on the event loop (one mkdir under the existing root; a thread hop costs more than
the call) and removed off it, in batches: `discard` queues it and one worker-thread call removes every
directory queued since the last one. On this ext4 (mounted with `discard`) an rmdir takes about 90 µs
of wall time, most of it waiting on the file system: made inline it held the event loop for that long
after every attempt (a fifth of a no-op Ant's busy time with 2000 attempts in flight), and a thread hop
per directory costs more CPU than the call. Only the rest of `fresh` goes to a thread too: a leftover of
the same name or missing parents. Directories are never reused: a process an attempt left behind could
still write into its one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

__all__ = ["WorkDirectories"]


class WorkDirectories:
    """Attempt directories under `root`; `keep` leaves used ones in place."""

    def __init__(self, root: Path, *, keep: bool = False) -> None:
        self._root = root
        self._keep = keep
        self._doomed: list[Path] = []  # discarded, not yet handed to the worker thread
        self._removing: frozenset[Path] = frozenset()  # the batch the worker thread is removing
        self._reaper: asyncio.Task[None] | None = None

    async def fresh(self, name: str) -> Path:
        """A new, empty directory `root/name` (a leftover of that name is replaced). Raises OSError."""
        path = self._root / name
        if path in self._removing:  # the same attempt again, its old directory on its way out: let it go
            await self.settled()
        if path in self._doomed:  # not removed yet: replaced below as a leftover, and no longer doomed
            self._doomed.remove(path)
        try:
            os.mkdir(path)
        except (FileExistsError, FileNotFoundError):
            await asyncio.to_thread(_replace_directory, path)
        return path

    def discard(self, path: Path) -> None:
        """Remove an attempt's directory and what is in it soon, off the event loop (unless `keep`);
        errors are ignored. `settled()` waits until it is gone."""
        if self._keep:
            return
        self._doomed.append(path)
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap(), name="work-dir-reaper")

    async def settled(self) -> None:
        """Until every directory discarded so far is removed."""
        while self._reaper is not None:
            await asyncio.shield(self._reaper)

    async def _reap(self) -> None:
        try:
            while self._doomed:
                batch, self._doomed = self._doomed, []
                self._removing = frozenset(batch)
                await asyncio.to_thread(_remove_all, batch)
        finally:
            self._removing = frozenset()
            self._reaper = None


def _remove_all(paths: list[Path]) -> None:
    for path in paths:
        try:
            os.rmdir(path)  # the usual case: the task left its directory empty
        except FileNotFoundError:
            pass
        except OSError:  # not empty (or not removable as it is): the slow way
            shutil.rmtree(path, ignore_errors=True)


def _replace_directory(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
