"""Roles, permissions, and the one table saying which permission every RPC and REST route needs.

A role grants a set of permissions within one organisation; every RPC (by its full gRPC method name)
and every REST route (by method and path template) needs exactly one permission. Anything missing from
the tables is refused (fail closed), and a test checks that every served RPC and route has a row.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from types import MappingProxyType

from queen.domain.errors import PermissionDenied
from queen.domain.identity import Identity

__all__ = [
    "OPEN_ROUTES",
    "OPEN_RPCS",
    "ROLE_PERMISSIONS",
    "ROUTE_PERMISSIONS",
    "RPC_PERMISSIONS",
    "Permission",
    "Role",
    "permissions_of",
    "require",
    "route_template",
]


class Role(enum.StrEnum):
    """What a person (or an Ant) is within an organisation."""

    ADMIN = "admin"
    OPERATOR = "operator"
    DEVELOPER = "developer"
    VIEWER = "viewer"
    ANT = "ant"  # an Ant's own credential: the stream and artifact transfer, nothing a person does


class Permission(enum.StrEnum):
    """One kind of action."""

    READ = "read"  # definitions, requests, events, logs, approvals, Ants, stats, artifact metadata
    DOWNLOAD_ARTIFACT = "download_artifact"
    DEFINE = "define"  # upload, enable, disable, delete job definitions
    SUBMIT = "submit"
    OPERATE = "operate"  # cancel, restart, pause, resume
    APPROVE = "approve"  # vote on approval gates (the gate's policy still decides whose vote counts)
    UPLOAD_ARTIFACT = "upload_artifact"
    # operators, and Ants (which delete what they uploaded when a later upload of the attempt fails)
    DELETE_ARTIFACT = "delete_artifact"
    ANT = "ant"  # connect as an Ant
    MANAGE = "manage"  # tokens, secret configs and their reveal


ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(
    {
        Role.ADMIN: frozenset(Permission),
        Role.OPERATOR: frozenset(
            {
                Permission.READ,
                Permission.DOWNLOAD_ARTIFACT,
                Permission.OPERATE,
                Permission.APPROVE,
                Permission.UPLOAD_ARTIFACT,
                Permission.DELETE_ARTIFACT,
            }
        ),
        Role.DEVELOPER: frozenset(
            {
                Permission.READ,
                Permission.DOWNLOAD_ARTIFACT,
                Permission.DEFINE,
                Permission.SUBMIT,
                Permission.UPLOAD_ARTIFACT,
            }
        ),
        Role.VIEWER: frozenset({Permission.READ, Permission.DOWNLOAD_ARTIFACT}),
        Role.ANT: frozenset(
            {
                Permission.ANT,
                Permission.DOWNLOAD_ARTIFACT,
                Permission.UPLOAD_ARTIFACT,
                Permission.DELETE_ARTIFACT,
            }
        ),
    }
)


def _rpcs(service: str, **methods: Permission) -> dict[str, Permission]:
    return {f"/formicary.v1.{service}/{name}": permission for name, permission in methods.items()}


_P = Permission
# Health and reflection are open: health for load balancers and probes, reflection so that grpcurl can
# list the services (it reveals the API's shape, which is public in the .proto files anyway, no data).
OPEN_RPCS: frozenset[str] = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.health.v1.Health/List",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)
RPC_PERMISSIONS: Mapping[str, Permission] = MappingProxyType(
    {
        **_rpcs("AntService", Connect=_P.ANT),
        **_rpcs(
            "JobDefinitionService",
            UploadJobDefinition=_P.DEFINE,
            GetJobDefinition=_P.READ,
            ListJobDefinitions=_P.READ,
            ListJobDefinitionVersions=_P.READ,
            DisableJobDefinition=_P.DEFINE,
            EnableJobDefinition=_P.DEFINE,
            DeleteJobDefinition=_P.DEFINE,
        ),
        **_rpcs(
            "JobRequestService",
            SubmitJobRequest=_P.SUBMIT,
            GetJobRequest=_P.READ,
            ListJobRequests=_P.READ,
            CancelJobRequest=_P.OPERATE,
            RestartJobRequest=_P.OPERATE,
            PauseJobRequest=_P.OPERATE,
            ResumeJobRequest=_P.OPERATE,
            WatchJobRequest=_P.READ,
            StreamTaskLogs=_P.READ,
        ),
        **_rpcs("AdminService", ListAnts=_P.READ, GetHealth=_P.READ, GetStats=_P.READ),
        **_rpcs(
            "ApprovalService",
            GetApproval=_P.READ,
            ListPendingApprovals=_P.READ,
            WatchPendingApprovals=_P.READ,
            Decide=_P.APPROVE,
        ),
        **_rpcs(
            "ArtifactService",
            UploadArtifact=_P.UPLOAD_ARTIFACT,
            DownloadArtifact=_P.DOWNLOAD_ARTIFACT,
            ListArtifacts=_P.READ,
            DeleteArtifact=_P.DELETE_ARTIFACT,
        ),
    }
)

# Open routes: health, the API's own documentation (static, no data), and the login/logout routes,
# which check the credential they are given themselves.
OPEN_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/api/health"),
        ("GET", "/docs"),
        ("GET", "/docs/assets/{name}"),
        ("GET", "/openapi.json"),
        ("POST", "/api/auth/login"),
        ("POST", "/api/auth/logout"),
        # The dashboard's pages and scripts (queen.http.dashboard): code, no data; its data comes from
        # the /api routes below, with the caller's credential.
        ("GET", "/"),
        ("GET", "/requests"),
        ("GET", "/requests/{request_id}"),
        ("GET", "/definitions"),
        ("GET", "/definitions/{job_type}"),
        ("GET", "/approvals"),
        ("GET", "/ants"),
        ("GET", "/dashboard/assets/{name:path}"),
    }
)
_REQUESTS = "/api/jobs/requests/{request_id}"
_DEFINITION = "/api/jobs/definitions/{ref}"
ROUTE_PERMISSIONS: Mapping[tuple[str, str], Permission] = MappingProxyType(
    {
        ("POST", "/api/jobs/definitions"): _P.DEFINE,
        ("GET", "/api/jobs/definitions"): _P.READ,
        ("GET", _DEFINITION): _P.READ,
        ("DELETE", _DEFINITION): _P.DEFINE,
        ("GET", "/api/jobs/definitions/{job_type}/yaml"): _P.READ,
        ("POST", f"{_DEFINITION}/disable"): _P.DEFINE,
        ("POST", f"{_DEFINITION}/enable"): _P.DEFINE,
        ("POST", "/api/jobs/requests"): _P.SUBMIT,
        ("GET", "/api/jobs/requests"): _P.READ,
        ("GET", "/api/jobs/requests/stream"): _P.READ,
        ("GET", _REQUESTS): _P.READ,
        ("GET", f"{_REQUESTS}/stream"): _P.READ,
        ("POST", f"{_REQUESTS}/cancel"): _P.OPERATE,
        ("POST", f"{_REQUESTS}/pause"): _P.OPERATE,
        ("POST", f"{_REQUESTS}/resume"): _P.OPERATE,
        ("POST", f"{_REQUESTS}/restart"): _P.OPERATE,
        ("POST", f"{_REQUESTS}/trigger"): _P.OPERATE,
        ("POST", f"{_REQUESTS}/tasks/{{task_type}}/vote"): _P.APPROVE,
        ("GET", f"{_REQUESTS}/tasks/{{task_type}}/approval"): _P.READ,
        ("GET", "/api/approvals/pending"): _P.READ,
        ("GET", "/api/approvals/pending/stream"): _P.READ,
        ("GET", "/api/artifacts"): _P.READ,
        ("GET", "/api/artifacts/{artifact_id}"): _P.READ,
        ("GET", "/api/artifacts/{artifact_id}/download"): _P.DOWNLOAD_ARTIFACT,
        ("DELETE", "/api/artifacts/{artifact_id}"): _P.DELETE_ARTIFACT,
        ("GET", "/api/ants"): _P.READ,
        ("GET", "/metrics"): _P.READ,
        ("GET", "/api/auth/whoami"): _P.READ,
    }
)


def _compiled(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)

    def piece(part: str) -> str:
        if not part.startswith("{"):
            return re.escape(part)
        return ".+" if part.endswith(":path}") else "[^/]+"  # Starlette's `{name:path}` spans segments

    return re.compile("".join(piece(part) for part in parts) + "/?")


# Most literal characters first: a fixed segment wins over a parameter where both would match.
_TEMPLATES = sorted(
    ((method, template, _compiled(template)) for method, template in {*ROUTE_PERMISSIONS, *OPEN_ROUTES}),
    key=lambda item: -len(re.sub(r"\{[^}]+\}", "", item[1])),
)


def route_template(method: str, path: str) -> tuple[str, Permission | None] | None:
    """The template of the tables matching a request's method and path, with its permission (None for
    an open route); None when no row matches (the route is then refused)."""
    for row_method, template, pattern in _TEMPLATES:
        if row_method == method and pattern.fullmatch(path):
            return template, ROUTE_PERMISSIONS.get((method, template))
    return None


def permissions_of(identity: Identity) -> frozenset[Permission]:
    """Everything the identity's roles grant (unknown role names grant nothing)."""
    granted: set[Permission] = set()
    for name in identity.roles:
        try:
            granted |= ROLE_PERMISSIONS[Role(name)]
        except ValueError:
            continue
    return frozenset(granted)


def require(identity: Identity, permission: Permission | None, action: str) -> None:
    """PermissionDenied unless the identity's roles grant `permission`; None (an action missing from the
    tables) is always refused."""
    if permission is None:
        raise PermissionDenied(f"{action} is not allowed to anyone (it has no permission assigned)")
    if permission not in permissions_of(identity):
        roles = ", ".join(sorted(identity.roles)) or "none"
        raise PermissionDenied(
            f"{action} needs the {permission.value} permission, which the caller's roles ({roles}) "
            f"in organisation {identity.organization_id!r} do not grant"
        )
