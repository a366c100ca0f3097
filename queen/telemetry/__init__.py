"""The Queen's telemetry: tracing and logging set-up (entry points), job spans, Prometheus metrics."""
