"""A Queen killed with SIGKILL in the middle of running jobs comes back on the same database and every
job finishes exactly once; tasks that were running on the Ant are re-attached, not lost."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from formicary.v1 import state_pb2
from queen.domain.states import JobState
from queen.store import Database, events, requests
from tests.e2e.conftest import TERMINAL, Client, free_port, state_of, tasks_of
from tests.fixtures.processes import start_ant, start_queen
from tests.fixtures.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

QUEEN_ENV = {
    "FORMICARY_QUEEN_HEARTBEAT_INTERVAL": "1",
    "FORMICARY_QUEEN_ANT_LOST_AFTER": "10",
    "FORMICARY_QUEEN_SWEEP_INTERVAL": "1",
}

JOB = """\
job_type: three-steps
tasks:
- task_type: one
  method: SHELL
  script: ["sleep 0.4", "echo {{.JobID}}-one >> {{ marker }}"]
  on_completed: two
- task_type: two
  method: SHELL
  script: ["sleep 0.4", "echo {{.JobID}}-two >> {{ marker }}"]
  on_completed: three
- task_type: three
  method: SHELL
  script: ["sleep 0.4", "echo {{.JobID}}-three >> {{ marker }}"]
"""


async def _executing(client: Client, ids: list[int]) -> int:
    running = 0
    for request_id in ids:
        running += sum(state == "EXECUTING" for state in tasks_of(await client.get(request_id)).values())
    return running


async def test_sigkill_of_the_queen_mid_jobs(database_url: str, tmp_path: Path, connect) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    marker = tmp_path / "marker.txt"
    queen = await start_queen(tmp_path / "q1", database_url=database_url, grpc_port=port, env=QUEEN_ENV)
    ant = await start_ant(tmp_path / "ant", queen_port=port, ant_id="ant-crash", capacity=4)
    second = None
    try:
        client = connect(port)
        await assert_eventually(client.ants, message="the Ant registered")
        await client.upload(JOB)
        ids = [await client.submit("three-steps", marker=str(marker)) for _ in range(6)]

        # kill the Queen while tasks run on the Ant
        await assert_eventually(lambda: _executing(client, ids), message="tasks executing")
        await queen.kill()

        second = await start_queen(tmp_path / "q2", database_url=database_url, grpc_port=port, env=QUEEN_ENV)
        client = connect(port)
        finished = [
            await client.wait_for(request_id, lambda r: r.job_state in TERMINAL, timeout=90)
            for request_id in ids
        ]
        assert [state_of(request) for request in finished] == ["COMPLETED"] * len(ids), [
            (request.id, tasks_of(request), request.error_message) for request in finished
        ]
        for request in finished:
            assert tasks_of(request) == {"one": "COMPLETED", "two": "COMPLETED", "three": "COMPLETED"}
            assert request.execution.job_state == state_pb2.JOB_STATE_COMPLETED
    finally:
        await ant.stop()
        if second is not None:
            await second.stop()
        await queen.stop()

    # every task ran (at least once: an attempt in flight, not yet accepted, when the Queen died, may
    # run again); every job ended exactly once
    lines = Counter(marker.read_text().split())
    for request_id in ids:
        for step in ("one", "two", "three"):
            assert lines[f"{request_id}-{step}"] >= 1
    db = Database(database_url)
    await db.start()
    try:
        async with db.transaction() as session:
            for request_id in ids:
                log = await events.events_since(session, request_id, 0, 10_000)
                endings = [
                    e for e in log if e.kind == "job_state_changed" and e.to_state == JobState.COMPLETED
                ]
                assert len(endings) == 1, f"request {request_id} ended {len(endings)} times"
                assert (await requests.get_request(session, request_id)).job_state is JobState.COMPLETED
    finally:
        await db.stop()
    assert asyncio.get_running_loop()  # the loop survived the processes coming and going
