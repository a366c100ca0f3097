"""`configure_logging` for the Queen: structlog JSON lines (a console rendering on a terminal)."""

from __future__ import annotations

from queen.settings import QueenSettings
from sdk.telemetry import configure_logging as _configure

__all__ = ["configure_logging"]


def configure_logging(settings: QueenSettings) -> None:
    """Once, from `formicary queen` / `formicary dev`: level and format from the settings; every line
    carries what is bound through contextvars (job_request_id, task_type, ant_id, trace_id, span_id)."""
    _configure(settings.log_level, fmt=settings.log_format)
