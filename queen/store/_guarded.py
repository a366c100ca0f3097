"""The one way the store writes a state: `UPDATE ... SET state=:target WHERE id=:id AND state=:expected`."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import fields as dataclass_fields
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import CursorResult, Result, Table, bindparam, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql import ClauseElement

from queen.domain.errors import InvalidTransition, NotFound
from queen.store._fast import FastStatement, defer_returning, returning_columns, run
from queen.store.models import Base

__all__ = ["guarded_update", "rowcount"]


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE without RETURNING."""
    return cast(CursorResult[Any], result).rowcount


async def guarded_update(
    session: AsyncSession,
    model: type[Base],
    *,
    entity: str,
    row_id: object,
    state_column: InstrumentedAttribute[Any],
    expected: enum.StrEnum,
    target: enum.StrEnum,
    values: Mapping[str, Any],
    known: object | None = None,
) -> SimpleNamespace:
    """Move one row from `expected` to `target` (and set `values`) in a single guarded UPDATE.

    One of the dispatch path's statements (`_fast`): compiled once per table and set of columns, run on
    the transaction's driver connection. Returns the updated row as a `SimpleNamespace` of its columns.

    The caller has already checked the transition table. When no row matches, the row is read once to
    say why: NotFound if it does not exist, else InvalidTransition naming the state it is really in
    (another transaction changed it first: a lost race, never a silent overwrite).

    `known`: the caller's record of the row as it is now (a dataclass whose fields are the columns; a
    supervisor holds its task's, execution's and request's rows). The UPDATE is then left for the end
    of the transaction (`_fast.defer_returning`: with the other deferred statements, one round trip on
    PostgreSQL), the guard is checked there and refuses the whole transaction with the same errors, and
    the row returned is `known` with `values`. ValueError if `known` is not the row in `expected`.
    """
    table = cast(Table, model.__table__)
    id_column = model.__mapper__.primary_key[0]
    id_key, state_key = str(id_column.key), state_column.key
    columns = (state_key, *sorted(values))
    params = {**values, state_key: target, "w_id": row_id, "w_state": expected}

    async def refuse(rows: list[dict[str, Any]]) -> None:
        if rows:
            return
        current = await session.scalar(select(state_column).where(id_column == row_id))
        if current is None:
            raise NotFound(f"{entity} {row_id} does not exist")
        raise InvalidTransition(f"{entity} {row_id}", str(current), str(target))

    if known is None:
        rows = await run(session, _update_statement(table, id_key, state_key, columns), params)
        await refuse(rows)
        return SimpleNamespace(**rows[0])
    fields = {field.name: getattr(known, field.name) for field in dataclass_fields(cast(Any, known))}
    if fields.get(id_key) != row_id or fields.get(state_key) is not expected:
        raise ValueError(f"guarded_update: `known` is not the {entity} {row_id} in state {expected}")
    statement = _update_statement(table, id_key, state_key, columns, whole_row=False)
    await defer_returning(session, statement, params, check=refuse)
    return SimpleNamespace(**{**fields, **values, state_key: target})


_STATEMENTS: dict[tuple[str, tuple[str, ...], bool], FastStatement] = {}


def _update_statement(
    table: Table, id_key: str, state_key: str, columns: tuple[str, ...], *, whole_row: bool = True
) -> FastStatement:
    """`UPDATE table SET <columns> WHERE id = :w_id AND state = :w_state RETURNING *` (or `RETURNING id`),
    once per shape."""
    found = _STATEMENTS.get((table.name, columns, whole_row))
    if found is None:
        returned = returning_columns(table) if whole_row else (table.c[id_key],)

        def build(_dialect: Dialect) -> ClauseElement:
            return (
                update(table)
                .where(table.c[id_key] == bindparam("w_id"), table.c[state_key] == bindparam("w_state"))
                .values({name: bindparam(name) for name in columns})
                .returning(*returned)
            )

        found = _STATEMENTS[(table.name, columns, whole_row)] = FastStatement(build, returned)
    return found
