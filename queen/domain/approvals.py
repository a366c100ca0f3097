"""Approval gates, pure: who may decide, when a gate is decided, inputs, the SLA ladder, the ledger hash.

Everything the Queen needs to judge a MANUAL task's gate without I/O; the store keeps the gate, its
votes and its ledger, `queen.approvals` and `queen.services.approvals` apply these rules in transactions.

The rules, written down once (the issue's and the design's choices where Formicary is silent):

- **Eligible voters**: users named in `allowed_users`, and holders of a role in `allowed_roles` or of a
  `quorum` group (groups are roles for now). With none of the three, holders of `operator` or `admin`.
- **Separation of duties**: the user who submitted the job request may not vote unless
  `allow_self_approval`. A Queen without authentication (the embedded mode's single local identity,
  `Identity.authenticated` False) cannot tell people apart: it skips the rule and the gate says so.
- **One vote per person per gate version**. The version changes when an upstream task runs again while
  the gate waits; only votes on the current version count.
- **Approved** when at least `min_approvals` distinct eligible users approved, every `quorum` rule is met
  (one person fills at most one group's quorum: a bipartite matching, so "sre 1 + security 1" always takes
  two people), and, with `require_unanimous` and `allowed_users`, every listed user approved.
- **Rejected** by any REJECT (`reject_vetoes`, the default; always under `require_unanimous`). With
  `reject_vetoes: false` a REJECT is a vote like any other: the gate closes REJECTED once as many
  eligible users rejected as `min_approvals` requires for approval.
- **SLA ladder**: `sla` rungs in order of `after` (time since the gate opened), plus a last rung from
  `sla_deadline` + `timeout_action`: AUTO_APPROVE, AUTO_REJECT, ESCALATE (notify and keep waiting), or —
  without `timeout_action` — TIME_OUT (the task ends FAILED with exit code TIMED_OUT). REMIND and
  ESCALATE keep the gate open; a closing rung ends the ladder.
- **Ledger**: each entry's hash is sha256(previous hash + canonical JSON of the entry), per gate, from a
  genesis of 64 zeros; the gate row keeps the chain's length and head, so a deleted last entry shows too.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from queen.domain.errors import FailedPrecondition, InvalidArgument
from queen.domain.job_definition import (
    ApprovalInput,
    ApprovalPolicy,
    InputType,
    QuorumRule,
    SlaAction,
    SlaStep,
    TimeoutAction,
)

__all__ = [
    "CLOSING_ACTIONS",
    "DEFAULT_APPROVER_ROLES",
    "GENESIS_HASH",
    "SLA_ACTOR",
    "Channel",
    "GateClosed",
    "GateState",
    "InputValue",
    "InvalidInputs",
    "LadderStep",
    "LedgerKind",
    "LedgerLink",
    "StaleGate",
    "Verdict",
    "Vote",
    "VoteCast",
    "canonical_json",
    "default_inputs",
    "entry_body",
    "entry_hash",
    "evaluate",
    "gate_key",
    "is_eligible",
    "ladder",
    "policy_from_json",
    "policy_summary",
    "policy_to_json",
    "refusal",
    "separation_of_duties_note",
    "validate_inputs",
    "verify_chain",
]

DEFAULT_APPROVER_ROLES = ("operator", "admin")
GENESIS_HASH = "0" * 64
# Who the ledger names when the Queen decides on the policy's behalf (the SLA ladder).
SLA_ACTOR = "formicary:sla"

_MAX_INPUT_CHARS = 4096
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})
_INTEGER = re.compile(r"[+-]?\d+")


class GateState(enum.StrEnum):
    """The life of one gate: OPEN until decided, timed out, or its job goes away."""

    OPEN = "OPEN"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"

    @property
    def is_open(self) -> bool:
        return self is GateState.OPEN


class Vote(enum.StrEnum):
    """One person's answer."""

    APPROVE = "APPROVE"
    REJECT = "REJECT"

    @classmethod
    def from_text(cls, text: str) -> Vote:
        """APPROVE / REJECT, also as Formicary's clients write them (APPROVED / REJECTED, any case);
        InvalidArgument otherwise."""
        found = _VOTE_WORDS.get(text.strip().upper())
        if found is None:
            raise InvalidArgument(f"decision {text[:40]!r} must be APPROVED or REJECTED", field="decision")
        return found


_VOTE_WORDS = {
    "APPROVE": Vote.APPROVE,
    "APPROVED": Vote.APPROVE,
    "REJECT": Vote.REJECT,
    "REJECTED": Vote.REJECT,
}


class Channel(enum.StrEnum):
    """The front door a decision came through (SLA: the Queen itself, applying the ladder)."""

    GRPC = "GRPC"
    REST = "REST"
    DASHBOARD = "DASHBOARD"
    SLA = "SLA"


class LedgerKind(enum.StrEnum):
    """What one ledger entry records."""

    REQUESTED = "REQUESTED"  # the gate opened: policy, requester, artifact digests, trace
    VOTED = "VOTED"  # one vote, as cast
    INVALIDATED = "INVALIDATED"  # an upstream task ran again: new version, new digests
    REMINDED = "REMINDED"  # an SLA rung reminded
    ESCALATED = "ESCALATED"  # an SLA rung escalated
    NOTIFIED = "NOTIFIED"  # one delivery attempt of a reminder or escalation, and its result
    DECIDED = "DECIDED"  # the gate closed APPROVED or REJECTED (by votes or by the SLA)
    TIMED_OUT = "TIMED_OUT"  # the gate closed TIMED_OUT
    CANCELLED = "CANCELLED"  # the gate closed because its job was cancelled or its task went away


CLOSING_ACTIONS = frozenset({SlaAction.AUTO_APPROVE, SlaAction.AUTO_REJECT, SlaAction.TIME_OUT})


class StaleGate(FailedPrecondition):
    """A decision made on a gate version that is no longer current."""

    def __init__(self, seen: int, current: int) -> None:
        super().__init__(
            f"the gate changed since version {seen} was shown (it is version {current} now): "
            "look at it again and decide on the current version"
        )
        self.seen = seen
        self.current = current


class GateClosed(FailedPrecondition):
    """A decision on a gate that is no longer open."""

    def __init__(self, state: str) -> None:
        super().__init__(f"the gate is closed ({state}); no more decisions are taken")
        self.state = state


class InvalidInputs(InvalidArgument):
    """Input values that do not fit the policy; `problems` lists every one of them."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid inputs: " + "; ".join(self.problems), field="inputs")


# -- policy ------------------------------------------------------------------------------------------


def _approver_roles(policy: ApprovalPolicy) -> frozenset[str]:
    roles = set(policy.allowed_roles) | {rule.group for rule in policy.quorum}
    if not roles and not policy.allowed_users:
        roles = set(DEFAULT_APPROVER_ROLES)
    return frozenset(roles)


def is_eligible(policy: ApprovalPolicy, user_id: str, roles: Collection[str]) -> bool:
    """Whether the policy lets this user vote at all (separation of duties aside)."""
    return user_id in policy.allowed_users or bool(_approver_roles(policy) & set(roles))


def _self_approval_allowed(policy: ApprovalPolicy, authenticated: bool) -> bool:
    return policy.allow_self_approval or not authenticated


def separation_of_duties_note(policy: ApprovalPolicy, *, authenticated: bool) -> str:
    """Why the requester may vote on this gate, or "" when separation of duties applies."""
    if policy.allow_self_approval:
        return "the policy allows the requester to approve their own job (allow_self_approval)"
    if not authenticated:
        return (
            "separation of duties is not enforced: this Queen runs without authentication (a single local "
            "identity), so it cannot tell the requester from an approver"
        )
    return ""


def refusal(
    policy: ApprovalPolicy,
    *,
    user_id: str,
    roles: Collection[str],
    authenticated: bool,
    requester: str,
    already_voted: bool,
) -> str:
    """Why this user may not vote on an open gate now, or "" when they may."""
    if user_id == requester and not _self_approval_allowed(policy, authenticated):
        return (
            f"{user_id} submitted this job request and may not decide its gates (separation of duties; "
            "the policy can lift it with allow_self_approval)"
        )
    if not is_eligible(policy, user_id, roles):
        return f"{user_id} may not decide this gate: {_eligibility_text(policy)}"
    if already_voted:
        return f"{user_id} already voted on this version of the gate"
    return ""


def _who(policy: ApprovalPolicy) -> str:
    """The eligible voters in words ("holders of sre or security, and users alice, bob")."""
    parts = []
    roles = sorted(_approver_roles(policy))
    if roles:
        parts.append("holders of " + " or ".join(roles))
    if policy.allowed_users:
        parts.append("users " + ", ".join(policy.allowed_users))
    return ", and ".join(parts)


def _eligibility_text(policy: ApprovalPolicy) -> str:
    return f"only {_who(policy)} may"


def policy_summary(policy: ApprovalPolicy) -> str:
    """The policy in one line ("2 approvals from holders of sre; quorum sre 2; requester excluded")."""
    count = max(policy.min_approvals, 1)
    text = f"{count} approval{'s' if count != 1 else ''} from {_who(policy)}"
    if policy.quorum:
        text += "; quorum " + ", ".join(f"{rule.group} {rule.min}" for rule in policy.quorum)
    if policy.require_unanimous:
        text += "; unanimous"
    if not policy.reject_vetoes and not policy.require_unanimous:
        text += "; a REJECT does not veto"
    text += "; requester may approve" if policy.allow_self_approval else "; requester excluded"
    return text


# -- the tally ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoteCast:
    """One counted vote: who, holding which roles when they voted, and their answer."""

    user_id: str
    roles: frozenset[str]
    decision: Vote


@dataclass(frozen=True, slots=True)
class Verdict:
    """Where a gate stands after its votes: still OPEN, or APPROVED / REJECTED, and why in words."""

    outcome: GateState
    progress: str


def _quorum_filled(rules: Sequence[QuorumRule], approvers: Sequence[VoteCast]) -> Counter[str]:
    """Seats of each group filled by a maximum matching of approvers to seats (one seat per person)."""
    seats = [rule.group for rule in rules for _ in range(rule.min)]
    holder: list[int | None] = [None] * len(seats)

    def seat(person: int, tried: set[int]) -> bool:
        for index, group in enumerate(seats):
            if index in tried or group not in approvers[person].roles:
                continue
            tried.add(index)
            current = holder[index]
            if current is None or seat(current, tried):
                holder[index] = person
                return True
        return False

    for person in range(len(approvers)):
        seat(person, set())
    return Counter(seats[index] for index, person in enumerate(holder) if person is not None)


def evaluate(policy: ApprovalPolicy, votes: Iterable[VoteCast]) -> Verdict:
    """The verdict of the current version's votes (the first vote of each user counts)."""
    first: dict[str, VoteCast] = {}
    for vote in votes:
        first.setdefault(vote.user_id, vote)
    approvers = [v for v in first.values() if v.decision is Vote.APPROVE]
    rejecters = [v for v in first.values() if v.decision is Vote.REJECT]
    needed = max(policy.min_approvals, 1)
    if rejecters and (policy.reject_vetoes or policy.require_unanimous):
        return Verdict(GateState.REJECTED, f"rejected by {rejecters[0].user_id}")
    if len(rejecters) >= needed:
        names = ", ".join(v.user_id for v in rejecters)
        return Verdict(GateState.REJECTED, f"rejected by {names}")

    # what is still missing, in words
    missing: list[str] = []
    if len(approvers) < needed:
        missing.append(f"{len(approvers)} of {needed} approvals")
    if policy.quorum:
        filled = _quorum_filled(policy.quorum, approvers)
        wanted: Counter[str] = Counter()
        for rule in policy.quorum:
            wanted[rule.group] += rule.min
        missing.extend(
            f"{group} {filled[group]} of {count}" for group, count in wanted.items() if filled[group] < count
        )
    if policy.require_unanimous and policy.allowed_users:
        approved_by = {v.user_id for v in approvers}
        waiting = [user for user in policy.allowed_users if user not in approved_by]
        if waiting:
            missing.append("waiting for " + ", ".join(waiting))
    if not missing:
        return Verdict(GateState.APPROVED, "approved by " + ", ".join(v.user_id for v in approvers))
    if rejecters:
        missing.append(f"{len(rejecters)} of {needed} rejections")
    return Verdict(GateState.OPEN, "; ".join(missing))


# -- inputs ------------------------------------------------------------------------------------------

InputValue = str | int | float | bool


def _typed_default(spec: ApprovalInput) -> InputValue | None:
    default = spec.default
    if default is None:
        return None
    if spec.type is InputType.ENUM:
        return str(default)
    if spec.type is InputType.NUMBER and isinstance(default, float) and default.is_integer():
        return int(default)
    return default


def default_inputs(specs: Iterable[ApprovalInput]) -> dict[str, InputValue]:
    """The inputs' defaults (what an automatic decision passes on)."""
    return {spec.name: value for spec in specs if (value := _typed_default(spec)) is not None}


def _parse(spec: ApprovalInput, raw: str) -> InputValue:
    """The value of `raw` for the input; ValueError saying what is wrong."""
    match spec.type:
        case InputType.NUMBER:
            text = raw.strip()
            if _INTEGER.fullmatch(text):
                return int(text)
            number = float(text)  # ValueError for non-numbers
            if not math.isfinite(number):
                raise ValueError("must be a finite number")
            return number
        case InputType.BOOLEAN:
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError("must be true or false")
        case InputType.ENUM:
            if raw not in spec.values:
                raise ValueError("must be one of " + ", ".join(spec.values))
            return raw
        case _:
            return raw


def validate_inputs(
    specs: Sequence[ApprovalInput], values: Mapping[str, str], decision: Vote
) -> dict[str, InputValue]:
    """The typed inputs of a vote, defaults filled in; InvalidInputs listing every problem.

    An empty value counts as not given. APPROVE needs every required input without a default; REJECT
    needs none, but what it gives must still fit.
    """
    problems: list[str] = []
    known = {spec.name: spec for spec in specs}
    for name in sorted(values):
        if name not in known:
            asked = ", ".join(known) if known else "none"
            problems.append(f'"{name}" is not an input of this gate (its inputs: {asked})')
    result: dict[str, InputValue] = {}
    for spec in specs:
        raw = values.get(spec.name, "")
        if raw == "":
            default = _typed_default(spec)
            if default is not None:
                result[spec.name] = default
            elif spec.required and decision is Vote.APPROVE:
                problems.append(f'"{spec.name}" is required')
            continue
        if len(raw) > _MAX_INPUT_CHARS:
            problems.append(f'"{spec.name}" is longer than {_MAX_INPUT_CHARS} characters')
            continue
        try:
            result[spec.name] = _parse(spec, raw)
        except ValueError as exc:
            reason = str(exc) if spec.type is not InputType.NUMBER else "must be a number"
            problems.append(f'"{spec.name}" {reason} (got {raw[:40]!r})')
    if problems:
        raise InvalidInputs(problems)
    return result


# -- the SLA ladder ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LadderStep:
    """One rung, resolved: when (after the gate opened), what, to whom, with which message."""

    after: timedelta
    action: SlaAction
    recipients: tuple[str, ...] = ()
    message: str = ""

    @property
    def closes(self) -> bool:
        return self.action in CLOSING_ACTIONS


_TIMEOUT_ACTIONS = {
    None: SlaAction.TIME_OUT,
    TimeoutAction.AUTO_APPROVE: SlaAction.AUTO_APPROVE,
    TimeoutAction.AUTO_REJECT: SlaAction.AUTO_REJECT,
    TimeoutAction.ESCALATE: SlaAction.ESCALATE,
}


def ladder(policy: ApprovalPolicy) -> tuple[LadderStep, ...]:
    """The gate's SLA rungs in firing order, up to and including the first that closes the gate.

    ESCALATE rungs without `to` go to `escalation_recipients`; REMIND rungs without `to` only to the
    job's webhook. Rungs without a message use `escalation_message`.
    """
    steps: list[LadderStep] = []
    for rung in policy.sla:
        recipients = rung.to
        if not recipients and rung.action is SlaAction.ESCALATE:
            recipients = policy.escalation_recipients
        message = rung.message or policy.escalation_message
        steps.append(LadderStep(rung.after, rung.action, recipients, message))
    if policy.sla_deadline is not None:
        action = _TIMEOUT_ACTIONS[policy.timeout_action]
        steps.append(
            LadderStep(policy.sla_deadline, action, policy.escalation_recipients, policy.escalation_message)
        )
    # a stable sort: the deadline's rung comes after explicit rungs of the same time
    steps.sort(key=lambda step: step.after)
    for index, step in enumerate(steps):
        if step.closes:
            return tuple(steps[: index + 1])
    return tuple(steps)


# -- policy snapshots (JSON) -------------------------------------------------------------------------


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def policy_to_json(policy: ApprovalPolicy) -> dict[str, Any]:
    """The policy as plain JSON data, stored with the gate so later definition versions do not change it."""
    return {
        "min_approvals": policy.min_approvals,
        "allowed_users": list(policy.allowed_users),
        "allowed_roles": list(policy.allowed_roles),
        "require_unanimous": policy.require_unanimous,
        "sla_deadline": _seconds(policy.sla_deadline),
        "timeout_action": None if policy.timeout_action is None else policy.timeout_action.value,
        "escalation_recipients": list(policy.escalation_recipients),
        "escalation_message": policy.escalation_message,
        "quorum": [{"group": rule.group, "min": rule.min} for rule in policy.quorum],
        "allow_self_approval": policy.allow_self_approval,
        "reject_vetoes": policy.reject_vetoes,
        "sla": [
            {
                "after": step.after.total_seconds(),
                "action": step.action.value,
                "to": list(step.to),
                "message": step.message,
            }
            for step in policy.sla
        ],
        "inputs": [
            {
                "name": spec.name,
                "type": spec.type.value,
                "required": spec.required,
                "default": spec.default,
                "values": list(spec.values),
                "description": spec.description,
            }
            for spec in policy.inputs
        ],
    }


def policy_from_json(data: Mapping[str, Any]) -> ApprovalPolicy:
    """The policy of a snapshot written by `policy_to_json`."""
    deadline = data.get("sla_deadline")
    action = data.get("timeout_action")
    return ApprovalPolicy(
        min_approvals=int(data.get("min_approvals", 1)),
        allowed_users=tuple(data.get("allowed_users", ())),
        allowed_roles=tuple(data.get("allowed_roles", ())),
        require_unanimous=bool(data.get("require_unanimous", False)),
        sla_deadline=None if deadline is None else timedelta(seconds=float(deadline)),
        timeout_action=None if action is None else TimeoutAction(action),
        escalation_recipients=tuple(data.get("escalation_recipients", ())),
        escalation_message=str(data.get("escalation_message", "")),
        quorum=tuple(QuorumRule(str(q["group"]), int(q["min"])) for q in data.get("quorum", ())),
        allow_self_approval=bool(data.get("allow_self_approval", False)),
        reject_vetoes=bool(data.get("reject_vetoes", True)),
        sla=tuple(
            SlaStep(
                after=timedelta(seconds=float(step["after"])),
                action=SlaAction(step["action"]),
                to=tuple(step.get("to", ())),
                message=str(step.get("message", "")),
            )
            for step in data.get("sla", ())
        ),
        inputs=tuple(
            ApprovalInput(
                name=str(spec["name"]),
                type=InputType(spec.get("type", InputType.STRING.value)),
                required=bool(spec.get("required", False)),
                default=spec.get("default"),
                values=tuple(spec.get("values", ())),
                description=str(spec.get("description", "")),
            )
            for spec in data.get("inputs", ())
        ),
    )


# -- the ledger's hash chain -------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """One text per JSON value: sorted keys, no whitespace, UTF-8 as is, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def gate_key(task_execution_id: str, opening: int) -> str:
    """The name a gate's entries are hashed with: stable across exports and database copies."""
    return f"{task_execution_id}#{opening}"


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def entry_body(
    *, gate: str, sequence: int, kind: str, actor: str, created_at: datetime, data: Mapping[str, Any]
) -> dict[str, Any]:
    """What an entry's hash covers (everything but the hashes themselves)."""
    return {
        "gate": gate,
        "sequence": sequence,
        "kind": kind,
        "actor": actor,
        "created_at": _instant(created_at),
        "data": dict(data),
    }


def entry_hash(previous: str, body: Mapping[str, Any]) -> str:
    """sha256 (hex) over the previous entry's hash and the canonical JSON of this entry."""
    return hashlib.sha256((previous + canonical_json(body)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LedgerLink:
    """One stored (or exported) entry, as the verifier sees it."""

    sequence: int
    kind: str
    actor: str
    created_at: datetime
    data: Mapping[str, Any]
    prev_hash: str
    hash: str


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def verify_chain(
    gate: str, links: Sequence[LedgerLink], *, length: int | None = None, head: str | None = None
) -> list[str]:
    """Every way the gate's entries differ from an untouched chain (empty when it is intact).

    An edited entry no longer matches its hash; a deleted one leaves a gap in the sequence and breaks
    the next entry's link; a deleted last entry shows against the `length` and `head` the gate row
    keeps (when given).
    """
    problems: list[str] = []
    previous = GENESIS_HASH
    expected = 1
    for link in sorted(links, key=lambda item: item.sequence):
        if link.sequence != expected:
            problems.append(f"entries {expected}..{link.sequence - 1} are missing (deleted)")
        if link.prev_hash != previous:
            problems.append(
                f"entry {link.sequence} ({link.kind}) does not link to the entry before it: "
                "an earlier entry was changed or deleted"
            )
        body = entry_body(
            gate=gate,
            sequence=link.sequence,
            kind=link.kind,
            actor=link.actor,
            created_at=link.created_at,
            data=_plain(link.data),
        )
        if entry_hash(link.prev_hash, body) != link.hash:
            problems.append(f"entry {link.sequence} ({link.kind}) was changed: it does not match its hash")
        if link.sequence == 1 and link.kind != LedgerKind.REQUESTED:
            problems.append(f"the first entry is {link.kind}, not {LedgerKind.REQUESTED}")
        previous = link.hash
        expected = link.sequence + 1
    if not links:
        problems.append("the gate has no ledger entries")
    if length is not None and expected - 1 != length:
        problems.append(f"the gate records {length} entries but the ledger ends at entry {expected - 1}")
    if head is not None and links and previous != head:
        problems.append("the last entry is not the one the gate records (entries at the end were changed)")
    return problems
