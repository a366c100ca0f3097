"""Job requests: submission (de-duplicated by `user_key`), guarded state changes, the scheduler's queries.

Every state change is one guarded UPDATE (see `transition_request`) plus its event, in the caller's
transaction. Ids are integers, as in Formicary.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, TypedDict, Unpack

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ClauseElement, ColumnElement

from queen.domain.errors import AlreadyExists, InvalidArgument, NotFound
from queen.domain.states import JobState, check_job_transition
from queen.store._clock import utc_now
from queen.store._fast import FastStatement, insert_if_absent, returning_columns, run, run_together
from queen.store._guarded import guarded_update
from queen.store._json import freeze_mapping, to_json_value
from queen.store.events import EventKind, append_event
from queen.store.models import JobRequestRow
from queen.store.records import DefinitionRecord, JobRequestRecord
from sdk.telemetry import new_span_id, new_trace_id

__all__ = [
    "ACTIVE_STATES",
    "DueWork",
    "DuplicateUserKey",
    "RequestChanges",
    "count_active_by_type",
    "create_request",
    "due_work",
    "get_request",
    "get_request_by_user_key",
    "list_requests",
    "non_terminal_requests",
    "set_wait_reason",
    "transition_request",
    "update_request",
]

# Requests holding a concurrency slot of their job type (JobState.is_active).
ACTIVE_STATES: frozenset[JobState] = frozenset(state for state in JobState if state.is_active)
_NON_TERMINAL_STATES = frozenset(state for state in JobState if not state.is_terminal)
_ENTITY = "job request"


class DuplicateUserKey(AlreadyExists):
    """A request with this `user_key` already exists in the organization; `existing_id` is its id."""

    def __init__(self, user_key: str, existing_id: int) -> None:
        super().__init__(f"a job request with user_key {user_key!r} already exists: {existing_id}")
        self.user_key = user_key
        self.existing_id = existing_id


class RequestChanges(TypedDict, total=False):
    """Columns a transition may set along with the state (anything not given is left as it is)."""

    error_code: str
    error_message: str
    wait_reason: str
    job_execution_id: str | None
    scheduled_at: datetime | None
    paused_until: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    retried: int
    schedule_attempts: int
    restart_mode: str


async def create_request(
    session: AsyncSession,
    *,
    definition: DefinitionRecord,
    user_id: str,
    organization_id: str | None = None,
    params: Mapping[str, str] | None = None,
    job_priority: int = 0,
    job_group: str = "",
    user_key: str | None = None,
    parent_id: int | None = None,
    scheduled_at: datetime | None = None,
    cron_triggered: bool = False,
    trace_id: str = "",
    root_span_id: str = "",
    now: datetime | None = None,
) -> JobRequestRecord:
    """Submit a PENDING request pinned to `definition` (that exact version) and log `request_submitted`.

    `organization_id` defaults to the definition's. A non-empty `user_key` already used in the
    organization raises `DuplicateUserKey` (an `AlreadyExists`) carrying the existing request's id:
    found by a SELECT first, and by the unique index when two submissions race.
    """
    now = now or utc_now()
    organization_id = definition.organization_id if organization_id is None else organization_id
    user_key = user_key or None
    stored_params = _check_params(params or {})
    if user_key is not None:
        existing = await _id_by_user_key(session, organization_id, user_key)
        if existing is not None:
            raise DuplicateUserKey(user_key, existing)
    values: dict[str, Any] = {
        "parent_id": parent_id,
        "user_key": user_key,
        "job_definition_id": definition.id,
        "job_type": definition.job_type,
        "job_version": definition.version,
        "job_state": JobState.PENDING,
        "job_priority": job_priority,
        "job_group": job_group,
        "organization_id": organization_id,
        "user_id": user_id,
        "params": stored_params,
        "scheduled_at": scheduled_at,
        "cron_triggered": cron_triggered,
        "retried": 0,
        "schedule_attempts": 0,
        "wait_reason": "",
        "error_code": "",
        "error_message": "",
        "job_execution_id": None,
        # the request's trace is drawn here, once: every Queen that ever runs it continues this one
        "trace_id": trace_id or new_trace_id(),
        "root_span_id": root_span_id or new_span_id(),
        "paused_until": None,
        "restart_mode": "",
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "ended_at": None,
    }
    # One statement: a concurrent submission that won the user_key makes it insert nothing (no savepoint).
    inserted = await run(session, _INSERT_REQUEST, values)
    if not inserted:
        existing = await _id_by_user_key(session, organization_id, user_key) if user_key else None
        if existing is not None:
            raise DuplicateUserKey(user_key or "", existing)
        raise AlreadyExists("the job request conflicts with an existing one")
    row = SimpleNamespace(id=int(inserted[0]["id"]), **values)
    await append_event(
        session,
        job_request_id=row.id,
        kind=EventKind.REQUEST_SUBMITTED,
        to_state=JobState.PENDING,
        data={
            "job_type": row.job_type,
            "job_version": row.job_version,
            "job_definition_id": row.job_definition_id,
            "user_id": user_id,
            "user_key": user_key,
            "job_priority": job_priority,
            "scheduled_at": scheduled_at,
            "parent_id": parent_id,
            "cron_triggered": cron_triggered,
        },
        now=now,
    )
    return _record(row)


async def get_request(
    session: AsyncSession, request_id: int, *, organization_id: str | None = None
) -> JobRequestRecord:
    """The request; NotFound if it does not exist or (when given) belongs to another organization."""
    rows = await run(session, _GET_REQUEST, {"w_id": request_id})
    if not rows or (organization_id is not None and rows[0]["organization_id"] != organization_id):
        raise NotFound(f"job request {request_id} does not exist")
    return _record(SimpleNamespace(**rows[0]))


async def get_request_by_user_key(
    session: AsyncSession, organization_id: str, user_key: str
) -> JobRequestRecord:
    stmt = (
        select(JobRequestRow)
        .where(JobRequestRow.organization_id == organization_id, JobRequestRow.user_key == user_key)
        .execution_options(populate_existing=True)
    )
    row = (await session.scalars(stmt)).one_or_none()
    if row is None:
        raise NotFound(f"no job request with user_key {user_key!r}")
    return _record(row)


async def list_requests(
    session: AsyncSession,
    organization_id: str,
    *,
    job_type: str | None = None,
    states: Collection[JobState] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[JobRequestRecord], int]:
    """A page of the organization's requests, newest first, and the total matching the filters."""
    conditions: list[Any] = [JobRequestRow.organization_id == organization_id]
    if job_type is not None:
        conditions.append(JobRequestRow.job_type == job_type)
    if states is not None:
        conditions.append(JobRequestRow.job_state.in_(list(states)))
    total = await session.scalar(select(func.count()).select_from(JobRequestRow).where(*conditions))
    stmt = (
        select(JobRequestRow)
        .where(*conditions)
        .order_by(JobRequestRow.id.desc())
        .limit(limit)
        .offset(offset)
        .execution_options(populate_existing=True)
    )
    rows = (await session.scalars(stmt)).all()
    return [_record(row) for row in rows], int(total or 0)


async def transition_request(
    session: AsyncSession,
    request_id: int,
    expected: JobState,
    target: JobState,
    *,
    message: str = "",
    now: datetime | None = None,
    through: JobState | None = None,
    known: JobRequestRecord | None = None,
    **changes: Unpack[RequestChanges],
) -> JobRequestRecord:
    """Move the request from `expected` to `target`, setting `changes`, and log `job_state_changed`.

    Raises InvalidTransition before touching the database if the table forbids expected → target, and
    after the guarded UPDATE if the request is no longer in `expected` (a lost race); NotFound if it
    does not exist. `message` (default: the error message, if any) goes to the event.

    `through`: a state passed on the way in the same transaction (READY → STARTED → EXECUTING when a
    supervisor starts a job): one UPDATE, both transitions logged (`changes` with the first).

    `known`: the caller holds the request's row as it is, every column it does not change included
    (read in this transaction, as a supervisor starting its job does; or a running request, which
    nobody but its supervisor writes): the UPDATE is left for the end of the transaction with its
    guard, and `known` with the changes is returned.
    """
    steps = [(expected, target)] if through is None else [(expected, through), (through, target)]
    for source, destination in steps:
        check_job_transition(source, destination)
    now = now or utc_now()
    row = await guarded_update(
        session,
        JobRequestRow,
        entity=_ENTITY,
        row_id=request_id,
        state_column=JobRequestRow.job_state,
        expected=expected,
        target=target,
        values={**changes, "updated_at": now},
        known=known,
    )
    data = {key: to_json_value(value) for key, value in changes.items()}
    for number, (source, destination) in enumerate(steps):
        await append_event(
            session,
            job_request_id=request_id,
            kind=EventKind.JOB_STATE_CHANGED,
            from_state=source,
            to_state=destination,
            message=(message or changes.get("error_message", "")) if number == 0 else "",
            data=data if number == 0 else {},
            now=now,
        )
    return _record(row)


def _set_wait_reason(_dialect: Dialect) -> ClauseElement:
    table: Table = JobRequestRow.__table__  # type: ignore[assignment]
    return (
        update(table)
        .where(
            table.c.id == bindparam("w_id"),
            table.c.wait_reason != bindparam("wait_reason"),
            # a pass that read the request before it ended must not write a stale reason after it
            or_(
                *(
                    table.c.job_state == bindparam(f"s_{index}", state, type_=table.c.job_state.type)
                    for index, state in enumerate(sorted(_NON_TERMINAL_STATES))
                )
            ),
        )
        .values(wait_reason=bindparam("wait_reason"), updated_at=bindparam("updated_at"))
        .returning(table.c.id)
    )


_REQUESTS: Table = JobRequestRow.__table__  # type: ignore[assignment]
_GET_REQUEST = FastStatement(
    lambda _dialect: select(*_REQUESTS.c).where(_REQUESTS.c.id == bindparam("w_id")),
    returning_columns(_REQUESTS),
)


def _in_states(column: Any, states: Collection[JobState], name: str) -> ColumnElement[bool]:
    """`column IN (states)` with the states bound by the statement itself (a fast statement has no
    expanding parameters)."""
    return or_(
        *(
            column == bindparam(f"{name}_{index}", state, type_=column.type)
            for index, state in enumerate(sorted(states))
        )
    )


# the scheduler's reads, once per pass (see _fast)
_PENDING = FastStatement(
    lambda _dialect: (
        select(*_REQUESTS.c)
        .where(
            _in_states(_REQUESTS.c.job_state, (JobState.PENDING,), "pending"),
            or_(_REQUESTS.c.scheduled_at.is_(None), _REQUESTS.c.scheduled_at <= bindparam("now")),
        )
        .order_by(_REQUESTS.c.job_priority.desc(), _REQUESTS.c.created_at, _REQUESTS.c.id)
        .limit(bindparam("limit"))
    ),
    returning_columns(_REQUESTS),
)
_ACTIVE_COUNT = func.count().label("count")
_ACTIVE_COUNTS = FastStatement(
    lambda _dialect: (
        select(_REQUESTS.c.organization_id, _REQUESTS.c.job_type, _ACTIVE_COUNT)
        .where(_in_states(_REQUESTS.c.job_state, ACTIVE_STATES, "active"))
        .group_by(_REQUESTS.c.organization_id, _REQUESTS.c.job_type)
    ),
    (_REQUESTS.c.organization_id, _REQUESTS.c.job_type, _ACTIVE_COUNT),
)
_NEXT_AT = func.min(_REQUESTS.c.scheduled_at).label("next_at")
_NEXT_SCHEDULED = FastStatement(
    lambda _dialect: select(_NEXT_AT).where(
        _in_states(_REQUESTS.c.job_state, (JobState.PENDING,), "pending"),
        _REQUESTS.c.scheduled_at > bindparam("now"),
    ),
    (_NEXT_AT,),
)
_DUE_PAUSED = FastStatement(
    lambda _dialect: (
        select(*_REQUESTS.c)
        .where(
            _in_states(_REQUESTS.c.job_state, (JobState.PAUSED,), "paused"),
            _REQUESTS.c.paused_until.is_not(None),
            _REQUESTS.c.paused_until <= bindparam("now"),
        )
        .order_by(_REQUESTS.c.paused_until, _REQUESTS.c.id)
    ),
    returning_columns(_REQUESTS),
)
_REQUEST_INSERTED = (
    "parent_id",
    "user_key",
    "job_definition_id",
    "job_type",
    "job_version",
    "job_state",
    "job_priority",
    "job_group",
    "organization_id",
    "user_id",
    "params",
    "scheduled_at",
    "cron_triggered",
    "retried",
    "schedule_attempts",
    "wait_reason",
    "error_code",
    "error_message",
    "job_execution_id",
    "trace_id",
    "root_span_id",
    "paused_until",
    "restart_mode",
    "created_at",
    "updated_at",
    "started_at",
    "ended_at",
)


# the submission's insert (see _fast)
_INSERT_REQUEST = insert_if_absent(_REQUESTS, _REQUEST_INSERTED)
# a dispatch-path statement (see _fast): a task waiting for an Ant says why, and stops saying it
_SET_WAIT_REASON = FastStatement(_set_wait_reason, (JobRequestRow.__table__.c["id"],))


async def set_wait_reason(
    session: AsyncSession, request_id: int, reason: str, *, now: datetime | None = None
) -> bool:
    """Record why the request is still waiting ("" when it no longer waits); not a state change.

    Writes (and logs `wait_reason_changed`) only when the reason differs, so a scheduler may call it
    on every pass. Returns whether it changed; NotFound if the request does not exist.
    """
    now = now or utc_now()
    changed = await run(
        session, _SET_WAIT_REASON, {"w_id": request_id, "wait_reason": reason, "updated_at": now}
    )
    if not changed:
        exists = await session.scalar(select(JobRequestRow.id).where(JobRequestRow.id == request_id))
        if exists is None:
            raise NotFound(f"job request {request_id} does not exist")
        return False
    await append_event(
        session, job_request_id=request_id, kind=EventKind.WAIT_REASON_CHANGED, message=reason, now=now
    )
    return True


async def count_active_by_type(session: AsyncSession, organization_id: str | None = None) -> dict[str, int]:
    """How many requests of each job type hold a concurrency slot (READY, STARTED, EXECUTING,
    MANUAL_APPROVAL_REQUIRED, PAUSED); types with none are absent. All organizations unless one is given."""
    stmt = (
        select(JobRequestRow.job_type, func.count())
        .where(JobRequestRow.job_state.in_(sorted(ACTIVE_STATES)))
        .group_by(JobRequestRow.job_type)
    )
    if organization_id is not None:
        stmt = stmt.where(JobRequestRow.organization_id == organization_id)
    return {job_type: int(count) for job_type, count in (await session.execute(stmt)).all()}


@dataclass(frozen=True, slots=True)
class DueWork:
    """What one scheduler pass reads (`due_work`)."""

    # PAUSED requests whose `paused_until` has passed (a PAUSE_JOB with `pause_time`), oldest first
    paused: list[JobRequestRecord]
    # PENDING requests that are due (no schedule time, or at/before `now`): highest priority first, then
    # oldest, then lowest id; at most `limit`
    pending: list[JobRequestRecord]
    # requests holding a concurrency slot, per (organization_id, job_type); pairs with none are absent
    active: dict[tuple[str, str], int]
    # the earliest future `scheduled_at` among PENDING requests (when the scheduler must look again)
    next_due: datetime | None


async def due_work(session: AsyncSession, now: datetime, limit: int = 100) -> DueWork:
    """What a scheduler pass reads (see `DueWork`): four independent reads, in one round trip on
    PostgreSQL."""
    paused, pending, active, next_at = await run_together(
        session,
        [
            (_DUE_PAUSED, {"now": now}),
            (_PENDING, {"now": now, "limit": limit}),
            (_ACTIVE_COUNTS, {}),
            (_NEXT_SCHEDULED, {"now": now}),
        ],
    )
    return DueWork(
        paused=[_record(SimpleNamespace(**row)) for row in paused],
        pending=[_record(SimpleNamespace(**row)) for row in pending],
        active={(row["organization_id"], row["job_type"]): int(row["count"]) for row in active},
        next_due=next_at[0]["next_at"] if next_at else None,
    )


async def update_request(
    session: AsyncSession,
    request_id: int,
    expected: JobState,
    *,
    message: str = "",
    now: datetime | None = None,
    **changes: Unpack[RequestChanges],
) -> JobRequestRecord:
    """Change columns of a request that must still be in `expected`, without a state change (e.g. a job
    retry pointing a running request at its new execution); logs `request_updated`."""
    now = now or utc_now()
    row = await guarded_update(
        session,
        JobRequestRow,
        entity=_ENTITY,
        row_id=request_id,
        state_column=JobRequestRow.job_state,
        expected=expected,
        target=expected,
        values={**changes, "updated_at": now},
    )
    await append_event(
        session,
        job_request_id=request_id,
        kind=EventKind.REQUEST_UPDATED,
        message=message,
        data={key: to_json_value(value) for key, value in changes.items()},
        now=now,
    )
    return _record(row)


async def non_terminal_requests(session: AsyncSession) -> list[JobRequestRecord]:
    """Every request not yet COMPLETED, FAILED or CANCELLED, by id (what a restarted Queen resumes)."""
    stmt = (
        select(JobRequestRow)
        .where(JobRequestRow.job_state.in_(sorted(_NON_TERMINAL_STATES)))
        .order_by(JobRequestRow.id)
        .execution_options(populate_existing=True)
    )
    return [_record(row) for row in (await session.scalars(stmt)).all()]


async def _id_by_user_key(session: AsyncSession, organization_id: str, user_key: str) -> int | None:
    return await session.scalar(
        select(JobRequestRow.id).where(
            JobRequestRow.organization_id == organization_id, JobRequestRow.user_key == user_key
        )
    )


def _check_params(params: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in params.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgument(
                f"params must map strings to strings; got {key!r}: {value!r}", field="params"
            )
        checked[key] = value
    return checked


def _record(row: JobRequestRow | SimpleNamespace) -> JobRequestRecord:
    return JobRequestRecord(
        id=row.id,
        parent_id=row.parent_id,
        user_key=row.user_key,
        job_definition_id=row.job_definition_id,
        job_type=row.job_type,
        job_version=row.job_version,
        job_state=row.job_state,
        job_priority=row.job_priority,
        job_group=row.job_group,
        organization_id=row.organization_id,
        user_id=row.user_id,
        params=freeze_mapping(row.params),
        scheduled_at=row.scheduled_at,
        cron_triggered=row.cron_triggered,
        retried=row.retried,
        schedule_attempts=row.schedule_attempts,
        wait_reason=row.wait_reason,
        error_code=row.error_code,
        error_message=row.error_message,
        job_execution_id=row.job_execution_id,
        trace_id=row.trace_id,
        root_span_id=row.root_span_id,
        paused_until=row.paused_until,
        restart_mode=row.restart_mode,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
    )
