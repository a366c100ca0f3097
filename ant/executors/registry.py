"""The `Executor` protocol and the registry that maps each method to the executor that runs it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

from ant.executors.context import ExecutionContext
from ant.executors.errors import UnsupportedMethod
from ant.executors.methods import Method
from ant.executors.result import ExecutionResult
from ant.executors.spec import TaskSpec

__all__ = ["Executor", "ExecutorRegistry", "SupportsAclose"]


class Executor(Protocol):
    """Runs one task attempt: a spec in, a result out.

    A failing script is a result (FAILED), not an exception; exceptions mean the executor itself broke.
    The executor stops its work when `ctx.cancel` is set or `spec.timeout` passes, and releases every
    resource it made (processes, containers, pods) before returning, also when it is cancelled.
    """

    async def run(self, spec: TaskSpec, ctx: ExecutionContext) -> ExecutionResult: ...


@runtime_checkable
class SupportsAclose(Protocol):
    """An executor holding a client (Docker, Kubernetes) that must be closed when the Ant stops."""

    async def aclose(self) -> None: ...


class ExecutorRegistry(Mapping[Method, Executor]):
    """Which executor runs which method; the methods this Ant registers with are its keys."""

    def __init__(self, executors: Mapping[Method, Executor]) -> None:
        self._executors = dict(executors)

    def __getitem__(self, method: Method) -> Executor:
        try:
            return self._executors[method]
        except KeyError:
            raise UnsupportedMethod(method) from None

    def __contains__(self, method: object) -> bool:
        return method in self._executors

    def __iter__(self) -> Iterator[Method]:
        return iter(self._executors)

    def __len__(self) -> int:
        return len(self._executors)

    @property
    def methods(self) -> tuple[Method, ...]:
        """The methods served, in a stable order."""
        return tuple(m for m in Method if m in self._executors)

    async def aclose(self) -> None:
        """Close every executor that holds a client (each once, even if it serves several methods)."""
        seen: set[int] = set()
        for executor in self._executors.values():
            if id(executor) in seen or not isinstance(executor, SupportsAclose):
                continue
            seen.add(id(executor))
            await executor.aclose()
