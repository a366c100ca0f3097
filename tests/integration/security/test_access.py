"""Every RPC and every REST route, called as: no token, a malformed, an expired and a revoked token, an
admin of another organisation, and each role. Checked: the status, that nothing of the organisation
leaked to another, and that refused calls changed nothing.

The expectations come from the one table (`queen.security.permissions`); the test also proves that the
table covers every RPC the Queen serves and every route the gateway has.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.message import Message

from formicary.v1 import (
    admin_service_pb2,
    ant_service_pb2,
    approval_pb2,
    approval_service_pb2,
    artifact_service_pb2,
    job_definition_service_pb2,
    job_request_service_pb2,
    task_pb2,
)
from queen.security.permissions import (
    OPEN_ROUTES,
    OPEN_RPCS,
    ROLE_PERMISSIONS,
    ROUTE_PERMISSIONS,
    RPC_PERMISSIONS,
    Permission,
    Role,
)
from tests.integration.security.conftest import (
    ARTIFACT_NAME,
    CALLERS,
    DESCRIPTION,
    GATE,
    JOB_TYPE,
    OTHER_ORG,
    OWNER,
    Seeded,
)

pytestmark = pytest.mark.integration

_UNAUTHENTICATED = frozenset({"none", "garbage", "expired", "revoked"})
_ROLES = {"admin": Role.ADMIN, "operator": Role.OPERATOR, "developer": Role.DEVELOPER}
_ROLES |= {"viewer": Role.VIEWER, "ant": Role.ANT, "other-org": Role.ADMIN}
_STREAM_WAIT = 3.0

# -- gRPC: one call per method ---------------------------------------------------------------------------

Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]


@dataclass(frozen=True, slots=True)
class Rpc:
    kind: str  # unary, server_stream, client_stream, bidi
    request: Callable[[Seeded], Any]
    response: type[Message]


def _rpcs() -> dict[str, Rpc]:
    jd, jr, ad = job_definition_service_pb2, job_request_service_pb2, admin_service_pb2
    ap, ar, an = approval_service_pb2, artifact_service_pb2, ant_service_pb2
    yaml = f"job_type: {JOB_TYPE}-copy\ntasks:\n- task_type: a\n  method: SHELL\n  script: [echo]\n"

    def rid(s: Seeded) -> int:
        return s.request_id

    def register(_: Seeded) -> Any:
        frame = an.ConnectRequest.Register(
            ant_id=f"sec-ant-{uuid.uuid4().hex[:8]}",
            methods=[task_pb2.TASK_METHOD_SHELL],
            max_capacity=1,
            host="h",
        )
        return [an.ConnectRequest(register=frame)]

    def upload(_: Seeded) -> Any:
        meta = ar.UploadArtifactMetadata(name="up.txt")
        return [ar.UploadArtifactRequest(metadata=meta), ar.UploadArtifactRequest(chunk=b"x")]

    svc = "/formicary.v1."
    return {
        f"{svc}AntService/Connect": Rpc("bidi", register, an.ConnectResponse),
        f"{svc}JobDefinitionService/UploadJobDefinition": Rpc(
            "unary", lambda s: jd.UploadJobDefinitionRequest(yaml=yaml), jd.UploadJobDefinitionResponse
        ),
        f"{svc}JobDefinitionService/GetJobDefinition": Rpc(
            "unary", lambda s: jd.GetJobDefinitionRequest(job_type=JOB_TYPE), jd.GetJobDefinitionResponse
        ),
        f"{svc}JobDefinitionService/ListJobDefinitions": Rpc(
            "unary", lambda s: jd.ListJobDefinitionsRequest(), jd.ListJobDefinitionsResponse
        ),
        f"{svc}JobDefinitionService/ListJobDefinitionVersions": Rpc(
            "unary",
            lambda s: jd.ListJobDefinitionVersionsRequest(job_type=JOB_TYPE),
            jd.ListJobDefinitionVersionsResponse,
        ),
        f"{svc}JobDefinitionService/DisableJobDefinition": Rpc(
            "unary",
            lambda s: jd.DisableJobDefinitionRequest(job_type=JOB_TYPE),
            jd.DisableJobDefinitionResponse,
        ),
        f"{svc}JobDefinitionService/EnableJobDefinition": Rpc(
            "unary",
            lambda s: jd.EnableJobDefinitionRequest(job_type=JOB_TYPE),
            jd.EnableJobDefinitionResponse,
        ),
        f"{svc}JobDefinitionService/DeleteJobDefinition": Rpc(
            # a job type nobody has: an allowed caller must not delete the seeded one mid-test
            "unary",
            lambda s: jd.DeleteJobDefinitionRequest(job_type="nothing-here"),
            jd.DeleteJobDefinitionResponse,
        ),
        f"{svc}JobRequestService/SubmitJobRequest": Rpc(
            "unary", lambda s: jr.SubmitJobRequestRequest(job_type=JOB_TYPE), jr.SubmitJobRequestResponse
        ),
        f"{svc}JobRequestService/GetJobRequest": Rpc(
            "unary", lambda s: jr.GetJobRequestRequest(job_request_id=rid(s)), jr.GetJobRequestResponse
        ),
        f"{svc}JobRequestService/ListJobRequests": Rpc(
            "unary", lambda s: jr.ListJobRequestsRequest(), jr.ListJobRequestsResponse
        ),
        # the controls aim at a request id nobody has, so an allowed caller changes nothing seeded
        f"{svc}JobRequestService/CancelJobRequest": Rpc(
            "unary", lambda s: jr.CancelJobRequestRequest(job_request_id=rid(s)), jr.CancelJobRequestResponse
        ),
        f"{svc}JobRequestService/RestartJobRequest": Rpc(
            "unary",
            lambda s: jr.RestartJobRequestRequest(job_request_id=rid(s)),
            jr.RestartJobRequestResponse,
        ),
        f"{svc}JobRequestService/PauseJobRequest": Rpc(
            "unary", lambda s: jr.PauseJobRequestRequest(job_request_id=rid(s)), jr.PauseJobRequestResponse
        ),
        f"{svc}JobRequestService/ResumeJobRequest": Rpc(
            "unary", lambda s: jr.ResumeJobRequestRequest(job_request_id=rid(s)), jr.ResumeJobRequestResponse
        ),
        f"{svc}JobRequestService/WatchJobRequest": Rpc(
            "server_stream",
            lambda s: jr.WatchJobRequestRequest(job_request_id=rid(s)),
            jr.WatchJobRequestResponse,
        ),
        f"{svc}JobRequestService/StreamTaskLogs": Rpc(
            "server_stream",
            lambda s: jr.StreamTaskLogsRequest(job_request_id=rid(s)),
            jr.StreamTaskLogsResponse,
        ),
        f"{svc}AdminService/ListAnts": Rpc("unary", lambda s: ad.ListAntsRequest(), ad.ListAntsResponse),
        f"{svc}AdminService/GetHealth": Rpc("unary", lambda s: ad.GetHealthRequest(), ad.GetHealthResponse),
        f"{svc}AdminService/GetStats": Rpc("unary", lambda s: ad.GetStatsRequest(), ad.GetStatsResponse),
        f"{svc}ApprovalService/GetApproval": Rpc(
            "unary",
            lambda s: ap.GetApprovalRequest(job_request_id=rid(s), task_type=GATE),
            ap.GetApprovalResponse,
        ),
        f"{svc}ApprovalService/ListPendingApprovals": Rpc(
            "unary", lambda s: ap.ListPendingApprovalsRequest(), ap.ListPendingApprovalsResponse
        ),
        f"{svc}ApprovalService/WatchPendingApprovals": Rpc(
            "server_stream", lambda s: ap.WatchPendingApprovalsRequest(), ap.WatchPendingApprovalsResponse
        ),
        f"{svc}ApprovalService/Decide": Rpc(
            # no decision: INVALID_ARGUMENT for whoever gets past authentication, and the gate stays open
            "unary",
            lambda s: ap.DecideRequest(job_request_id=rid(s), task_type=GATE),
            ap.DecideResponse,
        ),
        f"{svc}ArtifactService/UploadArtifact": Rpc("client_stream", upload, ar.UploadArtifactResponse),
        f"{svc}ArtifactService/DownloadArtifact": Rpc(
            "server_stream",
            lambda s: ar.DownloadArtifactRequest(artifact_id=s.artifact_id),
            ar.DownloadArtifactResponse,
        ),
        f"{svc}ArtifactService/ListArtifacts": Rpc(
            "unary", lambda s: ar.ListArtifactsRequest(), ar.ListArtifactsResponse
        ),
        f"{svc}ArtifactService/DeleteArtifact": Rpc(
            "unary", lambda s: ar.DeleteArtifactRequest(artifact_id="nothing-here"), ar.DeleteArtifactResponse
        ),
    }


RPCS = _rpcs()
# The controls are called on the seeded request only by refused callers: an allowed caller would really
# cancel it. For them, the request id is swapped for one that does not exist.
_CONTROLS = {"CancelJobRequest", "RestartJobRequest", "PauseJobRequest", "ResumeJobRequest"}
_DEFINITION_CONTROLS = {"DisableJobDefinition", "EnableJobDefinition"}


@dataclass(frozen=True, slots=True)
class Outcome:
    code: grpc.StatusCode
    text: str  # everything the caller received, as text


async def call(channel: grpc.aio.Channel, method: str, seeded: Seeded, token: str, *, safe: bool) -> Outcome:
    rpc = RPCS[method]
    request = rpc.request(seeded)
    if safe and method.rsplit("/", 1)[1] in _CONTROLS:
        request.job_request_id = 999_999_999
    if safe and method.rsplit("/", 1)[1] in _DEFINITION_CONTROLS:
        request.job_type = "nothing-here"
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    serialize = lambda m: m.SerializeToString()  # noqa: E731
    received: list[str] = []
    try:
        async with asyncio.timeout(_STREAM_WAIT * 3):
            if rpc.kind == "unary":
                callable_ = channel.unary_unary(method, serialize, rpc.response.FromString)
                received.append(str(await callable_(request, metadata=metadata)))
            elif rpc.kind == "client_stream":
                stream_unary = channel.stream_unary(method, serialize, rpc.response.FromString)
                received.append(str(await stream_unary(iter(request), metadata=metadata)))
            else:
                if rpc.kind == "server_stream":
                    stream = channel.unary_stream(method, serialize, rpc.response.FromString)(
                        request, metadata=metadata
                    )
                else:
                    stream = channel.stream_stream(method, serialize, rpc.response.FromString)(
                        _frames(request), metadata=metadata
                    )
                try:
                    first = await asyncio.wait_for(stream.read(), _STREAM_WAIT)
                    received.append(str(first))
                except TimeoutError:
                    pass  # an open stream with nothing to say yet: allowed, nothing leaked
                finally:
                    stream.cancel()
                    code = await stream.code()
                if code not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
                    return Outcome(code, "".join(received) + (await stream.details() or ""))
    except grpc.aio.AioRpcError as exc:
        return Outcome(exc.code(), "".join(received) + (exc.details() or ""))
    return Outcome(grpc.StatusCode.OK, "".join(received))


async def _frames(frames: list[Any]) -> AsyncIterator[Any]:
    for frame in frames:
        yield frame
    await asyncio.sleep(_STREAM_WAIT * 2)  # keep the stream open while the test reads


def leaked(text: str) -> bool:
    """Whether a reply holds something of the seeded organisation that the caller did not send."""
    markers = (ARTIFACT_NAME, "secret bytes", DESCRIPTION, f'"{OWNER}"', f"user_id: {OWNER!r}")
    return any(marker in text for marker in markers) or 'job_type: "sec-gate-7f3a"' in text


def allowed(caller: str, permission: Permission) -> bool:
    return caller not in _UNAUTHENTICATED and permission in ROLE_PERMISSIONS[_ROLES[caller]]


@pytest.fixture(scope="module")
async def channel(seeded: Seeded) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{seeded.queen.grpc_port}") as opened:
        yield opened


async def _snapshot(seeded: Seeded) -> tuple[str, ...]:
    """What refused calls must not change: the request's state, the definition, the gate, the artifact."""
    queen = seeded.queen
    owner = queen.services.local_identity
    details = await queen.services.requests.get(owner, seeded.request_id)
    definition = await queen.services.definitions.get(owner, job_type=JOB_TYPE)
    artifact = await queen.services.artifacts.get(owner, seeded.artifact_id)
    gate = await queen.services.approvals.get(owner, seeded.request_id, GATE)
    return (
        details.request.job_state.value,
        str(definition.version),
        str(definition.disabled),
        artifact.name,
        str(gate.state),
        str(len(gate.votes)),
    )


def test_the_table_covers_every_rpc_the_queen_serves(seeded: Seeded) -> None:
    from grpc_health.v1 import health_pb2

    from formicary.v1 import (
        admin_service_pb2 as a,
    )
    from formicary.v1 import (
        ant_service_pb2 as b,
    )
    from formicary.v1 import (
        approval_service_pb2 as c,
    )
    from formicary.v1 import (
        artifact_service_pb2 as d,
    )
    from formicary.v1 import (
        job_definition_service_pb2 as e,
    )
    from formicary.v1 import (
        job_request_service_pb2 as f,
    )

    served = {
        f"/{service.full_name}/{method.name}"
        for module in (a, b, c, d, e, f, health_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert served - set(OPEN_RPCS) == set(RPC_PERMISSIONS) == set(RPCS)


@pytest.mark.parametrize("method", sorted(RPCS))
async def test_every_rpc_as_every_caller(seeded: Seeded, channel: grpc.aio.Channel, method: str) -> None:
    permission = RPC_PERMISSIONS[method]
    before = await _snapshot(seeded)
    for caller in CALLERS:
        token = seeded.tokens[caller]
        outcome = await call(channel, method, seeded, token, safe=allowed(caller, permission))
        where = f"{method} as {caller}: {outcome.code} {outcome.text[:300]}"
        if caller in _UNAUTHENTICATED:
            assert outcome.code is grpc.StatusCode.UNAUTHENTICATED, where
        elif not allowed(caller, permission):
            assert outcome.code is grpc.StatusCode.PERMISSION_DENIED, where
        else:
            assert outcome.code not in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.INTERNAL,
            ), where
        if caller == "other-org":
            # another organisation's admin learns nothing of this one beyond what it sent itself
            assert not leaked(outcome.text), where
        if not allowed(caller, permission) or caller == "other-org":
            assert await _snapshot(seeded) == before, where


# -- REST: one request per route ---------------------------------------------------------------------------


def _path(template: str, seeded: Seeded, *, safe: bool) -> str:
    request_id = 999_999_999 if safe else seeded.request_id
    return (
        template.replace("{request_id}", str(request_id))
        .replace("{task_type}", GATE)
        .replace("{ref}", JOB_TYPE if not safe else "nothing-here")
        .replace("{job_type}", JOB_TYPE)
        .replace("{artifact_id}", seeded.artifact_id if not safe else "nothing-here")
    )


_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/jobs/requests"): {"json": {"job_type": JOB_TYPE}},
    ("POST", "/api/jobs/definitions"): {
        "content": f"job_type: {JOB_TYPE}-copy\ntasks:\n- task_type: a\n  method: SHELL\n  script: [echo]\n",
        "headers": {"Content-Type": "application/yaml"},
    },
    ("POST", "/api/jobs/requests/{request_id}/tasks/{task_type}/vote"): {"json": {"decision": "MAYBE"}},
}


async def _send(
    client: httpx.AsyncClient, verb: str, path: str, headers: dict[str, str], extra: dict[str, Any]
) -> tuple[int, str]:
    """Status and what the body said within a moment (event streams never end by themselves)."""
    async with client.stream(verb, path, headers=headers, **extra) as response:
        body = b""
        try:
            async with asyncio.timeout(_STREAM_WAIT):
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > 256 * 1024:
                        break
        except TimeoutError:
            pass
        if response.status_code == 401:
            assert response.headers.get("www-authenticate", "").startswith("Bearer"), path
        return response.status_code, body.decode(errors="replace")


def test_the_table_covers_every_route(seeded: Seeded) -> None:
    routes = {
        (method.upper(), path)
        for path, item in seeded.queen.http.app.openapi()["paths"].items()
        for method in item
    }
    assert routes - set(OPEN_ROUTES) == set(ROUTE_PERMISSIONS)


@pytest.mark.parametrize(("verb", "template"), sorted(ROUTE_PERMISSIONS))
async def test_every_route_as_every_caller(seeded: Seeded, verb: str, template: str) -> None:
    permission = ROUTE_PERMISSIONS[(verb, template)]
    before = await _snapshot(seeded)
    async with httpx.AsyncClient(base_url=seeded.queen.http.url, timeout=30) as client:
        for caller in CALLERS:
            token = seeded.tokens[caller]
            # an allowed caller's controls and deletions aim at things that do not exist
            safe = allowed(caller, permission) and (verb != "GET" or template.endswith("/trigger"))
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            extra = dict(_BODIES.get((verb, template), {}))
            headers |= extra.pop("headers", {})
            status, text = await _send(client, verb, _path(template, seeded, safe=safe), headers, extra)
            where = f"{verb} {template} as {caller}: {status} {text[:300]}"
            if caller in _UNAUTHENTICATED:
                assert status == 401, where
            elif not allowed(caller, permission):
                assert status == 403, where
            else:
                assert status not in (401, 403, 500), where
            if caller == "other-org":
                assert not leaked(text), where
            if not allowed(caller, permission) or caller == "other-org":
                assert await _snapshot(seeded) == before, where


async def test_open_endpoints_need_no_token(seeded: Seeded, channel: grpc.aio.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    checked = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    async with httpx.AsyncClient(base_url=seeded.queen.http.url) as client:
        assert (await client.get("/api/health")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200


async def test_an_other_organisations_approver_cannot_vote(seeded: Seeded, channel: grpc.aio.Channel) -> None:
    request = approval_service_pb2.DecideRequest(
        job_request_id=seeded.request_id,
        task_type=GATE,
        decision=approval_pb2.APPROVAL_DECISION_APPROVE,
        comment="mine now",
    )
    decide: Callable[..., Awaitable[Any]] = channel.unary_unary(
        "/formicary.v1.ApprovalService/Decide",
        lambda m: m.SerializeToString(),
        approval_service_pb2.DecideResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await decide(request, metadata=(("authorization", f"Bearer {seeded.tokens['other-org']}"),))
    assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    assert OTHER_ORG  # the caller's organisation is not the gate's: to it, the gate does not exist
