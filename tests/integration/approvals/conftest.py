"""Fixtures of the approval tests: the scripted engine plus ApprovalService and GateTimers around it.

Webhook notifications go through the real `WebhookHook` over an httpx mock transport that records each
POST: `http://hooks.test/fail` answers 500, `http://hooks.test/down` cannot be reached.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest

from queen.approvals.notify import WebhookHook
from queen.approvals.timers import GateTimers
from queen.domain.approvals import Vote
from queen.domain.identity import Identity
from queen.domain.states import JobState
from queen.services.approvals import ApprovalService, Ballot, DecideResult, GateView
from tests.fixtures.engine import IDENTITY, Engine

# The engine submits as IDENTITY: alice, the embedded mode's unauthenticated local identity.
REQUESTER = IDENTITY
ALICE = Identity("org-1", "alice", frozenset({"admin"}), authenticated=True)
BOB = Identity("org-1", "bob", frozenset({"operator"}), authenticated=True)
CAROL = Identity("org-1", "carol", frozenset({"operator"}), authenticated=True)
OUTSIDER = Identity("org-2", "eve", frozenset({"admin"}), authenticated=True)


def sre(user: str) -> Identity:
    return Identity("org-1", user, frozenset({"sre"}), authenticated=True)


def security(user: str) -> Identity:
    return Identity("org-1", user, frozenset({"security"}), authenticated=True)


def dr_job(policy: str = "", *, routes: str = "{APPROVED: switch-dns, REJECTED: teardown}") -> str:
    """The DR playbook's shape: provision, a gate, switch on approval, tear down on rejection, notify."""
    block = "".join(f"    {line}\n" for line in policy.strip("\n").splitlines())
    return (
        "job_type: dr\n"
        "tasks:\n"
        "- task_type: provision\n  method: SHELL\n  script: [terraform apply]\n  on_completed: verify\n"
        "- task_type: verify\n  method: MANUAL\n  description: check the costs\n"
        f"  on_exit_code: {routes}\n"
        + (f"  approval_policy:\n{block}" if block else "")
        + "- task_type: switch-dns\n  method: SHELL\n  script: [echo switch]\n  on_completed: notify\n"
        "- task_type: teardown\n  method: SHELL\n  script: [echo teardown]\n  on_completed: notify\n"
        "- task_type: notify\n  method: SHELL\n  always_run: true\n  script: [echo done]\n"
    )


@dataclass
class Gatehouse:
    """The engine with approvals: decide as anyone, read the gate and its ledger."""

    engine: Engine
    service: ApprovalService
    timers: GateTimers
    posts: list[httpx.Request] = field(default_factory=list)

    async def submit_to_gate(self, yaml: str, job_type: str = "dr") -> int:
        """Upload, submit, and wait until the request waits at its gate (with its gate record)."""
        await self.engine.upload(yaml)
        request_id = await self.engine.submit(job_type)
        await self.engine.wait_for(request_id, JobState.MANUAL_APPROVAL_REQUIRED)
        # until the supervisor records the gate in the transaction that opens it, the gate record comes
        # from the adoption of waiting tasks (the timers' pass, or any read of the gate, as here)
        await self.gate(request_id)
        return request_id

    async def decide(
        self, who: Identity, request_id: int, decision: Vote, task_type: str = "verify", **ballot: Any
    ) -> DecideResult:
        return await self.service.decide(who, request_id, task_type, Ballot(decision, **ballot))

    async def gate(self, request_id: int, who: Identity = BOB, task_type: str = "verify") -> GateView:
        return await self.service.get(who, request_id, task_type)

    async def ledger(self, request_id: int) -> list[dict[str, Any]]:
        return [json.loads(line) async for line in self.service.export_ledger(BOB, job_request_id=request_id)]

    async def ledger_kinds(self, request_id: int) -> list[str]:
        return [entry["kind"] for entry in await self.ledger(request_id)]


def _answer(posts: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        if request.url.path == "/down":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(500 if request.url.path == "/fail" else 204)

    return httpx.MockTransport(handle)


async def start_gatehouse(engine: Engine, posts: list[httpx.Request]) -> tuple[Gatehouse, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=_answer(posts))
    service = ApprovalService(db=engine.db, notifier=engine.notifier, launch=engine.supervisors.launch)
    timers = GateTimers(
        db=engine.db,
        notifier=engine.notifier,
        launch=engine.supervisors.launch,
        hook=WebhookHook(client),
        sweep_interval=timedelta(seconds=5),
    )
    await timers.start()
    return Gatehouse(engine, service, timers, posts), client


@pytest.fixture
async def gatehouse(engine: Engine) -> AsyncIterator[Gatehouse]:
    """Approvals on a running engine (SQLite and PostgreSQL)."""
    house, client = await start_gatehouse(engine, [])
    try:
        yield house
    finally:
        await house.timers.stop()
        await client.aclose()
