"""The Queen's durable storage: SQLAlchemy 2 (async) on SQLite or PostgreSQL, migrated by Alembic.

Use the repository modules by name (`definitions`, `requests`, `executions`, `events`): each function
takes the caller's `AsyncSession` first and never commits. They return the records of `records`.
"""

from queen.store import artifacts, definitions, events, executions, requests
from queen.store.database import Database, DuplicateKey
from queen.store.events import EventKind
from queen.store.records import (
    DefinitionRecord,
    EventRecord,
    JobExecutionRecord,
    JobRequestRecord,
    TaskExecutionRecord,
)
from queen.store.requests import DuplicateUserKey

__all__ = [
    "Database",
    "DefinitionRecord",
    "DuplicateKey",
    "DuplicateUserKey",
    "EventKind",
    "EventRecord",
    "JobExecutionRecord",
    "JobRequestRecord",
    "TaskExecutionRecord",
    "artifacts",
    "definitions",
    "events",
    "executions",
    "requests",
]
