"""Turning how a script phase ended into an `ExecutionResult` (shared by SHELL, DOCKER, KUBERNETES)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ant.executors.output import OutputCollector
from ant.executors.result import (
    EXIT_CODE_FAILED,
    ErrorCode,
    ExecutionResult,
    ExecutionStatus,
    Timings,
    exit_code_of_returncode,
)
from ant.executors.script import ScriptPlan
from ant.executors.stopping import StopReason

__all__ = ["PhaseOutcome", "after_script_warning", "script_result"]


@dataclass(frozen=True, slots=True)
class PhaseOutcome:
    """How one run of a script ended: the shell's return code (None if unknown, e.g. a pod that
    vanished), whether the executor stopped it, or an executor-side failure (`error_code`)."""

    returncode: int | None
    stopped: StopReason | None = None
    exit_message: str = ""
    error_code: str = ""
    error_message: str = ""


def _describe(timeout: timedelta | None) -> str:
    if timeout is None:
        return "its time limit"
    return f"{timeout.total_seconds():g}s"


def script_result(
    plan: ScriptPlan,
    outcome: PhaseOutcome,
    collector: OutputCollector,
    *,
    timeout: timedelta | None,
    timings: Timings,
    warnings: list[str],
    namespace: str = "",
) -> ExecutionResult:
    """The result of a task whose main commands were `plan`."""
    exit_code = (
        EXIT_CODE_FAILED if outcome.returncode is None else exit_code_of_returncode(outcome.returncode)
    )
    command = plan.command(collector.last_step(plan))
    status = ExecutionStatus.FAILED
    error_code = ""
    error_message = ""
    failed_command = command
    if outcome.error_code:
        error_code, error_message, failed_command = outcome.error_code, outcome.error_message, ""
    elif outcome.stopped is StopReason.TIMEOUT:
        error_code = ErrorCode.TASK_TIMEOUT
        error_message = f"the task did not finish within {_describe(timeout)} and was stopped"
    elif outcome.stopped is StopReason.CANCELLED:
        status = ExecutionStatus.CANCELLED
        error_code = ErrorCode.TASK_CANCELLED
        error_message = "the task was cancelled"
    elif outcome.returncode == 0:
        status, exit_code, failed_command = ExecutionStatus.COMPLETED, "0", ""
    elif command:
        error_message = f"command {command!r} exited with status {exit_code}"
    else:
        error_message = f"the script exited with status {exit_code}"
    return ExecutionResult(
        status=status,
        exit_code=exit_code,
        exit_message=outcome.exit_message,
        error_code=error_code,
        error_message=error_message,
        failed_command=failed_command,
        stdout=collector.stdout,
        task_context=dict(collector.task_context),
        job_context=dict(collector.job_context),
        warnings=(*warnings, *collector.warnings),
        timings=timings,
        namespace=namespace,
    )


def after_script_warning(plan: ScriptPlan, outcome: PhaseOutcome, collector: OutputCollector) -> str | None:
    """A warning when after_script failed (its failure never changes the task's status)."""
    if outcome.error_code:
        return f"after_script could not run: {outcome.error_message}"
    if outcome.stopped is not None:
        return f"after_script was stopped ({outcome.stopped})"
    if outcome.returncode in (0, None):
        return None
    assert outcome.returncode is not None
    command = plan.command(collector.last_step(plan))
    return (
        f"after_script command {command!r} exited with status {exit_code_of_returncode(outcome.returncode)}"
    )
