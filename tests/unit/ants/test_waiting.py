"""Attempts waiting for an Ant: FIFO within groups that route alike, groups offered oldest first, a
group no Ant serves skipped in one step (queen.ants.waiting)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from queen.ants.session import Dispatch
from queen.ants.waiting import WaitingAttempts, route_key
from queen.domain.job_definition import TaskDefinition, TaskMethod
from queen.domain.work import TaskWork

pytestmark = pytest.mark.unit


def attempt(name: str, *, tags: tuple[str, ...] = (), organization: str = "") -> Dispatch:
    task = TaskDefinition(task_type=name, method=TaskMethod.SHELL, tags=tags)
    return Dispatch(
        TaskWork(
            job_request_id=1,
            job_definition_id="d",
            job_type="j",
            job_version=1,
            job_execution_id="e",
            task_execution_id=name,
            correlation_id=f"{name}:0.0",
            task=task,
            variables={},
            organization_id=organization,
        )
    )


def names(dispatches: list[Dispatch]) -> list[str]:
    return [d.work.task_execution_id for d in dispatches]


def taker(placed: list[Dispatch]) -> Callable[[Dispatch], bool]:
    """A `place` that takes every attempt, noting it."""

    def place(dispatch: Dispatch) -> bool:
        placed.append(dispatch)
        return True

    return place


def test_the_route_key_is_what_routing_looks_at() -> None:
    assert route_key(attempt("a", tags=("gpu",), organization="o").work) == (
        TaskMethod.SHELL,
        frozenset({"gpu"}),
        "o",
    )
    assert route_key(attempt("a").work) == route_key(attempt("b").work)
    assert route_key(attempt("a").work) != route_key(attempt("b", organization="o").work)


def test_groups_are_offered_oldest_first_and_fifo_within() -> None:
    waiting = WaitingAttempts()
    for dispatch in (
        attempt("a1"),
        attempt("g1", tags=("gpu",)),
        attempt("a2"),
        attempt("g2", tags=("gpu",)),
    ):
        waiting.append(dispatch)
    placed: list[Dispatch] = []
    waiting.offer(taker(placed), lambda: True)
    assert names(placed) == ["a1", "a2", "g1", "g2"]
    assert len(waiting) == 0
    assert list(waiting) == []


def test_a_group_nobody_takes_is_skipped_after_one_look_and_keeps_its_place() -> None:
    waiting = WaitingAttempts()
    gpu = [attempt(f"g{n}", tags=("gpu",)) for n in range(1000)]
    for dispatch in gpu:
        waiting.append(dispatch)
    waiting.append(attempt("plain"))
    asked: list[str] = []

    def place(dispatch: Dispatch) -> bool:
        asked.append(dispatch.work.task_execution_id)
        return not dispatch.work.tags  # no Ant with the gpu tag has room

    waiting.offer(place, lambda: True)
    assert asked == ["g0", "plain"]  # one look at the gpu group, not a thousand
    assert len(waiting) == 1000
    assert names(list(waiting))[:2] == ["g0", "g1"]


def test_offering_stops_when_there_is_no_room() -> None:
    waiting = WaitingAttempts()
    for n in range(5):
        waiting.append(attempt(f"a{n}"))
    room = [2]

    def place(dispatch: Dispatch) -> bool:
        room[0] -= 1
        return True

    waiting.offer(place, lambda: room[0] > 0)
    assert names(list(waiting)) == ["a2", "a3", "a4"]


def test_put_back_goes_ahead_of_everything_and_finished_attempts_are_dropped() -> None:
    waiting = WaitingAttempts()
    first, second, refused, gone = (
        attempt("first"),
        attempt("second", tags=("x",)),
        attempt("r"),
        attempt("g"),
    )
    waiting.append(first)
    waiting.append(second)
    waiting.append(gone)
    gone.finished = True
    waiting.put_back(refused)
    placed: list[Dispatch] = []
    waiting.offer(taker(placed), lambda: True)
    assert names(placed) == ["r", "first", "second"]
    assert len(waiting) == 0


def test_remove_takes_one_attempt_out() -> None:
    waiting = WaitingAttempts()
    a, b = attempt("a"), attempt("b")
    waiting.append(a)
    waiting.append(b)
    assert waiting.remove(a)
    assert not waiting.remove(a)
    assert not waiting.remove(attempt("never", tags=("t",)))
    assert names(list(waiting)) == ["b"]
    assert len(waiting) == 1
