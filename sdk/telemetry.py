"""Runtime set-up of logs and traces for Formicary's processes (Queen, Ant, CLI), and the trace-id helpers
they share.

`configure_logging` and `configure_tracing` are called once by each entry point (never at import);
library code uses only `structlog.get_logger` and the OpenTelemetry API.

Tracing is *configuration only*: it is on when an OTLP endpoint is configured through the standard
variables (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or an exporter is
named explicitly (`OTEL_TRACES_EXPORTER=otlp|console`); `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none` turn it off. Every other `OTEL_*` variable (protocol, headers, timeouts,
certificates, sampler, batch processor, resource attributes, service name, excluded gRPC services) is
read by the OpenTelemetry SDK itself. With tracing off no SDK is installed at all: the API's no-op
tracer answers, so the dispatch path pays nothing for spans nobody collects.

Durable ids: a job's spans are recorded by the Queen with ids stored in (or derived from what is stored
in) its database, so a restarted Queen continues the same trace. The SDK's tracer draws ids from its
`IdGenerator`; the one installed here (`StoredIdGenerator`) hands out the ids set with `stored_ids()`
for the one span started inside that block, and random ids otherwise.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TextIO, cast

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

__all__ = [
    "UNTRACED_GRPC_CLIENT_METHODS",
    "UNTRACED_GRPC_METHODS",
    "StoredIdGenerator",
    "TracingSetup",
    "add_trace_context",
    "configure_logging",
    "configure_tracing",
    "derive_span_id",
    "format_traceparent",
    "new_span_id",
    "new_trace_id",
    "parent_context",
    "parse_traceparent",
    "stored_ids",
    "tracing_wanted",
]

_TRUE = frozenset({"1", "true", "yes", "on"})


# -- ids ---------------------------------------------------------------------------------------------


def new_trace_id() -> str:
    """A random W3C trace id: 32 lowercase hex digits, never all zero."""
    while (value := secrets.token_hex(16)) == "0" * 32:
        pass
    return value


def new_span_id() -> str:
    """A random W3C span id: 16 lowercase hex digits, never all zero."""
    while (value := secrets.token_hex(8)) == "0" * 16:
        pass
    return value


def derive_span_id(trace_id: str, name: str) -> str:
    """The span id of the span `name` of the trace: the same on every Queen, before and after a restart.

    Spans whose ids need not be stored (an attempt of a task, the wait at a gate) are named by what is
    stored (`task:<correlation id>`, `gate:<gate id>`) instead.
    """
    digest = hashlib.blake2b(f"{trace_id}/{name}".encode(), digest_size=8).hexdigest()
    return digest if digest != "0" * 16 else "0" * 15 + "1"


def format_traceparent(trace_id: str, span_id: str, *, sampled: bool = True) -> str:
    """W3C `traceparent` (version 00); empty when either id is missing."""
    if not trace_id or not span_id:
        return ""
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def parse_traceparent(traceparent: str) -> SpanContext | None:
    """The remote span context a `traceparent` names; None when it is empty or malformed."""
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    version, trace_hex, span_hex, flags_hex = parts[:4]
    if version == "00" and len(parts) != 4:
        return None
    try:
        trace_id, span_id, flags = int(trace_hex, 16), int(span_hex, 16), int(flags_hex, 16)
    except ValueError:
        return None
    if len(trace_hex) != 32 or len(span_hex) != 16 or len(flags_hex) != 2 or not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 0x01))


def parent_context(trace_id: str, span_id: str, *, remote: bool = False) -> Context | None:
    """An OpenTelemetry context whose current span is (`trace_id`, `span_id`), to start children in;
    None when the ids are missing."""
    if not trace_id or not span_id:
        return None
    try:
        span_context = SpanContext(
            int(trace_id, 16), int(span_id, 16), is_remote=remote, trace_flags=TraceFlags(TraceFlags.SAMPLED)
        )
    except ValueError:
        return None
    if not span_context.is_valid:
        return None
    return trace.set_span_in_context(NonRecordingSpan(span_context))


@dataclass(frozen=True, slots=True)
class _Ids:
    trace_id: int | None
    span_id: int


_STORED: ContextVar[_Ids | None] = ContextVar("formicary_stored_span_ids", default=None)


@contextmanager
def stored_ids(span_id: str, trace_id: str = "") -> Iterator[None]:
    """Inside this block, the next span started gets `span_id` (and, if it has no parent, `trace_id`).

    Needs `StoredIdGenerator` (installed by `configure_tracing`); with another SDK set-up the ids are
    random and the trace is cut at every Queen restart; with no SDK nothing is recorded anyway.
    """
    token = _STORED.set(_Ids(int(trace_id, 16) if trace_id else None, int(span_id, 16)))
    try:
        yield
    finally:
        _STORED.reset(token)


class StoredIdGenerator(IdGenerator):
    """Random ids, except for the span started inside `stored_ids()` (taken once, then random again)."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        stored = _STORED.get()
        if stored is not None and stored.span_id:
            # one span per block: a second span started inside it (an instrumentation's) gets its own id
            _STORED.set(_Ids(stored.trace_id, 0))
            return stored.span_id
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        # called before generate_span_id, and only for a span without a parent
        stored = _STORED.get()
        if stored is not None and stored.trace_id:
            return stored.trace_id
        return self._random.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return True


# -- tracing -----------------------------------------------------------------------------------------


def tracing_wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the standard variables ask for traces to be exported (see the module's docstring)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporters = {name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",") if name}
    if exporters:
        return exporters != {"none"}
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


@dataclass(frozen=True, slots=True)
class TracingSetup:
    """What `configure_tracing` installed; `shutdown()` flushes the spans still buffered."""

    provider: TracerProvider | None

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def configure_tracing(
    service_name: str,
    *,
    service_version: str = "",
    instance_id: str = "",
    environ: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
) -> TracingSetup:
    """Install the OpenTelemetry SDK for this process when tracing is wanted (or `exporter` is given).

    `service_name` is the resource's `service.name` unless `OTEL_SERVICE_NAME` says otherwise; the gRPC
    client and server of `grpc.aio` are instrumented (`opentelemetry-instrumentation-grpc`) so calls
    between Formicary's processes carry the trace. Call once, from the entry point.
    """
    env = os.environ if environ is None else environ
    exporters = [exporter] if exporter is not None else _exporters(env) if tracing_wanted(env) else []
    if not exporters:
        return TracingSetup(None)
    attributes: dict[str, str] = {}
    if not env.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = service_name
    if service_version:
        attributes[SERVICE_VERSION] = service_version
    if instance_id:
        attributes[SERVICE_INSTANCE_ID] = instance_id
    provider = TracerProvider(resource=Resource.create(attributes), id_generator=StoredIdGenerator())
    for each in exporters:
        provider.add_span_processor(BatchSpanProcessor(each))
    trace.set_tracer_provider(provider)
    _instrument_grpc(provider, env)
    return TracingSetup(provider)


def _exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    names = [name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if name]
    found: list[SpanExporter] = []
    for name in names:
        if name == "console":
            found.append(ConsoleSpanExporter())
        elif name == "otlp":
            found.append(_otlp_exporter(env))
        elif name != "none":
            structlog.get_logger(__name__).warning("trace_exporter_unknown", exporter=name)
    return found


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    ).strip()
    if protocol.startswith("http/"):
        # http/json is not implemented by the Python exporter: protobuf over HTTP it is
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415 - loaded only when chosen
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415 - loaded only when chosen
        OTLPSpanExporter as GrpcExporter,
    )

    return GrpcExporter()


# Calls left out of the gRPC instrumentation (opentelemetry-instrumentation-grpc 0.66b2 with grpc.aio):
# - the Ant stream, AntService.Connect, on both ends: the server interceptor handles response-streaming
#   methods only when written as async generators (it iterates what the handler returns) and breaks the
#   read/write style Connect uses; a span as long as an Ant's connection would tell nothing anyway (the
#   tasks it carries are traced through their traceparent);
# - client-streaming calls written with `call.write()` (the Ant's UploadArtifact) on the client end: the
#   stream-unary client interceptor awaits the whole RPC before handing the call back, and `write()`
#   waits for the interceptor, so the call would never start. The Queen still traces serving it (a
#   span of its own trace, since no context reaches it).
UNTRACED_GRPC_METHODS = ("/formicary.v1.AntService/Connect",)
UNTRACED_GRPC_CLIENT_METHODS = (*UNTRACED_GRPC_METHODS, "/formicary.v1.ArtifactService/UploadArtifact")


def _instrument_grpc(provider: TracerProvider, env: Mapping[str, str]) -> None:
    # Only grpc.aio is patched: Formicary's clients and server are all asyncio, and the OTLP gRPC
    # exporter (synchronous grpc) must not trace its own exports.
    from opentelemetry.instrumentation.grpc import (  # noqa: PLC0415 - costs an import only when tracing
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
        filters,
    )

    excluded = [s.strip() for s in env.get("OTEL_PYTHON_GRPC_EXCLUDED_SERVICES", "").split(",") if s.strip()]

    def wanted(methods: tuple[str, ...]) -> Any:
        return filters.all_of(
            *(filters.negate(filters.full_method_name(method)) for method in methods),
            *(filters.negate(filters.service_name(service)) for service in excluded),
        )

    instrumentors = (
        (GrpcAioInstrumentorClient(), wanted(UNTRACED_GRPC_CLIENT_METHODS)),  # type: ignore[no-untyped-call]
        (GrpcAioInstrumentorServer(), wanted(UNTRACED_GRPC_METHODS)),  # type: ignore[no-untyped-call]
    )
    for instrumentor, condition in instrumentors:
        # set after construction: the constructor ORs a filter with the one of
        # OTEL_PYTHON_GRPC_EXCLUDED_SERVICES (any_of), which would let the calls above through
        instrumentor._filter = condition
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)


# -- logging -----------------------------------------------------------------------------------------


def add_trace_context(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the current span's trace id and span id, unless the event already has them
    (bound through contextvars by code that knows the job's trace without a live span)."""
    if "trace_id" not in event:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            event["trace_id"] = format(span_context.trace_id, "032x")
            event["span_id"] = format(span_context.span_id, "016x")
    return event


def configure_logging(level: str = "info", *, fmt: str = "auto", stream: TextIO | None = None) -> None:
    """structlog for this process: JSON lines on stderr, or a console rendering when stderr is a terminal
    (`fmt`: auto, json or console). Context bound with `structlog.contextvars` (job request id, task type,
    Ant id, trace and span ids) is in every line. Call once, from the entry point."""
    output = stream or cast(TextIO, _Stderr())
    console = fmt == "console" or (fmt == "auto" and output.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=_colors(output))
        if console
        else structlog.processors.JSONRenderer()
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_trace_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if not console:
        processors.append(structlog.processors.format_exc_info)
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_level(level)),
        logger_factory=structlog.PrintLoggerFactory(output),
        cache_logger_on_first_use=True,
    )


class _Stderr(io.TextIOBase):
    """`sys.stderr` as it is at each write: loggers are cached, and the stream may be replaced after
    the set-up (a test harness capturing output)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _level(name: str) -> int:
    levels = logging.getLevelNamesMapping()
    try:
        return levels[name.strip().upper()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r} (debug, info, warning, error)") from None


def _colors(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")
