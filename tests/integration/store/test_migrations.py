"""The migrations build exactly the models' schema on an empty database, and run again as a no-op."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Index, Integer, MetaData, inspect

from queen.store import Database
from queen.store.database import MIGRATIONS_DIR, upgrade_to_head
from queen.store.models import Base

pytestmark = pytest.mark.integration

TABLES = {
    "job_definitions",
    "job_requests",
    "job_executions",
    "task_executions",
    "events",
    "artifacts",
    "approval_gates",
    "approval_votes",
    "approval_ledger",
    "api_tokens",
    "configs",
    "security_audit",
    "alembic_version",
}


def _schema_diff(connection: Connection, metadata: MetaData = Base.metadata) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _models_plus_a_column() -> MetaData:
    """The models with one more column and one more index, to show the comparison is not blind."""
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    events = metadata.tables["events"]
    events.append_column(Column("extra", Integer, nullable=True))
    Index("ix_events_kind", events.c.kind)
    return metadata


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _downgrade_to_base(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.downgrade(config, "base")


def _table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrated_schema_matches_models(db: Database) -> None:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    async with db.engine.connect() as connection:
        assert await connection.run_sync(_table_names) == TABLES
        assert await connection.run_sync(_current_revision) == head
        assert await connection.run_sync(_schema_diff) == []
        drift = await connection.run_sync(_schema_diff, _models_plus_a_column())
    assert sorted(change[0] for change in drift) == ["add_column", "add_index"]


async def test_second_start_is_a_no_op_and_downgrade_undoes_everything(db: Database) -> None:
    again = Database(db.url)
    await again.start()  # already at head: nothing to do, nothing fails
    await again.stop()
    async with db.engine.begin() as connection:
        await connection.run_sync(_downgrade_to_base)
        assert await connection.run_sync(_table_names) == {"alembic_version"}
        await connection.run_sync(upgrade_to_head)
        assert await connection.run_sync(_schema_diff) == []
