"""`_libpq.run_pipeline`, the PostgreSQL side of the dispatch path's statements, on a real server: values
in and out as psycopg converts them, a statement shape prepared once per connection (and not remembered
when the server skipped its Parse), errors as psycopg raises them, and a cancellation that leaves the
connection usable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import Integer, bindparam, select, text

from queen.store import Database, _fast
from queen.store._libpq import Statement, numbered, run_pipeline
from tests.fixtures.databases import admin_conninfo, scratch_postgres_database

pytestmark = pytest.mark.integration


@pytest.fixture
async def conn(postgres_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    connection = await psycopg.AsyncConnection.connect(admin_conninfo(postgres_url), autocommit=True)
    try:
        await connection.execute("CREATE TEMPORARY TABLE t (id int PRIMARY KEY, body jsonb, at timestamptz)")
        yield connection
    finally:
        await connection.close()


async def prepared_names(connection: psycopg.AsyncConnection[Any]) -> list[str]:
    cursor = await connection.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE '\\_fq%%'")
    return sorted(row[0] for row in await cursor.fetchall())


def test_named_parameters_become_numbered_ones() -> None:
    assert numbered("SELECT %(a)s + %(b)s, %(a)s, '%%'") == (b"SELECT $1 + $2, $1, '%'", ("a", "b"))
    assert numbered("SELECT %(odd name:1)s") == (b"SELECT $1", ("odd name:1",))


async def test_a_transaction_in_one_pipeline_with_values_as_psycopg_converts_them(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    at = datetime(2026, 11, 27, 1, 2, 3, 456789, tzinfo=UTC)
    insert = "INSERT INTO t (id, body, at) VALUES (%(id)s, %(body)s, %(at)s) RETURNING id, body, at"

    results = await run_pipeline(
        conn,
        [
            Statement(insert, {"id": 1, "body": psycopg.types.json.Jsonb({"k": [1, "x"]}), "at": at}),
            Statement("UPDATE t SET at = NULL WHERE id = %(id)s", {"id": 2}),
        ],
        begin=True,
        commit=True,
    )

    assert results[0].rows == [(1, {"k": [1, "x"]}, at)]
    assert [name for name, _ in results[0].description or []] == ["id", "body", "at"]
    assert results[1].rows == []
    assert conn.info.transaction_status is psycopg.pq.TransactionStatus.IDLE  # committed
    cursor = await conn.execute("SELECT count(*) FROM t")
    assert await cursor.fetchone() == (1,)


async def test_a_statement_shape_is_prepared_once_per_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    select = Statement("SELECT %(n)s::int + 1 AS m", {"n": 1})

    first = await run_pipeline(conn, [select, Statement(select.sql, {"n": 41})])
    names = await prepared_names(conn)
    second = await run_pipeline(conn, [Statement(select.sql, {"n": 9})])

    assert [r.rows for r in first] == [[(2,)], [(42,)]]
    assert second[0].rows == [(10,)]
    assert len(names) == 1
    assert await prepared_names(conn) == names


async def test_an_error_is_psycopgs_and_the_statements_after_it_do_not_run(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    insert = "INSERT INTO t (id) VALUES (%(id)s)"
    await run_pipeline(conn, [Statement(insert, {"id": 1})])
    after = Statement("SELECT %(x)s::text AS never_prepared_before", {"x": "x"})

    with pytest.raises(psycopg.errors.UniqueViolation):
        await run_pipeline(conn, [Statement(insert, {"id": 1}), after, Statement(insert, {"id": 2})])

    cursor = await conn.execute("SELECT id FROM t ORDER BY id")
    assert await cursor.fetchall() == [(1,)]
    # the aborted pipeline skipped the Parse of `after`: it is prepared (and run) the next time
    assert (await run_pipeline(conn, [after]))[0].rows == [("x",)]


async def test_a_cancelled_pipeline_is_finished_and_the_connection_stays_usable(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    slow = asyncio.create_task(
        run_pipeline(conn, [Statement("SELECT pg_sleep(%(s)s)", {"s": 0.3})], begin=True, commit=True)
    )
    await asyncio.sleep(0.05)  # let the pipeline reach the server (the sleep is the server's)
    slow.cancel()

    with pytest.raises(asyncio.CancelledError):
        await slow

    assert not conn.closed
    assert conn.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
    assert (await run_pipeline(conn, [Statement("SELECT %(v)s::int", {"v": 7})]))[0].rows == [(7,)]


async def rolled_back(db: Database, pids: set[int]) -> None:
    async with db.transaction() as session:
        pids.add((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        raise RuntimeError("roll back")


async def test_a_rollback_keeps_the_prepared_statements_of_the_dispatch_path(postgres_url: str) -> None:
    # psycopg deallocates every prepared statement of a connection at a rollback once it has prepared
    # some of its own (after five executions of a statement): the Database turns its preparing off
    one = _fast.FastStatement(lambda _dialect: select(bindparam("n", type_=Integer) + 1))
    pids: set[int] = set()
    with scratch_postgres_database(postgres_url) as url:
        db = Database(url)
        await db.start()
        try:
            for _ in range(7):  # a SQLAlchemy statement often enough for psycopg to prepare it
                async with db.transaction() as session:
                    pids.add((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                    await _fast.run(session, one, {"n": 1})
            with pytest.raises(RuntimeError, match="roll back"):
                await rolled_back(db, pids)
            async with db.transaction() as session:
                await _fast.run(session, one, {"n": 2})
                pids.add((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        finally:
            await db.stop()
    assert len(pids) == 1  # one pooled connection all along: the statement prepared before the rollback
