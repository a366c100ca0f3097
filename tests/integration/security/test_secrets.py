"""A job echoes its secret every way a script could; no stored or streamed text contains it.

A real Queen (authentication on) and a real in-process Ant (SHELL): the secret is an organisation config
marked secret (encrypted at rest), injected into the TaskRequest only. The job prints it plain, in
base64 (with the newline `echo` adds), URL-encoded, in hex, on stderr in its failure, in a task output
(`::set-output`), and in the name of an artifact. Then every stored or served text is read: the log
lines (live and archived), the task's exit message, error, failed command and context, the events, the
artifact names, and the API replies (gRPC and REST).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from queen.app import Queen
from queen.domain.approvals import Vote
from queen.domain.identity import Identity
from queen.domain.states import JobState
from queen.services.approvals import Ballot
from queen.services.requests import Submission
from queen.store import security as store
from queen.store.security import ConfigScope
from sdk.client import Client
from tests.fixtures.ants import embedded_queen, shell_ant
from tests.fixtures.auth import bearer, mint
from tests.fixtures.waiting import assert_eventually

pytestmark = pytest.mark.integration

SECRET = "Pa55-w0rd:sp@ce d&more"
JOB = """\
job_type: leaky
tasks:
- task_type: echo-it
  method: SHELL
  script:
    - echo "plain $DB_PASSWORD"
    - echo "$DB_PASSWORD" | base64
    - printf '%s' "$DB_PASSWORD" | base64
    - printf '%s' "$DB_PASSWORD" | od -An -tx1 | tr -d ' \\n'; echo
    - python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["DB_PASSWORD"], safe=""))'
    - echo "::set-output name=leak::$DB_PASSWORD"
    - mkdir -p out && touch "out/name-$DB_PASSWORD.txt"
    - echo "failing because of $DB_PASSWORD" >&2
    - sh -c "exit 7"
  artifacts:
    paths: [out/*.txt]
"""


@pytest.fixture
async def queen(tmp_path: Path) -> AsyncIterator[Queen]:
    async with embedded_queen(tmp_path) as running:
        yield running


async def until_ended(queen: Queen, owner: Identity, request_id: int) -> None:
    async def ended() -> bool:
        details = await queen.services.requests.get(owner, request_id)
        return details.request.job_state.is_terminal

    await assert_eventually(ended, timeout=30)


def forms_of(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        base64.b64encode(raw).decode(),
        base64.b64encode(raw + b"\n").decode(),
        quote(secret, safe=""),
        raw.hex(),
    ]


async def test_a_secret_echoed_every_way_is_stored_and_served_nowhere(queen: Queen, tmp_path: Path) -> None:
    owner = Identity("local", "dev", frozenset({"developer"}), authenticated=True)
    await queen.configs.set(
        organization_id="local",
        scope=ConfigScope.ORGANIZATION,
        owner="",
        name="DB_PASSWORD",
        value=SECRET,
        secret=True,
        actor="tests",
    )
    async with queen.db.transaction() as session:
        (stored,) = await store.list_configs(session, "local")
    assert stored.secret  # encrypted at rest
    assert SECRET not in stored.value
    assert stored.key_id

    await queen.services.definitions.upload(owner, JOB)
    async with await shell_ant(queen, tmp_path):
        request = await queen.services.requests.submit(owner, Submission(job_type="leaky", params={}))
        await until_ended(queen, owner, request.id)

    details = await queen.services.requests.get(owner, request.id)
    (task,) = details.tasks
    assert task.exit_code == "7"
    texts: list[str] = [repr(details), repr(task)]
    lines, _ = queen.logs.snapshot(task.id)
    texts += [line.text for line in lines]
    assert any("plain [MASKED]" in line.text for line in lines), [line.text for line in lines]
    assert any("failing because of [MASKED]" in line.text for line in lines)

    token = await mint(queen)
    async with Client(f"127.0.0.1:{queen.grpc_port}", token=token) as client:
        texts.append(repr(await client.get_request(request.id)))
        texts += [repr(line) async for line in client.stream_logs(request.id)]
        texts += [repr(event) async for event in client.watch(request.id)]
        artifacts = await client.list_artifacts(request_id=request.id)
        texts += [repr(artifact) for artifact in artifacts]
        for artifact in artifacts:  # the archived log too
            with (tmp_path / "download").open("wb") as out:
                await client.download_artifact(artifact.id, out)
            texts.append((tmp_path / "download").read_bytes().decode(errors="replace"))
    async with httpx.AsyncClient(base_url=queen.http.url, headers=bearer(token)) as http:
        texts.append((await http.get(f"/api/jobs/requests/{request.id}")).text)
        texts.append((await http.get("/api/artifacts", params={"job_request_id": request.id})).text)

    everything = "\n".join(texts)
    for form in forms_of(SECRET):
        assert form not in everything, f"{form!r} leaked"
    assert "[MASKED]" in everything


CONFIGURED = """\
job_type: configured
tasks:
- task_type: before
  method: SHELL
  script: ['echo "before region=$REGION note=$NOTE key=$API_KEY"']
  on_completed: wait
- task_type: wait
  method: MANUAL
  on_exit_code: {APPROVED: after}
- task_type: after
  method: SHELL
  retry: 1
  delay_between_retries: 10ms
  script:
    - echo "after region=$REGION note=$NOTE key=$API_KEY"
    - test -e "$MARKER" || { touch "$MARKER"; exit 3; }
"""


async def test_each_attempt_gets_the_configs_as_they_are_when_it_is_dispatched(
    queen: Queen, tmp_path: Path
) -> None:
    """Narrowest scope wins (user over job over organisation); a config changed while the job waits is
    what the next task sees, and so does a retry (whose configs are read at its dispatch)."""
    owner = Identity("local", "dev", frozenset({"developer"}), authenticated=True)

    async def put(scope: ConfigScope, owner_id: str, name: str, value: str, *, secret: bool = False) -> None:
        await queen.configs.set(
            organization_id="local",
            scope=scope,
            owner=owner_id,
            name=name,
            value=value,
            secret=secret,
            actor="tests",
        )

    await put(ConfigScope.ORGANIZATION, "", "REGION", "org-region")
    await put(ConfigScope.JOB, "configured", "REGION", "job-region")
    await put(ConfigScope.ORGANIZATION, "", "NOTE", "org-note")
    await put(ConfigScope.USER, "dev", "NOTE", "user-note")
    await put(ConfigScope.ORGANIZATION, "", "API_KEY", "k-first-1234", secret=True)
    await queen.services.definitions.upload(owner, CONFIGURED)
    async with await shell_ant(queen, tmp_path):
        request = await queen.services.requests.submit(
            owner, Submission(job_type="configured", params={"MARKER": str(tmp_path / "marker")})
        )

        async def at_gate() -> bool:
            details = await queen.services.requests.get(owner, request.id)
            return details.request.job_state is JobState.MANUAL_APPROVAL_REQUIRED

        await assert_eventually(at_gate, timeout=30)
        await put(ConfigScope.JOB, "configured", "REGION", "job-region-2")
        await put(ConfigScope.ORGANIZATION, "", "API_KEY", "k-second-5678", secret=True)
        operator = Identity("local", "ops", frozenset({"operator"}), authenticated=True)
        await queen.services.approvals.decide(operator, request.id, "wait", Ballot(Vote.APPROVE))
        await until_ended(queen, owner, request.id)

    details = await queen.services.requests.get(owner, request.id)
    assert details.request.job_state is JobState.COMPLETED, details.request
    by_type = {task.task_type: task for task in details.tasks}
    before, _ = queen.logs.snapshot(by_type["before"].id)
    after, _ = queen.logs.snapshot(by_type["after"].id)
    assert by_type["after"].retried == 1
    assert [line.text for line in before if line.text.startswith("before")] == [
        "before region=job-region note=user-note key=[MASKED]"
    ]
    assert [line.text for line in after if line.text.startswith("after")] == [
        "after region=job-region-2 note=user-note key=[MASKED]"
    ] * 2
    everything = "\n".join(line.text for line in [*before, *after])
    assert "k-first-1234" not in everything
    assert "k-second-5678" not in everything
