"""Artifacts between tasks, end to end in one process: a real Queen (gRPC on a free port, SQLite, local
object store) and a real AntClient connected to it over its stream, moving files with
GrpcArtifactTransfer on the same channel; everything checked through the public gRPC API."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from ant.executors import ExecutorRegistry, Method
from ant.executors.selection import ExecutorTuning, select_executors
from ant.executors.shell import ShellExecutor
from ant.settings import AntSettings
from ant.stream import AntClient
from formicary.v1 import (
    artifact_pb2,
    artifact_service_pb2,
    artifact_service_pb2_grpc,
    execution_pb2,
    job_definition_service_pb2,
    job_definition_service_pb2_grpc,
    job_request_pb2,
    job_request_service_pb2,
    job_request_service_pb2_grpc,
    state_pb2,
)
from queen.app import Queen
from queen.settings import QueenSettings
from tests.fixtures.auth import authorized_channel, mint
from tests.fixtures.waiting import assert_eventually

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
REPORT = b"quarterly report\nall green\n"
HANDOFF_YAML = """\
job_type: artifact-handoff
description: the first task's report reaches the second through the artifact store
tasks:
- task_type: produce
  method: SHELL
  script:
    - mkdir -p out
    - printf 'quarterly report\\nall green\\n' > out/report.txt
  artifacts:
    paths: [out/report.txt, out/missing-*.csv]
  on_completed: consume
- task_type: consume
  method: SHELL
  dependencies: [produce]
  report_stdout: true
  script:
    - cat out/report.txt
    - test "$(sha256sum out/report.txt | cut -d' ' -f1)" = "{{.expected_sha256}}"
"""
BROKEN_UPLOAD_YAML = """\
job_type: broken-upload
description: the second of two artifacts has a name the Queen refuses
tasks:
- task_type: produce
  method: SHELL
  script:
    - mkdir -p out
    - echo fine > out/a.txt
    - echo odd > 'out/b\\c.txt'
  artifacts:
    paths: [out]
"""
TERMINAL = {state_pb2.JOB_STATE_COMPLETED, state_pb2.JOB_STATE_FAILED, state_pb2.JOB_STATE_CANCELLED}


@dataclass(frozen=True, slots=True)
class Client:
    """The public API of the Queen, as any client would use it."""

    definitions: job_definition_service_pb2_grpc.JobDefinitionServiceAsyncStub
    requests: job_request_service_pb2_grpc.JobRequestServiceAsyncStub
    artifacts: artifact_service_pb2_grpc.ArtifactServiceAsyncStub

    async def submit(self, yaml: str, **params: str) -> int:
        uploaded = await self.definitions.UploadJobDefinition(
            job_definition_service_pb2.UploadJobDefinitionRequest(yaml=yaml)
        )
        submitted = await self.requests.SubmitJobRequest(
            job_request_service_pb2.SubmitJobRequestRequest(
                job_type=uploaded.job_definition.job_type, params=params
            )
        )
        return submitted.job_request.id

    async def request(self, request_id: int) -> job_request_pb2.JobRequest:
        got = await self.requests.GetJobRequest(
            job_request_service_pb2.GetJobRequestRequest(job_request_id=request_id)
        )
        return got.job_request

    async def wait_until(
        self,
        request_id: int,
        states: set[state_pb2.JobState.ValueType],
        timeout: float = 20.0,  # noqa: ASYNC109 - assert_eventually's, which says what it last saw
    ) -> job_request_pb2.JobRequest:
        async def reached() -> job_request_pb2.JobRequest:
            request = await self.request(request_id)
            assert request.job_state in states | TERMINAL, state_pb2.JobState.Name(request.job_state)
            return request

        return await assert_eventually(reached, timeout=timeout, message=f"request {request_id} in {states}")

    async def task_artifacts(self, request_id: int) -> list[artifact_pb2.Artifact]:
        listed = await self.artifacts.ListArtifacts(
            artifact_service_pb2.ListArtifactsRequest(
                job_request_id=request_id, kind=artifact_pb2.ARTIFACT_KIND_TASK
            )
        )
        return list(listed.artifacts)

    async def content(self, artifact_id: str) -> bytes:
        stream = self.artifacts.DownloadArtifact(
            artifact_service_pb2.DownloadArtifactRequest(artifact_id=artifact_id)
        )
        return b"".join([message.chunk async for message in stream])


def tasks_by_type(request: job_request_pb2.JobRequest) -> dict[str, execution_pb2.TaskExecution]:
    return {task.task_type: task for task in request.execution.tasks}


@pytest.fixture
async def queen(tmp_path: Path) -> AsyncIterator[Queen]:
    settings = QueenSettings(
        grpc_port=0,
        data_dir=tmp_path / "queen",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'q.db'}",
        heartbeat_interval=timedelta(milliseconds=200),
        sweep_interval=timedelta(seconds=1),
    )
    queen = Queen(settings)
    await queen.start()
    try:
        yield queen
    finally:
        await queen.stop()


@pytest.fixture
async def ant_token(queen: Queen) -> str:
    """The Ant's own credential: bound to the Queen's organisation and the methods the tests use."""
    return await mint(queen, "ant", user="ant:artifacts", ant_methods=["SHELL", "KUBERNETES"])


@pytest.fixture
async def client(queen: Queen) -> AsyncIterator[Client]:
    async with authorized_channel(f"127.0.0.1:{queen.grpc_port}", await mint(queen)) as channel:
        yield Client(
            definitions=job_definition_service_pb2_grpc.JobDefinitionServiceStub(channel),
            requests=job_request_service_pb2_grpc.JobRequestServiceStub(channel),
            artifacts=artifact_service_pb2_grpc.ArtifactServiceStub(channel),
        )


def ant_settings(queen: Queen, tmp_path: Path, token: str, *methods: Method) -> AntSettings:
    return AntSettings(
        credential=SecretStr(token),
        queen_address=f"127.0.0.1:{queen.grpc_port}",
        ant_id="ant-artifacts",
        methods=list(methods),
        capacity=2,
        work_dir=tmp_path / "ant",
        log_flush_interval=timedelta(milliseconds=50),
        shutdown_grace=timedelta(milliseconds=200),
        ack_timeout=timedelta(seconds=1),
        kill_grace=timedelta(milliseconds=200),
        reconnect_initial_backoff=timedelta(milliseconds=50),
        reconnect_backoff_cap=timedelta(milliseconds=200),
    )


@pytest.fixture
def no_engines(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither a Docker engine nor a Kubernetes cluster answers: --local-fallback runs tasks with SHELL."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


async def test_a_tasks_artifact_reaches_the_task_that_depends_on_it(
    queen: Queen, client: Client, tmp_path: Path, ant_token: str
) -> None:
    expected = hashlib.sha256(REPORT).hexdigest()
    registry = ExecutorRegistry({Method.SHELL: ShellExecutor(kill_grace=0.2)})
    async with AntClient(ant_settings(queen, tmp_path, ant_token, Method.SHELL), registry):
        request_id = await client.submit(HANDOFF_YAML, expected_sha256=expected)
        done = await client.wait_until(request_id, set())

    tasks = tasks_by_type(done)
    assert done.job_state == state_pb2.JOB_STATE_COMPLETED, (done.error_message, tasks)
    produce, consume = tasks["produce"], tasks["consume"]
    (recorded,) = produce.artifacts
    assert (recorded.name, recorded.sha256) == ("out/report.txt", expected)
    assert recorded.content_length == len(REPORT)
    assert recorded.content_type == "text/plain"
    assert recorded.bucket
    assert recorded.key.endswith("/out/report.txt")
    assert "artifacts path 'out/missing-*.csv' matched no files" in produce.warnings
    assert list(consume.stdout) == ["quarterly report", "all green"]  # read from the downloaded file
    assert consume.exit_code == "0"
    assert not consume.artifacts

    (listed,) = await client.task_artifacts(request_id)
    assert listed.id == recorded.id
    assert (listed.name, listed.sha256, listed.task_type) == ("out/report.txt", expected, "produce")
    assert listed.task_execution_id == produce.id
    assert listed.job_request_id == request_id
    assert await client.content(recorded.id) == REPORT


async def test_a_refused_upload_fails_the_task_and_leaves_no_artifact_listed(
    queen: Queen, client: Client, tmp_path: Path, ant_token: str
) -> None:
    registry = ExecutorRegistry({Method.SHELL: ShellExecutor(kill_grace=0.2)})
    async with AntClient(ant_settings(queen, tmp_path, ant_token, Method.SHELL), registry):
        request_id = await client.submit(BROKEN_UPLOAD_YAML)
        done = await client.wait_until(request_id, set())

    produce = tasks_by_type(done)["produce"]
    assert done.job_state == state_pb2.JOB_STATE_FAILED
    assert produce.task_state == state_pb2.TASK_STATE_FAILED
    assert produce.error_code == "ERR_ARTIFACT_UPLOAD"
    assert produce.exit_code == "FAILED"
    assert produce.error_message.startswith(
        "cannot upload artifact 'out/b\\\\c.txt': the Queen answered INVALID_ARGUMENT: "
    )
    assert produce.error_message.endswith("(the script succeeded)")
    assert not produce.artifacts
    # out/a.txt was stored first, then deleted again when out/b\c.txt was refused: all or nothing
    assert await client.task_artifacts(request_id) == []


@pytest.mark.usefixtures("no_engines")
@pytest.mark.timeout(90)  # the playbook's provisioning task sleeps 10 s
async def test_the_dr_playbooks_state_file_waits_with_the_request_at_its_gate(
    queen: Queen, client: Client, tmp_path: Path, ant_token: str
) -> None:
    registry = await select_executors(
        [Method.SHELL, Method.KUBERNETES],
        ant_id="ant-artifacts",
        host="dr-host",
        local_fallback=True,
        logger=structlog.get_logger(),
        tuning=ExecutorTuning(api_timeout=2.0, kill_grace=0.2),
    )
    try:
        async with AntClient(
            ant_settings(queen, tmp_path, ant_token, Method.SHELL, Method.KUBERNETES), registry
        ):
            request_id = await client.submit((REPO / "examples" / "aws-region-failover.yaml").read_text())
            at_gate = await client.wait_until(
                request_id, {state_pb2.JOB_STATE_MANUAL_APPROVAL_REQUIRED}, timeout=60
            )
    finally:
        await registry.aclose()

    tasks = tasks_by_type(at_gate)
    assert at_gate.job_state == state_pb2.JOB_STATE_MANUAL_APPROVAL_REQUIRED, (at_gate.error_message, tasks)
    assert tasks["verify-failover"].task_state == state_pb2.TASK_STATE_MANUAL_APPROVAL_REQUIRED
    state_file = b'{"aws_instance.dr_server": {"id": "i-12345dr"}}\n'
    (listed,) = await client.task_artifacts(request_id)
    assert (listed.name, listed.task_type) == ("terraform.tfstate", "provision-secondary-infra")
    assert listed.sha256 == hashlib.sha256(state_file).hexdigest()
    assert [a.id for a in tasks["provision-secondary-infra"].artifacts] == [listed.id]
    assert await client.content(listed.id) == state_file
