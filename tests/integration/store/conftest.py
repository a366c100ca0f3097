"""Fixtures of the store tests: a migrated `Database` on each backend, definitions, and race helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from queen.domain.definition_parser import parse_job_definition
from queen.store import Database, DefinitionRecord, JobRequestRecord, definitions, requests
from tests.fixtures.waiting import assert_eventually

T = TypeVar("T")

ORG = "org-1"
USER = "user-1"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

HELLO_YAML = """\
job_type: hello
description: say hello
tasks:
- task_type: greet
  method: SHELL
  script:
    - echo hello
  on_completed: bye
- task_type: bye
  method: SHELL
  tags: [linux]
  script: [echo bye]
"""


def hello_yaml(job_type: str = "hello", greeting: str = "hello") -> str:
    return HELLO_YAML.replace("job_type: hello", f"job_type: {job_type}").replace(
        "echo hello", f"echo {greeting}"
    )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.start()
    try:
        yield database
    finally:
        await database.stop()


async def upload(
    db: Database, yaml: str, *, organization_id: str = ORG, now: datetime | None = None
) -> tuple[DefinitionRecord, bool]:
    async with db.transaction() as session:
        return await definitions.save_definition(
            session,
            organization_id=organization_id,
            user_id=USER,
            yaml=yaml,
            definition=parse_job_definition(yaml),
            now=now,
        )


async def submit(db: Database, definition: DefinitionRecord, **kwargs: Any) -> JobRequestRecord:
    async with db.transaction() as session:
        return await requests.create_request(session, definition=definition, user_id=USER, **kwargs)


def at(minutes: float) -> datetime:
    """T0 plus some minutes: fixed, distinct timestamps for ordering tests."""
    return T0 + timedelta(minutes=minutes)


async def race(
    db: Database,
    first: Callable[[AsyncSession], Awaitable[T]],
    second: Callable[[AsyncSession], Awaitable[T]],
) -> tuple[T, T | BaseException]:
    """Run `first` in a transaction, then `second` in another while the first is still open, then commit.

    The second really overlaps the first: on PostgreSQL the helper waits until the second is blocked on
    a lock the first holds (a row or unique-index entry) before committing the first; on SQLite the
    second waits in BEGIN IMMEDIATE. Returns first's result and second's result or exception.
    """

    async def run_second() -> T:
        async with db.transaction() as session:
            return await second(session)

    async with db.transaction() as session:
        first_result = await first(session)
        second_task = asyncio.create_task(run_second())
        if db.dialect_name == "postgresql":
            await assert_eventually(lambda: _someone_waits_for_a_lock(db), message="second blocked on a lock")
        else:
            await asyncio.sleep(0)  # let the second start; it then waits for SQLite's write lock
    second_result: T | BaseException
    try:
        second_result = await second_task
    except Exception as exc:
        second_result = exc
    return first_result, second_result


async def _someone_waits_for_a_lock(db: Database) -> bool:
    async with db.engine.connect() as connection:
        waiting = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)
