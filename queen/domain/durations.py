"""Durations as job definitions write them: Go-style `90s`, `5m`, `4h`, `1h30m`, `250ms`, `1.5h`."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["DurationError", "format_duration", "parse_duration"]

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(ns|us|µs|ms|s|m|h|d)")
# A duration beyond this is certainly a typo (and would overflow timers); 366 days.
_MAX_SECONDS = 366 * 86400


class DurationError(ValueError):
    """The text is not a duration; the message says why."""


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration (plus `d` for days); a bare number is refused because its unit is unclear."""
    raw = text.strip()
    if not raw:
        raise DurationError("empty duration")
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", raw):
        raise DurationError(f"{raw!r} has no unit")
    position = 0
    total = 0.0
    for match in _PART.finditer(raw):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(raw) or position == 0:
        raise DurationError(f"{raw!r} is not a duration")
    if total > _MAX_SECONDS:
        raise DurationError(f"{raw!r} is longer than 366 days")
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """The shortest Go-style text for a duration (`1h30m`, `90s` → `1m30s`, `250ms`)."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    if total_ms < 0:
        return "-" + format_duration(-value)
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if seconds:
        parts.append(f"{seconds}s")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)
