"""Which files of an attempt's directory a task's `artifacts.paths` name, and where a downloaded artifact
may be written: neither ever leaves the directory.

Path patterns (relative to the attempt's directory, `/`-separated):
- `*`, `?` and `[...]` match within one path segment (`fnmatch` rules, case-sensitive; `*` also matches
  names starting with a dot), a whole segment `**` matches any number of directories, zero included.
- A pattern naming a directory selects every regular file below it, each uploaded as its own artifact
  named by its relative path ("out/a.txt", "out/sub/b.txt"): downstream tasks get the same tree back,
  every file keeps its own digest and can be listed and downloaded alone. (A tar.gz per directory would
  hide its content from listings; a task that wants one archive creates it in its script.)
- An absolute pattern or one with a `..` segment is refused (the task's artifacts fail): it names
  something outside the directory, which is a mistake in the definition, not something to skip.
- Symbolic links are never followed while walking; a link that is itself selected is uploaded with its
  target's content when the target is a regular file inside the directory, and skipped with a warning
  otherwise (a link out of the directory, to a directory, or dangling). Sockets, pipes and devices are
  skipped with a warning. This keeps an artifact from carrying content from outside the directory by
  accident; it is no sandbox (a SHELL script runs with the Ant's own rights anyway).
- A pattern that selects no file is a warning, not a failure. A file selected by several patterns is
  uploaded once. At most MAX_FILES files are uploaded per attempt: beyond that the task's artifacts fail
  and the message says to archive them in the script.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from ant.artifacts import ArtifactDownloadError, ArtifactUploadError

__all__ = [
    "MAX_FILES",
    "ArtifactFile",
    "ArtifactSelection",
    "artifact_name_problem",
    "download_destination",
    "pattern_segments",
    "select_artifact_files",
]

MAX_FILES = 1000
"""Most files one attempt uploads: each is one UploadArtifact call and one row on the Queen."""

_MAGIC = re.compile(r"[*?\[]")
_RECURSIVE = "**"


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """One file to upload: `path` is what is read (a selected link's target), `name` the artifact's
    name (the relative path of what was selected), `size` its size when selected."""

    path: Path
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class ArtifactSelection:
    """The files the patterns selected, in name order, and what was noticed on the way."""

    files: tuple[ArtifactFile, ...]
    warnings: tuple[str, ...]


def pattern_segments(pattern: str) -> tuple[str, ...]:
    """The segments of a path pattern, `.` and empty ones dropped (() means the directory itself).

    ArtifactUploadError if the pattern is empty, absolute, or has a `..` segment.
    """
    if not pattern.strip():
        raise ArtifactUploadError("an artifacts path is empty", artifact=pattern)
    if pattern.startswith("/"):
        raise ArtifactUploadError(
            f"artifacts path {pattern!r} is absolute: paths are relative to the task's working directory",
            artifact=pattern,
        )
    segments = tuple(s for s in pattern.split("/") if s not in {"", "."})
    if ".." in segments:
        raise ArtifactUploadError(
            f"artifacts path {pattern!r} leaves the task's working directory (`..`)", artifact=pattern
        )
    collapsed: list[str] = []
    for segment in segments:  # `**/**` selects what `**` does, with far more walking
        if not (segment == _RECURSIVE and collapsed and collapsed[-1] == _RECURSIVE):
            collapsed.append(segment)
    return tuple(collapsed)


def select_artifact_files(
    patterns: Sequence[str], base: Path, *, max_files: int = MAX_FILES
) -> ArtifactSelection:
    """The regular files under `base` that `patterns` select (blocking: call it in a thread).

    ArtifactUploadError for a pattern that leaves `base` (checked for all patterns before any walking)
    and for more than `max_files` files.
    """
    parsed = [(pattern, pattern_segments(pattern)) for pattern in patterns]
    real_base = base.resolve()
    chosen: dict[str, ArtifactFile] = {}
    warnings: list[str] = []
    for pattern, segments in parsed:
        found = 0
        for relative in sorted(_matches(base, segments)):
            for item in _files_of(base, real_base, relative, warnings):
                found += 1
                if item.name not in chosen:
                    chosen[item.name] = item
                    if len(chosen) > max_files:
                        raise ArtifactUploadError(
                            f"artifacts paths select more than {max_files} files; archive them in the "
                            "script (e.g. `tar czf out.tar.gz out/`) and list the archive instead",
                            artifact=pattern,
                        )
        if not found:
            warnings.append(f"artifacts path {pattern!r} matched no files")
    return ArtifactSelection(tuple(chosen[name] for name in sorted(chosen)), tuple(warnings))


def artifact_name_problem(name: str) -> str | None:
    """Why `name` cannot be written as a relative path inside a directory, or None if it can.

    The same rules the Queen applies to names: not empty, not absolute, no empty, `.` or `..` segment,
    no backslash, no control or format characters.
    """
    if not name:
        return "it is empty"
    if name.startswith("/"):
        return "it is absolute"
    for char in name:
        if char == "\\" or unicodedata.category(char) in {"Cc", "Cf", "Cs", "Zl", "Zp"}:
            return f"it contains the character {char!r}"
    if any(segment in {"", ".", ".."} for segment in name.split("/")):
        return "it has an empty, `.` or `..` segment"
    return None


def download_destination(base: Path, name: str) -> Path:
    """Where the artifact `name` is written under `base`, its parent directories created (blocking).

    ArtifactDownloadError if the name is not a safe relative path, or if its directory cannot be
    created inside `base` (a file of the same name is in the way).
    """
    problem = artifact_name_problem(name)
    if problem is not None:
        raise ArtifactDownloadError(f"artifact name {name!r} is not a safe relative path: {problem}")
    destination = base.joinpath(*name.split("/"))
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise ArtifactDownloadError(
            f"cannot write artifact {name!r}: a file is in the way of its directory ({exc.filename})"
        ) from exc
    if not _inside(destination.parent.resolve(), base.resolve()):
        raise ArtifactDownloadError(f"artifact {name!r} would be written outside the working directory")
    if destination.is_dir() and not destination.is_symlink():
        raise ArtifactDownloadError(f"cannot write artifact {name!r}: a directory of that name exists")
    return destination


# -- walking ---------------------------------------------------------------------------------------------


def _matches(base: Path, segments: tuple[str, ...]) -> set[PurePosixPath]:
    """Relative paths of the entries (of any kind) the pattern matches; no symlink is walked through."""
    found: set[PurePosixPath] = set()

    def walk(relative: PurePosixPath, index: int) -> None:
        if index == len(segments):
            found.add(relative)
            return
        segment = segments[index]
        here = base / relative
        if segment == _RECURSIVE:
            walk(relative, index + 1)
            for child in _entries(here):
                if _is_real_directory(here / child):
                    walk(relative / child, index)
            return
        last = index == len(segments) - 1
        if _MAGIC.search(segment):
            candidates = [child for child in _entries(here) if fnmatchcase(child, segment)]
        else:
            candidates = [segment] if os.path.lexists(here / segment) else []
        for child in candidates:
            if last or _is_real_directory(here / child):
                walk(relative / child, index + 1)

    walk(PurePosixPath(), 0)
    return found


def _entries(directory: Path) -> list[str]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entry.name for entry in entries)
    except (NotADirectoryError, FileNotFoundError, PermissionError):
        return []


def _is_real_directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _files_of(
    base: Path, real_base: Path, relative: PurePosixPath, warnings: list[str]
) -> Iterator[ArtifactFile]:
    """The files an entry stands for: itself, a link's target, or everything below a directory."""
    path = base / relative
    name = relative.as_posix()
    try:
        info = os.lstat(path)
    except OSError as exc:
        warnings.append(f"artifact {name!r} skipped: {exc.strerror}")
        return
    if stat.S_ISDIR(info.st_mode):
        for root, directories, files in os.walk(path, followlinks=False):
            root_relative = PurePosixPath(Path(root).relative_to(base).as_posix())
            for child in sorted(files) + sorted(d for d in directories if (Path(root) / d).is_symlink()):
                yield from _files_of(base, real_base, root_relative / child, warnings)
            directories.sort()
        return
    if stat.S_ISREG(info.st_mode):
        yield ArtifactFile(path, name, info.st_size)
    elif stat.S_ISLNK(info.st_mode):
        target = path.resolve()
        if not _inside(target, real_base):
            warnings.append(f"artifact {name!r} skipped: it is a symbolic link out of the working directory")
        elif target.is_file():
            yield ArtifactFile(target, name, target.stat().st_size)
        elif target.is_dir():
            warnings.append(f"artifact {name!r} skipped: symbolic links to directories are not followed")
        else:
            warnings.append(f"artifact {name!r} skipped: it is a dangling symbolic link")
    else:
        warnings.append(f"artifact {name!r} skipped: not a regular file")


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents
