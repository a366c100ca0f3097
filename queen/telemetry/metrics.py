"""The Queen's Prometheus metrics of events (counters and histograms), observed where things happen.

Gauges of the current state (requests by state, queue depth, Ants and their capacity and load, gates
waiting) are read at each scrape instead (`queen.http.metrics`); these are the figures a scrape cannot
read back from the database: how long things took and how often they happened.

One `QueenMetrics` per process (`METRICS`), in a registry of its own rather than prometheus_client's
global one: its observers are called from the supervisor, the Ant registry and the gate timers, which
are built in different places, and a process runs one Queen (tests that run several read deltas).
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["METRICS", "QueenMetrics"]

# seconds: from a few milliseconds (dispatch on loopback) to hours (a task, a queue, a gate)
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SLOW = (0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


class QueenMetrics:
    """The event metrics, and one method per thing observed (callers never touch label names)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.schedule_wait = Histogram(
            "formicary_schedule_wait_seconds",
            "Time a job request waited from submission to its start, by job type.",
            ["job_type"],
            buckets=_SLOW,
            registry=self.registry,
        )
        self.dispatch_latency = Histogram(
            "formicary_dispatch_latency_seconds",
            "Time from a task attempt being handed to the dispatcher to its acceptance by an Ant "
            "(includes waiting for a free slot).",
            ["method"],
            buckets=_FAST,
            registry=self.registry,
        )
        self.task_duration = Histogram(
            "formicary_task_duration_seconds",
            "Duration of task attempts, by job type, task type and the state they ended in.",
            ["job_type", "task_type", "state"],
            buckets=_SLOW,
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "formicary_jobs_finished",
            "Job requests that ended, by job type and final state.",
            ["job_type", "state"],
            registry=self.registry,
        )
        self.stream_connects = Counter(
            "formicary_ant_stream_connects",
            "Ant streams registered, by whether the Ant reconnected to resume a session (resumed=true).",
            ["resumed"],
            registry=self.registry,
        )
        self.approval_wait = Histogram(
            "formicary_approval_wait_seconds",
            "Time a gate waited from opening to its decision, by job type and outcome.",
            ["job_type", "outcome"],
            buckets=_SLOW,
            registry=self.registry,
        )
        self.sla_breaches = Counter(
            "formicary_approval_sla_breaches",
            "SLA rungs of approval gates that fired (REMIND, ESCALATE, AUTO_APPROVE, AUTO_REJECT, "
            "TIME_OUT), by job type and action.",
            ["job_type", "action"],
            registry=self.registry,
        )

    def job_started(self, job_type: str, submitted_at: datetime, started_at: datetime) -> None:
        self.schedule_wait.labels(job_type).observe(_seconds(submitted_at, started_at))

    def task_accepted(self, method: str, seconds: float) -> None:
        self.dispatch_latency.labels(method).observe(max(seconds, 0.0))

    def task_ended(self, job_type: str, task_type: str, state: str, seconds: float) -> None:
        self.task_duration.labels(job_type, task_type, state).observe(max(seconds, 0.0))

    def job_ended(self, job_type: str, state: str) -> None:
        self.jobs_finished.labels(job_type, state).inc()

    def ant_connected(self, *, resumed: bool) -> None:
        self.stream_connects.labels("true" if resumed else "false").inc()

    def gate_decided(self, job_type: str, outcome: str, opened_at: datetime, decided_at: datetime) -> None:
        self.approval_wait.labels(job_type, outcome).observe(_seconds(opened_at, decided_at))

    def sla_breached(self, job_type: str, action: str) -> None:
        self.sla_breaches.labels(job_type, action).inc()


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)


METRICS = QueenMetrics()
