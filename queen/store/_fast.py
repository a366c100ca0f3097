"""The dispatch path's statements, run on the driver connection of the session's transaction.

Every task costs the Queen a handful of writes (the task's state and result, its events, the cursor,
the next task's row). Through `Session.execute` each costs SQLAlchemy's per-call machinery (execution
context, cache lookup, result set up) — measured on a 2-CPU VM at about 200 µs per statement, against
15 µs for the same UPDATE on sqlite3 itself. So these few statements are compiled ONCE per dialect and
shape by SQLAlchemy (the SQL text, the order of the parameters, each parameter's and each returned
column's type processors: exactly the conversions SQLAlchemy would apply), and then executed on the
DBAPI connection that the session's transaction already holds. They are part of that transaction:
committed or rolled back with it, like any other statement of the session.

Rules for callers: pass only the session of an open `Database.transaction()`; rows the session holds
pending are flushed first; ORM objects of the same rows that the session loaded earlier are not
refreshed (the store's readers use `populate_existing`).

Deferred statements (`defer`, `defer_returning`) run together at the end of the transaction, just before
it commits: on PostgreSQL in one pipeline (one round trip, with the transaction's BEGIN when nothing ran
before them, and its COMMIT), on SQLite in order on the connection; the event log's rows last, in one
statement. A guard on what they wrote (a state
that was not the expected one, a row that existed after all) refuses the whole transaction: on SQLite
checked before the commit; on PostgreSQL on the server, the guarded statement raising through
`formicary_guard` (migration 0003) so that the COMMIT after it does not run, then explained by the
same check once rolled back. The supervisor's result transaction is made of them: on PostgreSQL one
round trip where it took seven. On PostgreSQL the statements are sent on libpq itself, prepared once per
connection (`_libpq`), not through psycopg's cursors.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, bindparam, insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import KeyedColumnElement
from sqlalchemy.types import TypeEngine
from sqlalchemy.util.concurrency import greenlet_spawn

from queen.store import _libpq
from queen.store._sqlite_inline import InlineConnection

__all__ = [
    "BEGIN_PENDING_KEY",
    "BEGUN_KEY",
    "DEFER_KEY",
    "HELD_KEY",
    "Deferred",
    "FastStatement",
    "HeldConnection",
    "append_rows",
    "committed",
    "defer",
    "defer_returning",
    "executed",
    "flush_deferred",
    "insert_if_absent",
    "returning_columns",
    "run",
    "run_together",
]

_Processor = Callable[[Any], Any] | None
_DRIVER_KEY = "formicary_fast_driver"
_DEFERRED_KEY = "formicary_deferred"  # statements left for the end of the transaction (`defer`)
_APPENDED_KEY = "formicary_appended"  # rows of `append_rows` statements, after the others
DEFER_KEY = "formicary_defer"  # set by Database.transaction(), which flushes them before it commits
BEGIN_PENDING_KEY = "formicary_begin_pending"  # in a connection's info: its BEGIN is not sent yet
BEGUN_KEY = "formicary_begun"  # in a connection's info: a HeldConnection began its transaction
HELD_KEY = "formicary_held"  # in a session's info: its HeldConnection
_GUARD_PARAMETER = "formicary_guard"
_GUARD_SQLSTATE = "FG001"
_executed = 0
_committed = 0


def committed() -> int:
    """How many transactions a HeldConnection committed without SQLAlchemy's Connection (no engine
    `commit` event; bench/dispatch.py adds them to the commits it counts)."""
    return _committed


def executed() -> int:
    """How many statements `run` has executed in this process (they bypass SQLAlchemy's engine events;
    bench/dispatch.py adds them to the statements it counts)."""
    return _executed


@dataclass(slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # parameter names in the order the SQL text expects them (positional styles)
    binds: tuple[tuple[str, _Processor], ...]
    constants: dict[str, Any]  # bind values fixed by the statement itself (`bindparam(name, value)`)
    positional: bool
    returning: tuple[tuple[str, TypeEngine[Any]], ...]
    # the returned columns' result processors: some depend on the type the driver reports (the DBAPI
    # type code of the cursor's description), so they are made at the first execution
    processors: tuple[tuple[str, _Processor], ...] | None = None

    def guarded_sql(self) -> str:
        """PostgreSQL: the statement made to fail on the server when it matches no row (`formicary_guard`,
        migration 0003, raises SQLSTATE FG001 with the text of the `formicary_guard` parameter); its rows
        are returned as they were."""
        if self.positional:  # a driver of the `format` style: the guard's text is the last parameter
            raise NotImplementedError("guarded statements are built for psycopg's named parameters")
        return (
            f"WITH g AS ({self.sql}), "
            f"c AS (SELECT formicary_guard(count(*), %({_GUARD_PARAMETER})s) AS matched FROM g) "
            "SELECT g.* FROM c LEFT JOIN g ON true"
        )

    def result_processors(self, dialect: Dialect, description: Any) -> tuple[tuple[str, _Processor], ...]:
        if self.processors is None:
            self.processors = tuple(
                (key, type_.result_processor(dialect, column[1]))
                for (key, type_), column in zip(self.returning, description, strict=True)
            )
        return self.processors


class FastStatement:
    """A statement shape (built by `build(dialect)`, with named `bindparam`s) compiled once per dialect.

    `rows` (an append-only log's INSERT, see `append_rows`): the same statement for `count` rows at
    once, its parameters named `<name>__<row>`."""

    def __init__(
        self,
        build: Callable[[Dialect], ClauseElement],
        returning: Sequence[KeyedColumnElement[Any]] = (),
        *,
        rows: Callable[[Dialect, int], ClauseElement] | None = None,
    ) -> None:
        self._build = build
        self._returning = tuple(returning)
        self._compiled: dict[str, _Compiled] = {}
        self._rows = rows
        self._compiled_rows: dict[tuple[str, int], str] = {}

    @property
    def appends(self) -> bool:
        """An `append_rows` statement: deferred, its rows go after the transaction's other statements."""
        return self._rows is not None

    def compiled_for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = self._compile(dialect)
        return found

    def sql_for_rows(self, dialect: Dialect, count: int) -> str:
        """The SQL text inserting `count` rows (a `rows` statement only)."""
        assert self._rows is not None, "not a multi-row statement"
        found = self._compiled_rows.get((dialect.name, count))
        if found is None:
            found = self._compiled_rows[(dialect.name, count)] = (
                self._rows(dialect, count).compile(dialect=dialect).string
            )
        return found

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = cast(SQLCompiler, self._build(dialect).compile(dialect=dialect))
        binds = tuple(
            (name, bind.type.dialect_impl(dialect).bind_processor(dialect))
            for name, bind in compiled.binds.items()
        )
        constants = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        positional = bool(compiled.positional)
        names = tuple(compiled.positiontup or ()) if positional else ()
        returning = tuple((column.key, column.type.dialect_impl(dialect)) for column in self._returning)
        return _Compiled(compiled.string, names, binds, constants, positional, returning)


def insert_if_absent(table: Table, keys: Sequence[str]) -> FastStatement:
    """`INSERT (keys) ... ON CONFLICT DO NOTHING RETURNING id`: one statement whether or not a row with the
    same unique key exists; no row comes back when one did (then the caller reads or refuses it)."""

    def build(dialect: Dialect) -> ClauseElement:
        insert = postgresql_insert if dialect.name == "postgresql" else sqlite_insert
        return (
            insert(table)
            .values({key: bindparam(key) for key in keys})
            .on_conflict_do_nothing()
            .returning(table.c.id)
        )

    return FastStatement(build, (table.c["id"],))


def append_rows(table: Table, columns: Sequence[str]) -> FastStatement:
    """`INSERT (columns) VALUES (...)` into an append-only log (the event log): rows nothing else in the
    transaction reads or refers to. Deferred (`defer`), they go after the transaction's other deferred
    statements, all together: one `executemany` on SQLite, one multi-row INSERT in PostgreSQL's pipeline
    (one statement for the server to run, not one per row)."""

    def build(_dialect: Dialect) -> ClauseElement:
        return insert(table).values({name: bindparam(name) for name in columns})

    def rows(_dialect: Dialect, count: int) -> ClauseElement:
        return insert(table).values(
            [
                {name: bindparam(f"{name}__{row}", type_=table.c[name].type) for name in columns}
                for row in range(count)
            ]
        )

    return FastStatement(build, rows=rows)


def returning_columns(table: Table) -> tuple[KeyedColumnElement[Any], ...]:
    return tuple(table.c)


@dataclass(slots=True)
class Deferred:
    """What a statement left for the end of its transaction (`defer_returning`) returned: its rows, once the
    transaction's deferred statements have run (before it commits)."""

    _rows: list[dict[str, Any]] | None = None

    @property
    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            raise RuntimeError("the deferred statement has not run yet (its transaction has not flushed)")
        return self._rows


Check = Callable[[list[dict[str, Any]]], Awaitable[None]]


@dataclass(slots=True)
class _Pending:
    statement: FastStatement
    values: dict[str, Any]
    result: Deferred | None = None  # None: no rows wanted, may share an execution with its neighbours
    check: Check | None = None


async def defer(session: AsyncSession, statement: FastStatement, params: Mapping[str, Any]) -> None:
    """Execute `statement` (no RETURNING) at the end of the session's transaction, when the transaction
    is a `Database.transaction()`; at once otherwise. Consecutive rows of a statement go in one
    execution; the rows of `append_rows` statements go last, together. Readers of what it writes call
    `flush_deferred` first. The values are checked (bound) now, so a bad one fails here, not at the
    commit. Not inside a savepoint (`begin_nested`): rolling the savepoint back would not take back
    what was deferred."""
    if not session.info.get(DEFER_KEY):
        await run(session, statement, params)
        return
    compiled = statement.compiled_for(_dialect(session))
    key = _APPENDED_KEY if statement.appends else _DEFERRED_KEY
    session.info.setdefault(key, []).append(_Pending(statement, _bound(compiled, params)))


async def defer_returning(
    session: AsyncSession, statement: FastStatement, params: Mapping[str, Any], *, check: Check | None = None
) -> Deferred:
    """Like `defer`, for a statement whose rows matter: they are in the returned `Deferred` once the
    transaction's deferred statements have run, and `check` (when given) gets them then, before the
    commit: it raises to refuse them, and the whole transaction is rolled back. A guarded write whose
    guard is checked this way costs no round trip of its own on PostgreSQL (every deferred statement of
    a transaction goes to the server in one pipeline). The caller must not need the rows before the
    end of the transaction, and must not write the same rows again at once in between."""
    result = Deferred()
    if not session.info.get(DEFER_KEY):
        result._rows = await run(session, statement, params)
        if check is not None:
            await check(result._rows)
        return result
    compiled = statement.compiled_for(_dialect(session))
    pending = _Pending(statement, _bound(compiled, params), result, check)
    session.info.setdefault(_DEFERRED_KEY, []).append(pending)
    return result


async def flush_deferred(session: AsyncSession, *, commit: bool = False) -> None:
    """Execute the statements `defer` and `defer_returning` left, in order (appended rows last), then the
    checks.

    SQLite: on the connection, consecutive plain statements of a kind in one `executemany`.
    PostgreSQL: all of them in one pipeline, consecutive appended rows in one multi-row INSERT (one
    round trip, plus the BEGIN when they open the transaction); an error of any is raised here, as
    SQLAlchemy reports it.

    `commit` (the transaction's last flush, `Database.transaction()`): on PostgreSQL the COMMIT closes
    the same pipeline and each checked statement fails on the server when it matches no row
    (`_Compiled.guarded_sql`): the first that does is then explained by its check (after a ROLLBACK),
    which raises as it would have. The session's own commit then finds the transaction ended and sends
    nothing. Rows the session holds unflushed are flushed first, so nothing comes after the COMMIT.
    """
    deferred = session.info
    pending: list[_Pending] = deferred.pop(_DEFERRED_KEY, []) + deferred.pop(_APPENDED_KEY, [])
    if not pending:
        return
    global _executed  # noqa: PLW0603 - a process-wide counter, read by benchmarks only
    dialect = _dialect(session)
    commit = commit and dialect.name != "sqlite"
    if commit and (session.dirty or session.deleted):
        await session.flush()
    driver, info = await _connection(session)
    dbapi_error: type[Exception] = dialect.loaded_dbapi.Error
    refused: _Pending | None = None
    try:
        if dialect.name == "sqlite":
            _executed += _flush_sqlite(driver, dialect, pending)
        else:
            begin = _begin_pending(info)
            refused, executions = await _flush_psycopg(driver, dialect, pending, begin=begin, commit=commit)
            _executed += executions
    except dbapi_error as error:  # the driver's error names what failed; the SQL is the batch's
        sql = "; ".join(dict.fromkeys(item.statement.compiled_for(dialect).sql for item in pending))
        raise DBAPIError.instance(sql, None, error, dbapi_error) from error
    if refused is not None:
        assert refused.check is not None
        await refused.check([])  # raises: the transaction is rolled back, the read runs on its own
        raise RuntimeError("a deferred statement's guard refused it, but its check accepted no rows")
    for item in pending:
        if item.check is not None and item.result is not None:
            await item.check(item.result.rows)


def _flush_sqlite(driver: Any, dialect: Dialect, pending: list[_Pending]) -> int:
    connection = driver._conn  # the sqlite3 connection of _sqlite_inline's InlineConnection
    executions = 0
    start = 0
    while start < len(pending):
        first = pending[start]
        compiled = first.statement.compiled_for(dialect)
        executions += 1
        if first.result is not None:
            description, rows = _run_sqlite(driver, compiled, first.values)
            first.result._rows = _rows_of(compiled, dialect, description, rows)
            start += 1
            continue
        end = start + 1
        while (
            end < len(pending) and pending[end].statement is first.statement and pending[end].result is None
        ):
            end += 1
        connection.executemany(compiled.sql, [_parameters(compiled, p.values) for p in pending[start:end]])
        start = end
    return executions


async def _flush_psycopg(
    driver: Any, dialect: Dialect, pending: list[_Pending], *, begin: bool, commit: bool
) -> tuple[_Pending | None, int]:
    """The statements in one pipeline (and the COMMIT when `commit`): the statement whose server-side
    guard refused it, if one did (the transaction is then rolled back), and how many statements ran."""
    statements: list[_libpq.Statement] = []
    owners: list[_Pending | None] = []  # whose rows each statement returns (None: a multi-row INSERT)
    number = 0
    while number < len(pending):
        item = pending[number]
        compiled = item.statement.compiled_for(dialect)
        if commit and item.check is not None:
            values = {**item.values, _GUARD_PARAMETER: str(number)}
            statements.append(_libpq.Statement(compiled.guarded_sql(), values))
        elif (alike := _rows_alike(pending, number)) > 1:
            sql, values = _multirow(dialect, pending[number : number + alike])
            statements.append(_libpq.Statement(sql, values))
            owners.append(None)
            number += alike
            continue
        else:
            statements.append(_libpq.Statement(compiled.sql, item.values))
        owners.append(item)
        number += 1
    try:
        results = await _libpq.run_pipeline(driver, statements, begin=begin, commit=commit)
    except dialect.loaded_dbapi.Error as error:
        if getattr(error, "sqlstate", None) != _GUARD_SQLSTATE:
            raise
        await driver.rollback()
        return pending[int(error.diag.message_primary)], len(statements)
    for owner, result in zip(owners, results, strict=True):
        if owner is not None and owner.result is not None:
            compiled = owner.statement.compiled_for(dialect)
            rows = result.rows if compiled.returning else []
            # the result processors are made once, from the first execution's column types
            description = result.description if rows and compiled.processors is None else None
            owner.result._rows = _rows_of(compiled, dialect, description, rows)
    return None, len(statements)


_MAX_ROWS = 64  # rows in one multi-row INSERT (more go in several)


def _rows_alike(pending: list[_Pending], start: int) -> int:
    """How many deferred rows from `start` on make one multi-row INSERT (1: the statement alone)."""
    first = pending[start]
    if not first.statement.appends or first.result is not None:
        return 1
    end = start + 1
    while (
        end < len(pending)
        and end - start < _MAX_ROWS
        and pending[end].statement is first.statement
        and pending[end].result is None
    ):
        end += 1
    return end - start


def _multirow(dialect: Dialect, rows: list[_Pending]) -> tuple[str, dict[str, Any]]:
    sql = rows[0].statement.sql_for_rows(dialect, len(rows))
    values = {
        f"{name}__{number}": value for number, row in enumerate(rows) for name, value in row.values.items()
    }
    return sql, values


def _rows_of(
    compiled: _Compiled, dialect: Dialect, description: Any, rows: list[Any]
) -> list[dict[str, Any]]:
    if not compiled.returning or not rows:
        return []
    processors = compiled.result_processors(dialect, description)
    return [
        {
            key: value if processor is None else processor(value)
            for (key, processor), value in zip(processors, row, strict=True)
        }
        for row in rows
    ]


class HeldConnection:
    """A pooled connection that a `Database.transaction()` took for its first statement, a `_fast` one,
    with the transaction begun on the driver: no SQLAlchemy Session or Connection is set up for it.

    A transaction made of `_fast` statements (the supervisor's, the scheduler's, most of the Queen's)
    then costs a pool checkout, the BEGIN, the COMMIT and the checkin, where SQLAlchemy's session
    machinery took about 100 µs more per transaction. If the same transaction then runs an ORM
    statement, the session is given a SQLAlchemy Connection on this same connection (`connection`):
    one transaction still, whose `begin` event sends no second BEGIN (`BEGUN_KEY` in the connection's
    info), committed or rolled back by the session, then here (a no-op on an ended transaction).
    `Database.transaction()` ends it (`end`) with the session, inside SQLAlchemy's greenlet bridge.
    """

    __slots__ = ("_connection", "_engine", "_fairy", "driver", "info")

    def __init__(self, engine: Engine, fairy: PoolProxiedConnection) -> None:
        self._engine = engine
        self._fairy = fairy
        self._connection: Connection | None = None
        self.driver: Any = fairy.driver_connection
        self.info: dict[Any, Any] = fairy.info

    @classmethod
    async def begin(cls, engine: AsyncEngine) -> HeldConnection:
        """Check a connection out and begin a transaction on it (SQLite: BEGIN IMMEDIATE now, waiting
        for a lock another process holds; PostgreSQL: the BEGIN goes with the first statement)."""
        fairy = await engine.raw_connection()
        held = cls(engine.sync_engine, fairy)
        try:
            if engine.dialect.name == "sqlite":
                inline = cast(InlineConnection, held.driver)
                try:
                    if not inline.try_begin_immediate():
                        await inline.begin_immediate()
                except sqlite3.Error as error:  # as SQLAlchemy reports it (OperationalError: locked)
                    raise DBAPIError.instance("BEGIN IMMEDIATE", None, error, sqlite3.Error) from error
            else:
                held.info[BEGIN_PENDING_KEY] = True
        except BaseException:
            await greenlet_spawn(fairy.close)
            raise
        held.info[BEGUN_KEY] = True
        return held

    def connection(self) -> Connection:
        """A SQLAlchemy Connection on the held connection, for the session's ORM statements (made once)."""
        if self._connection is None:
            self._connection = Connection(self._engine, connection=self._fairy)
        return self._connection

    def end(self, *, commit: bool) -> None:
        """Commit (or roll back) what the session left open and give the connection back to the pool.
        In SQLAlchemy's greenlet bridge (the driver's commit and the pool's reset are awaited there)."""
        global _committed  # noqa: PLW0603 - a process-wide counter, read by benchmarks only
        if commit and self._connection is None:  # else the ORM's Connection committed (an engine event)
            _committed += 1
        try:
            if isinstance(self.driver, InlineConnection):  # sqlite3 itself: nothing to await
                self.driver.end_transaction(commit=commit)
            else:
                dbapi_connection = self._fairy.dbapi_connection
                assert dbapi_connection is not None
                if commit:
                    dbapi_connection.commit()
                else:
                    dbapi_connection.rollback()
        finally:
            self.info.pop(BEGUN_KEY, None)
            self.info.pop(BEGIN_PENDING_KEY, None)
            if self._connection is not None:
                self._connection.close()
            else:
                self._fairy.close()


async def _connection(session: AsyncSession) -> tuple[Any, dict[Any, Any]]:
    """The driver connection of the session's transaction, and SQLAlchemy's `info` of it."""
    if session.new:
        await session.flush()
    found = session.info.get(_DRIVER_KEY)
    if found is None:  # the transaction's first statement: it begins here
        if session.info.get(DEFER_KEY) and not session.in_transaction():
            held = session.info[HELD_KEY] = await HeldConnection.begin(cast(AsyncEngine, session.bind))
            found = (held.driver, held.info)
        else:  # a session that is not a Database.transaction(), or began with an ORM statement
            found = await greenlet_spawn(_driver_of, session.sync_session)
        session.info[_DRIVER_KEY] = found
    return cast(tuple[Any, dict[Any, Any]], found)


def _driver_of(session: Session) -> tuple[Any, dict[Any, Any]]:
    connection = session.connection()
    return connection.connection.driver_connection, connection.info


def _dialect(session: AsyncSession) -> Dialect:
    # the session's engine's; not `get_bind()`, which gives a held connection's session an ORM connection
    return cast(Engine, session.sync_session.bind).dialect


def _begin_pending(info: dict[Any, Any]) -> bool:
    """True (once) when the transaction has not sent its BEGIN yet: on PostgreSQL the Database leaves it
    for the first statement (see database._begin_with_first_statement), so a transaction that starts
    here sends it in the same round trip as its first statements."""
    return bool(info.pop(BEGIN_PENDING_KEY, False))


def _bound(compiled: _Compiled, params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` through the columns' bind processors, as SQLAlchemy would send them."""
    if compiled.constants:
        params = {**compiled.constants, **params}
    try:
        return {
            name: params[name] if processor is None else processor(params[name])
            for name, processor in compiled.binds
        }
    except Exception as error:  # a value the column type refuses: reported as SQLAlchemy reports it
        raise StatementError(str(error), compiled.sql, None, error) from error


def _parameters(compiled: _Compiled, values: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
    return tuple(values[name] for name in compiled.names) if compiled.positional else values


async def run(
    session: AsyncSession, statement: FastStatement, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Execute `statement` with `params` in the session's transaction; the returned rows as dicts."""
    (rows,) = await run_together(session, [(statement, params)])
    return rows


async def run_together(
    session: AsyncSession, statements: Sequence[tuple[FastStatement, Mapping[str, Any]]]
) -> list[list[dict[str, Any]]]:
    """Execute independent statements (none reads what another one writes) in the session's transaction,
    in order; the rows of each, as `run` returns them. On PostgreSQL they go in one pipeline: one round
    trip for all (with the BEGIN when they open the transaction); on SQLite one after the other."""
    global _executed  # noqa: PLW0603 - a process-wide counter, read by benchmarks only
    _executed += len(statements)
    driver, info = await _connection(session)
    dialect = _dialect(session)
    prepared: list[tuple[_Compiled, dict[str, Any]]] = []
    for statement, params in statements:
        compiled = statement.compiled_for(dialect)
        prepared.append((compiled, _bound(compiled, params)))
    dbapi_error: type[Exception] = dialect.loaded_dbapi.Error
    try:
        if dialect.name == "sqlite":
            outcomes = [_run_sqlite(driver, compiled, values) for compiled, values in prepared]
        else:
            results = await _libpq.run_pipeline(
                driver,
                [_libpq.Statement(compiled.sql, values) for compiled, values in prepared],
                begin=_begin_pending(info),
            )
            outcomes = [
                ((result.description if compiled.processors is None else None), result.rows)
                if compiled.returning
                else (None, [])
                for (compiled, _), result in zip(prepared, results, strict=True)
            ]
    except dbapi_error as error:
        # the exception SQLAlchemy would raise (IntegrityError, OperationalError, ...), with the driver's
        sql = "; ".join(compiled.sql for compiled, _ in prepared)
        raise DBAPIError.instance(sql, None, error, dbapi_error) from error
    return [
        _rows_of(compiled, dialect, description, rows)
        for (compiled, _), (description, rows) in zip(prepared, outcomes, strict=True)
    ]


def _run_sqlite(driver: Any, compiled: _Compiled, values: Mapping[str, Any]) -> tuple[Any, list[Any]]:
    # the InlineConnection of _sqlite_inline: the sqlite3 connection itself, in this (event loop) thread
    connection = driver._conn
    cursor = connection.execute(compiled.sql, _parameters(compiled, values))
    try:
        return cursor.description, cursor.fetchall() if cursor.description else []
    finally:
        cursor.close()
