"""Prometheus metrics of the Queen, read from the service layer at each scrape.

The figures are gauges of the current state (what `AdminService.stats` counts): job requests by state,
the queue, tasks, Ants and their capacity, open approval gates. Counters and histograms of events
(dispatch latency, approval wait time) come with the telemetry issue.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from queen.domain.states import JobState
from queen.services.admin import Stats

__all__ = ["render_metrics"]


class _StatsCollector(Collector):
    """One snapshot of `Stats` as metric families."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats

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


def render_metrics(stats: Stats) -> bytes:
    """The Prometheus text exposition of `stats`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatsCollector(stats))
    return generate_latest(registry)
