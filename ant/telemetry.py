"""The Ant's telemetry: tracing and logging set-up for `formicary ant`, and the executor spans of an attempt.

An attempt's spans continue the job's trace from the W3C `traceparent` the Queen put in its TaskRequest
(the Queen's `task` span of that attempt):

    task (Queen)
    └── executor                   the whole attempt on this Ant (status, exit code, error code)
        ├── executor.dependencies  downloading the dependent artifacts (gRPC client spans inside)
        ├── executor.before_script from its first command to the first command of `script`
        ├── executor.script        ... to the first command of `after_script`, or the executor's end
        ├── executor.after_script  ... to the executor's end
        └── executor.artifacts     uploading the task's artifacts

The script phases are told apart by the `$ <command>` lines the executors write when each command
starts (one shell session runs before_script and script together, so no executor knows the boundary
better): the phase tracker is a log sink in front of the attempt's own. Executors stay unaware of it.
With tracing off the spans are the API's no-op ones: log lines still carry the task's trace and span id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from ant.executors.context import LogSink, LogStream
from ant.executors.lines import split_long_line
from ant.executors.result import ExecutionResult, ExecutionStatus
from ant.executors.spec import TaskSpec
from ant.redaction import Redactor
from ant.settings import AntSettings
from sdk.telemetry import TracingSetup, parse_traceparent
from sdk.telemetry import configure_logging as _configure_logging
from sdk.telemetry import configure_tracing as _configure_tracing

__all__ = [
    "INSTRUMENTATION_NAME",
    "SERVICE_NAME",
    "AttemptSpan",
    "configure_logging",
    "configure_tracing",
    "executor_span",
    "in_phase",
]

SERVICE_NAME = "formicary-ant"
INSTRUMENTATION_NAME = "formicary.ant"

_T = TypeVar("_T")
# the attempt whose executor span is current (its phases end when a transfer phase begins)
_ATTEMPT: ContextVar[AttemptSpan | None] = ContextVar("formicary_ant_attempt", default=None)


def configure_tracing(settings: AntSettings, version: str = "") -> TracingSetup:
    """The OpenTelemetry SDK as `formicary-ant` (instance: the Ant's id) when OTEL_* asks for it; once,
    from `formicary ant`. Call `shutdown()` on the result when the Ant has left."""
    return _configure_tracing(SERVICE_NAME, service_version=version, instance_id=settings.ant_id)


def configure_logging(level: str, settings: AntSettings) -> None:
    """structlog JSON lines on stderr (a console rendering on a terminal, per `log_format`); once."""
    _configure_logging(level, fmt=settings.log_format)


def _tracer() -> trace.Tracer:
    return trace.get_tracer(INSTRUMENTATION_NAME)


class AttemptSpan:
    """The `executor` span of one attempt and the phase spans of its scripts."""

    def __init__(self, span: Span, spec: TaskSpec) -> None:
        self.span = span
        self._spec = spec
        # the lines reach the tracker as the log gets them: secrets masked, over-long lines cut; only a
        # recorded span has phases to time (without a tracer provider none is)
        self._main: tuple[str, ...] = ()
        self._after: tuple[str, ...] = ()
        if span.is_recording():
            redact = Redactor(spec.secrets)
            self._main = tuple(_as_logged(redact, c) for c in (*spec.before_script, *spec.script))
            self._after = tuple(_as_logged(redact, c) for c in spec.after_script)
        self._main_seen = 0
        self._after_seen = 0
        self._phase: tuple[str, Span] | None = None

    def track_phases(self, sink: LogSink) -> LogSink:
        """`sink`, with the script phases timed from the command lines going through it."""
        if not self.span.is_recording() or not (self._main or self._after):
            return sink
        return _PhaseSink(sink, self)

    def command_started(self, text: str) -> None:
        """A `$ <command>` line went to the log: the phase of that command has begun."""
        phase = self._phase_of(text)
        if phase is None or (self._phase is not None and self._phase[0] == phase):
            return
        self.end_phase()
        context = trace.set_span_in_context(self.span)
        started = _tracer().start_span(f"executor.{phase}", context=context)
        started.set_attribute("formicary.executor.phase", phase)
        self._phase = (phase, started)

    def _phase_of(self, text: str) -> str | None:
        if self._main_seen < len(self._main) and text == self._main[self._main_seen]:
            self._main_seen += 1
            return "before_script" if self._main_seen <= len(self._spec.before_script) else "script"
        if self._after_seen < len(self._after) and text == self._after[self._after_seen]:
            self._after_seen += 1
            return "after_script"
        return None  # a command text this tracker cannot place (it stays in the current phase)

    def end_phase(self) -> None:
        """The script phase in progress (if any) has ended."""
        if self._phase is not None:
            self._phase[1].end()
            self._phase = None

    def finished(self, result: ExecutionResult) -> None:
        self.end_phase()
        if not self.span.is_recording():
            return
        self.span.set_attributes(
            {
                "formicary.task.state": result.status.value,
                "formicary.task.exit_code": result.exit_code,
                "formicary.task.error_code": result.error_code,
            }
        )
        if result.fallback_note:
            self.span.set_attribute("formicary.executor.fallback", result.fallback_note)
        if result.status is ExecutionStatus.FAILED:
            self.span.set_status(Status(StatusCode.ERROR, result.error_code or result.exit_code))


def _as_logged(redact: Redactor, command: str) -> str:
    """The first line the log gets when `command` starts (`$ <command>`, masked, cut)."""
    return split_long_line(redact(f"$ {command}"))[0]


class _PhaseSink:
    """Passes every line on; a SYSTEM `$ <command>` line may start the next script phase."""

    def __init__(self, inner: LogSink, attempt: AttemptSpan) -> None:
        self._inner = inner
        self._attempt = attempt

    async def emit(self, stream: LogStream, text: str) -> None:
        if stream is LogStream.SYSTEM and text.startswith("$ "):
            self._attempt.command_started(text)
        await self._inner.emit(stream, text)


@contextmanager
def executor_span(traceparent: str, spec: TaskSpec, *, ant_id: str) -> Iterator[AttemptSpan]:
    """The attempt's `executor` span, current for the block (a child of the Queen's task span)."""
    parent = parse_traceparent(traceparent)
    context = trace.set_span_in_context(trace.NonRecordingSpan(parent)) if parent is not None else None
    with _tracer().start_as_current_span("executor", context=context) as span:
        if span.is_recording():
            span.set_attributes(
                {
                    "formicary.job.request_id": spec.job_request_id,
                    "formicary.task.type": spec.task_type,
                    "formicary.task.execution_id": spec.task_execution_id,
                    "formicary.task.method": str(spec.method),
                    "formicary.task.retry": spec.task_retry,
                    "formicary.ant.id": ant_id,
                }
            )
        attempt = AttemptSpan(span, spec)
        token = _ATTEMPT.set(attempt)
        try:
            yield attempt
        finally:
            _ATTEMPT.reset(token)
            attempt.end_phase()


async def in_phase(phase: str, work: Awaitable[_T]) -> _T:
    """`work` awaited inside an `executor.<phase>` span (a child of the current executor span); the
    script phase still open (the executor has returned) ends first."""
    attempt = _ATTEMPT.get()
    if attempt is not None:
        attempt.end_phase()
    with _tracer().start_as_current_span(f"executor.{phase}") as span:
        span.set_attribute("formicary.executor.phase", phase)
        return await work
