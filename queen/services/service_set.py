"""The set of services one Queen exposes, handed to every API front (gRPC servicers, REST gateway)."""

from __future__ import annotations

from dataclasses import dataclass

from queen.ants.registry import AntRegistry
from queen.domain.identity import Identity
from queen.security.authenticator import Authenticator
from queen.services.admin import AdminService
from queen.services.approvals import ApprovalService
from queen.services.artifacts import ArtifactService
from queen.services.definitions import DefinitionService
from queen.services.requests import RequestService
from queen.task_logs import LogHub

__all__ = ["Services"]


@dataclass(frozen=True, slots=True)
class Services:
    """The service layer, shared by the gRPC servicers and the REST gateway."""

    definitions: DefinitionService
    requests: RequestService
    registry: AntRegistry
    admin: AdminService
    approvals: ApprovalService
    artifacts: ArtifactService
    logs: LogHub
    local_identity: Identity
    authenticator: Authenticator
