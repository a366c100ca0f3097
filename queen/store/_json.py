"""Conversions between JSON columns and records: plain dicts/lists in, read-only views out."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

__all__ = ["freeze", "freeze_mapping", "to_json_list", "to_json_object", "to_json_value"]


def to_json_value(value: Any) -> Any:
    """`value` as plain JSON data: mappings → dict (str keys), sequences → list, enums → their value,
    datetimes → ISO 8601, timedeltas → seconds. Anything else that JSON cannot hold raises TypeError."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return to_json_value(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [to_json_value(item) for item in value]
    raise TypeError(f"cannot store {type(value).__name__} in a JSON column: {value!r}")


def to_json_object(value: Mapping[str, Any]) -> dict[str, Any]:
    return {str(key): to_json_value(item) for key, item in value.items()}


def to_json_list(value: Sequence[Any]) -> list[Any]:
    return [to_json_value(item) for item in value]


def freeze(value: Any) -> Any:
    """A read-only copy of JSON data: dicts become `MappingProxyType`, lists become tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def freeze_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType({key: freeze(item) for key, item in (value or {}).items()})
