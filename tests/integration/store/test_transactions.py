"""`Database.transaction()` is one unit whatever its first statement is.

On PostgreSQL the store's connections are in autocommit mode and the store sends each transaction's BEGIN
itself, with the first statement (database._begin_with_first_statement): these tests hold it to being
a real transaction in every way it can start — a dispatch-path statement (`_fast.run`), deferred
statements only, a SQLAlchemy statement, a savepoint — and to nothing being visible to other
connections before the commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import Integer, bindparam, column, event, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from queen.store import Database, JobRequestRecord, _fast, _libpq, database, definitions, events, requests
from queen.store.models import JobRequestRow

from .conftest import HELLO_YAML, ORG, submit, upload

pytestmark = pytest.mark.integration


class _Undo(Exception):
    pass


async def _fast_statement(session: AsyncSession, request: JobRequestRecord) -> None:
    await requests.set_wait_reason(session, request.id, "first")  # `_fast.run`, then a deferred event


async def _deferred_only(session: AsyncSession, request: JobRequestRecord) -> None:
    await events.append_event(session, job_request_id=request.id, kind="note", message="first")


async def _sqlalchemy_statement(session: AsyncSession, request: JobRequestRecord) -> None:
    await session.execute(update(JobRequestRow).where(JobRequestRow.id == request.id).values(job_priority=7))


async def _savepoint(session: AsyncSession, request: JobRequestRecord) -> None:
    async with session.begin_nested():
        await _sqlalchemy_statement(session, request)


FIRST: dict[str, Callable[[AsyncSession, JobRequestRecord], Awaitable[None]]] = {
    "fast": _fast_statement,
    "deferred": _deferred_only,
    "sqlalchemy": _sqlalchemy_statement,
    "savepoint": _savepoint,
}


async def _state(db: Database, request: JobRequestRecord) -> tuple[str, int, bool, list[str]]:
    async with db.transaction() as session:
        stored = await requests.get_request(session, request.id)
        log = await events.events_since(session, request.id)
        definition = await definitions.get_definition(session, request.job_definition_id)
    return stored.wait_reason, stored.job_priority, definition.disabled, [e.message for e in log]


@pytest.mark.parametrize("first", sorted(FIRST))
async def test_a_transaction_is_one_unit_whatever_its_first_statement(db: Database, first: str) -> None:
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition)
    before = await _state(db, request)

    async def work(session: AsyncSession) -> None:
        await FIRST[first](session, request)
        await definitions.set_disabled(session, ORG, "hello", True)  # a SQLAlchemy statement after it
        await events.append_event(session, job_request_id=request.id, kind="note", message="last")

    async def undone() -> None:
        async with db.transaction() as session:
            await work(session)
            raise _Undo

    with pytest.raises(_Undo):
        await undone()
    assert await _state(db, request) == before

    async with db.transaction() as session:
        await work(session)
    reason, priority, disabled, log = await _state(db, request)
    assert disabled
    assert log[-1] == "last"
    assert (reason, priority, log[-2]) == {
        "fast": ("first", before[1], "first"),
        "deferred": ("", before[1], "first"),
        "sqlalchemy": ("", 7, before[3][-1]),
        "savepoint": ("", 7, before[3][-1]),
    }[first]


async def test_nothing_is_visible_to_another_connection_before_the_commit(
    db: Database, database_url: str
) -> None:
    if db.dialect_name != "postgresql":
        pytest.skip("SQLite's one writer: another transaction cannot even begin (BEGIN IMMEDIATE)")
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition)
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as other:

        async def seen() -> str:
            row = await (
                await other.execute("SELECT wait_reason FROM job_requests WHERE id = %s", [request.id])
            ).fetchone()
            assert row is not None
            return str(row[0])

        async with db.transaction() as session:
            await requests.set_wait_reason(
                session, request.id, "in flight"
            )  # the transaction's first statement
            assert await seen() == ""
        assert await seen() == "in flight"


async def test_a_cancelled_transaction_keeps_nothing_and_gives_its_connection_back(db: Database) -> None:
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition)
    inside = asyncio.Event()

    async def cancelled_midway() -> None:
        async with db.transaction() as session:
            await requests.set_wait_reason(session, request.id, "never committed")
            inside.set()
            await asyncio.Event().wait()  # cancelled here, with the statement sent

    task = asyncio.create_task(cancelled_midway())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    wait_reason, _, _, log = await _state(db, request)
    assert wait_reason == ""
    assert "never committed" not in log
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]  # a committed one gives it back too


async def test_the_commit_travels_with_the_deferred_statements(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the last flush's pipeline ends with the COMMIT (each guard fails on the server), so
    the transaction has ended when the session commits: that commit sends nothing."""
    if db.dialect_name != "postgresql":
        pytest.skip("SQLite commits on the connection: no round trip to save")
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition)
    status_at_commit: list[int] = []
    end = database._end

    def seen(session: Session, *, commit: bool) -> None:
        driver, _ = session.info["formicary_fast_driver"]
        status_at_commit.append(driver.pgconn.transaction_status)
        end(session, commit=commit)

    monkeypatch.setattr(database, "_end", seen)
    async with db.transaction() as session:
        await _sqlalchemy_statement(session, request)  # the BEGIN goes with this one
        await _deferred_only(session, request)
    async with db.transaction() as session:
        await _deferred_only(session, request)  # BEGIN, the statement and COMMIT: one round trip
    assert status_at_commit == [TransactionStatus.IDLE, TransactionStatus.IDLE]
    _, priority, _, log = await _state(db, request)
    assert priority == 7
    assert log.count("first") == 2


async def test_independent_statements_run_together_in_one_round_trip_on_postgresql(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = [column("v", Integer)]
    plus_one = _fast.FastStatement(
        lambda _dialect: select((bindparam("n", type_=Integer) + 1).label("v")), value
    )
    tenfold = _fast.FastStatement(
        lambda _dialect: select((bindparam("n", type_=Integer) * 10).label("v")), value
    )
    pipelines: list[int] = []
    run_pipeline = _libpq.run_pipeline

    async def counted(driver: Any, statements: list[_libpq.Statement], **options: Any) -> Any:
        pipelines.append(len(statements))
        return await run_pipeline(driver, statements, **options)

    monkeypatch.setattr(_libpq, "run_pipeline", counted)
    async with db.transaction() as session:
        rows = await _fast.run_together(
            session, [(plus_one, {"n": 1}), (tenfold, {"n": 2}), (plus_one, {"n": 3})]
        )
    assert rows == [[{"v": 2}], [{"v": 20}], [{"v": 4}]]
    assert pipelines == ([3] if db.dialect_name == "postgresql" else [])

    if db.dialect_name == "postgresql":  # SQLite divides by zero into NULL
        by_zero = _fast.FastStatement(
            lambda _dialect: select((bindparam("n", type_=Integer) / 0).label("v")), value
        )
        with pytest.raises(DBAPIError, match="division by zero"):
            async with db.transaction() as session:
                await _fast.run_together(session, [(plus_one, {"n": 1}), (by_zero, {"n": 1})])
        async with db.transaction() as session:  # the connection is usable again
            assert await _fast.run_together(session, [(tenfold, {"n": 5})]) == [[{"v": 50}]]


async def test_rows_changed_through_the_orm_are_flushed_before_the_commit(db: Database) -> None:
    """A row the session loaded and changed (flushed by the session's own commit, usually) goes before the
    pipeline's COMMIT, inside the transaction."""
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition)
    in_transaction: list[bool] = []

    def seen(connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("UPDATE job_requests") and db.dialect_name == "postgresql":
            status = connection.connection.driver_connection.pgconn.transaction_status
            in_transaction.append(status == TransactionStatus.INTRANS)

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with db.transaction() as session:
            row = await session.get(JobRequestRow, request.id)
            assert row is not None
            row.job_priority = 9  # dirty, not flushed
            await _deferred_only(session, request)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    _, priority, _, log = await _state(db, request)
    assert priority == 9
    assert "first" in log
    assert in_transaction == ([True] if db.dialect_name == "postgresql" else [])


async def test_fast_statements_hold_one_connection_that_the_orm_joins(db: Database) -> None:
    """A transaction that starts with `_fast` statements holds a pooled connection of its own, with no
    SQLAlchemy transaction set up; an ORM statement after them joins it (one connection: on SQLite the
    pool has only one) and sends no second BEGIN; the connection goes back to the pool at the end."""
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition)
    begun: list[Any] = []

    def began(connection: Any) -> None:
        begun.append(connection)

    event.listen(db.engine.sync_engine, "begin", began)
    try:
        async with db.transaction() as session:
            await _fast_statement(session, request)
            await _deferred_only(session, request)
        assert begun == []
        async with db.transaction() as session:
            await _fast_statement(session, request)
            await definitions.set_disabled(session, ORG, "hello", True)
            assert db.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        assert len(begun) == 1
    finally:
        event.remove(db.engine.sync_engine, "begin", began)
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    reason, _, disabled, log = await _state(db, request)
    assert (reason, disabled, log.count("first")) == ("first", True, 2)  # the wait reason's event, the note
