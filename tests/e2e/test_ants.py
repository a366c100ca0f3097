"""Ants as real processes: the brief's playbooks with --local-fallback, a vanished Ant, a cut stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path

import pytest

from formicary.v1 import artifact_service_pb2
from tests.e2e.conftest import REPO, TERMINAL, Client, free_port, state_of, tasks_of
from tests.fixtures.processes import start_ant, start_queen
from tests.fixtures.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

QUEEN_ENV = {"FORMICARY_QUEEN_HEARTBEAT_INTERVAL": "1", "FORMICARY_QUEEN_ANT_LOST_AFTER": "4"}


def _stub_tools(folder: Path) -> dict[str, str]:
    """`go` and `gosec` for the CI/CD playbook's build and scan on a host that has neither: the test
    provides them (the product does not pretend); they write the files the real tools would."""
    folder.mkdir(parents=True, exist_ok=True)
    scripts = {
        "go": (
            '#!/bin/sh\n# go build -o NAME ...\nprintf \'#!/bin/sh\\necho my-app\\n\' > "$3"\nchmod +x "$3"\n'
        ),
        "gosec": "#!/bin/sh\necho '{\"runs\": []}' > gosec-report.sarif\n",
    }
    for name, body in scripts.items():
        path = folder / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {"PATH": f"{folder}:{os.environ.get('PATH', '')}"}


async def test_both_playbooks_run_to_their_gates_with_local_fallback(tmp_path: Path, connect) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    queen = await start_queen(tmp_path / "queen", database_url=url, grpc_port=port, env=QUEEN_ENV)
    ant = await start_ant(
        tmp_path / "ant",
        queen_port=port,
        ant_id="ant-demo",
        methods="SHELL,KUBERNETES,DOCKER",
        extra=["--local-fallback"],
        env={**_stub_tools(tmp_path / "tools"), "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    try:
        client: Client = connect(port)
        await assert_eventually(client.ants, message="the Ant registered")
        for name in ("aws-region-failover.yaml", "secure-go-cicd.yaml"):
            await client.upload((REPO / "examples" / name).read_text())
        failover = await client.submit("aws-region-failover")
        cicd = await client.submit("secure-go-cicd")

        def at_gate(request) -> bool:  # type: ignore[no-untyped-def]
            return state_of(request) == "MANUAL_APPROVAL_REQUIRED" or request.job_state in TERMINAL

        dr = await client.wait_for(failover, at_gate, timeout=90)
        assert state_of(dr) == "MANUAL_APPROVAL_REQUIRED", (tasks_of(dr), dr.error_message)
        assert tasks_of(dr) == {
            "check-primary-status": "FAILED",  # exit 1, routed by on_failed: a handled failure
            "provision-secondary-infra": "COMPLETED",
            "verify-failover": "MANUAL_APPROVAL_REQUIRED",
        }
        by_type = {task.task_type: task for task in dr.execution.tasks}
        assert by_type["check-primary-status"].exit_code == "1"
        assert any("local fallback" in w for w in by_type["provision-secondary-infra"].warnings)

        # each attempt's console log is kept as a LOG artifact
        async def provision_log() -> bytes:
            listed = await client.artifacts.ListArtifacts(
                artifact_service_pb2.ListArtifactsRequest(
                    job_request_id=failover, task_type="provision-secondary-infra"
                )
            )
            logs = [a for a in listed.artifacts if a.name == "provision-secondary-infra.log"]
            if not logs:
                return b""
            call = client.artifacts.DownloadArtifact(
                artifact_service_pb2.DownloadArtifactRequest(artifact_id=logs[0].id)
            )
            return b"".join([part.chunk async for part in call])

        assert b"Terraform apply complete." in await assert_eventually(provision_log)

        ci = await client.wait_for(cicd, at_gate, timeout=90)
        assert state_of(ci) == "MANUAL_APPROVAL_REQUIRED", (tasks_of(ci), ci.error_message)
        assert tasks_of(ci) == {
            "build": "COMPLETED",
            "security-scan": "COMPLETED",
            "deploy-staging": "COMPLETED",
            "verify-production-deploy": "MANUAL_APPROVAL_REQUIRED",
        }
    finally:
        await ant.stop()
        await queen.stop()


SLOW = """\
job_type: slow-one
tasks:
- task_type: work
  method: SHELL
  retry: 1
  script: ["sleep 3", "echo done"]
"""


async def test_a_killed_ant_loses_its_task_to_a_retry_on_another_ant(tmp_path: Path, connect) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    queen = await start_queen(tmp_path / "queen", database_url=url, grpc_port=port, env=QUEEN_ENV)
    first = await start_ant(tmp_path / "a1", queen_port=port, ant_id="ant-one", capacity=1)
    second = None
    try:
        client: Client = connect(port)
        await assert_eventually(client.ants, message="the Ant registered")
        await client.upload(SLOW)
        request_id = await client.submit("slow-one")
        await client.wait_for(request_id, lambda r: tasks_of(r).get("work") == "EXECUTING")
        await first.kill()
        second = await start_ant(tmp_path / "a2", queen_port=port, ant_id="ant-two", capacity=1)
        done = await client.wait_for(request_id, lambda r: r.job_state in TERMINAL, timeout=60)
        assert state_of(done) == "COMPLETED"
        task = done.execution.tasks[0]
        assert (task.ant_id, task.retried) == ("ant-two", 1)
    finally:
        if second is not None:
            await second.stop()
        await first.stop()
        await queen.stop()


async def test_a_killed_ant_without_retries_fails_the_task_with_err_ant_lost(tmp_path: Path, connect) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    queen = await start_queen(tmp_path / "queen", database_url=url, grpc_port=port, env=QUEEN_ENV)
    ant = await start_ant(tmp_path / "a1", queen_port=port, ant_id="ant-one", capacity=1)
    try:
        client: Client = connect(port)
        await assert_eventually(client.ants, message="the Ant registered")
        await client.upload(SLOW.replace("  retry: 1\n", ""))
        request_id = await client.submit("slow-one")
        await client.wait_for(request_id, lambda r: tasks_of(r).get("work") == "EXECUTING")
        await ant.kill()
        done = await client.wait_for(request_id, lambda r: r.job_state in TERMINAL, timeout=30)
        assert state_of(done) == "FAILED"
        assert done.execution.tasks[0].error_code == "ERR_ANT_LOST"
    finally:
        await ant.stop()
        await queen.stop()


class _CuttableProxy:
    """A TCP proxy on loopback whose open connections can be cut, as a flaky network would."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers.update({writer, up_writer})

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_a_cut_stream_reconnects_and_reattaches_the_running_task(tmp_path: Path, connect) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    queen = await start_queen(tmp_path / "queen", database_url=url, grpc_port=port, env=QUEEN_ENV)
    proxy = _CuttableProxy(port)
    await proxy.start()
    ant = await start_ant(tmp_path / "a1", queen_port=proxy.port, ant_id="ant-flaky", capacity=1)
    try:
        client: Client = connect(port)
        await assert_eventually(client.ants, message="the Ant registered")
        marker = tmp_path / "runs.txt"
        await client.upload(
            "job_type: once\ntasks:\n- task_type: work\n  method: SHELL\n"
            f'  script: ["echo run >> {marker}", "sleep 2"]\n'
        )
        request_id = await client.submit("once")
        await client.wait_for(request_id, lambda r: tasks_of(r).get("work") == "EXECUTING")
        proxy.cut()
        done = await client.wait_for(request_id, lambda r: r.job_state in TERMINAL, timeout=30)
        assert state_of(done) == "COMPLETED"
        assert proxy.connections >= 2  # the Ant reconnected
        task = done.execution.tasks[0]
        assert (task.retried, task.ant_id) == (0, "ant-flaky")  # re-attached, not retried
        assert marker.read_text().count("run") == 1  # and it ran once
    finally:
        await ant.stop()
        await proxy.stop()
        await queen.stop()
