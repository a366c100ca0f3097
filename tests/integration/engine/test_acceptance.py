"""When an Ant's acceptance of an attempt is written: on its own when the task runs a while (operators see
EXECUTING while it runs), with the result when the result follows within the registry's short write
delay (one transaction fewer per short task). The history is the same either way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from queen.app import Queen
from queen.domain.identity import Identity
from queen.domain.states import JobState, TaskState
from queen.services.requests import Submission
from queen.store import EventKind, events
from tests.fixtures.ants import embedded_queen, shell_ant
from tests.fixtures.waiting import assert_eventually

pytestmark = pytest.mark.integration

OWNER = Identity("local", "dev", frozenset({"developer"}), authenticated=True)
JOB = """\
job_type: short-and-long
tasks:
- task_type: short
  method: SHELL
  script: ["true"]
  on_completed: long
- task_type: long
  method: SHELL
  script: ["sleep 0.4"]
"""


@pytest.fixture
async def queen(tmp_path: Path) -> AsyncIterator[Queen]:
    async with embedded_queen(tmp_path) as running:
        yield running


async def test_a_short_tasks_acceptance_commits_with_its_result_a_long_ones_at_once(
    queen: Queen, tmp_path: Path
) -> None:
    await queen.services.definitions.upload(OWNER, JOB)
    seen_executing: list[str] = []
    async with await shell_ant(queen, tmp_path):
        request = await queen.services.requests.submit(
            OWNER, Submission(job_type="short-and-long", params={})
        )

        async def long_is_executing() -> bool:
            details = await queen.services.requests.get(OWNER, request.id)
            states = {task.task_type: task.task_state for task in details.tasks}
            if states.get("long") is TaskState.EXECUTING:
                seen_executing.append("long")
                return True
            return False

        await assert_eventually(long_is_executing, timeout=20)

        async def ended() -> bool:
            return (await queen.services.requests.get(OWNER, request.id)).request.job_state.is_terminal

        await assert_eventually(ended, timeout=20)

    details = await queen.services.requests.get(OWNER, request.id)
    assert details.request.job_state is JobState.COMPLETED
    async with queen.db.transaction() as session:
        history = await events.events_since(session, request.id, limit=1000)
    transitions = [
        (e.task_type, e.from_state, e.to_state) for e in history if e.kind == EventKind.TASK_STATE_CHANGED
    ]
    for task_type in ("short", "long"):  # the same history whichever way the acceptance was written
        assert [(f, t) for name, f, t in transitions if name == task_type] == [
            ("READY", "EXECUTING"),
            ("EXECUTING", "COMPLETED"),
        ]
    by_type = {task.task_type: task for task in details.tasks}
    for task in by_type.values():
        assert task.ant_id == "ant-tests"
        assert task.started_at is not None
        assert task.ended_at is not None
        assert task.started_at <= task.ended_at
    # started: when the Queen received TaskAccepted (sent just before the process starts); ended: the
    # Ant's clock when `sleep 0.4` ended
    assert (by_type["long"].ended_at - by_type["long"].started_at).total_seconds() >= 0.3
    assert seen_executing == ["long"]
