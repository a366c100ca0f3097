"""PostgreSQL's side of `_fast`: a batch of statements sent in one pipeline on libpq itself, one wait.

psycopg's pipeline (`AsyncConnection.pipeline()` and a cursor per statement) converts each query, keeps
a queue of commands and results, and goes through its wait loop at each `execute`: on this kind of
machine a BEGIN, four statements and the COMMIT cost the Queen about 250 µs of CPU that way, against
130 µs for the same protocol messages sent here on the connection's `pgconn` with one wait for all of
them (a loop of such transactions against a local server). The parameters are converted by psycopg's
own `Transformer` (the connection's adapters, as psycopg would send them) and the rows loaded by it,
so values come back exactly as through a cursor.

Each statement shape is prepared once per connection (a named statement, `_fq<n>`; psycopg's own are
`_pg3_<n>`), as psycopg does after five executions: the server then keeps its plan (see
`database._GENERIC_PLANS`). A name is remembered only once the server has confirmed the Parse, since
a pipeline aborted by an earlier error skips it.

An error is raised as psycopg raises it (`psycopg.errors`, from the failing statement's result); the
statements after it were not run (the pipeline is aborted up to its Sync). A cancellation while the
results are awaited does not leave the connection in the middle of a pipeline: the exchange is finished
first (for up to `_FINISH_AFTER_CANCEL` seconds; a server that does not answer by then has its
connection closed), then the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import weakref
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer
from psycopg.waiting import Ready, Wait, wait_async

__all__ = ["Statement", "StatementResult", "numbered", "run_pipeline"]

_FINISH_AFTER_CANCEL = 5.0
_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s|%%")
_ExecStatus = pq.ExecStatus


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement in psycopg's named style (`%(name)s`, `%%` for a percent sign) and its values."""

    sql: str
    values: Mapping[str, Any]


@dataclass(slots=True)
class StatementResult:
    """What a statement returned: its rows as tuples and, when it has columns, (name, type oid) each
    (`description`, made when asked: `_fast` needs it at a shape's first execution only)."""

    rows: list[tuple[Any, ...]]
    _pgresult: Any = None

    @property
    def description(self) -> list[tuple[str, int]] | None:
        result = self._pgresult
        if result is None:
            return None
        return [((result.fname(i) or b"").decode(), result.ftype(i)) for i in range(result.nfields)]


@dataclass(slots=True)
class _Connection:
    """What this module keeps per psycopg connection: the statements the server has prepared."""

    prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = field(default_factory=dict)
    names: itertools.count[int] = field(default_factory=itertools.count)


_connections: weakref.WeakKeyDictionary[Any, _Connection] = weakref.WeakKeyDictionary()


@functools.lru_cache(maxsize=2048)
def numbered(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """The statement with `$1, $2, ...` for its named parameters (a name used twice is one number), and
    the names in that order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(number, sql).encode(), tuple(names)


@dataclass(slots=True)
class _Expected:
    """The result a pipeline command produces: of statement `index`, of a Parse, or of BEGIN/COMMIT."""

    index: int | None = None
    prepared: tuple[tuple[bytes, tuple[int, ...]], bytes] | None = None


async def run_pipeline(
    driver: Any, statements: Sequence[Statement], *, begin: bool = False, commit: bool = False
) -> list[StatementResult]:
    """Run `statements` (after a BEGIN when `begin`, followed by the COMMIT when `commit`) in one
    pipeline on `driver` (a psycopg AsyncConnection, not in a pipeline of its own); their results in
    order. Raises the first failure as psycopg would (the rest did not run)."""
    pgconn = driver.pgconn
    known = _connections.get(driver)
    if known is None:
        known = _connections[driver] = _Connection()
    transformer = Transformer(driver)
    sends: list[Callable[[], None]] = []
    expected: list[_Expected] = []
    preparing: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
    if begin:
        sends.append(functools.partial(pgconn.send_query_params, b"BEGIN", None))
        expected.append(_Expected())
    for index, statement in enumerate(statements):
        query, names = numbered(statement.sql)
        params = [statement.values[name] for name in names]
        dumped = transformer.dump_sequence(params, [PyFormat.AUTO] * len(params))
        key = (query, tuple(transformer.types or ()))
        name = known.prepared.get(key) or preparing.get(key)
        if name is None:  # its Parse goes first in this pipeline
            name = preparing[key] = f"_fq{next(known.names)}".encode()
            sends.append(functools.partial(pgconn.send_prepare, name, query, param_types=key[1]))
            expected.append(_Expected(prepared=(key, name)))
        formats = list(transformer.formats or ())
        sends.append(functools.partial(pgconn.send_query_prepared, name, dumped, param_formats=formats))
        expected.append(_Expected(index=index))
    if commit:
        sends.append(functools.partial(pgconn.send_query_params, b"COMMIT", None))
        expected.append(_Expected())

    groups = await _exchange(pgconn, sends)
    results: list[StatementResult] = [StatementResult([]) for _ in statements]
    failure: errors.Error | None = None
    for wanted, group in zip(expected, groups, strict=True):
        result = group[-1]
        status = result.status
        if status == _ExecStatus.FATAL_ERROR:
            if failure is None:
                failure = errors.error_from_result(result, encoding=driver.info.encoding)
            continue
        if status == _ExecStatus.PIPELINE_ABORTED:
            continue
        if wanted.prepared is not None:
            known.prepared[wanted.prepared[0]] = wanted.prepared[1]
        elif wanted.index is not None and status == _ExecStatus.TUPLES_OK:
            transformer.set_pgresult(result)
            results[wanted.index] = StatementResult(transformer.load_rows(0, result.ntuples, tuple), result)
    if failure is not None:
        raise failure
    return results


async def _exchange(pgconn: Any, sends: list[Callable[[], None]]) -> list[list[Any]]:
    """Send the commands and a Sync in pipeline mode; the results of each command, in order."""
    pgconn.enter_pipeline_mode()
    try:
        for send in sends:
            send()
        pgconn.pipeline_sync()
    except BaseException:
        pgconn.finish()  # half a pipeline was queued: the connection cannot be used again
        raise
    communication = _communicate(pgconn)
    try:
        groups = await wait_async(communication, pgconn.socket)
    except asyncio.CancelledError:
        try:
            groups = await wait_async(communication, pgconn.socket, timeout=_FINISH_AFTER_CANCEL)
        except BaseException:
            pgconn.finish()
            raise
        pgconn.exit_pipeline_mode()
        raise
    except BaseException:
        pgconn.finish()
        raise
    pgconn.exit_pipeline_mode()
    return groups


def _communicate(pgconn: Any) -> Generator[Wait, Ready | int, list[list[Any]]]:
    """Flush what is queued, then read every result up to the Sync (libpq's pipeline protocol: results
    of one command, then None, for each command). Resumed after a cancellation, it is sent None."""
    while pgconn.flush() == 1:
        ready = yield Wait.RW
        if ready and ready & Ready.R:
            pgconn.consume_input()
    groups: list[list[Any]] = []
    group: list[Any] = []
    while True:
        if pgconn.is_busy():
            yield Wait.R
            pgconn.consume_input()
            continue
        result = pgconn.get_result()
        if result is None:
            if group:
                groups.append(group)
                group = []
            continue
        if result.status == _ExecStatus.PIPELINE_SYNC:
            return groups
        group.append(result)
