"""Which files `artifacts.paths` select (globs, directories, links) and where downloads may be written:
never outside the attempt's directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ant.artifact_paths import (
    artifact_name_problem,
    download_destination,
    pattern_segments,
    select_artifact_files,
)
from ant.artifacts import ArtifactDownloadError, ArtifactUploadError
from ant.executors import ErrorCode

pytestmark = pytest.mark.unit


def tree(base: Path, *files: str) -> Path:
    for name in files:
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return base


def names(patterns: list[str], base: Path) -> list[str]:
    return [f.name for f in select_artifact_files(patterns, base).files]


@pytest.mark.parametrize(
    ("pattern", "segments"),
    [
        ("out/report.txt", ("out", "report.txt")),
        ("./out//report.txt", ("out", "report.txt")),
        ("dist/*.whl", ("dist", "*.whl")),
        ("**/**/*.log", ("**", "*.log")),
        (".", ()),
        ("out/", ("out",)),
    ],
)
def test_patterns_are_normalised(pattern: str, segments: tuple[str, ...]) -> None:
    assert pattern_segments(pattern) == segments


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("/etc/passwd", "absolute"),
        ("../secret", "leaves"),
        ("out/../../secret", "leaves"),
        ("**/../x", "leaves"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_patterns_that_leave_the_directory_are_refused(tmp_path: Path, pattern: str, why: str) -> None:
    tree(tmp_path, "out/report.txt")
    with pytest.raises(ArtifactUploadError, match=why) as caught:
        # checked before any walking: the good pattern first does not get anything uploaded
        select_artifact_files(["out/report.txt", pattern], tmp_path)
    assert caught.value.error_code is ErrorCode.ARTIFACT_UPLOAD
    assert caught.value.artifact == pattern


def test_a_literal_path_a_glob_and_a_recursive_glob(tmp_path: Path) -> None:
    tree(
        tmp_path,
        "out/report.txt",
        "dist/app-1.whl",
        "dist/app-1.tar.gz",
        "dist/.hidden.whl",
        "logs/a.log",
        "logs/deep/er/b.log",
        "c.log",
    )
    assert names(["out/report.txt"], tmp_path) == ["out/report.txt"]
    assert names(["dist/*.whl"], tmp_path) == ["dist/.hidden.whl", "dist/app-1.whl"]
    assert names(["**/*.log"], tmp_path) == ["c.log", "logs/a.log", "logs/deep/er/b.log"]
    assert names(["logs/**/b.log", "dist/app-?.tar.gz"], tmp_path) == [
        "dist/app-1.tar.gz",
        "logs/deep/er/b.log",
    ]
    assert names(["[od]*/*.txt"], tmp_path) == ["out/report.txt"]


def test_a_directory_is_every_file_below_it_each_under_its_relative_path(tmp_path: Path) -> None:
    tree(tmp_path, "site/index.html", "site/css/main.css", "site/img/a/b.png", "other.txt")
    (tmp_path / "site" / "empty").mkdir()
    selection = select_artifact_files(["site"], tmp_path)
    assert [f.name for f in selection.files] == ["site/css/main.css", "site/img/a/b.png", "site/index.html"]
    assert selection.files[0].path == tmp_path / "site/css/main.css"
    assert selection.files[0].size == len("site/css/main.css")
    assert selection.warnings == ()
    assert names(["."], tmp_path) == [
        "other.txt",
        "site/css/main.css",
        "site/img/a/b.png",
        "site/index.html",
    ]


def test_a_pattern_matching_nothing_is_a_warning(tmp_path: Path) -> None:
    tree(tmp_path, "out/report.txt")
    (tmp_path / "empty-dir").mkdir()
    selection = select_artifact_files(["out/report.txt", "missing.txt", "*.zip", "empty-dir"], tmp_path)
    assert [f.name for f in selection.files] == ["out/report.txt"]
    assert selection.warnings == (
        "artifacts path 'missing.txt' matched no files",
        "artifacts path '*.zip' matched no files",
        "artifacts path 'empty-dir' matched no files",
    )


def test_a_file_selected_twice_is_uploaded_once(tmp_path: Path) -> None:
    tree(tmp_path, "out/report.txt")
    selection = select_artifact_files(["out/report.txt", "out", "**/*.txt"], tmp_path)
    assert [f.name for f in selection.files] == ["out/report.txt"]
    assert selection.warnings == ()


def test_links_out_of_the_directory_are_skipped_and_never_walked(tmp_path: Path) -> None:
    outside = tree(tmp_path / "outside", "secret.txt", "deep/secret.key")
    base = tree(tmp_path / "work", "out/report.txt")
    (base / "out" / "leak.txt").symlink_to(outside / "secret.txt")
    (base / "out" / "alias.txt").symlink_to(base / "out" / "report.txt")
    (base / "escape").symlink_to(outside, target_is_directory=True)
    (base / "out" / "loop").symlink_to(base, target_is_directory=True)
    (base / "dangling").symlink_to(base / "nowhere")

    selection = select_artifact_files(["out", "escape/*", "**/*.key", "dangling"], base)
    assert [(f.name, f.path) for f in selection.files] == [
        ("out/alias.txt", base / "out" / "report.txt"),  # a link inside: its target's content
        ("out/report.txt", base / "out" / "report.txt"),
    ]
    assert set(selection.warnings) == {
        "artifact 'out/leak.txt' skipped: it is a symbolic link out of the working directory",
        "artifact 'out/loop' skipped: symbolic links to directories are not followed",
        "artifact 'dangling' skipped: it is a dangling symbolic link",
        "artifacts path 'escape/*' matched no files",  # not walked through the link
        "artifacts path '**/*.key' matched no files",
        "artifacts path 'dangling' matched no files",
    }
    # naming the link itself: skipped, not followed
    escape = select_artifact_files(["escape"], base)
    assert escape.files == ()
    assert "artifact 'escape' skipped: it is a symbolic link out of the working directory" in escape.warnings


def test_special_files_are_skipped(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    selection = select_artifact_files(["pipe"], tmp_path)
    assert selection.files == ()
    assert selection.warnings[0] == "artifact 'pipe' skipped: not a regular file"


def test_too_many_files_fail_with_advice(tmp_path: Path) -> None:
    tree(tmp_path, *(f"many/{n}.txt" for n in range(6)))
    assert len(select_artifact_files(["many"], tmp_path, max_files=6).files) == 6
    with pytest.raises(ArtifactUploadError, match=r"more than 5 files; archive them"):
        select_artifact_files(["many"], tmp_path, max_files=5)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("report.txt", None),
        ("out/report.txt", None),
        ("a/.b/c..d", None),
        ("", "it is empty"),
        ("/etc/passwd", "it is absolute"),
        ("../x", "it has an empty, `.` or `..` segment"),
        ("a/../../x", "it has an empty, `.` or `..` segment"),
        ("a//b", "it has an empty, `.` or `..` segment"),
        ("./a", "it has an empty, `.` or `..` segment"),
        ("a\\..\\x", "it contains the character '\\\\'"),
        ("a\nb", "it contains the character '\\n'"),
        ("a\x00b", "it contains the character '\\x00'"),
    ],
)
def test_artifact_names(name: str, problem: str | None) -> None:
    assert artifact_name_problem(name) == problem


def test_downloads_go_under_the_directory_with_their_parents_created(tmp_path: Path) -> None:
    destination = download_destination(tmp_path, "out/deep/report.txt")
    assert destination == tmp_path / "out" / "deep" / "report.txt"
    assert destination.parent.is_dir()


@pytest.mark.parametrize("name", ["../evil", "/tmp/evil", "a/../../evil", ""])
def test_unsafe_download_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ArtifactDownloadError, match="not a safe relative path") as caught:
        download_destination(tmp_path / "work", name)
    assert caught.value.error_code is ErrorCode.ARTIFACT_DOWNLOAD
    assert list(tmp_path.iterdir()) == []


def test_a_download_cannot_be_written_through_a_link_or_over_a_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tree(tmp_path / "work", "file")
    (base / "link").symlink_to(outside, target_is_directory=True)
    (base / "dir").mkdir()
    with pytest.raises(ArtifactDownloadError, match="outside the working directory"):
        download_destination(base, "link/evil")
    with pytest.raises(ArtifactDownloadError, match="a file is in the way"):
        download_destination(base, "file/x")
    with pytest.raises(ArtifactDownloadError, match="a directory of that name exists"):
        download_destination(base, "dir")
    assert list(outside.iterdir()) == []
