"""A request's event log: append-only, read in id order (there is deliberately no update or delete).

Every state-changing function of the store appends its event in the same session, so the log is
complete by construction and committed (or rolled back) together with the change it describes.

Ordering: ids grow in insert order. On PostgreSQL two *concurrent* transactions writing events of the
same request may commit out of id order, so a reader tailing with `events_since(after_id=...)` right
at that moment can miss the lower id; readers that must not miss anything re-read a small window
below their last id, or re-read after the writers they wait for have committed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from queen.store._clock import utc_now
from queen.store._fast import append_rows, defer, flush_deferred
from queen.store._json import freeze_mapping, to_json_object
from queen.store.models import EventRow
from queen.store.records import EventRecord

__all__ = ["EventKind", "append_event", "events_since"]

_EVENTS: Table = EventRow.__table__  # type: ignore[assignment]
_EVENT_COLUMNS = (
    "job_request_id",
    "task_execution_id",
    "task_type",
    "kind",
    "from_state",
    "to_state",
    "message",
    "data",
    "created_at",
)
# a dispatch-path statement (see _fast): every state change appends one
_INSERT_EVENT = append_rows(_EVENTS, _EVENT_COLUMNS)


class EventKind(enum.StrEnum):
    """The kinds of events the store itself appends (other components may append kinds of their own)."""

    REQUEST_SUBMITTED = "request_submitted"
    JOB_STATE_CHANGED = "job_state_changed"
    REQUEST_UPDATED = "request_updated"
    WAIT_REASON_CHANGED = "wait_reason_changed"
    JOB_EXECUTION_CREATED = "job_execution_created"
    JOB_EXECUTION_STATE_CHANGED = "job_execution_state_changed"
    TASK_CREATED = "task_created"
    TASK_STATE_CHANGED = "task_state_changed"


async def append_event(
    session: AsyncSession,
    *,
    job_request_id: int,
    kind: str,
    task_execution_id: str | None = None,
    task_type: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    message: str = "",
    data: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Append one event to the request's log, in the caller's transaction.

    In a `Database.transaction()` the transaction's events are inserted together just before it commits
    (one multi-row statement: a task's three events cost one statement, one round trip on PostgreSQL);
    `events_since` in the same transaction sees them. Ids follow the order of the appends.
    """
    await defer(
        session,
        _INSERT_EVENT,
        {
            "job_request_id": job_request_id,
            "task_execution_id": task_execution_id,
            "task_type": task_type,
            "kind": str(kind),
            "from_state": None if from_state is None else str(from_state),
            "to_state": None if to_state is None else str(to_state),
            "message": message,
            "data": to_json_object(data or {}),
            "created_at": now or utc_now(),
        },
    )


async def events_since(
    session: AsyncSession, job_request_id: int, after_id: int = 0, limit: int = 100
) -> list[EventRecord]:
    """The request's events with id > after_id, oldest first, at most `limit`."""
    await flush_deferred(session)
    stmt = (
        select(EventRow)
        .where(EventRow.job_request_id == job_request_id, EventRow.id > after_id)
        .order_by(EventRow.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    rows = (await session.scalars(stmt)).all()
    return [_record(row) for row in rows]


def _record(row: EventRow) -> EventRecord:
    return EventRecord(
        id=row.id,
        job_request_id=row.job_request_id,
        task_execution_id=row.task_execution_id,
        task_type=row.task_type,
        kind=row.kind,
        from_state=row.from_state,
        to_state=row.to_state,
        message=row.message,
        data=freeze_mapping(row.data),
        created_at=row.created_at,
    )
