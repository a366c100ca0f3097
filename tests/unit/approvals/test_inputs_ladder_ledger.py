"""Typed inputs, the SLA ladder, policy snapshots and the ledger's hash chain (all pure)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from queen.domain.approvals import (
    GENESIS_HASH,
    InvalidInputs,
    LadderStep,
    LedgerKind,
    LedgerLink,
    Vote,
    default_inputs,
    entry_body,
    entry_hash,
    ladder,
    policy_from_json,
    policy_to_json,
    validate_inputs,
    verify_chain,
)
from queen.domain.definition_parser import parse_job_definition
from queen.domain.job_definition import (
    ApprovalInput,
    ApprovalPolicy,
    InputType,
    SlaAction,
    SlaStep,
    TimeoutAction,
)

pytestmark = pytest.mark.unit

POLICY_YAML = """\
job_type: dr
tasks:
- task_type: gate
  method: MANUAL
  on_exit_code: {APPROVED: COMPLETED, REJECTED: COMPLETED, TIMED_OUT: COMPLETED}
  approval_policy:
    min_approvals: 2
    allowed_roles: [sre]
    quorum: [{group: sre, min: 1}, {group: security, min: 1}]
    sla_deadline: 24h
    timeout_action: AUTO_REJECT
    escalation_recipients: ["https://hooks.example/esc"]
    escalation_message: decide the failover
    reject_vetoes: false
    sla:
      - {after: 1h, action: REMIND}
      - {after: 4h, action: ESCALATE, to: ["https://hooks.example/mgr"], message: still waiting}
    inputs:
      - {name: ticket, type: string, required: true}
      - {name: replicas, type: number, default: 3}
      - {name: dry_run, type: boolean, default: false}
      - {name: region, type: enum, values: [us-west-2, eu-west-1], required: true}
"""

SPECS = (
    ApprovalInput("ticket", InputType.STRING, required=True),
    ApprovalInput("replicas", InputType.NUMBER, default=3.0),
    ApprovalInput("dry_run", InputType.BOOLEAN, default=False),
    ApprovalInput("region", InputType.ENUM, required=True, values=("us-west-2", "eu-west-1")),
)


def test_inputs_are_typed_and_defaulted() -> None:
    values = validate_inputs(
        SPECS, {"ticket": "CHG-1", "region": "eu-west-1", "dry_run": "YES"}, Vote.APPROVE
    )
    assert values == {"ticket": "CHG-1", "replicas": 3, "dry_run": True, "region": "eu-west-1"}
    assert isinstance(values["replicas"], int)
    assert validate_inputs(SPECS, {"ticket": "x", "region": "us-west-2", "replicas": "2.5"}, Vote.APPROVE)[
        "replicas"
    ] == pytest.approx(2.5)


def test_every_input_problem_is_listed() -> None:
    with pytest.raises(InvalidInputs) as caught:
        validate_inputs(
            SPECS, {"replicas": "many", "dry_run": "maybe", "region": "mars", "x": "1"}, Vote.APPROVE
        )
    assert caught.value.field == "inputs"
    assert caught.value.problems == (
        '"x" is not an input of this gate (its inputs: ticket, replicas, dry_run, region)',
        '"ticket" is required',
        "\"replicas\" must be a number (got 'many')",
        "\"dry_run\" must be true or false (got 'maybe')",
        "\"region\" must be one of us-west-2, eu-west-1 (got 'mars')",
    )
    assert str(caught.value).startswith("invalid inputs: ")


def test_reject_needs_no_inputs_but_what_it_gives_must_fit() -> None:
    assert validate_inputs(SPECS, {}, Vote.REJECT) == {"replicas": 3, "dry_run": False}
    with pytest.raises(InvalidInputs):
        validate_inputs(SPECS, {"replicas": "nan"}, Vote.REJECT)
    assert default_inputs(SPECS) == {"replicas": 3, "dry_run": False}


def test_ladder_resolves_recipients_and_ends_with_the_deadline() -> None:
    policy = parse_job_definition(POLICY_YAML).tasks[0].approval_policy
    assert policy is not None
    assert ladder(policy) == (
        LadderStep(timedelta(hours=1), SlaAction.REMIND, (), "decide the failover"),
        LadderStep(timedelta(hours=4), SlaAction.ESCALATE, ("https://hooks.example/mgr",), "still waiting"),
        LadderStep(
            timedelta(hours=24), SlaAction.AUTO_REJECT, ("https://hooks.example/esc",), "decide the failover"
        ),
    )


def test_ladder_stops_at_the_first_closing_rung_and_defaults_to_time_out() -> None:
    policy = ApprovalPolicy(
        sla_deadline=timedelta(minutes=10),
        sla=(
            SlaStep(timedelta(minutes=5), SlaAction.AUTO_APPROVE),
            SlaStep(timedelta(minutes=1), SlaAction.REMIND),
        ),
    )
    assert [(s.after.total_seconds(), s.action) for s in ladder(policy)] == [
        (60, SlaAction.REMIND),
        (300, SlaAction.AUTO_APPROVE),
    ]
    assert ladder(ApprovalPolicy(sla_deadline=timedelta(1)))[-1].action is SlaAction.TIME_OUT
    escalating = ApprovalPolicy(sla_deadline=timedelta(1), timeout_action=TimeoutAction.ESCALATE)
    assert [s.closes for s in ladder(escalating)] == [False]  # it escalates and keeps waiting
    assert ladder(ApprovalPolicy()) == ()


def test_policy_snapshot_round_trips() -> None:
    policy = parse_job_definition(POLICY_YAML).tasks[0].approval_policy
    assert policy is not None
    assert policy_from_json(policy_to_json(policy)) == policy
    assert policy_from_json(policy_to_json(ApprovalPolicy())) == ApprovalPolicy()


def _chain(count: int) -> list[LedgerLink]:
    links = []
    previous = GENESIS_HASH
    start = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    for number in range(1, count + 1):
        kind = LedgerKind.REQUESTED if number == 1 else LedgerKind.VOTED
        moment = start + timedelta(seconds=number)
        data = {"n": number, "who": "zoë", "inputs": {"b": 1.5, "a": [True, None]}}
        body = entry_body(gate="t#1", sequence=number, kind=kind, actor="ann", created_at=moment, data=data)
        digest = entry_hash(previous, body)
        links.append(LedgerLink(number, kind, "ann", moment, data, previous, digest))
        previous = digest
    return links


def test_an_untouched_chain_verifies() -> None:
    links = _chain(4)
    assert verify_chain("t#1", links, length=4, head=links[-1].hash) == []
    # the hash does not depend on key order or the time zone the moment is written in
    body = entry_body(
        gate="g", sequence=1, kind="K", actor="a", created_at=links[0].created_at, data={"x": 1, "y": 2}
    )
    other = entry_body(
        gate="g",
        sequence=1,
        kind="K",
        actor="a",
        created_at=links[0].created_at.astimezone(datetime.now().astimezone().tzinfo),
        data={"y": 2, "x": 1},
    )
    assert entry_hash(GENESIS_HASH, body) == entry_hash(GENESIS_HASH, other)


def test_an_edited_entry_is_detected() -> None:
    links = _chain(4)
    links[1] = dataclasses.replace(links[1], data={**links[1].data, "n": 99})
    assert verify_chain("t#1", links, length=4, head=links[-1].hash) == [
        "entry 2 (VOTED) was changed: it does not match its hash"
    ]


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link() -> None:
    links = _chain(3)
    edited = dataclasses.replace(links[1], actor="mallory")
    body = entry_body(
        gate="t#1", sequence=2, kind="VOTED", actor="mallory", created_at=edited.created_at, data=edited.data
    )
    links[1] = dataclasses.replace(edited, hash=entry_hash(edited.prev_hash, body))
    assert verify_chain("t#1", links) == [
        "entry 3 (VOTED) does not link to the entry before it: an earlier entry was changed or deleted"
    ]


def test_deleted_entries_are_detected() -> None:
    links = _chain(4)
    middle = [links[0], links[2], links[3]]
    problems = verify_chain("t#1", middle, length=4, head=links[-1].hash)
    assert problems[0] == "entries 2..2 are missing (deleted)"
    assert "does not link" in problems[1]
    # the last entry leaves no gap: the gate's recorded length and head give it away
    assert verify_chain("t#1", links[:3], length=4, head=links[-1].hash) == [
        "the gate records 4 entries but the ledger ends at entry 3",
        "the last entry is not the one the gate records (entries at the end were changed)",
    ]
    assert verify_chain("t#1", [], length=0) == ["the gate has no ledger entries"]
