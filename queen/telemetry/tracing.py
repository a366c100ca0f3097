"""`configure_tracing` for the Queen: the OpenTelemetry SDK as `formicary-queen`, when OTEL_* asks for it."""

from __future__ import annotations

import os
import socket
from importlib.metadata import PackageNotFoundError, version

from queen.settings import QueenSettings
from sdk.telemetry import TracingSetup
from sdk.telemetry import configure_tracing as _configure

__all__ = ["SERVICE_NAME", "configure_tracing"]

SERVICE_NAME = "formicary-queen"


def configure_tracing(settings: QueenSettings) -> TracingSetup:
    """Install the SDK (OTLP over gRPC or HTTP, per the standard variables) or nothing; once, from
    `formicary queen` / `formicary dev`. Call `shutdown()` on the result when the Queen has stopped."""
    del settings  # every tracing option is a standard OTEL_* variable
    return _configure(
        SERVICE_NAME, service_version=_software_version(), instance_id=f"{socket.gethostname()}-{os.getpid()}"
    )


def _software_version() -> str:
    try:
        return version("formicary")
    except PackageNotFoundError:
        return ""
