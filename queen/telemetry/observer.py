"""What the job supervisor tells telemetry: one observer, called at a few points of a job's life.

The supervisor calls it after each commit that matters (job started, attempt prepared, accepted and
ended, job ended); it turns those into spans (`JobSpans`), Prometheus observations (`QueenMetrics`)
and the log context of the supervisor's asyncio task (job_request_id, task_type, ant_id, trace_id,
span_id through structlog's contextvars). Nothing here writes to the database; a MANUAL task's end reads
its gate, votes and ledger for the `approval.wait` span.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import structlog

from queen.domain.job_definition import TaskMethod
from queen.domain.work import TaskReport
from queen.store import Database, JobRequestRecord, TaskExecutionRecord
from queen.store import approvals as gate_store
from queen.store._clock import utc_now
from queen.telemetry.metrics import METRICS, QueenMetrics
from queen.telemetry.spans import JobSpans, task_span_id

__all__ = ["JobObserver"]

_MANUAL = TaskMethod.MANUAL.value


@dataclass(slots=True)
class _Attempt:
    prepared: float  # monotonic, when handed to the dispatcher
    accepted_at: datetime | None = None


class JobObserver:
    """Spans, metrics and log context of the jobs of one Queen (cheap when tracing is off)."""

    def __init__(self, spans: JobSpans | None = None, metrics: QueenMetrics | None = None) -> None:
        self.spans = spans or JobSpans()
        self.metrics = metrics or METRICS
        self._attempts: dict[str, _Attempt] = {}

    def job_loaded(self, request: JobRequestRecord) -> None:
        """A supervisor took the request on: its log lines carry the request and its trace from now on
        (the supervisor runs in an asyncio task of its own, so this binds nothing for anyone else)."""
        structlog.contextvars.bind_contextvars(
            job_request_id=request.id,
            job_type=request.job_type,
            trace_id=request.trace_id,
            span_id=request.root_span_id,
        )

    def job_started(self, request: JobRequestRecord) -> None:
        """The request left the queue (READY -> STARTED committed)."""
        started_at = request.started_at or utc_now()
        self.metrics.job_started(request.job_type, request.created_at, started_at)
        self.spans.schedule_waited(request, started_at)

    def attempt_prepared(self, request: JobRequestRecord, record: TaskExecutionRecord) -> str:
        """An attempt is about to go to the dispatcher; returns the traceparent it carries to the Ant."""
        span_id = task_span_id(request, record)
        self._attempts[record.id] = _Attempt(time.monotonic())
        structlog.contextvars.bind_contextvars(task_type=record.task_type, span_id=span_id or None)
        return self.spans.traceparent(request, record)

    def attempt_accepted(
        self, request: JobRequestRecord, record: TaskExecutionRecord, ant_id: str, at: datetime | None = None
    ) -> str:
        """An Ant accepted the attempt (at `at`, default now); returns the attempt's span id (stored with
        the EXECUTING state)."""
        attempt = self._attempts.get(record.id)
        if attempt is not None:
            now = utc_now()
            attempt.accepted_at = at or now
            since = (now - attempt.accepted_at).total_seconds()  # recorded later than it happened
            self.metrics.task_accepted(record.method, time.monotonic() - since - attempt.prepared)
        structlog.contextvars.bind_contextvars(ant_id=ant_id)
        return task_span_id(request, record)

    async def attempt_ended(
        self,
        db: Database,
        request: JobRequestRecord,
        record: TaskExecutionRecord,
        report: TaskReport | None,
    ) -> None:
        """An attempt's result (and the decision on it) committed: `record` is the task as it now is.

        `report` is None when the result was written elsewhere: a MANUAL task decided at its gate (its
        span is recorded here), or a task reused from an earlier run (no span: it did not run again).
        """
        attempt = self._attempts.pop(record.id, None)
        structlog.contextvars.unbind_contextvars("task_type", "ant_id")
        structlog.contextvars.bind_contextvars(span_id=request.root_span_id)
        ended_at = record.ended_at or utc_now()
        if report is None:
            if record.method == _MANUAL:
                await self._gate_ended(db, request, record, ended_at)
            return
        started_at = (
            (attempt.accepted_at if attempt is not None else None)
            or report.started_at
            or record.started_at
            or ended_at
        )
        self.metrics.task_ended(
            request.job_type,
            record.task_type,
            record.task_state.value,
            (ended_at - started_at).total_seconds(),
        )
        self.spans.task_ended(request, record, started_at=started_at, ended_at=ended_at)

    async def _gate_ended(
        self, db: Database, request: JobRequestRecord, record: TaskExecutionRecord, ended_at: datetime
    ) -> None:
        async with db.transaction() as session:
            gate = await gate_store.latest_gate_of_task(session, record.id)
            votes = await gate_store.votes_of(session, gate.id) if gate is not None else []
            ledger = await gate_store.ledger_of(session, gate.id) if gate is not None else []
        started_at = gate.created_at if gate is not None else record.started_at or ended_at
        if gate is not None and gate.decided_at is not None:
            self.metrics.gate_decided(request.job_type, gate.state.value, gate.created_at, gate.decided_at)
        self.spans.task_ended(
            request, record, started_at=started_at, ended_at=ended_at, gate=gate, votes=votes, ledger=ledger
        )

    def job_ended(self, request: JobRequestRecord) -> None:
        """The request reached its terminal state (committed)."""
        self.metrics.job_ended(request.job_type, request.job_state.value)
        self.spans.job_ended(request)
