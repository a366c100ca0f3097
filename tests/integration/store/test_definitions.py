"""Definition versioning: no-op re-uploads, new versions, pinning, disable/enable, soft delete, listing."""

from __future__ import annotations

import pytest

from queen.domain.errors import FailedPrecondition, NotFound
from queen.domain.job_definition import TaskMethod
from queen.store import Database, definitions
from queen.store._fast import executed

from .conftest import HELLO_YAML, ORG, hello_yaml, submit, upload

pytestmark = pytest.mark.integration


async def test_identical_and_comment_only_uploads_are_no_ops(db: Database) -> None:
    first, created = await upload(db, HELLO_YAML)
    assert created
    assert (first.version, first.job_type, first.organization_id) == (1, "hello", ORG)
    assert first.methods == ("SHELL",)
    assert first.tags == ("linux",)
    assert len(first.digest) == 64

    same, created = await upload(db, HELLO_YAML)
    assert not created
    assert same == first

    commented = "# the greeting job\n" + HELLO_YAML.replace(
        "description: say hello", "description: 'say hello'  # quoted"
    )
    same, created = await upload(db, commented)
    assert not created
    assert same.id == first.id
    assert same.yaml == HELLO_YAML  # the stored version keeps its own text


async def test_a_changed_definition_is_the_next_version_and_requests_pin_theirs(db: Database) -> None:
    v1, _ = await upload(db, HELLO_YAML)
    request = await submit(db, v1)

    v2, created = await upload(db, hello_yaml(greeting="bonjour"))
    assert created
    assert v2.version == 2
    assert v2.id != v1.id

    async with db.transaction() as session:
        latest = await definitions.get_latest_definition(session, ORG, "hello")
        pinned = await definitions.get_definition(session, request.job_definition_id)
        by_version = await definitions.get_definition_version(session, ORG, "hello", 1)
        versions = await definitions.list_versions(session, ORG, "hello")
    assert latest == v2
    assert pinned == by_version == v1
    assert (request.job_version, request.job_definition_id) == (1, v1.id)
    assert [v.version for v in versions] == [2, 1]
    assert pinned.definition().task("greet") is not None
    assert pinned.definition().task("greet").script == ("echo hello",)  # type: ignore[union-attr]
    assert latest.definition().first_task.script == ("echo bonjour",)
    assert latest.definition().methods == {TaskMethod.SHELL}

    # going back to v1's content is a change from v2: version 3
    v3, created = await upload(db, HELLO_YAML)
    assert created
    assert v3.version == 3


async def test_disable_and_enable(db: Database) -> None:
    v1, _ = await upload(db, HELLO_YAML)
    async with db.transaction() as session:
        disabled = await definitions.set_disabled(session, ORG, "hello", True)
    assert disabled.disabled
    async with db.transaction() as session:
        with pytest.raises(FailedPrecondition, match="is disabled"):
            await definitions.get_latest_definition(session, ORG, "hello")
        assert (
            await definitions.get_latest_definition(session, ORG, "hello", include_disabled=True)
        ).id == v1.id
        assert (await definitions.get_definition(session, v1.id)).disabled

    # a new version of a disabled type stays disabled until someone enables it
    v2, created = await upload(db, hello_yaml(greeting="hi"))
    assert created
    assert v2.disabled

    async with db.transaction() as session:
        enabled = await definitions.set_disabled(session, ORG, "hello", False)
        latest = await definitions.get_latest_definition(session, ORG, "hello")
    assert not enabled.disabled
    assert latest.id == v2.id

    async with db.transaction() as session:
        with pytest.raises(NotFound):
            await definitions.set_disabled(session, ORG, "nope", True)


async def test_soft_delete_hides_the_type_but_not_pinned_versions(db: Database) -> None:
    v1, _ = await upload(db, HELLO_YAML)
    v2, _ = await upload(db, hello_yaml(greeting="hi"))
    other, _ = await upload(db, hello_yaml(job_type="other"))
    async with db.transaction() as session:
        assert await definitions.soft_delete(session, ORG, "hello") == 2
    async with db.transaction() as session:
        with pytest.raises(NotFound):
            await definitions.get_latest_definition(session, ORG, "hello", include_disabled=True)
        with pytest.raises(NotFound):
            await definitions.get_definition_version(session, ORG, "hello", 1)
        assert await definitions.list_versions(session, ORG, "hello") == []
        assert [d.job_type for d in await definitions.list_definitions(session, ORG)] == ["other"]
        pinned = await definitions.get_definition(session, v1.id)
        assert pinned.deleted_at is not None
        with pytest.raises(NotFound):
            await definitions.soft_delete(session, ORG, "hello")

    # uploading it again brings the type back, with a version number never used before
    v3, created = await upload(db, HELLO_YAML)
    assert created
    assert v3.version == 3
    assert v3.deleted_at is None
    async with db.transaction() as session:
        assert [d.version for d in await definitions.list_versions(session, ORG, "hello")] == [3]
    assert other.version == 1
    assert v2.version == 2


async def test_list_definitions_pages_latest_versions_of_one_organization(db: Database) -> None:
    for job_type in ("c-job", "a-job", "b-job"):
        await upload(db, hello_yaml(job_type=job_type))
    await upload(db, hello_yaml(job_type="b-job", greeting="again"))
    await upload(db, hello_yaml(job_type="z-job"), organization_id="org-2")

    async with db.transaction() as session:
        first_page = await definitions.list_definitions(session, ORG, limit=2, offset=0)
        second_page = await definitions.list_definitions(session, ORG, limit=2, offset=2)
        everything = await definitions.list_definitions(session, ORG)
        other_org = await definitions.list_definitions(session, "org-2")
        with pytest.raises(NotFound):
            await definitions.get_latest_definition(session, "org-2", "a-job")
        with pytest.raises(NotFound):
            await definitions.get_definition(session, "00000000-0000-0000-0000-000000000000")
    assert [(d.job_type, d.version) for d in first_page] == [("a-job", 1), ("b-job", 2)]
    assert [(d.job_type, d.version) for d in second_page] == [("c-job", 1)]
    assert len(everything) == 3
    assert [d.job_type for d in other_org] == ["z-job"]


async def test_the_same_type_in_two_organizations_is_versioned_separately(db: Database) -> None:
    mine, _ = await upload(db, HELLO_YAML)
    theirs, created = await upload(db, HELLO_YAML, organization_id="org-2")
    assert created
    assert (mine.version, theirs.version) == (1, 1)
    assert mine.id != theirs.id


async def test_a_pinned_version_is_read_once_and_its_content_kept(db: Database) -> None:
    first, _ = await upload(db, HELLO_YAML)
    async with db.transaction() as session:
        with pytest.raises(NotFound):
            await definitions.pinned_definition(session, "no-such-definition")
        read = await definitions.pinned_definition(session, first.id)
        before = executed()
        again = await definitions.pinned_definition(session, first.id)
        assert executed() == before  # no statement: the version's content cannot have changed
        await definitions.set_disabled(session, ORG, "hello", True)
        current = await definitions.get_definition(session, first.id)
    assert read == first
    assert again is read
    assert (current.yaml, current.digest, current.disabled) == (first.yaml, first.digest, True)
