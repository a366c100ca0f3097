"""The shared telemetry set-up: when tracing is on, which exporter, W3C ids, stored span ids, log lines."""

from __future__ import annotations

import io
import json

import pytest
import structlog
from opentelemetry import context as otel_context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sdk import telemetry
from sdk.telemetry import (
    StoredIdGenerator,
    configure_logging,
    derive_span_id,
    format_traceparent,
    new_span_id,
    new_trace_id,
    parent_context,
    parse_traceparent,
    stored_ids,
    tracing_wanted,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),  # nothing configured: no SDK at all, the no-op API answers
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
    ],
)
def test_tracing_is_on_only_when_the_standard_variables_ask(environ: dict[str, str], wanted: bool) -> None:
    assert tracing_wanted(environ) is wanted


def test_the_otlp_protocol_picks_the_exporter() -> None:
    assert isinstance(telemetry._otlp_exporter({}), GrpcExporter)
    assert isinstance(
        telemetry._otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}), HttpExporter
    )
    traces_only = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
    }
    assert isinstance(telemetry._otlp_exporter(traces_only), HttpExporter)


def test_traceparent_round_trip_and_refusals() -> None:
    trace_id, span_id = new_trace_id(), new_span_id()
    parsed = parse_traceparent(format_traceparent(trace_id, span_id))
    assert parsed is not None
    assert (format(parsed.trace_id, "032x"), format(parsed.span_id, "016x")) == (trace_id, span_id)
    assert parsed.is_remote
    assert parsed.trace_flags.sampled
    assert format_traceparent("", span_id) == ""
    for bad in (
        "",
        "garbage",
        f"00-{'0' * 32}-{span_id}-01",
        f"00-{trace_id}-{'0' * 16}-01",
        f"ff-{trace_id}-{span_id}-01",
    ):
        assert parse_traceparent(bad) is None, bad


def test_derived_span_ids_are_stable_and_distinct() -> None:
    trace_id = new_trace_id()
    assert derive_span_id(trace_id, "task:t-1:0.0") == derive_span_id(trace_id, "task:t-1:0.0")
    assert derive_span_id(trace_id, "task:t-1:0.0") != derive_span_id(trace_id, "task:t-1:0.1")
    assert derive_span_id(trace_id, "x") != derive_span_id(new_trace_id(), "x")
    assert len(derive_span_id(trace_id, "x")) == 16


def test_a_span_started_inside_stored_ids_gets_them_and_only_that_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=StoredIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    trace_id, root_id, child_id = new_trace_id(), new_span_id(), new_span_id()
    with stored_ids(root_id, trace_id):
        root = tracer.start_span("root")
        other = tracer.start_span("other", context=parent_context(trace_id, root_id))
    root.end()
    other.end()
    with stored_ids(child_id):
        tracer.start_span("child", context=parent_context(trace_id, root_id)).end()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert format(spans["root"].context.trace_id, "032x") == trace_id
    assert format(spans["root"].context.span_id, "016x") == root_id
    assert format(spans["other"].context.span_id, "016x") != root_id  # one span per block
    assert format(spans["child"].context.span_id, "016x") == child_id
    assert spans["child"].parent is not None
    assert format(spans["child"].parent.span_id, "016x") == root_id


def test_json_log_lines_carry_the_bound_context_and_the_current_trace() -> None:
    output = io.StringIO()
    try:
        configure_logging("info", fmt="json", stream=output)
        trace_id, span_id = new_trace_id(), new_span_id()
        context = parent_context(trace_id, span_id)
        assert context is not None
        token = otel_context.attach(context)
        try:
            with structlog.contextvars.bound_contextvars(job_request_id=7, task_type="build"):
                structlog.get_logger("t").info("task_dispatched", ant_id="ant-1")
                structlog.get_logger("t").debug("not_written")
        finally:
            otel_context.detach(token)
        lines = [json.loads(line) for line in output.getvalue().splitlines()]
    finally:
        structlog.reset_defaults()
    assert len(lines) == 1
    assert {
        k: lines[0][k] for k in ("event", "job_request_id", "task_type", "ant_id", "trace_id", "span_id")
    } == {
        "event": "task_dispatched",
        "job_request_id": 7,
        "task_type": "build",
        "ant_id": "ant-1",
        "trace_id": trace_id,
        "span_id": span_id,
    }
