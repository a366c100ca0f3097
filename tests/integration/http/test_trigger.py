"""`POST /api/jobs/requests/{id}/trigger` against a real Queen on SQLite and PostgreSQL: a request
scheduled for tomorrow runs now, through the scheduler's usual path; only PENDING requests can be
triggered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from queen.app import Queen
from queen.store import events
from tests.fixtures.auth import authorized_channel
from tests.fixtures.waiting import assert_eventually
from tests.integration.api.conftest import ScriptedAnt
from tests.integration.http.conftest import shell_playbook, unique

pytestmark = pytest.mark.integration

TOMORROW = (datetime.now(UTC) + timedelta(days=1)).isoformat()


async def _upload(http: httpx.AsyncClient, yaml: str) -> None:
    response = await http.post(
        "/api/jobs/definitions", content=yaml, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code in (200, 201), response.text


async def _submit_for_tomorrow(http: httpx.AsyncClient, job_type: str) -> dict[str, Any]:
    response = await http.post("/api/jobs/requests", json={"job_type": job_type, "scheduled_at": TOMORROW})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_request_scheduled_for_tomorrow_runs_now_when_triggered(
    http: httpx.AsyncClient, queen: Queen, admin_token: str
) -> None:
    job_type = unique("trigger")
    await _upload(http, shell_playbook(job_type))
    request = await _submit_for_tomorrow(http, job_type)
    path = f"/api/jobs/requests/{request['id']}"
    async with authorized_channel(f"127.0.0.1:{queen.grpc_port}", admin_token) as channel:
        ant = ScriptedAnt(channel, ant_id=unique("ant"))
        await ant.start()
        try:
            # an Ant with a free slot is there, and still nothing runs before the schedule time
            assert (await http.get(path)).json()["job_state"] == "PENDING"
            before = datetime.now(UTC)

            triggered = await http.post(f"{path}/trigger")

            assert triggered.status_code == 200, triggered.text
            body = triggered.json()
            assert body["job_state"] == "PENDING"
            scheduled = datetime.fromisoformat(body["scheduled_at"])
            assert before - timedelta(seconds=1) <= scheduled <= datetime.now(UTC) + timedelta(seconds=1)
            await ant.run_next(["hello"])
            await ant.run_next(["bye"])

            async def completed() -> bool:
                return bool((await http.get(path)).json()["job_state"] == "COMPLETED")

            await assert_eventually(completed, message="the triggered request completed")
        finally:
            await ant.stop()
    async with queen.db.transaction() as session:
        logged = await events.events_since(session, request["id"], 0, 100)
    assert any(e.kind == "request_updated" and e.message.startswith("triggered by") for e in logged)


async def test_only_a_pending_request_can_be_triggered(http: httpx.AsyncClient) -> None:
    job_type = unique("trigger-states")
    await _upload(http, shell_playbook(job_type))
    request = await _submit_for_tomorrow(http, job_type)
    path = f"/api/jobs/requests/{request['id']}"
    assert (await http.post(f"{path}/pause")).json()["job_state"] == "PAUSED"

    paused = await http.post(f"{path}/trigger")
    await http.post(f"{path}/cancel")
    cancelled = await http.post(f"{path}/trigger")
    missing = await http.post("/api/jobs/requests/999999999/trigger")

    for refused in (paused, cancelled):
        assert refused.status_code == 409, refused.text
        assert refused.json()["reason"] == "INVALID_TRANSITION"
    assert missing.status_code == 404
    # refused triggers changed nothing: the schedule is still tomorrow's
    assert (await http.get(path)).json()["scheduled_at"] == request["scheduled_at"]
