"""Token life cycle (revocation, expiry), Ant tokens bounding Register, rate limits with clear errors,
and the dashboard's session cookie with its CSRF token."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import pytest

from formicary.v1 import ant_service_pb2, ant_service_pb2_grpc, task_pb2
from queen.app import Queen
from queen.settings import QueenSettings
from tests.fixtures.auth import bearer, mint

pytestmark = pytest.mark.integration

YAML = "job_type: limited\ntasks:\n- task_type: a\n  method: SHELL\n  script: [echo]\n"


@pytest.fixture
async def queen(tmp_path: Path) -> AsyncIterator[Queen]:
    settings = QueenSettings(
        grpc_port=0,
        http_port=0,
        data_dir=tmp_path / "queen",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'q.db'}",
        auth_cache_ttl=timedelta(0),
        submit_rate_per_minute=6,
        submit_burst=2,
    )
    running = Queen(settings)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_submissions_beyond_the_rate_are_429_with_retry_after(queen: Queen) -> None:
    token = await mint(queen, "developer", user="dev")
    async with httpx.AsyncClient(base_url=queen.http.url, headers=bearer(token)) as http:
        uploaded = await http.post(
            "/api/jobs/definitions", content=YAML, headers={"Content-Type": "application/yaml"}
        )
        assert uploaded.status_code == 201, uploaded.text
        codes = [
            (await http.post("/api/jobs/requests", json={"job_type": "limited"})).status_code
            for _ in range(3)
        ]
        assert codes == [201, 201, 429]
        refused = await http.post("/api/jobs/requests", json={"job_type": "limited"})
        assert refused.status_code == 429
        assert refused.json()["code"] == "RESOURCE_EXHAUSTED"
        assert int(refused.headers["retry-after"]) >= 1
    # per credential: another token still has its burst
    other = await mint(queen, "developer", user="dev2")
    async with httpx.AsyncClient(base_url=queen.http.url, headers=bearer(other)) as http:
        assert (await http.post("/api/jobs/requests", json={"job_type": "limited"})).status_code == 201


async def test_a_revoked_token_is_refused_at_once_and_the_cli_manages_tokens(
    queen: Queen, tmp_path: Path
) -> None:
    database = queen.settings.resolved_database_url()
    common = ["--database-url", database, "--data-dir", str(queen.settings.data_dir)]
    token = (
        await formicary(
            "tokens", "create", "ci", "--org", "local", "--user", "ci-bot", "--role", "viewer",
            "--expires-in", "1h", *common,
        )
    ).strip()  # fmt: skip
    async with httpx.AsyncClient(base_url=queen.http.url, headers=bearer(token)) as http:
        assert (await http.get("/api/auth/whoami")).json()["user_id"] == "ci-bot"
        assert (await http.post("/api/jobs/requests", json={"job_type": "x"})).status_code == 403
        listed = await formicary("tokens", "list", *common)
        assert '"name": "ci"' in listed
        assert token not in listed  # never shown again
        await formicary("tokens", "revoke", "ci", *common)
        refused = await http.get("/api/auth/whoami")
        assert refused.status_code == 401
        assert "revoked" in refused.json()["message"]


async def formicary(*args: str) -> str:
    """Run `formicary ARGS...` (server-side commands on the Queen's database); its stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sdk", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def _register(queen: Queen, token: str, methods: list[int], tags: list[str]) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{queen.grpc_port}") as channel:
        frame = ant_service_pb2.ConnectRequest.Register(
            ant_id=f"ant-{len(tags)}-{len(methods)}", methods=methods, tags=tags, max_capacity=1, host="h"
        )

        async def frames() -> AsyncIterator[ant_service_pb2.ConnectRequest]:
            yield ant_service_pb2.ConnectRequest(register=frame)
            await asyncio.sleep(5)

        call = ant_service_pb2_grpc.AntServiceStub(channel).Connect(
            frames(), metadata=(("authorization", f"Bearer {token}"),)
        )
        try:
            first = await asyncio.wait_for(call.read(), 5)
            assert first.WhichOneof("frame") == "registered"
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            call.cancel()


async def test_an_ant_token_bounds_the_methods_and_tags_it_registers(queen: Queen) -> None:
    token = await mint(queen, "ant", user="ant:gpu", ant_methods=["SHELL"], ant_tags=["gpu"])
    shell, docker = task_pb2.TASK_METHOD_SHELL, task_pb2.TASK_METHOD_DOCKER
    assert await _register(queen, token, [shell], ["gpu"]) is grpc.StatusCode.OK
    assert await _register(queen, token, [shell, docker], []) is grpc.StatusCode.PERMISSION_DENIED
    assert await _register(queen, token, [shell], ["gpu", "prod"]) is grpc.StatusCode.PERMISSION_DENIED
    viewer = await mint(queen, "viewer", user="vic")
    assert await _register(queen, viewer, [shell], []) is grpc.StatusCode.PERMISSION_DENIED
    assert await _register(queen, "", [shell], []) is grpc.StatusCode.UNAUTHENTICATED


async def test_the_session_cookie_needs_the_csrf_token_to_change_anything(queen: Queen) -> None:
    token = await mint(queen, "developer", user="dev")
    async with httpx.AsyncClient(base_url=queen.http.url) as browser:
        bad = await browser.post("/api/auth/login", json={"token": "nope"})
        assert bad.status_code == 401
        login = await browser.post("/api/auth/login", json={"token": token})
        assert login.status_code == 200, login.text
        csrf = login.json()["csrf_token"]
        cookie = login.headers.get_list("set-cookie")
        assert any("formicary_session=" in c and "HttpOnly" in c and "SameSite=strict" in c for c in cookie)
        assert (await browser.get("/api/auth/whoami")).json()["user_id"] == "dev"  # the cookie alone reads
        upload = {"content": YAML, "headers": {"Content-Type": "application/yaml"}}
        forged = await browser.post("/api/jobs/definitions", **upload)  # type: ignore[arg-type]
        assert forged.status_code == 403
        assert "X-CSRF-Token" in forged.json()["message"]
        headers = {"Content-Type": "application/yaml", "X-CSRF-Token": csrf}
        allowed = await browser.post("/api/jobs/definitions", content=YAML, headers=headers)
        assert allowed.status_code == 201, allowed.text
        assert (await browser.post("/api/auth/logout")).status_code == 204
        browser.cookies.clear()
        assert (await browser.get("/api/auth/whoami")).status_code == 401
