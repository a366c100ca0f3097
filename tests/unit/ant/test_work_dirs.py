"""Attempt directories: new and empty for each attempt, removed after, leftovers replaced, spares made
after an attempt and never recycled (ant.work_dirs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ant.work_dirs import SPARE_PREFIX, WorkDirectories

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
    assert _attempt_dirs(root) == []
    await dirs.remove(empty)  # already gone: nothing to do
    dirs.close()
    assert list(root.iterdir()) == []


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


async def test_an_attempt_starts_in_a_spare_made_new_after_the_previous_one(tmp_path: Path) -> None:
    root = tmp_path / "work"
    dirs = WorkDirectories(root, spares=1)
    first = await dirs.fresh("te-1-0-c")
    (first / "output.txt").write_text("the first attempt's")
    await dirs.remove(first)
    assert not first.exists()  # removed, not recycled
    (spare,) = _spares(root)
    spare_inode = spare.stat().st_ino
    second = await dirs.fresh("te-2-0-c")
    assert second == root / "te-2-0-c"
    assert list(second.iterdir()) == []
    assert second.stat().st_ino == spare_inode  # the spare, renamed
    assert _spares(root) == []
    await dirs.remove(second)
    await dirs.remove(root / "te-3-0-c")  # any removal makes a spare while fewer than `spares` wait
    assert len(_spares(root)) == 1
    dirs.close()
    assert list(root.iterdir()) == []


async def test_a_leftover_with_files_is_replaced_even_when_a_spare_is_ready(tmp_path: Path) -> None:
    root = tmp_path / "work"
    dirs = WorkDirectories(root, spares=1)
    await dirs.remove(await dirs.fresh("te-1-0-c"))
    stale = root / "te-2-0-c"
    stale.mkdir()
    (stale / "old-file").touch()
    fresh = await dirs.fresh("te-2-0-c")
    assert list(fresh.iterdir()) == []
    assert len(_spares(root)) == 1  # kept for the next attempt


async def test_a_spare_someone_removed_is_not_missed(tmp_path: Path) -> None:
    root = tmp_path / "work"
    dirs = WorkDirectories(root, spares=1)
    await dirs.remove(await dirs.fresh("te-1-0-c"))
    for spare in _spares(root):
        spare.rmdir()
    fresh = await dirs.fresh("te-2-0-c")
    assert fresh.is_dir()


async def test_spares_an_earlier_ant_left_are_removed_at_the_first_attempt(tmp_path: Path) -> None:
    root = tmp_path / "work"
    (root / f"{SPARE_PREFIX}0badcafe-7").mkdir(parents=True)
    (root / "te-0-0-c").mkdir()  # an attempt's directory is not the Ant's to sweep
    await WorkDirectories(root, spares=0).fresh("te-1-0-c")
    assert sorted(p.name for p in root.iterdir()) == ["te-0-0-c", "te-1-0-c"]


def _spares(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith(SPARE_PREFIX))


def _attempt_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if not p.name.startswith(SPARE_PREFIX))
