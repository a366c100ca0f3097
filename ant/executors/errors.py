"""Errors of the executors, under the Ant's root error."""

from __future__ import annotations

from ant.errors import AntError
from ant.executors.methods import Method

__all__ = ["ExecutorError", "ExecutorUnavailable", "UnsupportedMethod"]


class ExecutorError(AntError):
    """An executor could not run a task for a reason of its own (not the task's script failing)."""


class UnsupportedMethod(ExecutorError):
    """No executor of this Ant serves the method."""

    def __init__(self, method: Method | str) -> None:
        super().__init__(f"this Ant does not run {method} tasks")
        self.method = method


class ExecutorUnavailable(ExecutorError):
    """The engine an executor needs (Docker, a Kubernetes cluster) is not reachable."""

    def __init__(self, method: Method, reason: str) -> None:
        super().__init__(f"{method} is not available on this Ant: {reason}")
        self.method = method
        self.reason = reason
