"""The event log: a transaction's events are inserted together just before it commits, in the order
they were appended, visible to the same transaction's readers, and gone with a rollback."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from queen.store import Database, _fast, events
from tests.integration.store.conftest import HELLO_YAML, submit, upload

pytestmark = pytest.mark.integration


async def test_a_transactions_events_land_in_order_and_its_readers_see_them(db: Database) -> None:
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition)
    async with db.transaction() as session:
        before = await events.events_since(session, request.id)
        for number in range(3):
            await events.append_event(session, job_request_id=request.id, kind="note", message=f"m{number}")
        seen = await events.events_since(session, request.id, after_id=before[-1].id)
        assert [e.message for e in seen] == ["m0", "m1", "m2"]
        await events.append_event(session, job_request_id=request.id, kind="note", message="m3")
    async with db.transaction() as session:
        stored = await events.events_since(session, request.id, after_id=before[-1].id)
    assert [e.message for e in stored] == ["m0", "m1", "m2", "m3"]
    assert [e.id for e in stored] == sorted(e.id for e in stored)


async def test_a_transactions_events_are_one_statement_with_every_field_kept(db: Database) -> None:
    """SQLite runs them with one executemany; PostgreSQL's pipeline sends one multi-row INSERT."""
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition)
    async with db.transaction() as session:
        before = await events.events_since(session, request.id)
    statements = _fast.executed()
    async with db.transaction() as session:
        for number in range(70):  # more than one multi-row INSERT takes (64)
            await events.append_event(
                session,
                job_request_id=request.id,
                kind="note",
                task_type=f"t{number}" if number % 2 else None,
                message=f"m{number}",
                data={"n": number},
            )
    assert _fast.executed() - statements == (1 if db.dialect_name == "sqlite" else 2)
    async with db.transaction() as session:
        stored = await events.events_since(session, request.id, after_id=before[-1].id, limit=100)
    assert [(e.message, e.task_type, e.data) for e in stored] == [
        (f"m{n}", f"t{n}" if n % 2 else None, {"n": n}) for n in range(70)
    ]
    assert [e.id for e in stored] == sorted(e.id for e in stored)


async def test_a_rolled_back_transaction_leaves_no_event(db: Database) -> None:
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition)

    class Abandoned(Exception):
        pass

    async def abandoned() -> None:
        async with db.transaction() as session:
            await events.append_event(session, job_request_id=request.id, kind="note", message="lost")
            raise Abandoned

    with pytest.raises(Abandoned):
        await abandoned()
    async with db.transaction() as session:
        assert "lost" not in [e.message for e in await events.events_since(session, request.id)]


async def test_a_bad_event_fails_its_transaction_at_the_commit_and_nothing_is_kept(db: Database) -> None:
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition)

    async def with_an_orphan() -> None:
        async with db.transaction() as session:
            await events.append_event(session, job_request_id=request.id, kind="note", message="kept?")
            await events.append_event(session, job_request_id=999_999, kind="note", message="orphan")

    with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
        await with_an_orphan()
    async with db.transaction() as session:
        assert "kept?" not in [e.message for e in await events.events_since(session, request.id)]
