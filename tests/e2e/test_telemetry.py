"""OpenTelemetry end to end: a Queen and an Ant process export a job's spans over OTLP/gRPC to a real
receiver on loopback, as one trace (the Ant's executor spans under the Queen's task spans); their gRPC
calls are traced by the contrib instrumentation; `/metrics` answers with the job's figures."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from formicary.v1 import approval_pb2, approval_service_pb2, approval_service_pb2_grpc
from tests.e2e.conftest import TERMINAL, free_port, state_of
from tests.fixtures.auth import authorized_channel
from tests.fixtures.otlp import OtlpReceiver, ReceivedSpan
from tests.fixtures.processes import ManagedProcess, admin_token, mint_token, start_ant, start_queen
from tests.fixtures.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

JOB = """\
job_type: otel-e2e
tasks:
- task_type: flaky
  method: SHELL
  retry: 1
  before_script: ["echo preparing"]
  script: ["if [ -f {{ marker }} ]; then echo built > app.txt; else touch {{ marker }}; exit 3; fi"]
  after_script: ["echo cleaning up"]
  artifacts:
    paths: ["app.txt"]
  on_completed: done
- task_type: done
  method: SHELL
  dependencies: [flaky]
  script: ["cat app.txt"]
"""

SERVER_SPAN = 2  # OTLP Span.SpanKind SPAN_KIND_SERVER
CLIENT_SPAN = 3


def _otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def _names(spans: list[ReceivedSpan], service: str) -> list[str]:
    return sorted(span.name for span in spans if span.service == service)


async def test_one_trace_from_the_queen_and_the_ant(
    database_url: str,
    tmp_path: Path,
    connect,  # type: ignore[no-untyped-def]
    otlp_receiver: OtlpReceiver,
) -> None:
    port = free_port()
    env = _otel_env(otlp_receiver)
    queen = await start_queen(tmp_path / "q", database_url=database_url, grpc_port=port, env=env)
    ant = await start_ant(tmp_path / "ant", queen_port=port, ant_id="ant-otel", env=env)
    client = connect(port)
    await assert_eventually(client.ants, message="the Ant registered")
    await client.upload(JOB)
    request_id = await client.submit("otel-e2e", marker=str(tmp_path / "marker"))
    done = await client.wait_for(request_id, lambda r: r.job_state in TERMINAL)
    assert state_of(done) == "COMPLETED"

    def job_trace() -> list[ReceivedSpan]:
        root = next(
            s
            for s in otlp_receiver.spans
            if s.name == "job" and s.attribute("formicary.job.request_id") == request_id
        )
        spans = otlp_receiver.of_trace(root.trace_id)
        assert _names(spans, "formicary-queen") == [
            "/formicary.v1.ArtifactService/DownloadArtifact",  # serving the Ant's download
            "job",
            "schedule.wait",
            "task",
            "task",
            "task",
        ]
        assert _names(spans, "formicary-ant") == [
            "/formicary.v1.ArtifactService/DownloadArtifact",
            "executor",
            "executor",
            "executor",
            "executor.after_script",
            "executor.after_script",
            "executor.artifacts",
            "executor.artifacts",
            "executor.before_script",
            "executor.before_script",
            "executor.dependencies",
            "executor.script",
            "executor.script",
            "executor.script",
        ]
        return spans

    spans = await assert_eventually(job_trace, timeout=30, message="the job's spans received")
    by_id = {span.span_id: span for span in spans}
    for span in spans:
        if span.name == "job":
            assert span.parent_span_id == ""
            continue
        parent = by_id[span.parent_span_id]  # every span's parent is in the same trace
        if span.name == "executor":
            # the Ant continued the attempt's task span from the TaskRequest's traceparent
            assert (parent.service, parent.name) == ("formicary-queen", "task")
            assert parent.attribute("formicary.task.type") == span.attribute("formicary.task.type")
            assert parent.attribute("formicary.task.retry") == span.attribute("formicary.task.retry")
    retried = sorted(
        (s.attribute("formicary.task.retry"), s.attribute("formicary.task.exit_code"))
        for s in spans
        if s.name == "task" and s.attribute("formicary.task.type") == "flaky"
    )
    assert retried == [(0, "3"), (1, "0")]

    # the gRPC calls are traced by opentelemetry-instrumentation-grpc on both sides (grpc.aio): the
    # Ant's download of the dependency is a client span under executor.dependencies, the Queen's
    # serving of it a server span under that (the trace crossed the call in its metadata)
    download = next(s for s in spans if s.name.endswith("/DownloadArtifact") and s.service == "formicary-ant")
    assert download.span.kind == CLIENT_SPAN
    assert by_id[download.parent_span_id].name == "executor.dependencies"
    served = [s for s in spans if s.parent_span_id == download.span_id]
    assert [(s.service, s.span.kind) for s in served] == [("formicary-queen", SERVER_SPAN)]

    def rpc_spans() -> bool:
        # the upload is traced where it is served only (sdk.telemetry.UNTRACED_GRPC_CLIENT_METHODS)
        uploads = {
            (s.service, s.span.kind) for s in otlp_receiver.spans if s.name.endswith("/UploadArtifact")
        }
        assert uploads == {("formicary-queen", SERVER_SPAN)}
        submits = [s for s in otlp_receiver.spans if s.name.endswith("/SubmitJobRequest")]
        assert [(s.service, s.span.kind) for s in submits] == [("formicary-queen", SERVER_SPAN)]
        return True

    await assert_eventually(rpc_spans, timeout=30)

    # /metrics answers with the job's figures
    async with httpx.AsyncClient(timeout=10) as http:
        found = await http.get(
            f"http://127.0.0.1:{await _http_port(queen)}/metrics",
            headers={"Authorization": f"Bearer {admin_token(port)}"},
        )
    assert found.status_code == 200
    assert 'formicary_jobs_finished_total{job_type="otel-e2e",state="COMPLETED"} 1.0' in found.text
    assert 'formicary_ant_max_capacity{ant_id="ant-otel"} 4.0' in found.text

    # the Ant stream itself is left out (sdk.telemetry.UNTRACED_GRPC_METHODS)
    await ant.stop()
    await queen.stop()
    assert not [s for s in otlp_receiver.spans if s.name.endswith("/Connect")]


async def _http_port(queen) -> int:  # type: ignore[no-untyped-def]
    found = re.search(r"REST API on http://[^:]+:(\d+)", queen.output())
    assert found is not None, queen.output()
    return int(found.group(1))


GATED = """\
job_type: metered
tasks:
- task_type: build
  method: SHELL
  script: ["true"]
  on_completed: approve
- task_type: approve
  method: MANUAL
  on_exit_code: {APPROVED: ship}
  approval_policy:
    sla:
      - {after: 200ms, action: ESCALATE, to: [sre-oncall]}
- task_type: ship
  method: SHELL
  script: ["true"]
"""


class Scraper:
    """`/metrics` of a Queen process, as {(name, labels): value} of every sample."""

    def __init__(self, queen: ManagedProcess, token: str) -> None:
        self._queen = queen
        self._token = token

    async def __call__(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        async with httpx.AsyncClient(timeout=10) as http:
            found = await http.get(
                f"http://127.0.0.1:{await _http_port(self._queen)}/metrics",
                headers={"Authorization": f"Bearer {self._token}"},
            )
        assert found.status_code == 200, found.text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(found.text)
            for sample in family.samples
        }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_move_as_a_job_runs(
    database_url: str,
    tmp_path: Path,
    connect,  # type: ignore[no-untyped-def]
) -> None:
    port = free_port()
    queen = await start_queen(tmp_path / "q", database_url=database_url, grpc_port=port)
    scrape = Scraper(queen, admin_token(port))
    client = connect(port)
    await client.upload(GATED)
    before = await scrape()
    assert _value(before, "formicary_ants_connected") == 0

    # no Ant yet: the request waits in the queue
    request_id = await client.submit("metered")
    queued = await scrape()
    assert _value(queued, "formicary_queue_depth") == 1
    assert _value(queued, "formicary_job_requests", state="PENDING") == 1

    # an Ant arrives: the job runs to its gate, whose SLA escalates
    await start_ant(tmp_path / "ant", queen_port=port, ant_id="ant-metrics", capacity=3)
    await client.wait_for(request_id, lambda r: state_of(r) == "MANUAL_APPROVAL_REQUIRED")

    async def escalated() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        found = await scrape()
        assert (
            _value(found, "formicary_approval_sla_breaches_total", job_type="metered", action="ESCALATE") == 1
        )
        return found

    at_gate = await assert_eventually(escalated)
    assert _value(at_gate, "formicary_queue_depth") == 0
    assert _value(at_gate, "formicary_job_requests", state="MANUAL_APPROVAL_REQUIRED") == 1
    assert _value(at_gate, "formicary_approvals_pending") == 1
    assert _value(at_gate, "formicary_ants_connected") == 1
    assert _value(at_gate, "formicary_ant_capacity_slots") == 3
    assert _value(at_gate, "formicary_ant_max_capacity", ant_id="ant-metrics") == 3
    assert ("formicary_ant_load", frozenset({("ant_id", "ant-metrics")})) in at_gate
    assert _value(at_gate, "formicary_ant_stream_connects_total", resumed="false") == 1
    assert _value(at_gate, "formicary_schedule_wait_seconds_count", job_type="metered") == 1
    assert _value(at_gate, "formicary_dispatch_latency_seconds_count", method="SHELL") == 1
    build = {"job_type": "metered", "task_type": "build", "state": "COMPLETED"}
    assert _value(at_gate, "formicary_task_duration_seconds_count", **build) == 1

    # a person approves: the job ends
    approver = await mint_token(database_url, None, "operator", user="e2e-metrics-approver")
    channel = authorized_channel(f"127.0.0.1:{port}", approver)
    try:
        await approval_service_pb2_grpc.ApprovalServiceStub(channel).Decide(
            approval_service_pb2.DecideRequest(
                job_request_id=request_id,
                task_type="approve",
                decision=approval_pb2.APPROVAL_DECISION_APPROVE,
                comment="ship it",
            )
        )
    finally:
        await channel.close()
    done = await client.wait_for(request_id, lambda r: r.job_state in TERMINAL)
    assert state_of(done) == "COMPLETED"
    after = await scrape()
    assert _value(after, "formicary_job_requests", state="COMPLETED") == 1
    assert _value(after, "formicary_approvals_pending") == 0
    assert _value(after, "formicary_approval_wait_seconds_count", job_type="metered", outcome="APPROVED") == 1
    assert _value(after, "formicary_approval_wait_seconds_sum", job_type="metered", outcome="APPROVED") >= 0.2
    assert _value(after, "formicary_dispatch_latency_seconds_count", method="SHELL") == 2
    assert _value(after, "formicary_jobs_finished_total", job_type="metered", state="COMPLETED") == 1
    ship = {"job_type": "metered", "task_type": "ship", "state": "COMPLETED"}
    assert _value(after, "formicary_task_duration_seconds_count", **ship) == 1
