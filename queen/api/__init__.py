"""gRPC servicers: thin translations between protobuf messages and the service layer (no business rules)."""

from __future__ import annotations

import grpc

from queen.services.service_set import Services

__all__ = ["register_public_servicers"]


def register_public_servicers(server: grpc.aio.Server, services: Services) -> None:
    """Add JobDefinitionService, JobRequestService and AdminService to `server`."""
    del server, services  # being written: see the API issue work in progress
