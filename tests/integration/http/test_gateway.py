"""The gateway as a part of the Queen: binds the port it is given (or a free one), says which, refuses a
taken port, and stops cleanly (twice is harmless) while requests are in flight."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from queen.app import Queen
from queen.http import HttpGateway
from queen.services.artifacts import ArtifactUpload
from tests.fixtures.auth import bearer

pytestmark = pytest.mark.integration


async def test_port_0_binds_a_free_port_and_stop_is_idempotent(queen: Queen) -> None:
    gateway = HttpGateway(queen.services, queen.settings)
    await gateway.start()
    try:
        assert gateway.port > 0
        assert gateway.url == f"http://127.0.0.1:{gateway.port}"
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            assert (await client.get("/api/health")).status_code == 200
    finally:
        await gateway.stop()
        await gateway.stop()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            await client.get("/api/health")


async def test_a_taken_port_fails_start_with_oserror(queen: Queen) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = queen.settings.model_copy(update={"http_port": taken.getsockname()[1]})
        gateway = HttpGateway(queen.services, settings)
        with pytest.raises(OSError, match="in use"):
            await gateway.start()
        await gateway.stop()


async def test_stop_lets_a_download_in_flight_finish(queen: Queen, admin_token: str) -> None:
    content = b"x" * (4 * 1024 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        yield content

    stored = await queen.services.artifacts.upload(
        queen.services.local_identity, ArtifactUpload(name="big.bin"), chunks()
    )
    gateway = HttpGateway(queen.services, queen.settings)
    await gateway.start()
    async with (
        httpx.AsyncClient(base_url=gateway.url, headers=bearer(admin_token)) as client,
        client.stream("GET", f"/api/artifacts/{stored.id}/download") as response,
    ):
        assert response.status_code == 200  # the response has started
        stopping = asyncio.create_task(gateway.stop())
        received = b"".join([chunk async for chunk in response.aiter_bytes()])
    await stopping
    assert received == content
