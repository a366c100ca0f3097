"""Attempt directories: new and empty for each attempt, removed after, leftovers replaced
(ant.work_dirs)."""

from __future__ import annotations

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
    await dirs.remove(first)
    assert not first.exists()
    empty = await dirs.fresh("te-2-0-c")
    await dirs.remove(empty)
    assert list(root.iterdir()) == []
    await dirs.remove(empty)  # already gone: nothing to do


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
    await dirs.remove(kept)
    assert (kept / "log").exists()
