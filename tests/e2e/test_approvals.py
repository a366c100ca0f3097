"""The brief's playbooks through their manual gates on real processes: approved and rejected paths,
the artifact under review downloadable while the gate waits, and 20 waiting gates surviving a SIGKILL."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from formicary.v1 import approval_pb2, approval_service_pb2, artifact_service_pb2, state_pb2
from tests.e2e.conftest import REPO, TERMINAL, Client, free_port, state_of, tasks_of
from tests.fixtures.processes import start_ant, start_queen
from tests.fixtures.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

QUEEN_ENV = {"FORMICARY_QUEEN_HEARTBEAT_INTERVAL": "1", "FORMICARY_QUEEN_ANT_LOST_AFTER": "10"}
APPROVE = approval_pb2.APPROVAL_DECISION_APPROVE
REJECT = approval_pb2.APPROVAL_DECISION_REJECT


def _tools(folder: Path) -> dict[str, str]:
    """Stand-ins for `go` and `gosec`, which this host lacks (the test provides them, not the product)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in {
        "go": '#!/bin/sh\nprintf \'#!/bin/sh\\necho my-app\\n\' > "$3"\nchmod +x "$3"\n',
        "gosec": "#!/bin/sh\necho '{\"runs\": []}' > gosec-report.sarif\n",
    }.items():
        path = folder / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {
        "PATH": f"{folder}:{os.environ.get('PATH', '')}",
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
    }


def _at_gate_or_done(request) -> bool:  # type: ignore[no-untyped-def]
    return state_of(request) == "MANUAL_APPROVAL_REQUIRED" or request.job_state in TERMINAL


async def _decide(client: Client, request_id: int, task_type: str, decision: int, comment: str) -> None:
    gate = await client.approvals.GetApproval(
        approval_service_pb2.GetApprovalRequest(job_request_id=request_id, task_type=task_type)
    )
    await client.approvals.Decide(
        approval_service_pb2.DecideRequest(
            job_request_id=request_id,
            task_type=task_type,
            decision=decision,  # type: ignore[arg-type]
            comment=comment,
            idempotency_key=f"{request_id}-{task_type}",
            gate_version=gate.approval.version,
        ),
        metadata=client.approver,
    )


async def test_playbooks_follow_the_approved_and_rejected_branches(tmp_path: Path, connect) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    queen = await start_queen(tmp_path / "queen", database_url=url, grpc_port=port, env=QUEEN_ENV)
    ant = await start_ant(
        tmp_path / "ant",
        queen_port=port,
        ant_id="ant-gates",
        methods="SHELL,KUBERNETES,DOCKER",
        capacity=8,
        extra=["--local-fallback"],
        env=_tools(tmp_path / "tools"),
    )
    try:
        client: Client = connect(port)
        await assert_eventually(client.ants, message="the Ant registered")
        for name in ("aws-region-failover.yaml", "secure-go-cicd.yaml"):
            await client.upload((REPO / "examples" / name).read_text())
        runs = {
            ("secure-go-cicd", APPROVE): await client.submit("secure-go-cicd"),
            ("secure-go-cicd", REJECT): await client.submit("secure-go-cicd"),
            ("aws-region-failover", APPROVE): await client.submit("aws-region-failover"),
            ("aws-region-failover", REJECT): await client.submit("aws-region-failover"),
        }
        gate_of = {"secure-go-cicd": "verify-production-deploy", "aws-region-failover": "verify-failover"}
        for request_id in runs.values():
            waiting = await client.wait_for(request_id, _at_gate_or_done, timeout=120)
            assert state_of(waiting) == "MANUAL_APPROVAL_REQUIRED", (tasks_of(waiting), waiting.error_message)

        # the artifact under review can be downloaded while the gate waits
        failover = runs["aws-region-failover", APPROVE]
        listed = await client.artifacts.ListArtifacts(
            artifact_service_pb2.ListArtifactsRequest(job_request_id=failover)
        )
        tfstate = [a for a in listed.artifacts if a.name == "terraform.tfstate"]
        assert len(tfstate) == 1
        call = client.artifacts.DownloadArtifact(
            artifact_service_pb2.DownloadArtifactRequest(artifact_id=tfstate[0].id)
        )
        content = b"".join([part.chunk async for part in call])
        assert b'"aws_instance.dr_server"' in content

        for (job_type, decision), request_id in runs.items():
            comment = "looks good" if decision == APPROVE else "not today"
            await _decide(client, request_id, gate_of[job_type], decision, comment)

        done = {
            key: await client.wait_for(rid, lambda r: r.job_state in TERMINAL, timeout=120)
            for key, rid in runs.items()
        }
        expected = {
            ("secure-go-cicd", APPROVE): {"promote-production": "COMPLETED", "cleanup": "COMPLETED"},
            ("secure-go-cicd", REJECT): {"rollback-staging": "COMPLETED", "cleanup": "COMPLETED"},
            ("aws-region-failover", APPROVE): {"switch-dns": "COMPLETED", "notify-completion": "COMPLETED"},
            ("aws-region-failover", REJECT): {
                "teardown-secondary-infra": "COMPLETED",
                "notify-completion": "COMPLETED",
            },
        }
        for key, request in done.items():
            tasks = tasks_of(request)
            # a rejection routed by on_exit_code.REJECTED is handled: the rollback runs and the job completes
            assert state_of(request) == "COMPLETED", (key, tasks, request.error_message)
            for task_type, state in expected[key].items():
                assert tasks.get(task_type) == state, (key, tasks)
            gate_state = tasks[gate_of[key[0]]]
            assert gate_state == ("APPROVED" if key[1] == APPROVE else "REJECTED")
            skipped = {"promote-production", "rollback-staging", "switch-dns", "teardown-secondary-infra"}
            assert not (skipped - set(expected[key])) & set(tasks), (key, tasks)
    finally:
        await ant.stop()
        await queen.stop()


GATED = """\
job_type: gated
tasks:
- task_type: wait-for-people
  method: MANUAL
  approval_policy:
    sla:
      - {after: 1h, action: REMIND}
      - {after: 2h, action: AUTO_REJECT}
  on_exit_code:
    APPROVED: done
    REJECTED: done
- task_type: done
  method: SHELL
  script: ["true"]
"""

QUICK = """\
job_type: quick-sla
tasks:
- task_type: wait-for-people
  method: MANUAL
  approval_policy:
    sla_deadline: 3s
  on_exit_code:
    APPROVED: done
    TIMED_OUT: timed-out
- task_type: done
  method: SHELL
  script: ["true"]
- task_type: timed-out
  method: SHELL
  script: ["true"]
"""


async def test_twenty_waiting_gates_survive_a_sigkill_and_an_sla_fires_after_it(
    database_url: str,
    tmp_path: Path,
    connect,  # type: ignore[no-untyped-def]
) -> None:
    port = free_port()
    queen = await start_queen(tmp_path / "q1", database_url=database_url, grpc_port=port, env=QUEEN_ENV)
    ant = await start_ant(tmp_path / "ant", queen_port=port, ant_id="ant-gates", capacity=2)
    second = None
    try:
        client: Client = connect(port)
        await assert_eventually(client.ants, message="the Ant registered")
        await client.upload(GATED)
        await client.upload(QUICK)
        ids = [await client.submit("gated") for _ in range(20)]
        for request_id in ids:
            await client.wait_for(request_id, _at_gate_or_done, timeout=60)
        before = {}
        for request_id in ids:
            gate = await client.approvals.GetApproval(
                approval_service_pb2.GetApprovalRequest(
                    job_request_id=request_id, task_type="wait-for-people"
                )
            )
            before[request_id] = (gate.approval.version, gate.approval.next_sla_time.ToDatetime())
        quick = await client.submit("quick-sla")
        await client.wait_for(quick, _at_gate_or_done, timeout=60)

        await queen.kill()
        second = await start_queen(tmp_path / "q2", database_url=database_url, grpc_port=port, env=QUEEN_ENV)
        try:
            client = connect(port)
            pending = await client.approvals.ListPendingApprovals(
                approval_service_pb2.ListPendingApprovalsRequest()
            )
            waiting = {a.job_request_id for a in pending.approvals}
            assert set(ids) <= waiting
            for request_id in ids:
                request = await client.get(request_id)
                assert request.job_state == state_pb2.JOB_STATE_MANUAL_APPROVAL_REQUIRED
                gate = await client.approvals.GetApproval(
                    approval_service_pb2.GetApprovalRequest(
                        job_request_id=request_id, task_type="wait-for-people"
                    )
                )
                assert (gate.approval.version, gate.approval.next_sla_time.ToDatetime()) == before[request_id]

            # the 3 s deadline passed (or passes) after the restart: the timers re-armed from the database
            timed = await client.wait_for(quick, lambda r: r.job_state in TERMINAL, timeout=60)
            assert state_of(timed) == "COMPLETED"
            assert tasks_of(timed)["timed-out"] == "COMPLETED"
            assert {t.task_type: t.exit_code for t in timed.execution.tasks}["wait-for-people"] == "TIMED_OUT"
        finally:
            await ant.stop()
    finally:
        await ant.stop()
        if second is not None:
            await second.stop()
        await queen.stop()
