"""Who may decide a gate and when it is decided: eligibility, separation of duties, the tally."""

from __future__ import annotations

import pytest

from queen.domain.approvals import (
    GateState,
    Vote,
    VoteCast,
    evaluate,
    is_eligible,
    policy_summary,
    refusal,
    separation_of_duties_note,
)
from queen.domain.definition_parser import parse_job_definition
from queen.domain.errors import InvalidArgument
from queen.domain.job_definition import ApprovalPolicy, QuorumRule

pytestmark = pytest.mark.unit


def approve(user: str, *roles: str) -> VoteCast:
    return VoteCast(user, frozenset(roles), Vote.APPROVE)


def reject(user: str, *roles: str) -> VoteCast:
    return VoteCast(user, frozenset(roles), Vote.REJECT)


def parsed(block: str) -> ApprovalPolicy:
    """The policy of a MANUAL task with this `approval_policy` block, as the definition parser reads it."""
    yaml = "job_type: t\ntasks:\n- task_type: gate\n  method: MANUAL\n  on_exit_code: {APPROVED: COMPLETED}\n"
    yaml += "  approval_policy:\n"
    yaml += "".join(f"    {line}\n" for line in block.strip("\n").splitlines())
    policy = parse_job_definition(yaml).tasks[0].approval_policy
    assert policy is not None
    return policy


def test_default_policy_is_one_operator_or_admin() -> None:
    policy = ApprovalPolicy()
    assert is_eligible(policy, "ann", {"operator"})
    assert is_eligible(policy, "ann", {"admin"})
    assert not is_eligible(policy, "ann", {"developer"})
    assert evaluate(policy, []).outcome is GateState.OPEN
    assert evaluate(policy, [approve("ann", "operator")]).outcome is GateState.APPROVED
    assert policy_summary(policy) == "1 approval from holders of admin or operator; requester excluded"


def test_allowed_users_and_roles_and_quorum_groups_are_eligible() -> None:
    policy = ApprovalPolicy(
        allowed_users=("zoe",), allowed_roles=("sre",), quorum=(QuorumRule("security", 1),)
    )
    assert is_eligible(policy, "zoe", set())
    assert is_eligible(policy, "sam", {"sre"})
    assert is_eligible(policy, "sec", {"security"})
    # an explicit list replaces the default roles
    assert not is_eligible(policy, "ops", {"operator", "admin"})
    assert not is_eligible(ApprovalPolicy(allowed_users=("zoe",)), "root", {"admin"})


def test_requester_is_excluded_unless_self_approval_or_unauthenticated() -> None:
    policy = ApprovalPolicy()
    common = {"user_id": "alice", "roles": {"admin"}, "requester": "alice", "already_voted": False}
    assert "separation of duties" in refusal(policy, authenticated=True, **common)  # type: ignore[arg-type]
    assert refusal(ApprovalPolicy(allow_self_approval=True), authenticated=True, **common) == ""  # type: ignore[arg-type]
    # the embedded Queen cannot tell people apart: the rule is skipped, and the gate says why
    assert refusal(policy, authenticated=False, **common) == ""  # type: ignore[arg-type]
    assert "without authentication" in separation_of_duties_note(policy, authenticated=False)
    assert separation_of_duties_note(policy, authenticated=True) == ""
    assert "allow_self_approval" in separation_of_duties_note(
        ApprovalPolicy(allow_self_approval=True), authenticated=True
    )


def test_refusal_reasons() -> None:
    policy = ApprovalPolicy(allowed_roles=("sre",))
    outsider = refusal(
        policy, user_id="dev", roles={"developer"}, authenticated=True, requester="x", already_voted=False
    )
    assert outsider == "dev may not decide this gate: only holders of sre may"
    again = refusal(policy, user_id="s", roles={"sre"}, authenticated=True, requester="x", already_voted=True)
    assert "already voted" in again


def test_min_approvals_counts_distinct_people_and_first_votes() -> None:
    policy = ApprovalPolicy(min_approvals=2)
    assert evaluate(policy, [approve("a"), approve("a")]).outcome is GateState.OPEN
    verdict = evaluate(policy, [approve("a"), approve("b")])
    assert (verdict.outcome, verdict.progress) == (GateState.APPROVED, "approved by a, b")
    assert evaluate(policy, [approve("a")]).progress == "1 of 2 approvals"


def test_any_reject_vetoes_by_default() -> None:
    policy = ApprovalPolicy(min_approvals=2)
    verdict = evaluate(policy, [approve("a"), reject("b")])
    assert (verdict.outcome, verdict.progress) == (GateState.REJECTED, "rejected by b")


def test_without_veto_rejections_count_like_approvals() -> None:
    policy = parsed("min_approvals: 2\nreject_vetoes: false")
    assert evaluate(policy, [reject("a")]).outcome is GateState.OPEN
    assert evaluate(policy, [reject("a"), approve("b")]).progress == "1 of 2 approvals; 1 of 2 rejections"
    assert evaluate(policy, [reject("a"), approve("b"), approve("c")]).outcome is GateState.APPROVED
    assert evaluate(policy, [reject("a"), reject("b")]).outcome is GateState.REJECTED
    # unanimity makes every REJECT a veto again
    strict = ApprovalPolicy(min_approvals=2, reject_vetoes=False, require_unanimous=True)
    assert evaluate(strict, [reject("a")]).outcome is GateState.REJECTED


def test_unanimous_allowed_users_must_all_approve() -> None:
    policy = ApprovalPolicy(allowed_users=("ann", "bob", "cat"), require_unanimous=True)
    verdict = evaluate(policy, [approve("ann"), approve("cat")])
    assert verdict.outcome is GateState.OPEN
    assert verdict.progress.endswith("waiting for bob")
    assert evaluate(policy, [approve("ann"), approve("bob"), approve("cat")]).outcome is GateState.APPROVED


def test_per_group_quorum() -> None:
    policy = parsed("quorum: [{group: sre, min: 2}, {group: security, min: 1}]")
    assert policy.quorum == (QuorumRule("sre", 2), QuorumRule("security", 1))
    two_sre = [approve("s1", "sre"), approve("s2", "sre")]
    verdict = evaluate(policy, two_sre)
    assert verdict.outcome is GateState.OPEN
    assert verdict.progress == "security 0 of 1"
    assert evaluate(policy, two_sre[:1]).progress == "sre 1 of 2; security 0 of 1"
    assert evaluate(policy, [*two_sre, approve("sec", "security")]).outcome is GateState.APPROVED


def test_one_person_fills_one_seat_whatever_roles_they_hold() -> None:
    policy = ApprovalPolicy(quorum=(QuorumRule("sre", 1), QuorumRule("security", 1)))
    both = approve("pat", "sre", "security")
    assert evaluate(policy, [both]).outcome is GateState.OPEN
    # the matching moves pat to the seat nobody else can fill
    assert evaluate(policy, [both, approve("sam", "sre")]).outcome is GateState.APPROVED
    assert evaluate(policy, [approve("sam", "sre"), both]).outcome is GateState.APPROVED


def test_quorum_on_top_of_min_approvals() -> None:
    policy = ApprovalPolicy(min_approvals=3, quorum=(QuorumRule("sre", 1),))
    votes = [approve("a", "sre"), approve("b", "admin")]
    assert evaluate(policy, votes).outcome is GateState.OPEN
    assert evaluate(policy, [*votes, approve("c", "admin")]).outcome is GateState.APPROVED


def test_votes_as_formicary_clients_send_them() -> None:
    assert Vote.from_text("APPROVED") is Vote.APPROVE
    assert Vote.from_text(" rejected ") is Vote.REJECT
    assert Vote.from_text("Approve") is Vote.APPROVE
    with pytest.raises(InvalidArgument, match="must be APPROVED or REJECTED"):
        Vote.from_text("maybe")
