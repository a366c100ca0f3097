"""Attempts waiting for an Ant: FIFO, in groups of attempts that route alike.

Routing looks only at an attempt's method, tags and organisation (`route_key`), so the attempts of
one group are interchangeable for it: when no Ant with room serves the oldest of a group, none serves
the others. A dispatch pass therefore skips a whole group in one step, and costs what it dispatches
plus one step per group, not the length of the queue (with many attempts waiting for tagged Ants
while others idle, a pass per heartbeat over every waiting attempt made dispatch quadratic).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator

from queen.ants.session import Dispatch
from queen.domain.job_definition import TaskMethod
from queen.domain.work import TaskWork

__all__ = ["RouteKey", "WaitingAttempts", "route_key"]

RouteKey = tuple[TaskMethod, frozenset[str], str]


def route_key(work: TaskWork) -> RouteKey:
    """Everything routing (`AntRegistry._pick`) looks at: method, tags, organisation."""
    return (work.method, work.tags, work.organization_id)


class WaitingAttempts:
    """The queue of waiting attempts. Each entry has an arrival number; groups are offered oldest
    head first, and within a group in order."""

    def __init__(self) -> None:
        self._groups: dict[RouteKey, deque[tuple[int, Dispatch]]] = {}
        self._arrivals = itertools.count(1)
        self._front = itertools.count(0, -1)  # numbers for attempts put back at the head
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Dispatch]:
        for group in self._groups.values():
            for _, dispatch in group:
                yield dispatch

    def append(self, dispatch: Dispatch) -> None:
        """Queue a new attempt behind every waiting one."""
        self._group(dispatch).append((next(self._arrivals), dispatch))
        self._count += 1

    def put_back(self, dispatch: Dispatch) -> None:
        """Queue an attempt ahead of every waiting one (refused, or never answered by a lost Ant)."""
        self._group(dispatch).appendleft((next(self._front), dispatch))
        self._count += 1

    def remove(self, dispatch: Dispatch) -> bool:
        """Take the attempt out of the queue; False if it was not in it."""
        key = route_key(dispatch.work)
        group = self._groups.get(key)
        if group is None:
            return False
        for entry in group:
            if entry[1] is dispatch:
                group.remove(entry)
                self._count -= 1
                if not group:
                    del self._groups[key]
                return True
        return False

    def offer(self, place: Callable[[Dispatch], bool], has_room: Callable[[], bool]) -> None:
        """Offer the attempts to `place`, oldest group first, in order within each, while `has_room()`.
        `place` returns False when no Ant takes the attempt: the rest of its group is then skipped.
        Finished attempts met on the way are dropped."""
        groups = sorted(self._groups.items(), key=lambda item: item[1][0][0])
        for key, group in groups:
            while group and has_room():
                dispatch = group[0][1]
                if not dispatch.finished and not place(dispatch):
                    break
                group.popleft()
                self._count -= 1
            if not group:
                del self._groups[key]
            if not has_room():
                return

    def _group(self, dispatch: Dispatch) -> deque[tuple[int, Dispatch]]:
        key = route_key(dispatch.work)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = deque()
        return group
