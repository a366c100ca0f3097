"""Wake-ups after a commit, for request watchers; no data travels: the waiter re-reads the database."""

from __future__ import annotations

import asyncio
from collections import defaultdict

__all__ = ["ChangeNotifier"]


class ChangeNotifier:
    """Per-request and global "something changed" signals (announced only after the change committed)."""

    def __init__(self) -> None:
        self._by_request: defaultdict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self._any = asyncio.Event()
        self._gates = asyncio.Event()

    def gates_changed(self) -> None:
        """Announce a committed change of approval gates' due times (a gate opened or re-armed)."""
        self._gates.set()
        self._gates = asyncio.Event()

    def next_gates_change(self) -> asyncio.Event:
        """An event set at the next `gates_changed()` (what the SLA timers wait for besides their sweep)."""
        return self._gates

    def changed(self, request_id: int) -> None:
        """Announce a committed change of a request."""
        event = self._by_request.pop(request_id, None)
        if event is not None:
            event.set()
        self._any.set()
        self._any = asyncio.Event()

    def next_change(self, request_id: int) -> asyncio.Event:
        """An event set at the request's next committed change (take it before re-reading the state)."""
        return self._by_request[request_id]

    def next_change_of_any(self) -> asyncio.Event:
        """An event set at the next committed change of any request."""
        return self._any
