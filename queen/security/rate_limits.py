"""Rate limits per credential and action: token buckets, refused with ResourceExhausted (gRPC
RESOURCE_EXHAUSTED, HTTP 429 with Retry-After)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from queen.domain.errors import ResourceExhausted
from queen.security.permissions import Permission

__all__ = ["RateLimit", "RateLimiter"]

_MAX_BUCKETS = 100_000  # least recently used buckets beyond this are forgotten (they were full anyway)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`per_minute` calls a minute on average, with bursts of up to `burst`."""

    per_minute: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


class RateLimiter:
    """Token buckets keyed by (credential, permission); permissions without a limit are not counted."""

    def __init__(
        self, limits: Mapping[Permission, RateLimit], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits = dict(limits)
        self._clock = clock
        self._buckets: OrderedDict[tuple[str, Permission], tuple[float, float]] = OrderedDict()

    def check(self, credential: str, permission: Permission) -> None:
        limit = self._limits.get(permission)
        if limit is None or limit.per_minute <= 0:
            return
        key = (credential, permission)
        now = self._clock()
        tokens, then = self._buckets.pop(key, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - then) * limit.per_second)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / limit.per_second
            raise ResourceExhausted(
                f"rate limit of {permission.value} reached ({limit.per_minute:g} a minute, bursts of "
                f"{limit.burst}); retry in {wait:.1f}s",
                retry_after=wait,
            )
        self._buckets[key] = (tokens - 1.0, now)
        while len(self._buckets) > _MAX_BUCKETS:
            self._buckets.popitem(last=False)
