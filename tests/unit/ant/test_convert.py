"""Wire messages <-> the Ant's types (ant._convert)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.duration_pb2 import Duration

from ant._convert import (
    InvalidTaskRequest,
    artifact_from_proto,
    attempt_from_proto,
    heartbeat_frame,
    log_lines_frame,
    method_from_proto,
    method_to_proto,
    register_frame,
    response_from_result,
    session_from_proto,
    upload_metadata,
)
from ant.artifacts import ArtifactOwner
from ant.attempt import AttemptRequest
from ant.executors import (
    ArtifactRef,
    ContainerSpec,
    ExecutionResult,
    ExecutionStatus,
    LogStream,
    Method,
    PullPolicy,
    TaskSpec,
    Timings,
)
from ant.log_buffer import LogEntry
from formicary.v1 import (
    ant_service_pb2,
    artifact_pb2,
    container_pb2,
    log_line_pb2,
    state_pb2,
    task_pb2,
)

pytestmark = pytest.mark.unit

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def full_request() -> task_pb2.TaskRequest:
    return task_pb2.TaskRequest(
        job_request_id=42,
        job_type="secure-go-cicd",
        job_type_version="3",
        task_execution_id="te-1",
        task_type="build",
        correlation_id="corr-1",
        task_retry=2,
        job_retry=1,
        allow_failure=True,
        tags=["linux"],
        before_script=["echo before"],
        script=["echo one", "echo two"],
        after_script=["echo after"],
        timeout=Duration(seconds=90, nanos=500_000_000),
        variables={
            "PLAIN": task_pb2.VariableValue(value="v"),
            "TOKEN": task_pb2.VariableValue(value="s3cr3t", secret=True),
        },
        report_stdout=True,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        executor_opts=task_pb2.ExecutorOptions(
            name="frm-42-build-2",
            method=task_pb2.TASK_METHOD_KUBERNETES,
            environment={"MODE": "ci"},
            working_dir="/src",
            main_container=container_pb2.ContainerDefinition(
                image="alpine:latest",
                image_pull_policy="Always",
                user="1000:1000",
                resources=container_pb2.ContainerResources(cpu_limit="500m", memory_limit="256Mi"),
            ),
            privileged=True,
            node_selector={"disk": "ssd"},
            pod_labels={"team": "ops"},
            headers={"Accept": "text/plain"},
            query_params={"q": "1"},
            url="http://example.invalid/",
            dependent_artifact_ids=["a-1", "a-2"],
            artifacts=artifact_pb2.ArtifactsConfig(paths=["dist/*.whl"]),
            cost_factor=2.5,
        ),
    )


def test_every_ant_method_maps_both_ways() -> None:
    for method in Method:
        assert method_from_proto(method_to_proto(method)) is method


@pytest.mark.parametrize(
    "value",
    [
        task_pb2.TASK_METHOD_UNSPECIFIED,
        task_pb2.TASK_METHOD_MANUAL,
        task_pb2.TASK_METHOD_JOB_FORK,
        task_pb2.TASK_METHOD_EXPIRE_ARTIFACTS,
        task_pb2.TASK_METHOD_WEBSOCKET,
        999,
    ],
)
def test_methods_an_ant_never_runs_have_no_mapping(value: int) -> None:
    assert method_from_proto(value) is None


def test_a_task_request_becomes_an_attempt() -> None:
    attempt = attempt_from_proto(full_request(), receive_time=T0)
    spec = attempt.spec
    assert spec.task_execution_id == "te-1"
    assert spec.job_request_id == 42
    assert spec.task_type == "build"
    assert spec.job_type == "secure-go-cicd"
    assert spec.method is Method.KUBERNETES
    assert spec.before_script == ("echo before",)
    assert spec.script == ("echo one", "echo two")
    assert spec.after_script == ("echo after",)
    assert spec.timeout == timedelta(seconds=90, milliseconds=500)
    assert spec.variables["TOKEN"].secret
    assert spec.variables["PLAIN"].value == "v"
    assert not spec.variables["PLAIN"].secret
    assert spec.secrets == ("s3cr3t",)
    assert spec.environment == {"MODE": "ci"}
    assert spec.working_dir == "/src"
    assert spec.executor_name == "frm-42-build-2"
    assert spec.url == "http://example.invalid/"
    assert spec.headers == {"Accept": "text/plain"}
    assert spec.query == {"q": "1"}
    assert spec.allow_failure
    assert (spec.task_retry, spec.job_retry) == (2, 1)
    assert spec.cost_factor == 2.5
    assert spec.tags == ("linux",)
    container = spec.container
    assert container is not None
    assert container.image == "alpine:latest"
    assert container.pull_policy is PullPolicy.ALWAYS
    assert container.user == "1000:1000"
    assert container.resources.cpu_limit == "500m"
    assert container.resources.memory_limit == "256Mi"
    assert container.privileged
    assert container.node_selector == {"disk": "ssd"}
    assert container.pod_labels == {"team": "ops"}
    assert attempt.correlation_id == "corr-1"
    assert attempt.job_type_version == "3"
    assert attempt.report_stdout
    assert attempt.dependent_artifact_ids == ("a-1", "a-2")
    assert attempt.artifact_paths == ("dist/*.whl",)
    assert attempt.traceparent.startswith("00-")
    assert attempt.receive_time == T0
    assert attempt.ignored_options == ()


def test_options_not_implemented_are_listed() -> None:
    request = full_request()
    request.executor_opts.services.add(name="db")
    request.executor_opts.main_container.volumes.add(name="v", mount_path="/data", host_path="/srv")
    request.executor_opts.cache.SetInParent()
    ignored = attempt_from_proto(request, receive_time=T0).ignored_options
    assert len(ignored) == 3
    assert any("services" in note for note in ignored)
    assert any("volumes" in note for note in ignored)
    assert any("cache" in note for note in ignored)


def test_unset_fields_mean_no_timeout_and_no_container() -> None:
    request = task_pb2.TaskRequest(
        task_execution_id="te-2", executor_opts=task_pb2.ExecutorOptions(method=task_pb2.TASK_METHOD_SHELL)
    )
    spec = attempt_from_proto(request, receive_time=T0).spec
    assert spec.timeout is None
    assert spec.timeout_seconds is None
    assert spec.container is None
    assert spec.resource_name() == "frm-0--0"


def test_a_queen_only_method_is_refused() -> None:
    request = task_pb2.TaskRequest(executor_opts=task_pb2.ExecutorOptions(method=task_pb2.TASK_METHOD_MANUAL))
    with pytest.raises(InvalidTaskRequest, match="TASK_METHOD_MANUAL"):
        attempt_from_proto(request, receive_time=T0)


def test_an_unknown_pull_policy_is_refused() -> None:
    request = task_pb2.TaskRequest(
        executor_opts=task_pb2.ExecutorOptions(
            method=task_pb2.TASK_METHOD_DOCKER,
            main_container=container_pb2.ContainerDefinition(image="x", image_pull_policy="Sometimes"),
        )
    )
    with pytest.raises(InvalidTaskRequest, match="Sometimes"):
        attempt_from_proto(request, receive_time=T0)


def _attempt(report_stdout: bool) -> AttemptRequest:
    spec = TaskSpec(
        task_execution_id="te-1",
        job_request_id=42,
        task_type="build",
        method=Method.DOCKER,
        job_type="j",
        container=ContainerSpec(image="busybox"),
    )
    return AttemptRequest(
        spec=spec, correlation_id="corr-1", job_type_version="7", report_stdout=report_stdout
    )


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (ExecutionStatus.COMPLETED, state_pb2.TASK_STATE_COMPLETED),
        (ExecutionStatus.FAILED, state_pb2.TASK_STATE_FAILED),
        (ExecutionStatus.CANCELLED, state_pb2.TASK_STATE_CANCELLED),
    ],
)
def test_a_result_becomes_a_task_response(status: ExecutionStatus, state: int) -> None:
    result = ExecutionResult(
        status=status,
        exit_code="3",
        exit_message="Error",
        error_code="ERR_X",
        error_message="boom",
        failed_command="false",
        stdout=("a", "b"),
        task_context={"k": "v"},
        job_context={"j": "w"},
        warnings=("careful",),
        timings=Timings(receive_time=T0, finish_time=T0 + timedelta(seconds=3)),
        cost_factor=1.5,
        namespace="ns",
        artifacts=(ArtifactRef(id="a1", name="out.txt", sha256="0" * 64, content_length=3),),
    )
    response = response_from_result(_attempt(True), result, ant_id="ant-1", host="h", tags=["linux"])
    assert response.status == state
    assert response.task_execution_id == "te-1"
    assert response.correlation_id == "corr-1"
    assert response.job_request_id == 42
    assert response.job_type == "j"
    assert response.job_type_version == "7"
    assert response.task_type == "build"
    assert (response.ant_id, response.host, list(response.tags)) == ("ant-1", "h", ["linux"])
    assert (response.exit_code, response.exit_message) == ("3", "Error")
    assert (response.error_code, response.error_message, response.failed_command) == (
        "ERR_X",
        "boom",
        "false",
    )
    assert list(response.stdout) == ["a", "b"]
    assert dict(response.task_context) == {"k": "v"}
    assert dict(response.job_context) == {"j": "w"}
    assert list(response.warnings) == ["careful"]
    assert response.cost_factor == 1.5
    assert response.namespace == "ns"
    assert response.artifacts[0].name == "out.txt"
    assert response.artifacts[0].kind == artifact_pb2.ARTIFACT_KIND_TASK
    assert response.timings.receive_time.ToDatetime(tzinfo=UTC) == T0
    assert not response.timings.HasField("start_time")


def test_stdout_is_only_reported_when_asked() -> None:
    result = ExecutionResult(status=ExecutionStatus.COMPLETED, exit_code="0", stdout=("a",))
    response = response_from_result(_attempt(False), result, ant_id="a", host="h", tags=[])
    assert list(response.stdout) == []


def test_registered_gives_session_terms_with_defaults_for_unset_intervals() -> None:
    registered = ant_service_pb2.ConnectResponse.Registered(
        session_id="s1",
        resumed=True,
        resumed_tasks=[
            ant_service_pb2.ConnectResponse.Registered.ResumedTask(task_execution_id="t", last_log_sequence=9)
        ],
        heartbeat_interval=Duration(seconds=5),
        config={"x": "y"},
    )
    terms = session_from_proto(registered)
    assert terms.session_id == "s1"
    assert terms.resumed
    assert dict(terms.resumed_tasks) == {"t": 9}
    assert terms.heartbeat_interval == timedelta(seconds=5)
    assert terms.heartbeat_timeout == timedelta(seconds=60)
    assert terms.ping_interval is None
    assert dict(terms.config) == {"x": "y"}


def test_register_carries_identity_and_resume() -> None:
    fresh = register_frame(
        ant_id="a",
        methods=[Method.SHELL, Method.DOCKER],
        tags=["linux"],
        max_capacity=3,
        version="0.1.0",
        labels={"zone": "z"},
        host="h",
        resume=None,
    ).register
    assert list(fresh.methods) == [task_pb2.TASK_METHOD_SHELL, task_pb2.TASK_METHOD_DOCKER]
    assert (fresh.ant_id, fresh.max_capacity, fresh.version, fresh.host) == ("a", 3, "0.1.0", "h")
    assert fresh.protocol_version == 3
    assert dict(fresh.labels) == {"zone": "z"}
    assert not fresh.HasField("resume")
    assert fresh.credential == ""

    again = register_frame(
        ant_id="a", methods=[Method.SHELL], tags=[], max_capacity=1, version="v", labels={}, host="h",
        resume=("s1", 7, ["t1", "t2"]),
    ).register  # fmt: skip
    assert again.resume.session_id == "s1"
    assert again.resume.last_acked_sequence == 7
    assert list(again.resume.running_task_execution_ids) == ["t1", "t2"]


def test_heartbeat_and_log_frames() -> None:
    beat = heartbeat_frame(held=["t1"], free_slots=1, load=0.25, last_acked_sequence=4).heartbeat
    assert (list(beat.running_task_execution_ids), beat.free_slots, beat.load, beat.last_acked_sequence) == (
        ["t1"],
        1,
        0.25,
        4,
    )
    entries = [LogEntry.make(1, T0, LogStream.STDOUT, "a"), LogEntry.make(2, T0, LogStream.SYSTEM, "b")]
    frame = log_lines_frame("t1", 2, entries).log_lines
    assert (frame.task_execution_id, frame.task_retry) == ("t1", 2)
    assert [(line.sequence, line.stream, line.text) for line in frame.lines] == [
        (1, log_line_pb2.LOG_STREAM_STDOUT, "a"),
        (2, log_line_pb2.LOG_STREAM_SYSTEM, "b"),
    ]
    assert frame.lines[0].time.ToDatetime(tzinfo=UTC) == T0


def test_artifact_retention_is_read_from_the_request() -> None:
    request = full_request()
    assert attempt_from_proto(request, receive_time=T0).artifact_retention is None
    request.executor_opts.artifacts.retention_duration.FromTimedelta(timedelta(days=3))
    assert attempt_from_proto(request, receive_time=T0).artifact_retention == timedelta(days=3)


def test_a_stored_artifact_goes_back_into_the_response_as_the_queen_described_it() -> None:
    stored = artifact_pb2.Artifact(
        id="a-1",
        name="out/report.txt",
        kind=artifact_pb2.ARTIFACT_KIND_TASK,
        bucket="artifacts",
        key="org/42/build/a-1/out/report.txt",
        sha256="ab" * 32,
        content_length=12,
        content_type="text/plain",
        job_request_id=42,
        job_execution_id="je-1",
        task_execution_id="te-1",
        task_type="build",
        organization_id="org",
        user_id="ant-1",
        metadata={"git_sha": "3f2a"},
    )
    stored.create_time.FromDatetime(T0)
    ref = artifact_from_proto(stored)
    assert ref.create_time == T0
    assert ref.expiry_time is None
    result = ExecutionResult(status=ExecutionStatus.COMPLETED, exit_code="0", artifacts=(ref,))
    response = response_from_result(_attempt(False), result, ant_id="a", host="h", tags=[])
    assert list(response.artifacts) == [stored]


def test_upload_metadata_describes_a_task_artifact() -> None:
    owner = ArtifactOwner(job_request_id=42, task_execution_id="te-1", task_type="build")
    first = upload_metadata("out/report.txt", owner, content_type="text/plain", content_length=12)
    assert first.WhichOneof("content") == "metadata"
    meta = first.metadata
    assert (meta.name, meta.kind, meta.content_type) == (
        "out/report.txt",
        artifact_pb2.ARTIFACT_KIND_TASK,
        "text/plain",
    )
    assert (meta.job_request_id, meta.task_execution_id, meta.task_type) == (42, "te-1", "build")
    assert (meta.content_length, meta.sha256) == (12, "")  # the digest is checked on the answer
    assert not meta.HasField("retention_duration")
    kept = upload_metadata(
        "x", replace(owner, retention=timedelta(hours=1)), content_type="", content_length=0
    )
    assert kept.metadata.retention_duration.ToTimedelta() == timedelta(hours=1)
