"""SQLite for the async engine without a thread hop per call: the sqlite3 calls run on the event loop.

SQLAlchemy's `sqlite+aiosqlite` dialect talks to an aiosqlite connection, which sends every call
(cursor, execute, fetch, close, commit) to a worker thread and wakes the event loop when it is done:
about four thread round trips per statement, each a GIL hand-over and a loop wake-up. For the Queen's
own SQLite file that hop costs far more than the call: a statement on a WAL database in page cache
takes tens of microseconds, and a commit with `synchronous=NORMAL` does not wait for the disk. So the
Queen hands SQLAlchemy this aiosqlite-shaped connection (through `create_async_engine(async_creator=
...)`) whose coroutines run the sqlite3 call at once and never suspend; SQLAlchemy's greenlet bridge
then resumes without an event-loop iteration.

The one call that may have to wait is `BEGIN IMMEDIATE`, for a write lock another *process* holds (an
admin command on the same file): the connection's own busy timeout is 0 and the wait is an asyncio
back-off, bounded by the engine's busy timeout, so the event loop keeps running meanwhile. Within the
Queen's process transactions queue for the one pooled connection instead (see `Database`).

Long statements do block the loop for their duration; the Queen's statements are indexed point reads
and writes plus paged lists.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["InlineConnection", "connect"]

_FIRST_BACKOFF = 0.001
_MAX_BACKOFF = 0.05


class _Cursor:
    """An aiosqlite-shaped cursor over a sqlite3 cursor; every coroutine completes without suspending."""

    __slots__ = ("_connection", "_cursor")

    def __init__(self, connection: InlineConnection, cursor: sqlite3.Cursor) -> None:
        self._connection = connection
        self._cursor = cursor

    async def __aenter__(self) -> _Cursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> _Cursor:
        if self._connection.is_begin(sql):
            await self._connection.begin(self._cursor, sql)
        elif parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> _Cursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *_: Any) -> None:
        return None

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _CursorContext:
    """What `connection.cursor()` returns: SQLAlchemy enters it with `await cursor.__aenter__()`."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: _Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> _Cursor:
        return self._cursor

    async def __aexit__(self, *_: object) -> None:
        await self._cursor.close()

    def __await__(self) -> Any:
        return self.__aenter__().__await__()


class _Immediate:
    """Stands in for aiosqlite's request queue: SQLAlchemy's isolation-level setter puts
    `(future, function)` on `_tx`; here the function runs at once."""

    __slots__ = ()

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:  # handed to the awaiting caller, as aiosqlite does
            future.set_exception(error)


class InlineConnection:
    """The aiosqlite.Connection surface SQLAlchemy's aiosqlite dialect uses, over one sqlite3 connection."""

    def __init__(self, connection: sqlite3.Connection, *, busy_timeout: float) -> None:
        self._connection: sqlite3.Connection | None = connection
        self._busy_timeout = busy_timeout
        self._tx = _Immediate()

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @staticmethod
    def is_begin(sql: str) -> bool:
        return sql[:5].upper() == "BEGIN"

    async def begin(self, cursor: sqlite3.Cursor, sql: str) -> None:
        """BEGIN, waiting (without blocking the loop) while another process holds the write lock."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._busy_timeout
        backoff = _FIRST_BACKOFF
        while True:
            try:
                cursor.execute(sql)
                return
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or loop.time() >= give_up:
                    raise
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def try_begin_immediate(self) -> bool:
        """BEGIN IMMEDIATE at once; False (nothing begun) while another process holds the write lock."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            return False
        return True

    async def begin_immediate(self) -> None:
        """BEGIN IMMEDIATE (what the engine's `begin` event issues for every transaction), waiting for a
        write lock another process holds."""
        cursor = self._conn.cursor()
        try:
            await self.begin(cursor, "BEGIN IMMEDIATE")
        finally:
            cursor.close()

    def cursor(self) -> _CursorContext:
        return _CursorContext(_Cursor(self, self._conn.cursor()))

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> _Cursor:
        cursor = _Cursor(self, self._conn.cursor())
        return await cursor.execute(sql, parameters)

    async def commit(self) -> None:
        self._conn.commit()

    def end_transaction(self, *, commit: bool) -> None:
        """COMMIT or ROLLBACK at once (nothing when no transaction is open)."""
        if commit:
            self._conn.commit()
        else:
            self._conn.rollback()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def stop(self) -> None:
        """Terminate (SQLAlchemy's forced close): close the sqlite3 connection now."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def connect(database: str, *, uri: bool = False, busy_timeout: float = 30.0) -> InlineConnection:
    """A connection to `database` whose lock waits happen in `InlineConnection.begin` (busy timeout 0)."""
    connection = sqlite3.connect(database, uri=uri, timeout=0, isolation_level=None, check_same_thread=False)
    return InlineConnection(connection, busy_timeout=busy_timeout)
