"""Who is calling: the authenticated identity every service call carries (never taken from a request body)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    """A user (or an Ant) acting within one organisation, with its roles there.

    `authenticated` is False for the embedded mode's single local identity: the Queen then cannot tell
    people apart (which, e.g., separation of duties in approvals must know).
    """

    organization_id: str
    user_id: str
    roles: frozenset[str] = frozenset({"admin"})
    authenticated: bool = False
