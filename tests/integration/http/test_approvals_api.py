"""The approval routes against a real Queen on SQLite and PostgreSQL: a MANUAL gate is read, listed,
voted on (APPROVED and REJECTED, as Formicary's clients send them) and the job follows the route of the
decision; the errors come from the one table (400, 404, 409) and a repeated idempotency key answers again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from queen.app import Queen
from queen.http import HttpGateway
from tests.fixtures.auth import ADMIN_USER, authorized_channel, bearer, mint
from tests.fixtures.waiting import assert_eventually
from tests.integration.api.conftest import ScriptedAnt
from tests.integration.http.conftest import unique

pytestmark = pytest.mark.integration


def routed_playbook(job_type: str) -> str:
    """A build, a gate, and a route for each decision (the DR playbook's shape)."""
    return f"""\
job_type: {job_type}
tasks:
- task_type: build
  method: SHELL
  script: [echo build]
  on_completed: approve
- task_type: approve
  method: MANUAL
  description: promote the build?
  on_exit_code: {{APPROVED: deploy, REJECTED: rollback}}
- task_type: deploy
  method: SHELL
  script: [echo deploy]
- task_type: rollback
  method: SHELL
  script: [echo rollback]
"""


def gate_only_playbook(job_type: str) -> str:
    """A gate and nothing else (no Ant needed), with an input the approver must give."""
    return f"""\
job_type: {job_type}
tasks:
- task_type: go-live
  method: MANUAL
  description: ship it?
  on_exit_code: {{APPROVED: COMPLETED, REJECTED: COMPLETED}}
  approval_policy:
    inputs: [{{name: ticket, required: true}}, {{name: canary, type: boolean, default: true}}]
"""


async def upload(http: httpx.AsyncClient, yaml: str) -> None:
    response = await http.post(
        "/api/jobs/definitions", content=yaml, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code in (200, 201), response.text


REQUESTER = "requester"


@pytest.fixture
async def requester(gateway: HttpGateway, queen: Queen) -> AsyncIterator[httpx.AsyncClient]:
    """A developer who submits the jobs (the approver, `http`, is another person: separation of duties)."""
    token = await mint(queen, "developer", user=REQUESTER)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers=bearer(token)) as client:
        yield client


async def submit(http: httpx.AsyncClient, job_type: str) -> int:
    response = await http.post("/api/jobs/requests", json={"job_type": job_type})
    assert response.status_code == 201, response.text
    request_id: int = response.json()["id"]
    return request_id


async def gate_of(http: httpx.AsyncClient, request_id: int, task_type: str) -> dict[str, Any]:
    """The gate once the request waits at it."""

    async def waiting() -> dict[str, Any] | None:
        request = (await http.get(f"/api/jobs/requests/{request_id}")).json()
        if request["job_state"] != "MANUAL_APPROVAL_REQUIRED":
            return None
        response = await http.get(f"/api/jobs/requests/{request_id}/tasks/{task_type}/approval")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    found = await assert_eventually(waiting, message=f"request {request_id} waits at {task_type}")
    assert found is not None
    return found


async def finished(http: httpx.AsyncClient, request_id: int) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        found: dict[str, Any] = (await http.get(f"/api/jobs/requests/{request_id}")).json()
        return found if found["job_state"] in ("COMPLETED", "FAILED", "CANCELLED") else None

    request = await assert_eventually(done, message=f"request {request_id} finished")
    assert request is not None
    return request


def vote_path(request_id: int, task_type: str) -> str:
    return f"/api/jobs/requests/{request_id}/tasks/{task_type}/vote"


def ran(request: dict[str, Any]) -> dict[str, str]:
    return {task["task_type"]: task["task_state"] for task in request["execution"]["tasks"]}


# -- the routes of a decision ----------------------------------------------------------------------------


async def test_an_approved_gate_is_shown_listed_and_the_job_follows_the_approved_route(
    http: httpx.AsyncClient, requester: httpx.AsyncClient, queen: Queen, admin_token: str
) -> None:
    job_type = unique("approve")
    await upload(http, routed_playbook(job_type))
    async with authorized_channel(f"127.0.0.1:{queen.grpc_port}", admin_token) as channel:
        ant = ScriptedAnt(channel, ant_id=unique("ant"))
        await ant.start()
        try:
            request_id = await submit(requester, job_type)
            assert (await ant.run_next(["built"])).task_type == "build"

            gate = await gate_of(http, request_id, "approve")
            assert (gate["job_request_id"], gate["task_type"], gate["job_type"]) == (
                request_id,
                "approve",
                job_type,
            )
            assert (gate["state"], gate["version"]) == ("OPEN", 1)
            assert gate["description"] == "promote the build?"
            assert gate["policy_summary"].startswith("1 approval from holders of")
            assert gate["policy"]["min_approvals"] == 1
            assert gate["tally"] == {"approvals": 0, "rejections": 0, "required_approvals": 1}
            assert gate["votes"] == []
            assert gate["caller_can_decide"] is True
            assert gate["requester"] == REQUESTER
            # people are told apart by their credentials: separation of duties applies, no note
            assert gate["separation_of_duties_note"] == ""
            for name in ("artifact_digests", "deadline_at", "next_sla_at", "created_at", "progress"):
                assert name in gate

            pending = await http.get(
                "/api/approvals/pending", params={"job_request_id": request_id, "only_decidable_by_me": True}
            )
            assert pending.status_code == 200, pending.text
            listed = pending.json()
            assert [(g["job_request_id"], g["task_type"]) for g in listed["records"]] == [
                (request_id, "approve")
            ]
            assert listed["has_more"] is False
            everyone = (await http.get("/api/approvals/pending")).json()["records"]
            assert (request_id, "approve") in {(g["job_request_id"], g["task_type"]) for g in everyone}

            # the body cannot choose the decider: the vote is the caller's
            response = await http.post(
                vote_path(request_id, "approve"),
                json={
                    "decision": "APPROVED",
                    "comments": "looks good",
                    "gate_version": 1,
                    "user_id": "mallory",
                },
            )
            assert response.status_code == 200, response.text
            decided = response.json()
            assert decided["duplicate"] is False
            assert decided["state"] == "APPROVED"
            assert (decided["decided_by"], decided["decided_channel"]) == (ADMIN_USER, "REST")
            assert decided["decision_comments"] == "looks good"
            assert decided["tally"]["approvals"] == 1
            (vote,) = decided["votes"]
            assert (vote["user_id"], vote["decision"], vote["comments"], vote["channel"]) == (
                ADMIN_USER,
                "APPROVED",
                "looks good",
                "REST",
            )
            assert vote["created_at"]

            assert (await ant.run_next(["deployed"])).task_type == "deploy"
            request = await finished(http, request_id)
        finally:
            await ant.stop()
    assert request["job_state"] == "COMPLETED"
    tasks = ran(request)
    assert tasks["build"] == tasks["deploy"] == "COMPLETED"
    assert tasks.get("rollback") != "COMPLETED"
    after = (await http.get(f"/api/jobs/requests/{request_id}/tasks/approve/approval")).json()
    assert after["state"] == "APPROVED"
    gone = (await http.get("/api/approvals/pending", params={"job_request_id": request_id})).json()
    assert gone["records"] == []


async def test_a_rejection_with_comments_runs_the_rejected_route(
    http: httpx.AsyncClient, requester: httpx.AsyncClient, queen: Queen, admin_token: str
) -> None:
    job_type = unique("reject")
    await upload(http, routed_playbook(job_type))
    async with authorized_channel(f"127.0.0.1:{queen.grpc_port}", admin_token) as channel:
        ant = ScriptedAnt(channel, ant_id=unique("ant"))
        await ant.start()
        try:
            request_id = await submit(requester, job_type)
            assert (await ant.run_next(["built"])).task_type == "build"
            await gate_of(http, request_id, "approve")

            response = await http.post(
                vote_path(request_id, "approve"), json={"decision": "REJECTED", "comments": "costs too much"}
            )
            assert response.status_code == 200, response.text
            decided = response.json()
            assert decided["state"] == "REJECTED"
            assert decided["votes"][0]["decision"] == "REJECTED"
            assert decided["decision_comments"] == "costs too much"

            assert (await ant.run_next(["rolled back"])).task_type == "rollback"
            request = await finished(http, request_id)
        finally:
            await ant.stop()
    # a routed rejection ends COMPLETED, the decision on record
    assert request["job_state"] == "COMPLETED"
    tasks = ran(request)
    assert tasks["rollback"] == "COMPLETED"
    assert tasks.get("deploy") != "COMPLETED"


# -- refusals and repeats --------------------------------------------------------------------------------


async def test_refused_votes_are_json_errors_from_the_table(
    http: httpx.AsyncClient, requester: httpx.AsyncClient
) -> None:
    job_type = unique("refusals")
    await upload(http, gate_only_playbook(job_type))
    request_id = await submit(requester, job_type)
    gate = await gate_of(http, request_id, "go-live")
    assert [i["name"] for i in gate["policy"]["inputs"]] == ["ticket", "canary"]
    path = vote_path(request_id, "go-live")

    no_comment = await http.post(path, json={"decision": "REJECTED"})
    assert no_comment.status_code == 400
    body = no_comment.json()
    assert (body["code"], body["message"]) == ("INVALID_ARGUMENT", "a REJECT needs a comment saying why")

    blank = await http.post(path, json={"decision": "REJECTED", "comments": "   "})
    assert blank.status_code == 400

    unknown = await http.post(path, json={"decision": "MAYBE"})
    assert (unknown.status_code, unknown.json()["code"]) == (400, "INVALID_ARGUMENT")

    missing_input = await http.post(path, json={"decision": "APPROVED"})
    assert missing_input.status_code == 400
    assert "ticket" in missing_input.json()["message"]

    stale = await http.post(
        path, json={"decision": "APPROVED", "inputs": {"ticket": "T-1"}, "gate_version": 7}
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "FAILED_PRECONDITION"

    no_gate = await http.get(f"/api/jobs/requests/{request_id}/tasks/nothing/approval")
    assert (no_gate.status_code, no_gate.json()["code"]) == (404, "NOT_FOUND")
    no_request = await http.post(vote_path(999_999_999, "go-live"), json={"decision": "APPROVED"})
    assert no_request.status_code == 404

    # none of these was recorded: the gate is still open and has no votes
    still = (await http.get(f"/api/jobs/requests/{request_id}/tasks/go-live/approval")).json()
    assert (still["state"], still["votes"]) == ("OPEN", [])


async def test_a_repeated_key_answers_again_and_a_closed_gate_refuses_with_409(
    http: httpx.AsyncClient, requester: httpx.AsyncClient
) -> None:
    job_type = unique("repeat")
    await upload(http, gate_only_playbook(job_type))
    request_id = await submit(requester, job_type)
    await gate_of(http, request_id, "go-live")
    path = vote_path(request_id, "go-live")
    ballot = {
        "decision": "approved",
        "comment": "ok",
        "inputs": {"ticket": "T-1", "canary": False},
        "idempotency_key": "key-1",
        "gate_version": 1,
    }

    first = await http.post(path, json=ballot)
    assert first.status_code == 200, first.text
    again = await http.post(path, json=ballot)
    assert again.status_code == 200, again.text

    one, two = first.json(), again.json()
    assert (one["duplicate"], two["duplicate"]) == (False, True)
    assert one["state"] == two["state"] == "APPROVED"
    assert one["decision_comments"] == "ok"
    assert one["decision_inputs"] == {"ticket": "T-1", "canary": False}
    assert len(two["votes"]) == 1
    assert {k: v for k, v in one.items() if k != "duplicate"} == {
        k: v for k, v in two.items() if k != "duplicate"
    }

    closed = await http.post(path, json={"decision": "APPROVED", "inputs": {"ticket": "T-2"}})
    assert closed.status_code == 409
    body = closed.json()
    assert (body["code"], body["reason"]) == ("FAILED_PRECONDITION", "FAILED_PRECONDITION")
    assert "closed" in body["message"]
    request = await finished(http, request_id)
    assert request["job_state"] == "COMPLETED"


async def test_the_approval_routes_are_in_the_openapi_document(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert "post" in paths["/api/jobs/requests/{request_id}/tasks/{task_type}/vote"]
    assert "get" in paths["/api/jobs/requests/{request_id}/tasks/{task_type}/approval"]
    assert "get" in paths["/api/approvals/pending"]
