"""The REST gateway (and, later, the dashboard) over the Queen's service layer, served by uvicorn in the
Queen's event loop beside the gRPC server."""

from queen.http.application import build_app
from queen.http.gateway import HttpGateway

__all__ = ["HttpGateway", "build_app"]
