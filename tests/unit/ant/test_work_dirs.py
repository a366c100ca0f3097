"""Attempt directories: new and empty for each attempt, removed after, leftovers replaced
(ant.work_dirs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ant.work_dirs import WorkDirectories

pytestmark = pytest.mark.unit


async def test_a_fresh_directory_is_new_and_empty_and_removed_with_its_files(tmp_path: Path) -> None:
    root = tmp_path / "work"  # made with the first directory
    dirs = WorkDirectories(root)
    first = await dirs.fresh("te-1-0-c")
    assert first == root / "te-1-0-c"
    assert list(first.iterdir()) == []
    (first / "sub").mkdir()
    (first / "sub" / "output.txt").write_text("left behind")
    dirs.discard(first)
    await dirs.settled()
    assert not first.exists()
    empty = await dirs.fresh("te-2-0-c")
    dirs.discard(empty)
    await dirs.settled()
    assert list(root.iterdir()) == []
    dirs.discard(empty)  # already gone: nothing to do
    await dirs.settled()


async def test_a_leftover_of_the_same_name_is_replaced(tmp_path: Path) -> None:
    root = tmp_path / "work"
    stale = root / "te-1-0-c"
    stale.mkdir(parents=True)
    (stale / "old-file").touch()
    fresh = await WorkDirectories(root).fresh("te-1-0-c")
    assert fresh == stale
    assert list(fresh.iterdir()) == []


async def test_kept_directories_stay(tmp_path: Path) -> None:
    dirs = WorkDirectories(tmp_path, keep=True)
    kept = await dirs.fresh("te-1-0-c")
    (kept / "log").touch()
    dirs.discard(kept)
    await dirs.settled()
    assert (kept / "log").exists()


async def test_directories_are_removed_in_batches_off_the_event_loop(tmp_path: Path) -> None:
    dirs = WorkDirectories(tmp_path)
    made = [await dirs.fresh(f"te-{n}-0-c") for n in range(20)]
    (made[3] / "output.txt").write_text("left behind")
    for path in made:
        dirs.discard(path)
    assert all(path.exists() for path in made)  # nothing removed on the loop by `discard` itself
    await dirs.settled()
    assert not any(path.exists() for path in made)


@pytest.mark.parametrize("removing", [False, True], ids=["queued", "being-removed"])
async def test_the_same_attempt_again_gets_its_directory_although_the_old_one_was_discarded(
    tmp_path: Path, removing: bool
) -> None:
    dirs = WorkDirectories(tmp_path)
    old = await dirs.fresh("te-1-0-c")
    (old / "old-file").touch()
    dirs.discard(old)
    if removing:
        await asyncio.sleep(0)  # the reaper takes the batch to its worker thread
    again = await dirs.fresh("te-1-0-c")
    (again / "new-file").touch()
    await dirs.settled()
    assert sorted(p.name for p in again.iterdir()) == ["new-file"]  # not removed by the earlier discard
