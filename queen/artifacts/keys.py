"""Artifact names and object keys: what a name may be, how a key is built, what every store accepts.

A name is a relative path ("report.html", "dist/app.whl") that is later written into a task's working
directory, so it must never climb out of it: no absolute paths, no `.`/`..` segments, no backslashes
(a separator on Windows Ants), no control characters. Keys are
`<organization>/<job request id or 0>/<task type or _>~<artifact id>/<name>`: unique by the artifact id,
and grouped so that an operator can find (or remove) a request's objects, or a task's, by prefix. The
task type and the artifact id share one segment because in the local store a segment is a directory,
and making one costs 20 to 430 µs of CPU on the ext4 of these machines (more where the parent's block
group is crowded), while every task's log is an object of its own. Keys made before 2026-11-27 have
them as two segments (`<task type or _>/<artifact id>`); a record keeps the key its object was stored
under, so those are read as they are.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from queen.domain.errors import InvalidArgument

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_NAME_CHARS",
    "artifact_key",
    "check_artifact_name",
    "check_key",
    "check_task_type",
]

MAX_NAME_CHARS = 255
# S3's limit for object keys.
MAX_KEY_BYTES = 1024
# Most filesystems' NAME_MAX: one segment becomes one directory entry in the local store.
_MAX_SEGMENT_BYTES = 255
# The job-definition language's rule for task types (queen.domain.definition_parser).
_TASK_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_NO_TASK = "_"


def _bad_character(text: str) -> str | None:
    if text.isprintable() and "\\" not in text:
        return None  # no control, format, surrogate or line/paragraph separator: the common case, in C
    for char in text:
        if char == "\\" or unicodedata.category(char) in {"Cc", "Cf", "Cs", "Zl", "Zp"}:
            return char
    return None


def _segment_problem(segment: str) -> str | None:
    if segment in {"", ".", ".."}:
        return f"empty, `.` or `..` path segment ({segment!r})"
    if len(segment.encode()) > _MAX_SEGMENT_BYTES:
        return f"a path segment longer than {_MAX_SEGMENT_BYTES} bytes"
    return None


def check_artifact_name(name: str) -> str:
    """`name` if it is a safe relative path of at most 255 characters; InvalidArgument (field "name")."""
    if not name:
        raise InvalidArgument("name is required", field="name")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidArgument(f"name is longer than {MAX_NAME_CHARS} characters", field="name")
    bad = _bad_character(name)
    if bad is not None:
        raise InvalidArgument(f"name contains the character {bad!r}", field="name")
    if name.startswith("/"):
        raise InvalidArgument("name must be a relative path, not start with `/`", field="name")
    for segment in name.split("/"):
        problem = _segment_problem(segment)
        if problem is not None:
            raise InvalidArgument(f"name {name!r} has {problem}", field="name")
    return name


def check_task_type(task_type: str) -> str:
    """`task_type` if empty or a task type the job-definition language allows; InvalidArgument otherwise."""
    if task_type and not _TASK_TYPE.fullmatch(task_type):
        raise InvalidArgument(
            "task_type must start with a letter or digit and hold only letters, digits, `-`, `_` and `.` "
            "(at most 100)",
            field="task_type",
        )
    return task_type


def _key_segment(value: str) -> str:
    """`value` as one key segment: percent-encoded except letters, digits and `-._~`; never `.`/`..`."""
    encoded = quote(value, safe="")
    if encoded in {"", ".", ".."}:
        return encoded.replace(".", "%2E") or _NO_TASK
    return encoded


def artifact_key(
    *, organization_id: str, job_request_id: int | None, task_type: str, artifact_id: str, name: str
) -> str:
    """The object key of an artifact (`name` already checked with `check_artifact_name`)."""
    key = "/".join(
        (
            _key_segment(organization_id),
            str(job_request_id or 0),
            f"{_key_segment(task_type) if task_type else _NO_TASK}~{_key_segment(artifact_id)}",
            name,
        )
    )
    return check_key(key)


def check_key(key: str) -> str:
    """`key` if every store can hold it; ValueError otherwise (keys are built by the Queen: a bad one is
    a bug). Relative, `/`-separated, no empty/`.`/`..` segments, no backslash or control characters, at
    most 1024 bytes and 255 bytes per segment."""
    if not key or len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"object key must be 1 to {MAX_KEY_BYTES} bytes: {key[:80]!r}")
    bad = _bad_character(key)
    if bad is not None:
        raise ValueError(f"object key contains the character {bad!r}: {key!r}")
    for segment in key.split("/"):
        problem = _segment_problem(segment)
        if problem is not None:
            raise ValueError(f"object key {key!r} has {problem}")
    return key
