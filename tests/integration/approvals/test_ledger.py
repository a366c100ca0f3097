"""The audit ledger in the database: export, verification, tampering detected (service and CLI), and the
pending-gates watch (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import cast

import pytest
import typer
from sqlalchemy import text
from typer.testing import CliRunner

from queen.approvals import cli, ledger
from queen.domain.approvals import GateState, Vote
from queen.services.approvals import GateView
from tests.integration.approvals.conftest import BOB, CAROL, Gatehouse, dr_job

pytestmark = pytest.mark.integration


async def _decided_request(gatehouse: Gatehouse) -> int:
    request_id = await gatehouse.submit_to_gate(dr_job("min_approvals: 2\ninputs: [{name: ticket}]"))
    await gatehouse.decide(BOB, request_id, Vote.APPROVE, comment="ok", inputs={"ticket": "CHG-1"})
    await gatehouse.decide(CAROL, request_id, Vote.APPROVE, comment="ok too")
    return request_id


async def _sql(gatehouse: Gatehouse, statement: str) -> None:
    async with gatehouse.engine.db.transaction() as session:
        await session.execute(text(statement))


async def test_an_untouched_ledger_verifies_and_exports(gatehouse: Gatehouse) -> None:
    request_id = await _decided_request(gatehouse)
    report = await gatehouse.service.verify_ledger(BOB)
    assert (report.ok, report.gates, report.entries) == (True, 1, 4)
    lines = [line async for line in gatehouse.service.export_ledger(BOB, job_request_id=request_id)]
    assert [json.loads(line)["kind"] for line in lines] == ["REQUESTED", "VOTED", "VOTED", "DECIDED"]
    assert ledger.verify_lines(lines).ok
    decided = json.loads(lines[-1])["data"]
    assert (decided["decided_by"], decided["channel"], decided["inputs"]) == ("carol", "GRPC", {})
    assert json.loads(lines[1])["data"]["inputs"] == {"ticket": "CHG-1"}

    # an exported file that was edited afterwards does not verify either
    edited = [*lines[:1], lines[1].replace('"CHG-1"', '"CHG-2"'), *lines[2:]]
    assert [p.message for p in ledger.verify_lines(edited).problems] == [
        "entry 2 (VOTED) was changed: it does not match its hash"
    ]


async def test_edited_and_deleted_entries_are_detected(gatehouse: Gatehouse) -> None:
    edited = await _decided_request(gatehouse)
    truncated = await _decided_request(gatehouse)
    assert (await gatehouse.service.verify_ledger(BOB)).ok
    gate_of = "gate_id IN (SELECT id FROM approval_gates WHERE job_request_id = {})".format
    await _sql(
        gatehouse, f"UPDATE approval_ledger SET actor = 'mallory' WHERE sequence = 2 AND {gate_of(edited)}"
    )
    await _sql(gatehouse, f"DELETE FROM approval_ledger WHERE sequence = 4 AND {gate_of(truncated)}")
    await _sql(gatehouse, f"DELETE FROM approval_votes WHERE user_id = 'bob' AND {gate_of(truncated)}")
    report = await gatehouse.service.verify_ledger(BOB)
    assert [(p.job_request_id, p.message) for p in report.problems] == [
        (edited, "entry 2 (VOTED) was changed: it does not match its hash"),
        (truncated, "the gate records 4 entries but the ledger ends at entry 3"),
        (truncated, "the last entry is not the one the gate records (entries at the end were changed)"),
        (truncated, "the gate is APPROVED but its ledger does not record that outcome"),
        (truncated, "the gate's 1 vote rows do not match the 2 votes its ledger records"),
    ]


async def test_formicary_audit_verify_and_export(gatehouse: Gatehouse, tmp_path: Path) -> None:
    request_id = await _decided_request(gatehouse)
    url = gatehouse.engine.db.url.render_as_string(hide_password=False)
    app = typer.Typer()
    cli.register(app)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        # the CLI runs its own event loop (asyncio.run): give it a thread of its own
        result = runner.invoke(app, list(args))
        return result.exit_code, result.output

    export = tmp_path / "ledger.jsonl"
    code, _ = await asyncio.to_thread(
        run, "audit", "export", "--database-url", url, "--job-request-id", str(request_id), "-o", str(export)
    )
    assert code == 0
    assert len(export.read_text().splitlines()) == 4
    assert (await asyncio.to_thread(run, "audit", "verify", "--database-url", url))[0] == 0
    assert (await asyncio.to_thread(run, "audit", "verify", "--file", str(export)))[0] == 0

    await _sql(gatehouse, "UPDATE approval_ledger SET data = '{}' WHERE sequence = 1")
    code, output = await asyncio.to_thread(run, "audit", "verify", "--database-url", url)
    assert code == 1
    assert "TAMPERED: job request" in output
    assert "entry 1 (REQUESTED) was changed" in output


async def test_watch_streams_gates_as_they_open_change_and_close(gatehouse: Gatehouse) -> None:
    stream = cast(
        AsyncGenerator[GateView | None, None],
        gatehouse.service.watch_pending(BOB, only_decidable_by_me=True),
    )
    async with contextlib.aclosing(stream), asyncio.timeout(10):
        assert await anext(stream) is None  # nothing open: the snapshot ends at once
        request_id = await gatehouse.submit_to_gate(dr_job("min_approvals: 2"))
        opened = await anext(stream)
        assert opened is not None
        assert (opened.gate.job_request_id, opened.state, opened.caller_can_decide) == (
            request_id,
            GateState.OPEN,
            True,
        )
        # bob votes: the gate is still open but no longer bob's to decide; sent once more, then no more
        await gatehouse.decide(BOB, request_id, Vote.APPROVE)
        voted = await anext(stream)
        assert voted is not None
        assert (voted.state, voted.caller_can_decide, len(voted.votes)) == (GateState.OPEN, False, 1)
        await gatehouse.decide(CAROL, request_id, Vote.APPROVE)
        other = asyncio.ensure_future(anext(stream))
        done, _ = await asyncio.wait({other}, timeout=0.2)
        assert not done, "a gate that left the caller's list was sent again"
        other.cancel()
        await asyncio.gather(other, return_exceptions=True)
