"""Job requests: submission and user_key de-duplication, guarded transitions, the scheduler's queries."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession

from queen.domain.errors import AlreadyExists, InvalidTransition, NotFound
from queen.domain.states import JobState
from queen.store import Database, DuplicateUserKey, EventKind, JobRequestRecord, events, requests

from .conftest import HELLO_YAML, ORG, USER, at, hello_yaml, race, submit, upload

pytestmark = pytest.mark.integration

J = JobState


@contextmanager
def count_statements(db: Database) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


async def move(db: Database, request_id: int, *path: JobState, **changes: Any) -> JobRequestRecord:
    """Walk the request along `path` (its first element is the current state), one transaction each."""
    record: JobRequestRecord | None = None
    for expected, target in itertools.pairwise(path):
        async with db.transaction() as session:
            record = await requests.transition_request(session, request_id, expected, target, **changes)
    assert record is not None
    return record


async def test_submit_and_read_back(db: Database) -> None:
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(
        db,
        definition,
        params={"region": "us-east-1"},
        job_priority=3,
        job_group="nightly",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        root_span_id="00f067aa0ba902b7",
        now=at(0),
    )
    assert request.job_state is J.PENDING
    assert (request.job_type, request.job_version, request.organization_id) == ("hello", 1, ORG)
    assert dict(request.params) == {"region": "us-east-1"}
    with pytest.raises(TypeError):
        request.params["region"] = "eu-west-1"  # type: ignore[index]
    async with db.transaction() as session:
        again = await requests.get_request(session, request.id)
        log = await events.events_since(session, request.id)
        with pytest.raises(NotFound):
            await requests.get_request(session, request.id, organization_id="org-2")
        with pytest.raises(NotFound):
            await requests.get_request(session, request.id + 1000)
    assert again == request
    assert [(e.kind, e.from_state, e.to_state) for e in log] == [
        (EventKind.REQUEST_SUBMITTED, None, "PENDING")
    ]
    assert log[0].data["job_priority"] == 3


async def test_timestamps_are_aware_utc(db: Database) -> None:
    definition, _ = await upload(db, HELLO_YAML)
    plus_two = timezone(timedelta(hours=2))
    local_noon = datetime(2030, 6, 1, 12, 0, 0, 123456, tzinfo=plus_two)
    request = await submit(db, definition, scheduled_at=local_noon, now=local_noon)
    async with db.transaction() as session:
        stored = await requests.get_request(session, request.id)
        (submitted,) = await events.events_since(session, request.id)
    for value in (
        stored.created_at,
        stored.updated_at,
        stored.scheduled_at,
        submitted.created_at,
        definition.created_at,
    ):
        assert value is not None
        assert value.tzinfo is UTC
    assert stored.created_at == local_noon
    assert stored.created_at.hour == 10
    assert stored.scheduled_at == local_noon

    async with db.transaction() as session:
        with pytest.raises(StatementError) as raised:
            await requests.set_wait_reason(session, request.id, "x", now=datetime(2030, 1, 1))  # naive
    assert isinstance(raised.value.orig, ValueError)


async def test_user_key_is_unique_per_organization(db: Database) -> None:
    definition, _ = await upload(db, HELLO_YAML)
    other_org_definition, _ = await upload(db, HELLO_YAML, organization_id="org-2")
    first = await submit(db, definition, user_key="deploy-42")
    with pytest.raises(DuplicateUserKey) as raised:
        await submit(db, definition, user_key="deploy-42")
    assert raised.value.existing_id == first.id
    assert isinstance(raised.value, AlreadyExists)

    elsewhere = await submit(db, other_org_definition, user_key="deploy-42")
    no_keys = [await submit(db, definition), await submit(db, definition, user_key="")]
    assert elsewhere.id != first.id
    assert [r.user_key for r in no_keys] == [None, None]
    async with db.transaction() as session:
        found = await requests.get_request_by_user_key(session, ORG, "deploy-42")
    assert found.id == first.id


async def test_concurrent_submissions_with_one_user_key_make_one_request(db: Database) -> None:
    definition, _ = await upload(db, HELLO_YAML)

    async def submit_in(session: AsyncSession) -> JobRequestRecord:
        return await requests.create_request(session, definition=definition, user_id=USER, user_key="k")

    async def submit_and_keep_going(session: AsyncSession) -> JobRequestRecord:
        try:
            return await submit_in(session)
        except DuplicateUserKey:
            # the caller's transaction is still usable after losing (the insert ran in a savepoint)
            await requests.count_active_by_type(session)
            raise

    # The second submission overlaps the first's open transaction (on PostgreSQL its insert waits on
    # the unique index, then fails and is caught as AlreadyExists).
    winner, loser = await race(db, submit_in, submit_and_keep_going)
    assert isinstance(loser, DuplicateUserKey)
    assert loser.existing_id == winner.id

    # and two plain concurrent transactions: exactly one wins
    async def submit_alone(key: str) -> JobRequestRecord:
        async with db.transaction() as session:
            return await requests.create_request(session, definition=definition, user_id=USER, user_key=key)

    outcomes = await asyncio.gather(submit_alone("k2"), submit_alone("k2"), return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, JobRequestRecord)]
    lost = [o for o in outcomes if isinstance(o, DuplicateUserKey)]
    assert len(won) == 1
    assert len(lost) == 1
    assert lost[0].existing_id == won[0].id
    async with db.transaction() as session:
        _, total = await requests.list_requests(session, ORG)
    assert total == 2


async def test_guarded_transitions(db: Database) -> None:
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition, now=at(0))

    async with db.transaction() as session:
        ready = await requests.transition_request(
            session, request.id, J.PENDING, J.READY, wait_reason="", schedule_attempts=1, now=at(1)
        )
    assert (ready.job_state, ready.schedule_attempts, ready.updated_at) == (J.READY, 1, at(1))

    # illegal by the table: raises before a single statement reaches the database
    with count_statements(db) as sent:
        async with db.transaction() as session:
            with pytest.raises(InvalidTransition) as illegal:
                await requests.transition_request(session, request.id, J.READY, J.COMPLETED)
    assert (illegal.value.current, illegal.value.target) == ("READY", "COMPLETED")
    assert not [s for s in sent if "job_requests" in s]

    # legal in the table, but the request is not in the expected state: nothing is written
    async with db.transaction() as session:
        with pytest.raises(InvalidTransition) as stale:
            await requests.transition_request(session, request.id, J.PENDING, J.CANCELLED)
    assert stale.value.current == "READY"

    async with db.transaction() as session:
        with pytest.raises(NotFound):
            await requests.transition_request(session, request.id + 1000, J.PENDING, J.READY)
        started = await requests.transition_request(
            session, request.id, J.READY, J.STARTED, job_execution_id="e-1", started_at=at(2), now=at(2)
        )
        failed = await requests.transition_request(
            session,
            request.id,
            J.STARTED,
            J.FAILED,
            error_code="ERR_NO_ANT",
            error_message="no Ant supports method SHELL",
            ended_at=at(3),
            now=at(3),
        )
        log = await events.events_since(session, request.id)
    assert (started.job_execution_id, started.started_at) == ("e-1", at(2))
    assert (failed.job_state, failed.error_code, failed.ended_at) == (J.FAILED, "ERR_NO_ANT", at(3))
    assert failed.started_at == at(2)  # untouched columns keep their values
    assert [(e.kind, e.from_state, e.to_state) for e in log] == [
        ("request_submitted", None, "PENDING"),
        ("job_state_changed", "PENDING", "READY"),
        ("job_state_changed", "READY", "STARTED"),
        ("job_state_changed", "STARTED", "FAILED"),
    ]
    assert log[-1].message == "no Ant supports method SHELL"
    assert log[-1].data["error_code"] == "ERR_NO_ANT"
    assert [e.id for e in log] == sorted(e.id for e in log)


async def test_a_lost_race_is_an_invalid_transition(db: Database) -> None:
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition)

    async def schedule(session: AsyncSession) -> JobRequestRecord:
        return await requests.transition_request(session, request.id, J.PENDING, J.READY)

    async def cancel(session: AsyncSession) -> JobRequestRecord:
        return await requests.transition_request(session, request.id, J.PENDING, J.CANCELLED)

    winner, loser = await race(db, schedule, cancel)
    assert winner.job_state is J.READY
    assert isinstance(loser, InvalidTransition)
    assert loser.current == "READY"

    # two schedulers at once: exactly one moves it
    other = await submit(db, definition)

    async def schedule_alone() -> JobRequestRecord:
        async with db.transaction() as session:
            return await requests.transition_request(session, other.id, J.PENDING, J.READY)

    outcomes = await asyncio.gather(schedule_alone(), schedule_alone(), return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["InvalidTransition", "JobRequestRecord"]

    async with db.transaction() as session:
        for request_id in (request.id, other.id):
            log = await events.events_since(session, request_id)
            assert [e.kind for e in log] == ["request_submitted", "job_state_changed"]
            assert (await requests.get_request(session, request_id)).job_state is J.READY


async def test_due_work_pending_by_priority_then_age_active_counts_and_next_due(db: Database) -> None:
    definition, _ = await upload(db, HELLO_YAML)
    now = at(100)
    old_low = await submit(db, definition, job_priority=0, now=at(1))
    new_high = await submit(db, definition, job_priority=5, now=at(3))
    old_high = await submit(db, definition, job_priority=5, now=at(2))
    same_time_high = await submit(db, definition, job_priority=5, now=at(2))
    due = await submit(db, definition, job_priority=1, scheduled_at=now, now=at(4))
    await submit(
        db, definition, job_priority=9, scheduled_at=now + timedelta(seconds=1), now=at(5)
    )  # not yet
    started = await submit(db, definition, job_priority=9, now=at(0))
    await move(db, started.id, J.PENDING, J.READY)

    async with db.transaction() as session:
        work = await requests.due_work(session, now, limit=10)
        top_two = await requests.due_work(session, now, limit=2)
    expected = [old_high.id, same_time_high.id, new_high.id, due.id, old_low.id]
    assert [r.id for r in work.pending] == expected
    assert [r.id for r in top_two.pending] == expected[:2]
    assert work.active == {(ORG, definition.job_type): 1}  # the READY one
    assert work.next_due == now + timedelta(seconds=1)
    assert work.paused == []


async def test_count_active_by_type_and_non_terminal_requests(db: Database) -> None:
    hello, _ = await upload(db, HELLO_YAML)
    other, _ = await upload(db, hello_yaml(job_type="other"))
    elsewhere, _ = await upload(db, hello_yaml(job_type="other"), organization_id="org-2")
    ids = {}
    for name, definition in (
        ("pending", hello),
        ("ready", hello),
        ("executing", hello),
        ("completed", hello),
        ("paused", other),
        ("approval", other),
        ("cancelled", other),
        ("elsewhere", elsewhere),
    ):
        ids[name] = (await submit(db, definition)).id
    await move(db, ids["ready"], J.PENDING, J.READY)
    await move(db, ids["executing"], J.PENDING, J.READY, J.STARTED, J.EXECUTING)
    await move(db, ids["completed"], J.PENDING, J.READY, J.STARTED, J.EXECUTING, J.COMPLETED)
    await move(db, ids["paused"], J.PENDING, J.PAUSED)
    await move(db, ids["approval"], J.PENDING, J.READY, J.STARTED, J.EXECUTING, J.MANUAL_APPROVAL_REQUIRED)
    await move(db, ids["cancelled"], J.PENDING, J.CANCELLED)
    await move(db, ids["elsewhere"], J.PENDING, J.READY)

    async with db.transaction() as session:
        everywhere = await requests.count_active_by_type(session)
        mine = await requests.count_active_by_type(session, ORG)
        unfinished = await requests.non_terminal_requests(session)
    assert everywhere == {"hello": 2, "other": 3}
    assert mine == {"hello": 2, "other": 2}
    assert [r.id for r in unfinished] == sorted(
        ids[n] for n in ("pending", "ready", "executing", "paused", "approval", "elsewhere")
    )


async def test_wait_reason_is_written_and_logged_only_when_it_changes(db: Database) -> None:
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition)
    reason = "no Ant supports method DOCKER"
    async with db.transaction() as session:
        assert await requests.set_wait_reason(session, request.id, reason)
        assert not await requests.set_wait_reason(session, request.id, reason)
        assert (await requests.get_request(session, request.id)).wait_reason == reason
        assert await requests.set_wait_reason(session, request.id, "")
        with pytest.raises(NotFound):
            await requests.set_wait_reason(session, request.id + 1000, reason)
        log = await events.events_since(session, request.id)
    assert [(e.kind, e.message) for e in log] == [
        ("request_submitted", ""),
        ("wait_reason_changed", reason),
        ("wait_reason_changed", ""),
    ]


async def test_list_requests_pages_and_filters(db: Database) -> None:
    hello, _ = await upload(db, HELLO_YAML)
    other, _ = await upload(db, hello_yaml(job_type="other"))
    elsewhere, _ = await upload(db, HELLO_YAML, organization_id="org-2")
    made = [(await submit(db, hello if i % 2 == 0 else other)).id for i in range(5)]
    await submit(db, elsewhere)
    await move(db, made[0], J.PENDING, J.CANCELLED)
    await move(db, made[3], J.PENDING, J.READY)

    async with db.transaction() as session:
        page1, total = await requests.list_requests(session, ORG, limit=2)
        page3, _ = await requests.list_requests(session, ORG, limit=2, offset=4)
        hellos, hello_total = await requests.list_requests(session, ORG, job_type="hello")
        pending, pending_total = await requests.list_requests(session, ORG, states=[J.PENDING])
        hello_done, _ = await requests.list_requests(
            session, ORG, job_type="hello", states={J.CANCELLED, J.COMPLETED}
        )
        theirs, their_total = await requests.list_requests(session, "org-2")
    assert total == 5
    assert [r.id for r in page1] == [made[4], made[3]]
    assert [r.id for r in page3] == [made[0]]
    assert (hello_total, [r.id for r in hellos]) == (3, [made[4], made[2], made[0]])
    assert (pending_total, [r.id for r in pending]) == (3, [made[4], made[2], made[1]])
    assert [r.id for r in hello_done] == [made[0]]
    assert their_total == 1
    assert theirs[0].organization_id == "org-2"


async def test_many_concurrent_writers_all_succeed(db: Database) -> None:
    """On SQLite, BEGIN IMMEDIATE makes writers queue instead of failing with "database is locked"."""
    definition, _ = await upload(db, HELLO_YAML)

    async def submit_and_schedule(n: int) -> JobRequestRecord:
        async with db.transaction() as session:
            made = await requests.create_request(
                session, definition=definition, user_id=USER, user_key=f"k{n}"
            )
            await requests.count_active_by_type(session)  # read, then write again in one transaction
            return await requests.transition_request(session, made.id, J.PENDING, J.READY)

    made = await asyncio.gather(*(submit_and_schedule(n) for n in range(20)))
    assert len({r.id for r in made}) == 20
    async with db.transaction() as session:
        assert await requests.count_active_by_type(session) == {"hello": 20}


async def test_a_transition_from_a_known_row_waits_for_the_end_of_the_transaction(db: Database) -> None:
    """What a supervisor ending its job does: the request's UPDATE goes with the deferred statements."""
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition, now=at(0))
    async with db.transaction() as session:
        ready = await requests.transition_request(session, request.id, J.PENDING, J.READY, now=at(1))
    async with db.transaction() as session:
        ended = await requests.transition_request(
            session, request.id, J.READY, J.CANCELLED, error_code="ERR_CANCELLED", now=at(2), known=ready
        )
        assert (await requests.get_request(session, request.id)).job_state is J.READY  # not written yet
    async with db.transaction() as session:
        assert await requests.get_request(session, request.id) == ended
        log = await events.events_since(session, request.id)
    assert (log[-1].from_state, log[-1].to_state) == ("READY", "CANCELLED")

    async def stale(session: AsyncSession) -> None:
        await requests.transition_request(session, request.id, J.READY, J.CANCELLED, known=ready)

    with pytest.raises(InvalidTransition) as refused:
        await _in_transaction(db, stale)
    assert refused.value.current == "CANCELLED"
    async with db.transaction() as session:  # nothing of the refused transaction was kept
        assert await requests.get_request(session, request.id) == ended
        assert await events.events_since(session, request.id) == log


async def _in_transaction(db: Database, work: Any) -> None:
    async with db.transaction() as session:
        await work(session)
