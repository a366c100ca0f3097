"""Fixtures of the security tests: a Queen that requires authentication (per database, shared by a
module's tests), seeded with a job definition, a request waiting at an approval gate and an artifact,
and a token of every kind of caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from queen.app import Queen
from queen.domain.identity import Identity
from queen.services.artifacts import ArtifactUpload
from queen.services.requests import Submission
from queen.settings import QueenSettings
from tests.fixtures.auth import mint

ORG = "local"
OTHER_ORG = "other-org"
# A name no other organisation's reply may ever contain.
JOB_TYPE = "sec-gate-7f3a"
GATE = "go-live"
ARTIFACT_NAME = "sec-artifact-7f3a.txt"
DESCRIPTION = "ship it, 7f3a?"
OWNER = "owner-7f3a"

PLAYBOOK = f"""\
job_type: {JOB_TYPE}
tasks:
- task_type: {GATE}
  method: MANUAL
  description: {DESCRIPTION}
  on_exit_code: {{APPROVED: COMPLETED, REJECTED: COMPLETED}}
"""

CALLERS = (
    "none",
    "garbage",
    "expired",
    "revoked",
    "other-org",
    "admin",
    "operator",
    "developer",
    "viewer",
    "ant",
)


@dataclass(frozen=True, slots=True)
class Seeded:
    queen: Queen
    request_id: int
    artifact_id: str
    tokens: dict[str, str]  # caller -> token ("" for none)


@pytest.fixture(scope="module")
async def seeded(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Seeded]:
    settings = QueenSettings(
        grpc_port=0,
        http_port=0,
        data_dir=tmp_path_factory.mktemp("queen"),
        database_url=module_database_url,
        sweep_interval=timedelta(seconds=1),
        auth_cache_ttl=timedelta(0),  # every call verified against the database (revocation at once)
    )
    queen = Queen(settings)
    await queen.start()
    try:
        owner = Identity(ORG, OWNER, frozenset({"admin"}), authenticated=True)
        await queen.services.definitions.upload(owner, PLAYBOOK)
        request = await queen.services.requests.submit(owner, Submission(job_type=JOB_TYPE, params={}))

        async def content() -> AsyncIterator[bytes]:
            yield b"secret bytes"

        artifact = await queen.services.artifacts.upload(
            owner, ArtifactUpload(name=ARTIFACT_NAME, job_request_id=request.id), content()
        )
        for _ in range(200):  # the gate opens when the supervisor reaches the MANUAL task
            if (await queen.services.requests.get(owner, request.id)).request.job_state.value != "PENDING":
                break
            await asyncio.sleep(0.05)
        revoked = await mint(queen, "admin", name="to-revoke")
        await queen.security.tokens.revoke("to-revoke", organization_id=ORG, revoked_by="tests")
        expired = await queen.security.tokens.issue(
            organization_id=ORG,
            user_id="late",
            name="expired",
            roles=["admin"],
            lifetime=timedelta(hours=1),
            created_by="tests",
            now=datetime.now(UTC) - timedelta(hours=2),
        )
        tokens = {
            "none": "",
            "garbage": "not-a-jwt",
            "expired": expired.token,
            "revoked": revoked,
            "other-org": await mint(queen, "admin", org=OTHER_ORG, user="mallory"),
            "admin": await mint(queen, "admin", user="ada"),
            "operator": await mint(queen, "operator", user="olga"),
            "developer": await mint(queen, "developer", user="dev"),
            "viewer": await mint(queen, "viewer", user="vic"),
            "ant": await mint(queen, "ant", user="ant:sec", ant_methods=["SHELL"]),
        }
        yield Seeded(queen, request.id, artifact.id, tokens)
    finally:
        await queen.stop()
