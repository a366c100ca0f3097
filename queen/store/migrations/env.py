"""Alembic environment for the Queen's store.

At runtime `queen.store.database.upgrade_to_head` passes an open connection in
`config.attributes["connection"]`. From the command line (e.g. `alembic revision --autogenerate`), give
the database with `-x url=sqlite+aiosqlite:///path` (or set sqlalchemy.url); it is opened with the async
driver like the Queen does.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from queen.store.database import async_url
from queen.store.models import Base

target_metadata = Base.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_configure_and_run)
    finally:
        await engine.dispose()


def _run() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database: pass -x url=... or set sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=str(async_url(url)), target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_from_url(url))


_run()
