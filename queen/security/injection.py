"""Configs into the TaskRequest, secrets out of everything stored: a dispatcher and a log sink wrapped
around the Ant registry.

`SecretInjector` is the supervisors' dispatcher: for each attempt it loads the configs the task sees
(organisation, job type, requesting user), decrypts them into the attempt's variables (secret ones
marked, so that the Ant masks them) and nothing else: the supervisor, the stored task and the templates
never hold a secret value. While the attempt runs, its redactor masks every log line the Ant sends
(`RedactingLogSink`, before LogHub stores or shows it), and the report it ends with, before the
supervisor stores it. The Ant masks them too; this is the Queen's own line of defence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Iterable, Mapping

from formicary.v1 import log_line_pb2
from queen.ants.registry import LogSink
from queen.domain.job_definition import TaskMethod
from queen.domain.work import TaskReport, TaskWork
from queen.security.configs import ConfigService
from queen.supervisor.dispatch import DispatchOutcome, DispatchProgress, TaskDispatcher
from sdk.redaction import Redactor

__all__ = ["RedactingLogSink", "SecretInjector"]


class RedactingLogSink:
    """Masks the secrets of running attempts in their log lines, then hands the lines on."""

    def __init__(self, inner: LogSink) -> None:
        self._inner = inner
        self.redactors: dict[str, Redactor] = {}

    def mask(self, task_execution_id: str, text: str) -> str:
        """`text` with the secrets of the attempt running `task_execution_id` masked (artifact names)."""
        redact = self.redactors.get(task_execution_id)
        return redact(text) if redact else text

    def lines(self, task_execution_id: str, task_retry: int, lines: Iterable[log_line_pb2.LogLine]) -> None:
        redact = self.redactors.get(task_execution_id)
        if redact:
            masked = []
            for line in lines:
                copy = log_line_pb2.LogLine()
                copy.CopyFrom(line)
                copy.text = redact(line.text)
                masked.append(copy)
            lines = masked
        self._inner.lines(task_execution_id, task_retry, lines)


def _redacted_report(report: TaskReport, redact: Redactor) -> TaskReport:
    def each(values: Mapping[str, str]) -> dict[str, str]:
        return {key: redact(value) for key, value in values.items()}

    return dataclasses.replace(
        report,
        exit_message=redact(report.exit_message),
        error_message=redact(report.error_message),
        failed_command=redact(report.failed_command),
        task_context=each(report.task_context),
        job_context=each(report.job_context),
        warnings=tuple(redact(w) for w in report.warnings),
        stdout=tuple(redact(line) for line in report.stdout),
        artifacts=tuple(
            {key: redact(value) if isinstance(value, str) else value for key, value in artifact.items()}
            for artifact in report.artifacts
        ),
    )


class SecretInjector:
    """A TaskDispatcher that adds configs to each attempt and masks its secrets on the way back."""

    def __init__(self, inner: TaskDispatcher, configs: ConfigService, logs: RedactingLogSink) -> None:
        self._inner = inner
        self._configs = configs
        self._logs = logs

    def unavailable_reason(self, method: TaskMethod, tags: frozenset[str]) -> str | None:
        return self._inner.unavailable_reason(method, tags)

    async def cancel(self, task_execution_id: str, reason: str) -> None:
        await self._inner.cancel(task_execution_id, reason)

    async def run(self, work: TaskWork, progress: DispatchProgress) -> DispatchOutcome:
        work, redact = await self._prepare(work)
        return await self._follow(work, redact, self._inner.run(work, progress))

    async def reattach(self, work: TaskWork, ant_id: str, progress: DispatchProgress) -> DispatchOutcome:
        work, redact = await self._prepare(work)
        return await self._follow(work, redact, self._inner.reattach(work, ant_id, progress))

    async def _prepare(self, work: TaskWork) -> tuple[TaskWork, Redactor]:
        if not work.organization_id or work.method.runs_in_queen:
            return work, Redactor(())
        found = work.configs
        if found is None:
            found = await self._configs.for_task(
                organization_id=work.organization_id, job_type=work.job_type, user_id=work.user_id
            )
        if not found.values:
            return work, Redactor(())
        # configs have the lowest precedence: a request param or job variable of the same name wins
        variables = {**found.values, **work.variables}
        secret = {name for name in found.secret_names if name not in work.variables}
        injected = dataclasses.replace(
            work, variables=variables, secret_names=work.secret_names | frozenset(secret)
        )
        return injected, Redactor(found.values[name] for name in secret)

    async def _follow(
        self, work: TaskWork, redact: Redactor, running: Awaitable[DispatchOutcome]
    ) -> DispatchOutcome:
        if not redact:
            return await running
        self._logs.redactors[work.task_execution_id] = redact
        try:
            outcome: DispatchOutcome = await running
        finally:
            self._logs.redactors.pop(work.task_execution_id, None)
        return DispatchOutcome(_redacted_report(outcome.report, redact), outcome.ack)
