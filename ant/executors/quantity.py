"""Kubernetes quantity strings ("500m", "2", "512Mi", "1G") as numbers, for the DOCKER executor's limits."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["InvalidQuantity", "parse_bytes", "parse_cpu"]

_SUFFIXES = {
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "m": Decimal(1) / 1000,
}
_QUANTITY = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]{0,2})\s*")


class InvalidQuantity(ValueError):
    """Not a Kubernetes quantity."""


def _parse(text: str) -> Decimal:
    match = _QUANTITY.fullmatch(text)
    if match is None or match.group(2) not in _SUFFIXES:
        raise InvalidQuantity(f"not a quantity: {text!r} (expected e.g. '500m', '2', '512Mi', '1G')")
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only decimals
        raise InvalidQuantity(f"not a quantity: {text!r}") from exc


def parse_cpu(text: str) -> float:
    """CPU cores: "500m" -> 0.5, "2" -> 2.0."""
    return float(_parse(text))


def parse_bytes(text: str) -> int:
    """Bytes: "512Mi" -> 536870912, "1G" -> 1000000000."""
    return int(_parse(text))
