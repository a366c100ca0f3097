"""The Queen's error hierarchy: one root, typed subclasses, mapped to gRPC/HTTP statuses at the edges."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from queen.domain.problems import Problem

__all__ = [
    "AlreadyExists",
    "FailedPrecondition",
    "FormicaryError",
    "InvalidArgument",
    "InvalidDefinition",
    "InvalidTransition",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
]


class FormicaryError(Exception):
    """Root of every error the Queen raises on purpose; anything else is a bug."""


class InvalidArgument(FormicaryError):
    """A request carried a value the Queen cannot accept (wrong type, out of range, too large)."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class InvalidDefinition(InvalidArgument):
    """A job definition failed validation; `problems` lists every problem found, not only the first."""

    def __init__(self, problems: Sequence[Problem], *, source: str = "<definition>") -> None:
        self.problems = tuple(problems)
        self.source = source
        errors = [p for p in self.problems if p.is_error]
        first = errors[0] if errors else (self.problems[0] if self.problems else None)
        summary = f"{len(errors)} error(s) in job definition {source}"
        if first is not None:
            summary += f"; first: {first.line}:{first.column}: {first.message}"
        super().__init__(summary)


class NotFound(FormicaryError):
    """The named entity does not exist (or is not visible to the caller)."""


class AlreadyExists(FormicaryError):
    """An entity with the same identity (e.g. a request's `user_key`) already exists."""


class PermissionDenied(FormicaryError):
    """The caller is authenticated but not allowed to do this."""


class Unauthenticated(FormicaryError):
    """The call carries no credential, or one that is invalid, expired or revoked."""


class ResourceExhausted(FormicaryError):
    """A limit was reached (a rate limit, a size); `retry_after` is in seconds when waiting helps."""

    def __init__(self, message: str, *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FailedPrecondition(FormicaryError):
    """The entity exists but is not in a state that allows this (e.g. a disabled job type)."""


class InvalidTransition(FailedPrecondition):
    """A state change that the transition table forbids, or a lost race on a guarded update."""

    def __init__(self, entity: str, current: str, target: str) -> None:
        super().__init__(f"{entity} cannot go from {current} to {target}")
        self.entity = entity
        self.current = current
        self.target = target
