"""Pooled PostgreSQL connections: one that died while idle in the pool (a server restart, a proxy's idle
cut) is noticed by a ping before use and replaced; one in steady use is not pinged (a round trip per
transaction on the dispatch path)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from queen.store import Database, database
from tests.fixtures.databases import admin_conninfo

pytestmark = pytest.mark.integration


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Database]:
    db = Database(postgres_url)
    await db.start()
    try:
        yield db
    finally:
        await db.stop()


async def backend_pid(db: Database) -> int:
    async with db.transaction() as session:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


def terminate(postgres_url: str, pid: int) -> None:
    with psycopg.connect(admin_conninfo(postgres_url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_a_connection_that_died_while_idle_is_replaced_before_use(
    pg: Database, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed = await backend_pid(pg)
    terminate(postgres_url, killed)
    monkeypatch.setattr(database, "_PING_AFTER_IDLE", 0.0)  # idle "long enough" at once
    replaced = await backend_pid(pg)  # no error: the dead connection failed its ping and was dropped
    assert replaced != killed


async def test_without_the_ping_the_dead_connection_fails_the_transaction(
    pg: Database, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the ping is for (and that the test above can fail)."""
    killed = await backend_pid(pg)
    terminate(postgres_url, killed)
    monkeypatch.setattr(database, "_PING_AFTER_IDLE", 3600.0)
    with pytest.raises(DBAPIError):
        await backend_pid(pg)
    assert await backend_pid(pg) != killed  # the pool was refreshed after the failure


async def test_a_connection_in_steady_use_is_not_pinged(pg: Database) -> None:
    statements: list[str] = []
    event.listen(pg.engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    pings: list[str] = []
    real_ping = pg.engine.dialect.do_ping

    def counting_ping(connection: object) -> bool:
        pings.append("ping")
        return real_ping(connection)

    pg.engine.dialect.do_ping = counting_ping  # type: ignore[method-assign]
    for _ in range(5):
        await backend_pid(pg)
    assert pings == []
    assert statements.count("SELECT pg_backend_pid()") == 5
