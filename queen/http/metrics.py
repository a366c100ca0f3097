"""Prometheus metrics of the Queen: gauges read from the service layer at each scrape, then the event
metrics observed as things happen (`queen.telemetry.metrics`).

The gauges are the current state (what `AdminService.stats` counts): job requests by state, the queue,
tasks, Ants and their capacity, each connected Ant's slots and load, open approval gates. The events
are counters and histograms: schedule (queue) wait, dispatch latency, task duration by job and task
type, jobs finished, Ant stream (re)connects, approval wait time, SLA breaches. Job counters are the
caller's organisation's; Ant figures and event metrics are installation-wide.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from queen.ants.registry import AntSnapshot
from queen.domain.states import JobState
from queen.services.admin import Stats

__all__ = ["render_metrics"]


class _StatsCollector(Collector):
    """One snapshot of `Stats` as metric families."""

    def __init__(self, stats: Stats, ants: Sequence[AntSnapshot]) -> None:
        self._stats = stats
        self._ants = ants

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        by_state = GaugeMetricFamily("formicary_job_requests", "Job requests by state.", labels=["state"])
        for state in JobState:
            by_state.add_metric([state.value], stats.requests_by_state.get(state, 0))
        yield by_state
        gauges = (
            ("formicary_queue_depth", "PENDING requests whose time has come.", stats.queue_depth),
            ("formicary_tasks_ready", "Tasks waiting for an Ant.", stats.ready_tasks),
            ("formicary_tasks_running", "Tasks dispatched or running.", stats.running_tasks),
            ("formicary_ants_connected", "Connected Ants.", stats.connected_ants),
            ("formicary_ant_capacity_slots", "Task slots of the connected Ants.", stats.total_capacity),
            ("formicary_ant_free_slots", "Free task slots of the connected Ants.", stats.free_slots),
            ("formicary_approvals_pending", "MANUAL gates waiting for a decision.", stats.pending_approvals),
        )
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(name, documentation, value=value)
        capacity = GaugeMetricFamily(
            "formicary_ant_max_capacity", "Task slots of each connected Ant.", labels=["ant_id"]
        )
        running = GaugeMetricFamily(
            "formicary_ant_running_tasks", "Tasks each connected Ant holds.", labels=["ant_id"]
        )
        load = GaugeMetricFamily(
            "formicary_ant_load", "Load each connected Ant reports in its heartbeats.", labels=["ant_id"]
        )
        for ant in self._ants:
            if ant.connected:
                capacity.add_metric([ant.ant_id], ant.max_capacity)
                running.add_metric([ant.ant_id], ant.running)
                load.add_metric([ant.ant_id], ant.load)
        yield from (capacity, running, load)


def render_metrics(
    stats: Stats, ants: Sequence[AntSnapshot] = (), events: CollectorRegistry | None = None
) -> bytes:
    """The Prometheus text exposition of `stats` and `ants`, then of the `events` registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatsCollector(stats, ants))
    text = generate_latest(registry)
    return text + generate_latest(events) if events is not None else text
