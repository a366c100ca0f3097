"""The Ant's executor spans of one attempt (a real SHELL executor), children of the Queen's task span named
by the attempt's traceparent; and the log lines of the attempt carry that trace."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import ant.telemetry
from ant.attempt import AttemptRequest, AttemptRunner
from ant.executors import ExecutorRegistry, Method, TaskSpec, Variable
from ant.executors.shell import ShellExecutor
from sdk.telemetry import add_trace_context, format_traceparent, new_span_id, new_trace_id
from tests.integration.ant.recording import RecordingSink
from tests.integration.ant.test_attempt_runner import ScriptedTransfer

pytestmark = pytest.mark.integration


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """The Ant's spans, in memory (the SDK as `formicary ant` would install it, but not globally)."""
    recorded = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(recorded))
    tracer = provider.get_tracer(ant.telemetry.INSTRUMENTATION_NAME)
    monkeypatch.setattr(ant.telemetry, "_tracer", lambda: tracer)
    return recorded


def _runner(tmp_path: Path) -> AttemptRunner:
    return AttemptRunner(
        ExecutorRegistry({Method.SHELL: ShellExecutor()}),
        work_root=tmp_path / "work",
        artifacts=ScriptedTransfer(files={"in.txt": "input"}),
        ant_id="ant-7",
        host="h",
        logger=structlog.get_logger("ant"),
    )


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


async def test_each_phase_is_a_span_under_the_queens_task_span(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    trace_id, task_span = new_trace_id(), new_span_id()
    spec = TaskSpec(
        task_execution_id="te-1",
        job_request_id=5,
        task_type="build",
        method=Method.SHELL,
        before_script=("export GREETING=hello", "sleep 0.05"),
        script=("echo $GREETING $TOKEN", "sleep 0.05"),
        after_script=("echo cleaning up",),
        variables={"TOKEN": Variable("s3cr3t-value", secret=True)},
    )
    request = AttemptRequest(
        spec=spec,
        correlation_id="c",
        traceparent=format_traceparent(trace_id, task_span),
        dependent_artifact_ids=("art-1",),
        artifact_paths=("out/*",),
    )
    with structlog.testing.capture_logs(processors=[add_trace_context]) as logs:
        result = await _runner(tmp_path).run(request, RecordingSink(), asyncio.Event())
    assert result.exit_code == "0"

    spans = exporter.get_finished_spans()
    assert sorted(span.name for span in spans) == [
        "executor",
        "executor.after_script",
        "executor.artifacts",
        "executor.before_script",
        "executor.dependencies",
        "executor.script",
    ]
    named = _by_name(spans)
    executor = named["executor"]
    assert {span.context.trace_id for span in spans} == {int(trace_id, 16)}
    assert executor.parent is not None
    assert executor.parent.span_id == int(task_span, 16)
    assert executor.parent.is_remote
    attributes: Any = executor.attributes
    assert (attributes["formicary.ant.id"], attributes["formicary.task.type"]) == ("ant-7", "build")
    assert (attributes["formicary.task.state"], attributes["formicary.task.exit_code"]) == ("COMPLETED", "0")
    phases = sorted((s for s in spans if s is not executor), key=lambda s: s.start_time or 0)
    assert [s.name for s in phases] == [
        "executor.dependencies",
        "executor.before_script",
        "executor.script",
        "executor.after_script",
        "executor.artifacts",
    ]
    for earlier, later in itertools.pairwise(phases):
        assert earlier.parent is not None
        assert earlier.parent.span_id == executor.context.span_id
        assert (earlier.end_time or 0) <= (later.start_time or 0), (earlier.name, later.name)
    # the attempt's log events carry the job's trace
    started = next(entry for entry in logs if entry["event"] == "attempt_started")
    assert started["trace_id"] == trace_id


async def test_a_failing_before_script_goes_straight_to_after_script(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    spec = TaskSpec(
        task_execution_id="te-2",
        job_request_id=5,
        task_type="build",
        method=Method.SHELL,
        before_script=("false", "echo never"),
        script=("echo never either",),
        after_script=("echo after",),
    )
    traceparent = format_traceparent(new_trace_id(), new_span_id())
    request = AttemptRequest(spec=spec, correlation_id="c", traceparent=traceparent)
    result = await _runner(tmp_path).run(request, RecordingSink(), asyncio.Event())
    assert result.exit_code == "1"
    named = _by_name(exporter.get_finished_spans())
    assert sorted(named) == ["executor", "executor.after_script", "executor.before_script"]
    assert (named["executor"].attributes or {})["formicary.task.state"] == "FAILED"


async def test_without_a_traceparent_the_attempt_is_a_trace_of_its_own(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    spec = TaskSpec(
        task_execution_id="te-3", job_request_id=5, task_type="t", method=Method.SHELL, script=("true",)
    )
    await _runner(tmp_path).run(
        AttemptRequest(spec=spec, correlation_id="c"), RecordingSink(), asyncio.Event()
    )
    named = _by_name(exporter.get_finished_spans())
    assert named["executor"].parent is None
    assert sorted(named) == ["executor", "executor.script"]
