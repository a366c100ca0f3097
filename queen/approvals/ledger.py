"""The approval ledger out of the database: JSON Lines export and verification (of the database or a file).

Verification of the database checks, for every gate: the hash chain of its entries (an edited entry no
longer matches its hash, a deleted one breaks the sequence and the next link), the chain's length and head
against those the gate row keeps (a deleted last entry), the first entry being REQUESTED, a closed gate
ending with the entry that closed it, and every vote row having its VOTED entry (and no more). An
export can be verified offline: each line carries what its hash covers.

What it cannot catch: someone able to rewrite every table who recomputes the whole chain and the gate's
head. Publishing heads elsewhere (a notification, a transparency log) is the answer to that; later.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from queen.domain.approvals import (
    GateState,
    LedgerKind,
    LedgerLink,
    canonical_json,
    gate_key,
    verify_chain,
)
from queen.store import approvals as store
from queen.store.records import ApprovalGateRecord, ApprovalLedgerRecord, ApprovalVoteRecord

__all__ = ["LedgerProblem", "LedgerReport", "export_lines", "verify_database", "verify_lines"]

_CLOSING_KINDS = {
    GateState.APPROVED: LedgerKind.DECIDED,
    GateState.REJECTED: LedgerKind.DECIDED,
    GateState.TIMED_OUT: LedgerKind.TIMED_OUT,
    GateState.CANCELLED: LedgerKind.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class LedgerProblem:
    """One way a gate's ledger differs from an untouched one."""

    job_request_id: int
    task_type: str
    gate: str  # gate_key: "<task execution id>#<opening>"
    message: str

    def __str__(self) -> str:
        return f"job request {self.job_request_id}, gate {self.task_type!r} ({self.gate}): {self.message}"


@dataclass(frozen=True, slots=True)
class LedgerReport:
    """The result of a verification."""

    gates: int
    entries: int
    problems: tuple[LedgerProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _link(entry: ApprovalLedgerRecord) -> LedgerLink:
    return LedgerLink(
        sequence=entry.sequence,
        kind=entry.kind,
        actor=entry.actor,
        created_at=entry.created_at,
        data=entry.data,
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _line(gate: ApprovalGateRecord, entry: ApprovalLedgerRecord) -> str:
    return canonical_json(
        {
            "job_request_id": gate.job_request_id,
            "task_type": gate.task_type,
            "task_execution_id": gate.task_execution_id,
            "opening": gate.opening,
            "sequence": entry.sequence,
            "kind": entry.kind,
            "actor": entry.actor,
            "created_at": entry.created_at.isoformat(timespec="microseconds"),
            "data": _plain(entry.data),
            "prev_hash": entry.prev_hash,
            "hash": entry.hash,
        }
    )


async def export_lines(
    session: AsyncSession, *, organization_id: str | None = None, job_request_id: int | None = None
) -> AsyncIterator[str]:
    """Every entry of the matching gates as one JSON object per line (no newline), gate by gate."""
    for gate in await store.gates(session, organization_id=organization_id, job_request_id=job_request_id):
        for entry in await store.ledger_of(session, gate.id):
            yield _line(gate, entry)


def _gate_problems(
    gate: ApprovalGateRecord, entries: list[ApprovalLedgerRecord], votes: list[ApprovalVoteRecord]
) -> list[str]:
    key = gate_key(gate.task_execution_id, gate.opening)
    problems = verify_chain(
        key, [_link(e) for e in entries], length=gate.ledger_length, head=gate.ledger_head
    )
    closing = _CLOSING_KINDS.get(gate.state)
    if closing is not None:
        last = max(
            (e for e in entries if e.kind in {k.value for k in _CLOSING_KINDS.values()}),
            key=lambda e: e.sequence,
            default=None,
        )
        if last is None or last.kind != closing or last.data.get("outcome") != gate.state.value:
            problems.append(f"the gate is {gate.state} but its ledger does not record that outcome")
    voted = sorted(
        (int(e.data.get("vote_id", 0)), str(e.data.get("user_id")), str(e.data.get("decision")))
        for e in entries
        if e.kind == LedgerKind.VOTED
    )
    cast = sorted((v.id, v.user_id, v.decision.value) for v in votes)
    if voted != cast:
        problems.append(
            f"the gate's {len(cast)} vote rows do not match the {len(voted)} votes its ledger records"
        )
    return problems


async def verify_database(
    session: AsyncSession, *, organization_id: str | None = None, job_request_id: int | None = None
) -> LedgerReport:
    """Verify every matching gate's ledger in the database."""
    problems: list[LedgerProblem] = []
    count = entries_seen = 0
    for gate in await store.gates(session, organization_id=organization_id, job_request_id=job_request_id):
        count += 1
        entries = await store.ledger_of(session, gate.id)
        entries_seen += len(entries)
        votes = await store.votes_of(session, gate.id)
        key = gate_key(gate.task_execution_id, gate.opening)
        problems.extend(
            LedgerProblem(gate.job_request_id, gate.task_type, key, message)
            for message in _gate_problems(gate, entries, votes)
        )
    return LedgerReport(count, entries_seen, tuple(problems))


def verify_lines(lines: Iterable[str]) -> LedgerReport:
    """Verify an export (`export_lines`, one JSON object per line; blank lines are ignored)."""
    by_gate: dict[str, list[LedgerLink]] = defaultdict(list)
    names: dict[str, tuple[int, str]] = {}
    problems: list[LedgerProblem] = []
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        count += 1
        try:
            item = json.loads(line)
            key = gate_key(str(item["task_execution_id"]), int(item["opening"]))
            names.setdefault(key, (int(item["job_request_id"]), str(item["task_type"])))
            by_gate[key].append(
                LedgerLink(
                    sequence=int(item["sequence"]),
                    kind=str(item["kind"]),
                    actor=str(item["actor"]),
                    created_at=datetime.fromisoformat(item["created_at"]),
                    data=item["data"],
                    prev_hash=str(item["prev_hash"]),
                    hash=str(item["hash"]),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(LedgerProblem(0, "", "", f"line {number} is not a ledger entry: {exc}"))
    for key, links in by_gate.items():
        request_id, task_type = names[key]
        problems.extend(LedgerProblem(request_id, task_type, key, m) for m in verify_chain(key, links))
    return LedgerReport(len(by_gate), count, tuple(problems))
