"""Artifact names (safe relative paths) and object keys (how they are built, what stores accept)."""

from __future__ import annotations

import pytest

from queen.artifacts import artifact_key, check_artifact_name, check_key, check_task_type
from queen.domain.errors import InvalidArgument

pytestmark = pytest.mark.unit

ID = "0b7f3c1e-8d2a-4c41-9d5e-2f1a3b4c5d6e"


@pytest.mark.parametrize(
    "name",
    ["report.html", "dist/app.whl", "a b (1).txt", "ünïcødé.txt", ".env", "a..b", "x" * 255, "-rf"],
)
def test_safe_names_are_accepted(name: str) -> None:
    assert check_artifact_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "required"),
        ("x" * 256, "longer than 255"),
        ("/etc/passwd", "relative"),
        ("../escape", "`..`"),
        ("dist/../../escape", "`..`"),
        ("./report", "`.`"),
        ("dist//app.whl", "empty"),
        ("dist/", "empty"),
        ("dist\\..\\escape", "'\\\\'"),
        ("bad\x00name", "'\\x00'"),
        ("two\nlines", "'\\n'"),
        ("rtl\u202eexe.txt", "'\\u202e'"),
        ("é" * 130 + "/x", "255 bytes"),
    ],
)
def test_unsafe_names_are_refused_with_the_reason(name: str, why: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_artifact_name(name)
    assert caught.value.field == "name"
    assert why in str(caught.value)


def test_task_types_follow_the_definition_language() -> None:
    assert check_task_type("") == ""
    assert check_task_type("build-2.linux_x64") == "build-2.linux_x64"
    for bad in ("../x", "a/b", "-lead", "x" * 101, "sp ace"):
        with pytest.raises(InvalidArgument):
            check_task_type(bad)


def test_keys_group_by_organisation_request_and_task() -> None:
    key = artifact_key(
        organization_id="org-1", job_request_id=42, task_type="compile", artifact_id=ID, name="dist/app.whl"
    )
    assert key == f"org-1/42/compile~{ID}/dist/app.whl"
    loose = artifact_key(organization_id="org-1", job_request_id=None, task_type="", artifact_id=ID, name="a")
    assert loose == f"org-1/0/_~{ID}/a"


@pytest.mark.parametrize(
    ("organization_id", "segment"),
    [("a/b", "a%2Fb"), ("..", "%2E%2E"), (".", "%2E"), ("", "_"), ("ü", "%C3%BC")],
)
def test_organisation_ids_cannot_shape_the_key(organization_id: str, segment: str) -> None:
    key = artifact_key(
        organization_id=organization_id, job_request_id=1, task_type="t", artifact_id=ID, name="n"
    )
    assert key.split("/")[0] == segment
    assert len(key.split("/")) == 4


@pytest.mark.parametrize(
    "key",
    ["", "/abs", "a//b", "a/", "a/../b", "./a", "a\\b", "a\x7fb", "k" * 1025, "a/" + "s" * 256],
)
def test_stores_refuse_malformed_keys(key: str) -> None:
    with pytest.raises(ValueError, match="object key"):
        check_key(key)
