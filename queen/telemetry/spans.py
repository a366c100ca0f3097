"""The spans of a job request's trace, recorded from what the database holds (OpenTelemetry API only).

One trace per job request (design.md §9):

    job                       the request, submission to end (root; id stored: job_requests.root_span_id)
    ├── schedule.wait         submitted -> started
    ├── task                  one per task attempt (id derived from the attempt's correlation id and
    │   │                     stored in task_executions.span_id; the Ant continues it via traceparent)
    │   └── approval.wait     a MANUAL task's gate, opened -> decided (SLA rungs as span events)
    └── task ...

Each span is recorded once it has ended, with its start time and its ids taken from the database
(`sdk.telemetry.stored_ids`), never held open in memory: a Queen that restarts in the middle of a job
records the spans still to end with the same trace id and span ids, so the trace is one whatever
happened. The trace id and root span id are drawn when the request is submitted
(`queen.store.requests.create_request`). A span is recorded after the transaction that ended it
committed; a crash between the commit and the export loses that one span (the trace stays whole
otherwise).

Not recorded: requests that end without ever starting (cancelled while PENDING, `skip_if`, an invalid
definition) have no spans; forked child jobs (JOB_FORK is not built yet) are not linked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from queen.domain.approvals import GateState
from queen.domain.states import JobState, TaskState
from queen.store import JobRequestRecord, TaskExecutionRecord
from queen.store.records import ApprovalGateRecord, ApprovalLedgerRecord, ApprovalVoteRecord
from sdk.telemetry import derive_span_id, format_traceparent, parent_context, stored_ids

__all__ = ["INSTRUMENTATION_NAME", "JobSpans", "task_span_id"]

INSTRUMENTATION_NAME = "formicary.queen"

_FAILED_TASK_STATES = frozenset({TaskState.FAILED, TaskState.REJECTED})
# ledger entries that become events of approval.wait (the rest are in its attributes)
_LEDGER_EVENTS = {
    "REMINDED": "approval.reminded",
    "ESCALATED": "approval.escalated",
    "NOTIFIED": "approval.notified",
    "INVALIDATED": "approval.invalidated",
    "VOTED": "approval.voted",
    "DECIDED": "approval.decided",
    "TIMED_OUT": "approval.timed_out",
}


def task_span_id(request: JobRequestRecord, record: TaskExecutionRecord) -> str:
    """The span id of the current attempt of `record` (its correlation id names it); "" without a trace."""
    if not request.trace_id:
        return ""
    return derive_span_id(request.trace_id, f"task:{record.id}:{request.retried}.{record.retried}")


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


class JobSpans:
    """Records the spans of job requests; with no SDK installed every call costs a no-op span."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        # the API's proxy tracer follows whatever provider the entry point installs later
        self._tracer = tracer or trace.get_tracer(INSTRUMENTATION_NAME)

    # -- ids for others ----------------------------------------------------------------------------

    def traceparent(self, request: JobRequestRecord, record: TaskExecutionRecord) -> str:
        """W3C traceparent of the attempt's task span, for the TaskRequest (the Ant's executor spans)."""
        return format_traceparent(request.trace_id, task_span_id(request, record))

    def job_context(self, request: JobRequestRecord) -> Context | None:
        """A context whose current span is the job's root (for logs and live children), if traced."""
        return parent_context(request.trace_id, request.root_span_id)

    # -- spans -------------------------------------------------------------------------------------

    def job_ended(self, request: JobRequestRecord) -> None:
        """The root span, submission to end, once the request is in a terminal state."""
        if not request.trace_id or not request.root_span_id:
            return
        span = self._start(
            "job", request.trace_id, request.root_span_id, parent="", start=request.created_at, root=True
        )
        if span is None:
            return
        span.set_attributes(
            {
                "formicary.job.type": request.job_type,
                "formicary.job.version": request.job_version,
                "formicary.job.request_id": request.id,
                "formicary.organization": request.organization_id,
                "formicary.job.priority": request.job_priority,
                "formicary.job.outcome": request.job_state.value,
                "formicary.job.retried": request.retried,
                "formicary.job.error_code": request.error_code,
            }
        )
        if request.job_state is JobState.FAILED:
            span.set_status(Status(StatusCode.ERROR, request.error_code or "FAILED"))
        span.end(_ns(request.ended_at or request.updated_at))

    def schedule_waited(self, request: JobRequestRecord, started_at: datetime) -> None:
        """`schedule.wait`: from submission to the start the scheduler gave the request."""
        if not request.trace_id or not request.root_span_id:
            return
        span_id = derive_span_id(request.trace_id, "schedule.wait")
        span = self._start(
            "schedule.wait", request.trace_id, span_id, parent=request.root_span_id, start=request.created_at
        )
        if span is None:
            return
        span.set_attributes(
            {
                "formicary.job.type": request.job_type,
                "formicary.job.request_id": request.id,
                "formicary.job.priority": request.job_priority,
            }
        )
        span.end(_ns(max(started_at, request.created_at)))

    def task_ended(
        self,
        request: JobRequestRecord,
        record: TaskExecutionRecord,
        *,
        started_at: datetime,
        ended_at: datetime,
        gate: ApprovalGateRecord | None = None,
        votes: Iterable[ApprovalVoteRecord] = (),
        ledger: Iterable[ApprovalLedgerRecord] = (),
    ) -> None:
        """`task` for one finished attempt (and, for a MANUAL task, `approval.wait` under it)."""
        span_id = task_span_id(request, record)
        if not span_id or not request.root_span_id:
            return
        span = self._start("task", request.trace_id, span_id, parent=request.root_span_id, start=started_at)
        if span is None:
            return
        span.set_attributes(
            {
                "formicary.job.type": request.job_type,
                "formicary.job.request_id": request.id,
                "formicary.task.type": record.task_type,
                "formicary.task.method": record.method,
                "formicary.task.retry": record.retried,
                "formicary.task.execution_id": record.id,
                "formicary.ant.id": record.ant_id,
                "formicary.task.exit_code": record.exit_code,
                "formicary.task.state": record.task_state.value,
                "formicary.task.error_code": record.error_code,
            }
        )
        if record.task_state in _FAILED_TASK_STATES:
            span.set_status(Status(StatusCode.ERROR, record.error_code or record.task_state.value))
        if gate is not None:
            self._approval_wait(request, span_id, gate, votes, ledger)
        span.end(_ns(max(ended_at, started_at)))

    def _approval_wait(
        self,
        request: JobRequestRecord,
        parent: str,
        gate: ApprovalGateRecord,
        votes: Iterable[ApprovalVoteRecord],
        ledger: Iterable[ApprovalLedgerRecord],
    ) -> None:
        span_id = derive_span_id(request.trace_id, f"gate:{gate.id}")
        span = self._start("approval.wait", request.trace_id, span_id, parent=parent, start=gate.created_at)
        if span is None:
            return
        cast = list(votes)
        span.set_attributes(
            {
                "formicary.job.request_id": request.id,
                "formicary.task.type": gate.task_type,
                "formicary.approval.gate_id": gate.id,
                "formicary.approval.version": gate.version,
                "formicary.approval.policy": json.dumps(dict(gate.policy), sort_keys=True, default=str),
                "formicary.approval.votes": len(cast),
                "formicary.approval.voters": [f"{v.user_id}:{v.decision.value}" for v in cast],
                "formicary.approval.decider": gate.decided_by,
                "formicary.approval.channel": gate.decided_channel.value if gate.decided_channel else "",
                "formicary.approval.outcome": gate.state.value,
            }
        )
        for entry in ledger:
            name = _LEDGER_EVENTS.get(entry.kind)
            if name is not None:
                span.add_event(name, _event_attributes(entry.actor, entry.data), _ns(entry.created_at))
        if gate.state is GateState.TIMED_OUT:
            span.set_status(Status(StatusCode.ERROR, "TIMED_OUT"))
        span.end(_ns(gate.decided_at or gate.updated_at))

    def _start(
        self, name: str, trace_id: str, span_id: str, *, parent: str, start: datetime, root: bool = False
    ) -> Span | None:
        """The span (`span_id`, under `parent` in `trace_id`), started at `start`; None when not recorded."""
        context = Context() if root else parent_context(trace_id, parent)
        if context is None:
            return None
        with stored_ids(span_id, trace_id if root else ""):
            span = self._tracer.start_span(
                name, context=context, kind=SpanKind.INTERNAL, start_time=_ns(start)
            )
        if not span.is_recording():
            return None
        return span


def _event_attributes(actor: str, data: Mapping[str, object]) -> dict[str, str | int | float | bool]:
    attributes: dict[str, str | int | float | bool] = {"formicary.actor": actor}
    for key, value in data.items():
        if isinstance(value, str | int | float | bool) and key not in ("trace_id", "traceparent"):
            attributes[f"formicary.{key}"] = value
    return attributes
