"""Reconnect delays: exponential with jitter, capped well below the Queen's heartbeat_timeout so that
a reconnecting Ant resumes its session before it expires (AntService section 8)."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays initial, 2*initial, 4*initial, ... up to `cap`, each drawn uniformly from its upper half
    ("equal jitter": never below half the nominal delay, so a crowd of Ants does not retry in step,
    yet no attempt comes immediately)."""

    def __init__(
        self, initial: float, cap: float, *, multiplier: float = 2.0, rng: random.Random | None = None
    ) -> None:
        if initial <= 0 or cap < initial or multiplier < 1:
            raise ValueError("need 0 < initial <= cap and multiplier >= 1")
        self.initial = initial
        self.cap = cap
        self._multiplier = multiplier
        self._rng = rng or random.Random()
        self._attempt = 0

    def limit_to(self, heartbeat_timeout: float) -> None:
        """Cap the delays at a quarter of the session's heartbeat_timeout (once the Queen told it)."""
        if heartbeat_timeout > 0:
            self.cap = max(min(self.cap, heartbeat_timeout / 4), min(self.initial, heartbeat_timeout / 4))
            self.initial = min(self.initial, self.cap)

    def next_delay(self) -> float:
        nominal = min(self.cap, self.initial * self._multiplier**self._attempt)
        if nominal < self.cap:  # stop counting at the cap: the power would overflow one day
            self._attempt += 1
        return nominal / 2 + self._rng.uniform(0, nominal / 2)

    def reset(self) -> None:
        """The connection is up again: the next failure starts from `initial`."""
        self._attempt = 0
