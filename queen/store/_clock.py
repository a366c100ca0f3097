"""The store's clock: every timestamp it writes is timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utc_now"]


def utc_now() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)
