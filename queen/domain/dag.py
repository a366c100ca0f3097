"""The shape of a job's task graph: route targets, references, cycles and reachability."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from queen.domain._yaml_reader import Node, Reader, did_you_mean
from queen.domain.job_definition import (
    RouteTarget,
    TaskDefinition,
    TaskMethod,
    is_error_code_target,
    is_no_op_target,
)
from queen.domain.problems import ProblemCode

__all__ = ["Locator", "check", "is_reserved_target", "task_edges"]

_RESERVED = frozenset(target.value for target in RouteTarget)


class Locator(Protocol):
    """Where things are written in the source, so graph problems point at the right line."""

    def task(self, task_type: str) -> Node: ...

    def field(self, task_type: str, name: str) -> Node: ...


def is_reserved_target(name: str) -> bool:
    """Reserved route words (FATAL, EXECUTING, ERR_*, ...) that are not task names."""
    return name in _RESERVED or is_error_code_target(name)


def task_edges(task: TaskDefinition, task_types: frozenset[str]) -> Iterator[tuple[str, str]]:
    """(route, target task) for every route of `task` that leads to a task of the job."""
    for route, target in task.routes().items():
        if target in task_types:
            yield route, target


def check(tasks: Sequence[TaskDefinition], locator: Locator, reader: Reader) -> None:
    """Record all graph problems: unknown targets and references, cycles, unreachable tasks, gates."""
    task_types = frozenset(task.task_type for task in tasks)
    for task in tasks:
        _check_targets(task, task_types, locator, reader)
        _check_references(task, task_types, locator, reader)
        if task.method is TaskMethod.MANUAL:
            _check_manual_routes(task, locator, reader)
    _check_cycles(tasks, task_types, locator, reader)
    _check_reachable(tasks, task_types, locator, reader)


def _check_targets(
    task: TaskDefinition, task_types: frozenset[str], locator: Locator, reader: Reader
) -> None:
    for route, target in task.routes().items():
        if target in task_types or is_reserved_target(target) or is_no_op_target(target):
            continue
        hint = did_you_mean(target, task_types) or did_you_mean(target.upper(), _RESERVED)
        reader.error(
            ProblemCode.UNKNOWN_ROUTE_TARGET,
            f'task "{task.task_type}" routes {route} to "{target}", which is neither a task of this job '
            "nor a reserved word" + (f"; {hint}" if hint else ""),
            locator.field(task.task_type, route),
            text=target,
            fix=(
                f"rename it: {hint}"
                if hint
                else "name a task of this job, or one of FATAL, RESTART_TASK, RESTART_JOB, PAUSE_JOB, "
                "EXECUTING, COMPLETED, FAILED, ERR_<CODE>, no-op"
            ),
        )
        if route in ("on_completed", "on_failed") and target == task.task_type:
            continue


def _check_references(
    task: TaskDefinition, task_types: frozenset[str], locator: Locator, reader: Reader
) -> None:
    for field_name, names in (
        ("dependencies", task.dependencies),
        ("await_forked_tasks", task.await_forked_tasks),
    ):
        for name in names:
            if name in task_types and name != task.task_type:
                continue
            if name == task.task_type:
                message = f'task "{task.task_type}" lists itself in {field_name}'
                fix = f"remove {name} from {field_name}"
            else:
                hint = did_you_mean(name, task_types)
                message = (
                    f'task "{task.task_type}" lists "{name}" in {field_name}, but the job has no such task'
                    + (f"; {hint}" if hint else "")
                )
                fix = f"rename it: {hint}" if hint else "name a task of this job"
            reader.error(
                ProblemCode.UNKNOWN_DEPENDENCY,
                message,
                locator.field(task.task_type, field_name),
                text=name,
                fix=fix,
            )


def _check_manual_routes(task: TaskDefinition, locator: Locator, reader: Reader) -> None:
    if "APPROVED" in task.on_exit_code or "REJECTED" in task.on_exit_code:
        return
    reader.error(
        ProblemCode.MANUAL_UNROUTED,
        f'MANUAL task "{task.task_type}" handles neither APPROVED nor REJECTED in on_exit_code, so the '
        "decision would not choose a path",
        locator.field(task.task_type, "on_exit_code") if task.on_exit_code else locator.task(task.task_type),
        text=task.task_type,
        fix="add `on_exit_code: {APPROVED: <next task>, REJECTED: <rollback task>}`",
    )


def _check_cycles(
    tasks: Sequence[TaskDefinition], task_types: frozenset[str], locator: Locator, reader: Reader
) -> None:
    """A cycle among tasks never ends; a task routing to itself on an exit code is a sensor loop (allowed)."""
    graph: dict[str, list[tuple[str, str]]] = {task.task_type: [] for task in tasks}
    for task in tasks:
        for route, target in task_edges(task, task_types):
            if target == task.task_type:
                if route.startswith("on_exit_code."):
                    continue  # sensor loop: poll again until the exit code changes
                reader.error(
                    ProblemCode.CYCLE,
                    f'task "{task.task_type}" routes {route} to itself, which would run it forever',
                    locator.field(task.task_type, route),
                    text=target,
                    fix="use `retry: N` to try again on failure, or route a specific exit code to EXECUTING "
                    "for a sensor loop",
                )
                continue
            graph[task.task_type].append((route, target))

    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    reported: set[frozenset[str]] = set()

    def visit(start: str) -> None:
        # Iterative DFS: definitions may hold up to 500 tasks in one chain, beyond Python's recursion budget.
        path: list[str] = [start]
        stack: list[Iterator[tuple[str, str]]] = [iter(graph[start])]
        color[start] = grey
        while stack:
            node = path[-1]
            for route, target in stack[-1]:
                if color[target] == grey:
                    cycle = [*path[path.index(target) :], target]
                    key = frozenset(cycle)
                    if key not in reported:
                        reported.add(key)
                        reader.error(
                            ProblemCode.CYCLE,
                            "the tasks form a cycle, so the job would never end: " + " → ".join(cycle),
                            locator.field(node, route),
                            text=target,
                            fix=f'route {route} of "{node}" to a later task, or use RESTART_JOB / EXECUTING '
                            "to repeat work on purpose",
                        )
                elif color[target] == white:
                    color[target] = grey
                    path.append(target)
                    stack.append(iter(graph[target]))
                    break
            else:
                color[node] = black
                path.pop()
                stack.pop()

    for task in tasks:
        if color[task.task_type] == white:
            visit(task.task_type)


def _check_reachable(
    tasks: Sequence[TaskDefinition], task_types: frozenset[str], locator: Locator, reader: Reader
) -> None:
    """Warn about tasks no route leads to; always_run tasks run at the end anyway."""
    by_type = {task.task_type: task for task in tasks}
    seen = {tasks[0].task_type}
    frontier = [tasks[0].task_type]
    while frontier:
        current = by_type[frontier.pop()]
        for _route, target in task_edges(current, task_types):
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    for task in tasks:
        if task.task_type in seen or task.always_run:
            continue
        reader.warning(
            ProblemCode.UNREACHABLE_TASK,
            f'task "{task.task_type}" is never reached: no route from the first task leads to it',
            locator.task(task.task_type),
            fix=f'route a task\'s on_completed, on_failed or on_exit_code to "{task.task_type}", '
            "mark it always_run, or remove it",
        )
