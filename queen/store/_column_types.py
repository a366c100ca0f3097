"""Column types that behave the same on SQLite and PostgreSQL: aware UTC datetimes, enums as text, big ids."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import BigInteger, DateTime, Integer, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = ["BIG_ID", "EnumText", "UTCDateTime"]

E = TypeVar("E", bound=enum.StrEnum)

# Ids that are numbers (requests, events) are 64-bit on PostgreSQL (BIGSERIAL). On SQLite only a column
# declared exactly INTEGER PRIMARY KEY aliases the rowid and autoincrements, so it stays INTEGER there
# (SQLite integers are 64-bit anyway).
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database.

    PostgreSQL stores `timestamptz` and returns it in the session's time zone (converted to UTC here).
    SQLite has no time zones: the value is stored as naive UTC text and made aware again when read.
    Naive datetimes are refused on the way in: guessing their zone would hide a bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} given to the store; use an aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class EnumText(TypeDecorator[E], Generic[E]):
    """A `str` enum stored as its value in a short VARCHAR (no native enum type: adding a state to the
    table in states.py then needs no migration)."""

    impl = String(32)
    cache_ok = True

    def __init__(self, enum_class: type[E]) -> None:
        super().__init__()
        self.enum_class = enum_class

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return self.enum_class(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> E | None:
        if value is None:
            return None
        return self.enum_class(value)
