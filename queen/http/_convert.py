"""Records of the service layer as the REST gateway's JSON documents (`queen.http.schemas`).

The JSON counterpart of `queen.api._convert`: names follow Formicary's JSON (`job_state`, `created_at`,
`execution.tasks[].task_state`), enums are written by name (`COMPLETED`), durations as the definition
language writes them (`1m30s`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from google.protobuf import json_format

from queen.ants.registry import AntSnapshot
from queen.api._convert import validation_problem
from queen.domain import job_definition as jd
from queen.domain.approvals import Vote, ladder
from queen.domain.durations import format_duration
from queen.domain.errors import InvalidArgument
from queen.domain.problems import Problem
from queen.http import schemas
from queen.services.admin import Health
from queen.services.approvals import DecideResult, GateView
from queen.services.definitions import UploadResult
from queen.services.requests import RequestDetails
from queen.store import DefinitionRecord, JobExecutionRecord, JobRequestRecord, TaskExecutionRecord
from queen.store.records import ArtifactRecord

__all__ = [
    "ant",
    "approval",
    "approval_decision",
    "artifact",
    "health",
    "job_definition",
    "job_request",
    "problem",
    "problem_detail",
    "uploaded_definition",
]

log = structlog.get_logger(__name__)

ARTIFACT_DOWNLOAD_PATH = "/api/artifacts/{id}/download"


def _duration(value: timedelta | None) -> str | None:
    return None if value is None else format_duration(value)


def _plain(value: Any) -> Any:
    """Frozen record data (MappingProxyType, tuples) as JSON-ready dicts and lists."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, timedelta):
        return format_duration(value)
    return value


def _epoch(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


# -- validation problems -------------------------------------------------------------------------------


def problem_detail(problem: Problem) -> dict[str, Any]:
    """A problem exactly as the gRPC status carries it (`formicary.v1.ValidationProblem`), in the
    protobuf JSON mapping with its `@type`: the REST and gRPC details are one and the same message."""
    message = validation_problem(problem)
    body = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return {"@type": f"type.googleapis.com/{message.DESCRIPTOR.full_name}", **body}


def problem(value: Problem) -> schemas.ValidationProblemOut:
    body = problem_detail(value)
    body.pop("@type")
    return schemas.ValidationProblemOut.model_validate(body)


# -- job definitions -----------------------------------------------------------------------------------


def _approval_policy(policy: jd.ApprovalPolicy) -> schemas.ApprovalPolicyOut:
    return schemas.ApprovalPolicyOut(
        min_approvals=policy.min_approvals,
        allowed_users=list(policy.allowed_users),
        allowed_roles=list(policy.allowed_roles),
        allow_self_approval=policy.allow_self_approval,
        sla_deadline=_duration(policy.sla_deadline),
        timeout_action=policy.timeout_action.value if policy.timeout_action else None,
        inputs=[
            schemas.ApprovalInputOut(
                name=i.name,
                type=i.type.value,
                required=i.required,
                description=i.description,
                values=list(i.values),
            )
            for i in policy.inputs
        ],
        require_unanimous=policy.require_unanimous,
        reject_vetoes=policy.reject_vetoes,
        quorum=[schemas.ApprovalQuorumOut(group=rule.group, min=rule.min) for rule in policy.quorum],
        escalation_recipients=list(policy.escalation_recipients),
        escalation_message=policy.escalation_message,
        sla=[
            schemas.ApprovalSlaStepOut(
                after=format_duration(step.after),
                action=step.action.value,
                to=list(step.recipients),
                message=step.message,
            )
            for step in ladder(policy)
        ],
    )


def _task_definition(task: jd.TaskDefinition, order: int) -> schemas.TaskDefinitionOut:
    container = None
    if task.container is not None:
        spec = task.container
        container = schemas.ContainerOut(
            image=spec.image,
            image_pull_policy=spec.image_pull_policy,
            entrypoint=list(spec.entrypoint),
            cpu_request=spec.cpu_request,
            cpu_limit=spec.cpu_limit,
            memory_request=spec.memory_request,
            memory_limit=spec.memory_limit,
        )
    return schemas.TaskDefinitionOut(
        task_type=task.task_type,
        method=task.method.value,
        description=task.description,
        task_order=order,
        script=list(task.script),
        before_script=list(task.before_script),
        after_script=list(task.after_script),
        container=container,
        variables=_plain(task.variables),
        environment=dict(task.environment),
        tags=list(task.tags),
        timeout=_duration(task.timeout),
        retry=task.retry,
        delay_between_retries=_duration(task.delay_between_retries),
        allow_failure=task.allow_failure,
        always_run=task.always_run,
        allow_start_if_completed=task.allow_start_if_completed,
        on_completed=task.on_completed,
        on_failed=task.on_failed,
        on_exit_code=dict(task.on_exit_code),
        dependencies=list(task.dependencies),
        artifacts=schemas.ArtifactsConfigOut(
            paths=list(task.artifacts.paths), expires_after=_duration(task.artifacts.expires_after)
        ),
        except_=task.except_,
        url=task.url,
        headers=dict(task.headers),
        fork_job_type=task.fork_job_type,
        await_forked_tasks=list(task.await_forked_tasks),
        report_stdout=task.report_stdout,
        approval_policy=_approval_policy(task.approval_policy) if task.approval_policy else None,
    )


def _definition_fields(record: DefinitionRecord) -> dict[str, Any]:
    try:
        parsed: jd.JobDefinition | None = record.definition()
    except InvalidArgument:
        # Stored before the parser became stricter: show what is stored rather than fail every listing.
        log.warning("stored_definition_unparsable", definition_id=record.id, job_type=record.job_type)
        parsed = None
    return {
        "id": record.id,
        "job_type": record.job_type,
        "version": record.version,
        "sem_version": parsed.sem_version if parsed else "",
        "description": record.description,
        "platform": parsed.platform if parsed else "",
        "cron_trigger": record.cron_trigger,
        "timeout": _duration(parsed.timeout) if parsed else None,
        "retry": parsed.retry if parsed else 0,
        "hard_reset_after_retries": parsed.hard_reset_after_retries if parsed else 0,
        "delay_between_retries": _duration(parsed.delay_between_retries) if parsed else None,
        "max_concurrency": record.max_concurrency,
        "disabled": record.disabled,
        "public_plugin": parsed.public_plugin if parsed else False,
        "required_params": list(parsed.required_params) if parsed else [],
        "tags": sorted(parsed.all_tags) if parsed else list(record.tags),
        "methods": list(record.methods),
        "organization_id": record.organization_id,
        "user_id": record.user_id,
        "raw_yaml": record.yaml,
        "tasks": [_task_definition(t, n) for n, t in enumerate(parsed.tasks)] if parsed else [],
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def job_definition(record: DefinitionRecord) -> schemas.JobDefinitionOut:
    return schemas.JobDefinitionOut(**_definition_fields(record))


def uploaded_definition(result: UploadResult) -> schemas.UploadedDefinitionOut:
    assert result.definition is not None, "an upload that is not validate_only stores a definition"
    return schemas.UploadedDefinitionOut(
        **_definition_fields(result.definition),
        new_version=result.created,
        warnings=[problem(p) for p in result.warnings],
    )


# -- artifacts -----------------------------------------------------------------------------------------


def artifact(record: ArtifactRecord) -> schemas.ArtifactOut:
    return schemas.ArtifactOut(
        id=record.id,
        name=record.name,
        kind=record.kind.value,
        sha256=record.sha256,
        content_type=record.content_type,
        content_length=record.content_length,
        job_request_id=record.job_request_id,
        job_execution_id=record.job_execution_id,
        task_execution_id=record.task_execution_id,
        task_type=record.task_type,
        bucket=record.bucket,
        organization_id=record.organization_id,
        user_id=record.user_id,
        metadata=dict(record.metadata),
        expires_at=record.expires_at,
        created_at=record.created_at,
        url=ARTIFACT_DOWNLOAD_PATH.format(id=record.id),
    )


def _task_artifact(
    data: Mapping[str, Any], task: TaskExecutionRecord, job_request_id: int
) -> schemas.ArtifactOut:
    """An artifact as a task's result lists it (a summary kept with the task execution)."""
    artifact_id = str(data.get("id", ""))
    length = data.get("content_length", 0)
    return schemas.ArtifactOut(
        id=artifact_id,
        name=str(data.get("name", "")),
        kind=str(data.get("kind", "TASK")),
        sha256=str(data.get("sha256", "")),
        content_type=str(data.get("content_type", "")),
        content_length=length if isinstance(length, int) and not isinstance(length, bool) else 0,
        job_request_id=job_request_id,
        job_execution_id=task.job_execution_id,
        task_execution_id=task.id,
        task_type=task.task_type,
        bucket=str(data.get("bucket", "")),
        url=ARTIFACT_DOWNLOAD_PATH.format(id=artifact_id),
    )


# -- job requests --------------------------------------------------------------------------------------


def _task_execution(task: TaskExecutionRecord, job_request_id: int) -> schemas.TaskExecutionOut:
    return schemas.TaskExecutionOut(
        id=task.id,
        job_execution_id=task.job_execution_id,
        task_type=task.task_type,
        method=task.method,
        task_state=task.task_state.value,
        task_order=task.task_order,
        allow_failure=task.allow_failure,
        exit_code=task.exit_code,
        exit_message=task.exit_message,
        error_code=task.error_code,
        error_message=task.error_message,
        failed_command=task.failed_command,
        ant_id=task.ant_id,
        ant_host=task.ant_host,
        retried=task.retried,
        contexts=_plain(task.contexts),
        artifacts=[_task_artifact(a, task, job_request_id) for a in task.artifacts if isinstance(a, Mapping)],
        cost_factor=task.cost_factor,
        stdout=list(task.stdout),
        warnings=list(task.warnings),
        started_at=task.started_at,
        ended_at=task.ended_at,
        updated_at=task.updated_at,
    )


def _job_execution(
    execution: JobExecutionRecord, tasks: Iterable[TaskExecutionRecord], request: JobRequestRecord
) -> schemas.JobExecutionOut:
    return schemas.JobExecutionOut(
        id=execution.id,
        job_request_id=execution.job_request_id,
        job_type=execution.job_type,
        job_version=str(execution.job_version),
        job_state=execution.job_state.value,
        organization_id=request.organization_id,
        user_id=request.user_id,
        exit_code=execution.exit_code,
        exit_message=execution.exit_message,
        error_code=execution.error_code,
        error_message=execution.error_message,
        contexts=_plain(execution.contexts),
        tasks=[_task_execution(task, request.id) for task in tasks],
        started_at=execution.started_at,
        ended_at=execution.ended_at,
        updated_at=execution.updated_at,
        cpu_secs=execution.cpu_secs,
    )


def job_request(
    request: JobRequestRecord | RequestDetails,
) -> schemas.JobRequestOut:
    """A request; given the service's RequestDetails, with its current execution and that one's tasks."""
    execution = None
    if isinstance(request, RequestDetails):
        if request.execution is not None:
            execution = _job_execution(request.execution, request.tasks, request.request)
        request = request.request
    return schemas.JobRequestOut(
        id=request.id,
        parent_id=request.parent_id,
        user_key=request.user_key,
        job_definition_id=request.job_definition_id,
        job_execution_id=request.job_execution_id,
        organization_id=request.organization_id,
        user_id=request.user_id,
        job_type=request.job_type,
        job_version=str(request.job_version),
        job_state=request.job_state.value,
        job_group=request.job_group,
        job_priority=request.job_priority,
        params=dict(request.params),
        scheduled_at=request.scheduled_at,
        cron_triggered=request.cron_triggered,
        retried=request.retried,
        schedule_attempts=request.schedule_attempts,
        error_code=request.error_code,
        error_message=request.error_message,
        wait_reason=request.wait_reason,
        created_at=request.created_at,
        updated_at=request.updated_at,
        started_at=request.started_at,
        ended_at=request.ended_at,
        execution=execution,
    )


# -- approvals -----------------------------------------------------------------------------------------

# Formicary's words for a decision, as its clients send them (`Vote.from_text` reads them back).
_DECISION_WORDS = {Vote.APPROVE: "APPROVED", Vote.REJECT: "REJECTED"}


def _input_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {str(name): _plain(value) for name, value in values.items()}


def approval(view: GateView) -> schemas.ApprovalOut:
    """A gate as the caller sees it (the JSON counterpart of `approval_service.approval_to_proto`)."""
    return schemas.ApprovalOut(**_approval_fields(view))


def approval_decision(result: DecideResult) -> schemas.ApprovalDecisionOut:
    return schemas.ApprovalDecisionOut(**_approval_fields(result.view), duplicate=result.duplicate)


def _approval_fields(view: GateView) -> dict[str, Any]:
    gate = view.gate
    current = [vote for vote in view.votes if vote.version == gate.version]
    next_due = gate.next_due_at if view.next_step is not None else None
    return {
        "job_request_id": gate.job_request_id,
        "task_type": gate.task_type,
        "task_execution_id": gate.task_execution_id,
        "job_type": gate.job_type,
        "organization_id": gate.organization_id,
        "description": gate.description,
        "state": view.state.value,
        "version": gate.version,
        "policy": _approval_policy(view.policy),
        "policy_summary": view.summary,
        "progress": view.progress,
        "tally": schemas.ApprovalTallyOut(
            approvals=sum(1 for vote in current if vote.decision is Vote.APPROVE),
            rejections=sum(1 for vote in current if vote.decision is Vote.REJECT),
            required_approvals=max(view.policy.min_approvals, 1),
        ),
        "votes": [
            schemas.ApprovalVoteOut(
                user_id=vote.user_id,
                roles=list(vote.roles),
                decision=_DECISION_WORDS[vote.decision],
                comments=vote.comment,
                inputs=_input_values(vote.inputs),
                channel=vote.channel.value,
                gate_version=vote.version,
                created_at=vote.created_at,
            )
            for vote in view.votes
        ],
        "requester": gate.requester,
        "separation_of_duties_note": view.separation_of_duties_note,
        "artifact_digests": [
            schemas.ArtifactDigestOut(
                artifact_id=str(digest.get("artifact_id", "")),
                name=str(digest.get("name", "")),
                sha256=str(digest.get("sha256", "")),
                url=ARTIFACT_DOWNLOAD_PATH.format(id=digest["artifact_id"])
                if digest.get("artifact_id")
                else "",
            )
            for digest in gate.artifact_digests
        ],
        "caller_can_decide": view.caller_can_decide,
        "caller_cannot_decide_reason": view.caller_cannot_decide_reason,
        "created_at": gate.created_at,
        "updated_at": gate.updated_at,
        "deadline_at": gate.deadline_at,
        "next_sla_at": next_due,
        "next_sla_action": view.next_step.action.value if view.next_step and next_due else None,
        "decided_at": gate.decided_at,
        "decided_by": gate.decided_by,
        "decided_channel": gate.decided_channel.value if gate.decided_channel else None,
        "decision_comments": gate.decision_comment if not view.state.is_open else "",
        "decision_inputs": _input_values(gate.decision_inputs),
        "trace_id": gate.trace_id,
    }


# -- operators -----------------------------------------------------------------------------------------


def ant(snapshot: AntSnapshot) -> schemas.AntOut:
    return schemas.AntOut(
        ant_id=snapshot.ant_id,
        connected=snapshot.connected,
        host=snapshot.host,
        version=snapshot.version,
        methods=list(snapshot.methods),
        tags=list(snapshot.tags),
        labels=dict(snapshot.labels),
        max_capacity=snapshot.max_capacity,
        current_load=snapshot.running,
        free_slots=snapshot.free_slots,
        load=snapshot.load,
        session_id=snapshot.session_id,
        ant_started_at=_epoch(snapshot.connected_at),
        updated_at=_epoch(snapshot.last_heartbeat_at),
    )


def health(value: Health) -> schemas.HealthOut:
    return schemas.HealthOut(
        healthy=value.healthy,
        version=value.version,
        scheduler_leader=value.scheduler_leader,
        started_at=value.started_at,
        components=[
            schemas.ComponentHealthOut(
                name=c.name, healthy=c.healthy, message=c.message, checked_at=c.checked_at
            )
            for c in value.components
        ],
    )
