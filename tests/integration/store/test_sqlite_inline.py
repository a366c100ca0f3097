"""SQLite on the event loop (queen.store._sqlite_inline): a write lock held by another process is waited
for without blocking the loop, up to the busy timeout, and then refused with a clear error."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from queen.store import Database

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'queen.db'}", sqlite_busy_timeout=0.5)
    await database.start()
    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE probe (n INTEGER)"))
    try:
        yield database
    finally:
        await database.stop()


def _other_process_locks(db: Database) -> sqlite3.Connection:
    """A second connection (as another process would be) holding the write lock."""
    other = sqlite3.connect(str(db.url.database), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_a_lock_held_elsewhere_is_waited_for_while_the_loop_runs(db: Database) -> None:
    other = _other_process_locks(db)
    ticks = 0

    async def write() -> None:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO probe VALUES (1)"))

    writer = asyncio.create_task(write())
    while ticks < 5:  # the loop keeps serving other tasks while the writer waits for the lock
        await asyncio.sleep(0.01)
        ticks += 1
    assert not writer.done()
    other.commit()
    other.close()
    await asyncio.wait_for(writer, 5)
    async with db.transaction() as session:
        assert (await session.execute(text("SELECT count(*) FROM probe"))).scalar_one() == 1


async def test_a_lock_held_past_the_busy_timeout_is_refused(db: Database) -> None:
    other = _other_process_locks(db)
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO probe VALUES (1)"))
    finally:
        other.rollback()
        other.close()
