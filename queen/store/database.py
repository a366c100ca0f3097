"""The Queen's database: one async engine (SQLite or PostgreSQL), migrated to head when it starts.

Usage::

    db = Database("sqlite+aiosqlite:///~/.formicary/formicary.db")
    await db.start()                      # engine + `alembic upgrade head`
    async with db.transaction() as session:
        record = await requests.get_request(session, 42)
    await db.stop()

The caller owns sessions and transactions: repository functions take an `AsyncSession` and never
commit. One session per asyncio task; never share one across `gather`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.util.concurrency import await_, greenlet_spawn

from queen.store._fast import (
    BEGIN_PENDING_KEY,
    BEGUN_KEY,
    DEFER_KEY,
    HELD_KEY,
    HeldConnection,
    flush_deferred,
)
from queen.store._sqlite_inline import InlineConnection
from queen.store._sqlite_inline import connect as connect_inline

__all__ = ["MIGRATIONS_DIR", "Database", "DuplicateKey", "async_url", "upgrade_to_head"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Any fixed 64-bit number: PostgreSQL Queens that start together take turns migrating.
_MIGRATION_LOCK_KEY = 7_461_107_301_160_705

_SQLITE_MEMORY = {"", ":memory:"}


def async_url(url: str | URL) -> URL:
    """`url` with the async driver the store uses: `sqlite+aiosqlite` or `postgresql+psycopg`."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")


def upgrade_to_head(connection: Connection) -> None:
    """Run the Alembic migrations to head on `connection` (a sync connection, inside a transaction).

    The `Config` is built here, so no alembic.ini is needed at runtime; `migrations/env.py` uses the
    connection passed in `attributes`.
    """
    if connection.dialect.name == "postgresql":
        # Held until the transaction ends, so two Queens starting at once do not both create tables.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class DuplicateKey(Exception):
    """A transaction wrote a unique key that another transaction holds (often one that committed while
    this one ran): it was rolled back; read again and decide anew. Other integrity errors (a missing
    reference) stay SQLAlchemy's IntegrityError: they are bugs, not races."""


class _Session(Session):
    """The Queen's sessions: once a transaction's `_fast` statements hold a connection (`HeldConnection`),
    its ORM statements run on that same connection, in the same transaction."""

    def get_bind(self, mapper: Any = None, **kwargs: Any) -> Engine | Connection:
        held: HeldConnection | None = self.info.get(HELD_KEY)
        if held is not None:
            return held.connection()
        return super().get_bind(mapper, **kwargs)


def _end(session: Session, *, commit: bool) -> None:
    """Commit (when `commit`) and close the session and its held connection; if the commit fails, or
    without `commit`, roll back instead. In SQLAlchemy's greenlet bridge."""
    held: HeldConnection | None = session.info.pop(HELD_KEY, None)
    committed = False
    try:
        if commit:
            if session.in_transaction() or session.new or session.deleted or session.dirty:
                session.commit()  # else nothing ran through the ORM (a commit would begin one first)
            committed = True
    finally:
        try:
            session.close()
        finally:
            if held is not None:
                held.end(commit=committed)


def _is_unique_violation(error: IntegrityError) -> bool:
    orig = error.orig
    if getattr(orig, "sqlstate", None) == "23505":  # PostgreSQL: unique_violation
        return True
    return "UNIQUE constraint failed" in str(orig)  # SQLite


# A pooled connection unused for this long is pinged before use (a server restart or an idle cut by a proxy
# shows there, not inside a transaction); one in steady use is not, since a ping is a round trip and
# SQLAlchemy's pool_pre_ping would add one to every transaction of the dispatch path.
_PING_AFTER_IDLE = 1.0
_CHECKED_IN_AT = "formicary_checked_in_at"


def _ping_when_idle(engine: AsyncEngine) -> None:
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN_AT)
        if since is None or time.monotonic() - since < _PING_AFTER_IDLE:
            return  # a new connection, or one used a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool drops this connection and checks out another (or a new one)
            raise DisconnectionError(f"a pooled connection failed its ping: {error}") from error


# PostgreSQL plans a statement at each Bind, even a prepared one (psycopg prepares a statement after its
# fifth use on a connection) for its first five executions and whenever it judges a plan made for the
# parameters' values worth it: for the result transaction's guarded UPDATE, every time (~160 µs of the
# server's time each; measured with log_min_duration_statement). The Queen's statements are lookups and
# writes by key, or lists through the same indexes whatever the values: one generic plan per prepared
# statement serves them all (the guarded UPDATE's Bind: 160 -> 34 µs).
_GENERIC_PLANS = b"SET plan_cache_mode = force_generic_plan"


def _begin_with_first_statement(engine: AsyncEngine) -> None:
    """PostgreSQL: a transaction's BEGIN goes to the server with its first statement, not alone.

    psycopg sends BEGIN as a round trip of its own before the first statement of a transaction. Here the
    driver connection is in autocommit mode and the BEGIN is sent by us: a transaction that starts with
    dispatch-path statements (`_fast`) sends it in the same pipeline as them (the supervisor's result
    transaction: three round trips become two); one that starts with a SQLAlchemy statement sends it just
    before that statement, as psycopg did. COMMIT and ROLLBACK are psycopg's (sent when the connection is
    in a transaction, skipped when nothing was executed). Every SQLAlchemy transaction (`begin` event)
    marks its connection; the mark is cleared by the BEGIN, the commit or the rollback.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _autocommit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.autocommit = True
        driver = dbapi_connection.driver_connection
        # the dispatch path's statements are prepared by `_libpq`, which names its own; psycopg, when it
        # has prepared any, deallocates them ALL at each rollback (theirs with them)
        driver.prepare_threshold = None
        # (autocommit: this SET outlives any transaction) see _GENERIC_PLANS
        await_(driver.execute(_GENERIC_PLANS))

    @event.listens_for(engine.sync_engine, "begin")
    def _began(connection: Connection) -> None:
        if not connection.info.get(BEGUN_KEY):  # else a HeldConnection's, whose BEGIN is handled
            connection.info[BEGIN_PENDING_KEY] = True

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before(connection: Connection, *_args: Any) -> None:
        if connection.info.pop(BEGIN_PENDING_KEY, False):
            driver = connection.connection.driver_connection
            await_(cast(Any, driver).execute(b"BEGIN"))

    @event.listens_for(engine.sync_engine, "commit")
    @event.listens_for(engine.sync_engine, "rollback")
    def _ended(connection: Connection) -> None:
        if not connection.invalidated:  # an invalidated one's info goes with its DBAPI connection
            connection.info.pop(BEGIN_PENDING_KEY, None)


class Database:
    """An async engine and session factory for one database URL; `start()` migrates it to head.

    SQLite: a file path (its directory is created; `~` is expanded). An in-memory database
    (`sqlite+aiosqlite://`) has one shared connection, so it suits one session at a time only.
    """

    def __init__(self, url: str | URL, *, echo: bool = False, sqlite_busy_timeout: float = 30.0) -> None:
        self._url = async_url(url)
        self._echo = echo
        self._busy_timeout_ms = int(sqlite_busy_timeout * 1000)
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def url(self) -> URL:
        return self._url

    @property
    def dialect_name(self) -> str:
        """The backend: `sqlite` or `postgresql`."""
        return self._url.get_backend_name()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Database.start() has not been called (or stop() has)")
        return self._engine

    async def start(self) -> None:
        """Create the engine and migrate the schema to head. Call once; `stop()` undoes it."""
        if self._engine is not None:
            raise RuntimeError("Database already started")
        if self.dialect_name == "sqlite":
            engine = self._create_sqlite_engine()
        else:
            engine = create_async_engine(self._url, echo=self._echo)
            _ping_when_idle(engine)
            _begin_with_first_statement(engine)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(upgrade_to_head)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        self._sessions = async_sessionmaker(
            engine, expire_on_commit=False, autoflush=True, sync_session_class=_Session
        )

    async def stop(self) -> None:
        """Close every pooled connection. Sessions still open fail afterwards."""
        engine, self._engine, self._sessions = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    def session(self) -> AsyncSession:
        """A new session (use as `async with db.session() as s:`); its transaction is the caller's."""
        if self._sessions is None:
            raise RuntimeError("Database.start() has not been called (or stop() has)")
        return self._sessions()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A new session inside one transaction: committed when the block ends, rolled back if it raises.

        The transaction begins with the session's first statement: a `_fast` one checks a connection out
        and begins on the driver (`_fast.HeldConnection`; later ORM statements join it), an ORM one
        through SQLAlchemy's autobegin. It ends with the commit and the close run together in one call
        into SQLAlchemy's synchronous core (one hop through its greenlet bridge, where `async with
        session.begin()` and `async with session` take three, and the close a task of its own): after
        a commit, closing sends nothing to the server (the pool's reset is a rollback of an idle
        connection), so nothing is left that a cancellation could interrupt. After a failure the
        session is rolled back and closed in a shielded task, run to its end even if the caller is
        cancelled meanwhile."""
        session = self.session()
        try:
            session.info[DEFER_KEY] = True
            yield session
            # the statements left for the end, in one statement (SQLite) or one pipeline with the
            # COMMIT (PostgreSQL; the session's commit then has nothing to send)
            await flush_deferred(session, commit=True)
            await greenlet_spawn(_end, session.sync_session, commit=True)
        except BaseException as error:
            # rolled back and closed in a task of its own, run to its end even if the caller is cancelled
            # meanwhile (as SQLAlchemy's `async with session` closes a session)
            ending = asyncio.ensure_future(greenlet_spawn(_end, session.sync_session, commit=False))
            await asyncio.shield(ending)
            if isinstance(error, IntegrityError) and _is_unique_violation(error):
                raise DuplicateKey(str(error.orig)) from error
            raise

    def _create_sqlite_engine(self) -> AsyncEngine:
        database = self._url.database or ""
        if database not in _SQLITE_MEMORY and not database.startswith("file:"):
            path = Path(database).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._url = self._url.set(database=str(path))
        # One connection: SQLite has one writer anyway, and with BEGIN IMMEDIATE every transaction takes
        # the write lock; several pooled connections only made transactions sleep in SQLite's busy
        # handler (1, 2, 5, 10 ms...) instead of queueing in order for the connection (measured: W2 of
        # bench/dispatch.py doubled). A transaction never opens another while it is open.
        pool: dict[str, Any] = {}
        if database not in _SQLITE_MEMORY and not database.startswith("file:"):
            pool = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 60}
        # sqlite3 calls run on the event loop (no aiosqlite thread hop): see _sqlite_inline.
        target = self._url.database or ":memory:"
        busy_timeout = self._busy_timeout_ms / 1000

        async def inline_connection() -> InlineConnection:
            return connect_inline(target, uri=target.startswith("file:"), busy_timeout=busy_timeout)

        engine = create_async_engine(self._url, echo=self._echo, async_creator=inline_connection, **pool)

        @event.listens_for(engine.sync_engine, "connect")
        def _configure(dbapi_connection: Any, _record: Any) -> None:
            # Take transaction control away from the sqlite3 driver (it would BEGIN only before DML, so
            # SELECTs and SAVEPOINTs would run outside the transaction); `_begin` below issues BEGIN.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                # WAL: readers never block the writer and vice versa; synchronous=NORMAL is durable
                # across application crashes in WAL mode (only an OS crash can lose the last commits).
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                # 0: a lock held by another process is waited for in InlineConnection.begin, off the loop
                cursor.execute("PRAGMA busy_timeout=0")
            finally:
                cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(connection: Connection) -> None:
            # Every transaction takes SQLite's write lock up front (BEGIN IMMEDIATE), so transactions are
            # serialized and wait for each other (up to busy_timeout) instead of failing. With a plain
            # (deferred) BEGIN, a transaction that reads and then writes (every guarded update, the
            # user_key check) must upgrade its read snapshot to a write lock; if another transaction
            # committed meanwhile, SQLite refuses at once with "database is locked" (SQLITE_BUSY_SNAPSHOT),
            # and busy_timeout cannot help. The price is that read-only transactions queue behind writers
            # too; they are short, and the embedded Queen is one process. PostgreSQL needs none of this.
            # Straight to the driver (see _sqlite_inline): no SQLAlchemy execution machinery per transaction.
            if connection.info.get(BEGUN_KEY):  # a HeldConnection's transaction, already begun
                return
            inline = cast(InlineConnection, connection.connection.driver_connection)
            try:
                # at once when no other process holds the lock (no hop out of SQLAlchemy's greenlet)
                if not inline.try_begin_immediate():
                    await_(inline.begin_immediate())
            except sqlite3.Error as error:  # as SQLAlchemy reports it (OperationalError: database is locked)
                raise DBAPIError.instance("BEGIN IMMEDIATE", None, error, sqlite3.Error) from error

        return engine
