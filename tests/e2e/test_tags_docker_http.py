"""Two Ants pinned by tags: a DOCKER task in the local busybox image makes an artifact that a SHELL task
on the other Ant downloads; HTTP tasks call a server the test runs on loopback. Artifacts go to the
local store in one run and to SeaweedFS (S3) in the other."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from formicary.v1 import artifact_service_pb2
from tests.e2e.conftest import TERMINAL, Client, free_port, state_of, tasks_of
from tests.fixtures.object_stores import ObjectStoreConfig
from tests.fixtures.processes import start_ant, start_queen
from tests.fixtures.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []  # noqa: RUF012 - one server per test, reset by the fixture

    def do_GET(self) -> None:
        self.received.append(("GET", self.path, b""))
        self._answer(200, b'{"status": "up"}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append(("POST", self.path, body))
        self._answer(201, body)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def http_server() -> Iterator[tuple[int, list[tuple[str, str, bytes]]]]:
    _Recorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), _Recorder.received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _job(image: str, http_port: int) -> str:
    return f"""\
job_type: pinned
tasks:
- task_type: make
  method: DOCKER
  tags: [docker-host]
  container: {{image: "{image}"}}
  script: ["echo built-in-docker > out.txt"]
  artifacts: {{paths: [out.txt]}}
  on_completed: check
- task_type: check
  method: SHELL
  tags: [http-host]
  dependencies: [make]
  script: ["grep built-in-docker out.txt"]
  on_completed: ping
- task_type: ping
  method: HTTP_GET
  tags: [http-host]
  url: "http://127.0.0.1:{http_port}/health"
  on_completed: post
- task_type: post
  method: HTTP_POST_JSON
  tags: [http-host]
  url: "http://127.0.0.1:{http_port}/deployments"
  variables: {{release: "1.2.3"}}
"""


def _store_env(config: ObjectStoreConfig) -> dict[str, str]:
    if config.kind == "local":
        assert config.root is not None
        return {
            "FORMICARY_QUEEN_ARTIFACTS_KIND": "local",
            "FORMICARY_QUEEN_ARTIFACTS_ROOT_DIR": str(config.root),
        }
    return {
        "FORMICARY_QUEEN_ARTIFACTS_KIND": "s3",
        "FORMICARY_QUEEN_ARTIFACTS_ENDPOINT": config.endpoint or "",
        "FORMICARY_QUEEN_ARTIFACTS_ACCESS_KEY": config.access_key or "",
        "FORMICARY_QUEEN_ARTIFACTS_SECRET_KEY": config.secret_key or "",
        "FORMICARY_QUEEN_ARTIFACTS_BUCKET": config.bucket or "",
        "FORMICARY_QUEEN_ARTIFACTS_SECURE": "false",
    }


async def test_tags_pin_tasks_and_docker_artifacts_reach_the_next_task(
    tmp_path: Path,
    connect,  # type: ignore[no-untyped-def]
    docker_image: str,
    object_store_config: ObjectStoreConfig,
    http_server: tuple[int, list[tuple[str, str, bytes]]],
) -> None:
    http_port, received = http_server
    port = free_port()
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    queen = await start_queen(
        tmp_path / "queen", database_url=url, grpc_port=port, env=_store_env(object_store_config)
    )
    docker_ant = await start_ant(
        tmp_path / "docker-ant",
        queen_port=port,
        ant_id="ant-docker",
        methods="DOCKER,SHELL",
        extra=["--tags", "docker-host"],
    )
    http_ant = await start_ant(
        tmp_path / "http-ant",
        queen_port=port,
        ant_id="ant-http",
        methods="SHELL,HTTP_GET,HTTP_POST_JSON",
        extra=["--tags", "http-host"],
    )
    try:
        client: Client = connect(port)
        await assert_eventually(lambda: _both(client), message="both Ants registered")
        await client.upload(_job(docker_image, http_port))
        request_id = await client.submit("pinned")
        done = await client.wait_for(request_id, lambda r: r.job_state in TERMINAL, timeout=120)
        assert state_of(done) == "COMPLETED", (
            tasks_of(done),
            [(t.task_type, t.error_message) for t in done.execution.tasks],
        )
        ants = {task.task_type: task.ant_id for task in done.execution.tasks}
        assert ants == {"make": "ant-docker", "check": "ant-http", "ping": "ant-http", "post": "ant-http"}
        exits = {task.task_type: task.exit_code for task in done.execution.tasks}
        assert (exits["ping"], exits["post"]) == ("200", "201")
        assert ("GET", "/health", b"") in received
        posted = [json.loads(body) for method, path, body in received if method == "POST"]
        assert posted == [{"release": "1.2.3"}]

        listed = await client.artifacts.ListArtifacts(
            artifact_service_pb2.ListArtifactsRequest(job_request_id=request_id, task_type="make")
        )
        made = [a for a in listed.artifacts if a.name == "out.txt"]
        assert len(made) == 1
        assert made[0].bucket == (
            object_store_config.bucket if object_store_config.kind == "s3" else made[0].bucket
        )
        call = client.artifacts.DownloadArtifact(
            artifact_service_pb2.DownloadArtifactRequest(artifact_id=made[0].id)
        )
        assert b"".join([part.chunk async for part in call]) == b"built-in-docker\n"
    finally:
        await docker_ant.stop()
        await http_ant.stop()
        await queen.stop()


async def _both(client: Client) -> bool:
    return sorted(await client.ants()) == ["ant-docker", "ant-http"]
