"""The one way the store writes a state: `UPDATE ... SET state=:target WHERE id=:id AND state=:expected`."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import CursorResult, Result, Row, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from queen.domain.errors import InvalidTransition, NotFound
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
) -> Row[Any]:
    """Move one row from `expected` to `target` (and set `values`) in a single guarded UPDATE.

    A Core statement on the model's table (no ORM unit of work: this is the dispatch path's write), so it
    returns the updated row as a `Row`, whose attributes are the columns.

    The caller has already checked the transition table. When no row matches, the row is read once to
    say why: NotFound if it does not exist, else InvalidTransition naming the state it is really in
    (another transaction changed it first: a lost race, never a silent overwrite).
    """
    table = cast(Table, model.__table__)
    id_column = model.__mapper__.primary_key[0]
    stmt = (
        update(table)
        .where(id_column == row_id, state_column == expected)
        .values({state_column.key: target, **values})
        .returning(*table.c)
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is not None:
        return row
    current = await session.scalar(select(state_column).where(id_column == row_id))
    if current is None:
        raise NotFound(f"{entity} {row_id} does not exist")
    raise InvalidTransition(f"{entity} {row_id}", str(current), str(target))
