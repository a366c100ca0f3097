"""What the store hands out: frozen, slotted snapshots of rows (ORM rows never leave `queen.store`).

A record is a copy taken inside the caller's transaction; it never reloads or writes anything. JSON
values are made read-only (mappings behind `MappingProxyType`, lists as tuples) so a record cannot be
changed by accident and then mistaken for the stored state.
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from queen.domain.approvals import Channel, GateState, Vote
from queen.domain.definition_parser import parse_job_definition
from queen.domain.job_definition import JobDefinition
from queen.domain.states import JobState, TaskState

__all__ = [
    "ApprovalGateRecord",
    "ApprovalLedgerRecord",
    "ApprovalVoteRecord",
    "ArtifactKind",
    "ArtifactRecord",
    "DefinitionRecord",
    "EventRecord",
    "JobExecutionRecord",
    "JobRequestRecord",
    "TaskExecutionRecord",
]


@dataclass(frozen=True, slots=True)
class DefinitionRecord:
    """One stored version of a job type's definition (its YAML as uploaded, and what the store indexes)."""

    id: str
    organization_id: str
    user_id: str
    job_type: str
    version: int
    digest: str
    yaml: str
    description: str
    cron_trigger: str
    max_concurrency: int | None
    methods: tuple[str, ...]
    tags: tuple[str, ...]
    disabled: bool
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def definition(self) -> JobDefinition:
        """The typed definition, parsed from `yaml` once per (id, digest) per process.

        A stored version never changes, so the parse is cached; it raises `InvalidDefinition` only if the
        parser became stricter since the version was stored.
        """
        return _PARSED.get(self)


@dataclass(frozen=True, slots=True)
class JobRequestRecord:
    """A job request as stored."""

    id: int
    parent_id: int | None
    user_key: str | None
    job_definition_id: str
    job_type: str
    job_version: int
    job_state: JobState
    job_priority: int
    job_group: str
    organization_id: str
    user_id: str
    params: Mapping[str, str]
    scheduled_at: datetime | None
    cron_triggered: bool
    retried: int
    schedule_attempts: int
    wait_reason: str
    error_code: str
    error_message: str
    job_execution_id: str | None
    trace_id: str
    root_span_id: str
    paused_until: datetime | None
    restart_mode: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class JobExecutionRecord:
    """One run of a job request."""

    id: str
    job_request_id: int
    job_type: str
    job_version: int
    job_state: JobState
    exit_code: str
    exit_message: str
    error_code: str
    error_message: str
    contexts: Mapping[str, Any]
    cursor: Mapping[str, Any] | None
    started_at: datetime
    ended_at: datetime | None
    updated_at: datetime
    cpu_secs: float


@dataclass(frozen=True, slots=True)
class TaskExecutionRecord:
    """One task of a job execution, with its latest result."""

    id: str
    job_execution_id: str
    task_type: str
    method: str
    task_state: TaskState
    task_order: int
    allow_failure: bool
    exit_code: str
    exit_message: str
    error_code: str
    error_message: str
    failed_command: str
    ant_id: str
    ant_host: str
    retried: int
    contexts: Mapping[str, Any]
    artifacts: tuple[Any, ...]
    stdout: tuple[str, ...]
    warnings: tuple[str, ...]
    cost_factor: float
    span_id: str
    next_run_at: datetime | None
    deadline_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of a request's event log."""

    id: int
    job_request_id: int
    task_execution_id: str | None
    task_type: str | None
    kind: str
    from_state: str | None
    to_state: str | None
    message: str
    data: Mapping[str, Any]
    created_at: datetime


class ArtifactKind(enum.StrEnum):
    """Why an artifact exists (artifact.proto's ArtifactKind)."""

    TASK = "TASK"  # files a task produced (`artifacts.paths`), uploaded by its Ant
    LOG = "LOG"  # a task execution's console log, stored by the Queen when the task ends
    CACHE = "CACHE"  # a task's `cache` archive, shared by later runs of the job type
    USER = "USER"  # uploaded by a person or a program, not produced by a task


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """One artifact's description; its content is in the object store under (`bucket`, `key`)."""

    id: str
    organization_id: str
    user_id: str
    job_request_id: int | None
    job_execution_id: str | None
    task_execution_id: str | None
    task_type: str
    name: str
    kind: ArtifactKind
    bucket: str
    key: str
    sha256: str
    content_length: int
    content_type: str
    metadata: Mapping[str, str]
    expires_at: datetime | None
    created_at: datetime
    deleted_at: datetime | None


@dataclass(frozen=True, slots=True)
class ApprovalGateRecord:
    """One opening of a MANUAL task's gate: its policy snapshot, what approvers were shown, its timers
    and, once closed, the decision. `version` changes when what is to be approved changed (votes on an
    earlier version no longer count); `revision` changes on every write (the optimistic lock)."""

    id: int
    task_execution_id: str
    opening: int  # 1 for the task execution's first gate; a re-run of the MANUAL task opens the next
    job_request_id: int
    job_execution_id: str
    organization_id: str
    job_type: str
    task_type: str
    description: str
    state: GateState
    version: int
    revision: int
    policy: Mapping[str, Any]
    requester: str
    separation_of_duties_note: str
    artifact_digests: tuple[Mapping[str, Any], ...]
    trace_id: str
    traceparent: str
    sla_step: int  # index of the next SLA rung to fire
    next_due_at: datetime | None  # when that rung fires; None when none is left (or the gate closed)
    deadline_at: datetime | None  # when the closing rung fires, if the ladder has one
    decided_by: str
    decided_channel: Channel | None
    decision_comment: str
    decision_inputs: Mapping[str, Any]
    ledger_length: int
    ledger_head: str
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None


@dataclass(frozen=True, slots=True)
class ApprovalVoteRecord:
    """One vote as cast (append-only); `outcome` is the gate's state right after it."""

    id: int
    gate_id: int
    version: int
    user_id: str
    roles: tuple[str, ...]
    decision: Vote
    comment: str
    inputs: Mapping[str, Any]
    channel: Channel
    idempotency_key: str | None
    outcome: GateState
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApprovalLedgerRecord:
    """One entry of a gate's hash-chained audit ledger (append-only)."""

    id: int
    gate_id: int
    sequence: int
    kind: str
    actor: str
    data: Mapping[str, Any]
    prev_hash: str
    hash: str
    created_at: datetime


class _ParsedDefinitions:
    """A small LRU of parsed definitions keyed by (id, digest); stored versions are immutable."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str], JobDefinition] = OrderedDict()
        # Records may be used from worker threads (asyncio.to_thread); the lock keeps the LRU consistent.
        self._lock = threading.Lock()

    def get(self, record: DefinitionRecord) -> JobDefinition:
        key = (record.id, record.digest)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        parsed = parse_job_definition(record.yaml, source=f"{record.job_type} v{record.version}")
        with self._lock:
            self._items[key] = parsed
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return parsed


_PARSED = _ParsedDefinitions(size=256)
