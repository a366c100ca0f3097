"""gRPC servicers: thin translations between protobuf messages and the service layer (no business rules)."""

from __future__ import annotations

import grpc

from formicary.v1 import (
    admin_service_pb2_grpc,
    approval_service_pb2_grpc,
    artifact_service_pb2_grpc,
    job_definition_service_pb2_grpc,
    job_request_service_pb2_grpc,
)
from queen.api.admin_service import AdminServicer
from queen.api.approval_service import ApprovalServicer
from queen.api.artifact_service import ArtifactServicer
from queen.api.definition_service import JobDefinitionServicer
from queen.api.request_service import JobRequestServicer
from queen.services.service_set import Services

__all__ = ["register_public_servicers"]


def register_public_servicers(server: grpc.aio.Server, services: Services) -> None:
    """Add JobDefinitionService, JobRequestService, AdminService and ArtifactService to `server`."""
    job_definition_service_pb2_grpc.add_JobDefinitionServiceServicer_to_server(
        JobDefinitionServicer(services), server
    )
    job_request_service_pb2_grpc.add_JobRequestServiceServicer_to_server(JobRequestServicer(services), server)
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(services.admin), server)
    approval_service_pb2_grpc.add_ApprovalServiceServicer_to_server(
        ApprovalServicer(services.approvals), server
    )
    artifact_service_pb2_grpc.add_ArtifactServiceServicer_to_server(
        ArtifactServicer(services.artifacts), server
    )
