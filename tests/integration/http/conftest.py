"""Fixtures of the REST gateway tests: a real Queen (per database, shared by a module's tests) with the
gateway serving its services on a free port, and an httpx client of it.

The Queen's own process entry point does not start the gateway yet, so the fixture starts it beside a
running Queen, as `queen.app.Queen` will.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from queen.app import Queen
from queen.http import HttpGateway
from queen.settings import QueenSettings
from tests.fixtures.auth import bearer, mint

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "tests" / "fixtures" / "playbooks"


@pytest.fixture(scope="module")
async def queen(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Queen]:
    settings = QueenSettings(
        grpc_port=0,
        http_port=0,
        data_dir=tmp_path_factory.mktemp("queen"),
        database_url=module_database_url,
        heartbeat_interval=timedelta(milliseconds=200),
        sweep_interval=timedelta(seconds=1),
    )
    running = Queen(settings)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture(scope="module")
async def gateway(queen: Queen) -> AsyncIterator[HttpGateway]:
    served = HttpGateway(queen.services, queen.settings)
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


@pytest.fixture(scope="module")
async def admin_token(queen: Queen) -> str:
    """An admin token of the Queen's organisation (the gateway requires authentication)."""
    return await mint(queen)


@pytest.fixture
async def http(gateway: HttpGateway, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers=bearer(admin_token)) as client:
        yield client


def unique(prefix: str) -> str:
    """A job type (or key) no other test of the module uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def shell_playbook(job_type: str, *, fail: bool = False) -> str:
    return f"""\
job_type: {job_type}
description: two shell tasks
tasks:
- task_type: greet
  method: SHELL
  script:
    - echo hello
  on_completed: bye
- task_type: bye
  method: SHELL
  script: [{"exit 3" if fail else "echo bye"}]
"""
