"""JobDefinitionService through a real Queen: upload, no-op re-upload, validation details, lookups,
versions, paging and filters, disable/enable, delete."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from formicary.v1 import job_definition_pb2, task_pb2
from formicary.v1 import job_definition_service_pb2 as pb
from queen.app import Queen

from .conftest import PLAYBOOKS, SHELL_YAML, Api, failure, playbook

pytestmark = pytest.mark.integration


async def job_types(api: Api, **filters: Any) -> list[str]:
    listed = await api.definitions.ListJobDefinitions(pb.ListJobDefinitionsRequest(**filters))
    return [d.job_type for d in listed.job_definitions]


async def test_upload_read_disable_enable_delete(api: Api) -> None:
    yaml = playbook("secure-go-cicd.yaml")
    uploaded = await api.upload(yaml)
    definition = uploaded.job_definition
    assert uploaded.new_version
    assert (definition.job_type, definition.version, definition.yaml) == ("secure-go-cicd", 1, yaml)
    assert [t.task_type for t in definition.tasks][:2] == ["build", "security-scan"]
    assert definition.tasks[0].method == task_pb2.TASK_METHOD_KUBERNETES
    assert definition.tasks[0].container.image == "golang:1.24-alpine"
    assert definition.tasks[3].on_exit_code == {
        "APPROVED": "promote-production",
        "REJECTED": "rollback-staging",
    }
    assert task_pb2.TASK_METHOD_MANUAL in definition.methods
    assert definition.HasField("create_time")
    # the unquoted `: ` on line 34 is a warning: reported, not fatal
    assert [(p.severity, p.line) for p in uploaded.problems] == [
        (job_definition_pb2.VALIDATION_SEVERITY_WARNING, 34)
    ]

    again = await api.upload(yaml)
    assert not again.new_version
    assert (again.job_definition.id, again.job_definition.version) == (definition.id, 1)

    by_id = await api.definitions.GetJobDefinition(pb.GetJobDefinitionRequest(id=definition.id))
    by_type = await api.definitions.GetJobDefinition(pb.GetJobDefinitionRequest(job_type="secure-go-cicd"))
    by_version = await api.definitions.GetJobDefinition(
        pb.GetJobDefinitionRequest(job_type="secure-go-cicd", version=1)
    )
    assert by_id.job_definition == by_type.job_definition == by_version.job_definition == definition

    changed = await api.upload(yaml.replace("Pipeline finished.", "Pipeline done."))
    assert changed.new_version
    assert changed.job_definition.version == 2
    versions = await api.definitions.ListJobDefinitionVersions(
        pb.ListJobDefinitionVersionsRequest(job_type="secure-go-cicd")
    )
    assert [d.version for d in versions.job_definitions] == [2, 1]
    assert not versions.next_page_token

    disabled = await api.definitions.DisableJobDefinition(
        pb.DisableJobDefinitionRequest(job_type="secure-go-cicd")
    )
    assert disabled.job_definition.disabled
    assert disabled.job_definition.version == 2
    assert await job_types(api) == []
    assert await job_types(api, include_disabled=True) == ["secure-go-cicd"]
    enabled = await api.definitions.EnableJobDefinition(
        pb.EnableJobDefinitionRequest(job_type="secure-go-cicd")
    )
    assert not enabled.job_definition.disabled
    assert await job_types(api) == ["secure-go-cicd"]

    await api.definitions.DeleteJobDefinition(pb.DeleteJobDefinitionRequest(job_type="secure-go-cicd"))
    assert await job_types(api, include_disabled=True) == []
    gone = await failure(
        api.definitions.GetJobDefinition(pb.GetJobDefinitionRequest(job_type="secure-go-cicd"))
    )
    assert gone.code is grpc.StatusCode.NOT_FOUND
    assert gone.info.reason == "NOT_FOUND"
    again_gone = await failure(
        api.definitions.DeleteJobDefinition(pb.DeleteJobDefinitionRequest(job_type="secure-go-cicd"))
    )
    assert again_gone.code is grpc.StatusCode.NOT_FOUND


async def test_invalid_upload_fails_with_its_problems_and_stores_nothing(api: Api) -> None:
    await api.upload(playbook("secure-go-cicd.yaml"))
    before = await api.definitions.ListJobDefinitions(pb.ListJobDefinitionsRequest(include_disabled=True))

    # the DR playbook as the brief published it: line 21 has an unquoted `: ` inside a script line
    failed = await failure(api.upload((PLAYBOOKS / "aws-region-failover.as-published.yaml").read_text()))

    assert failed.code is grpc.StatusCode.INVALID_ARGUMENT
    assert failed.info.reason == "INVALID_DEFINITION"
    problems = failed.unpacked(job_definition_pb2.ValidationProblem)
    assert problems, failed
    first = problems[0]
    assert (first.line, first.column, first.severity) == (
        21,
        38,
        job_definition_pb2.VALIDATION_SEVERITY_ERROR,
    )
    assert first.code == "colon_in_plain_scalar"
    assert first.offending_text.startswith('- echo \'{"aws_instance.dr_server"')
    assert first.fix.startswith("quote the whole value")
    assert "21:38" in failed.message

    after = await api.definitions.ListJobDefinitions(pb.ListJobDefinitionsRequest(include_disabled=True))
    assert after == before
    missing = await failure(
        api.definitions.ListJobDefinitionVersions(
            pb.ListJobDefinitionVersionsRequest(job_type="aws-region-failover")
        )
    )
    assert missing.code is grpc.StatusCode.NOT_FOUND


async def test_validate_only_returns_the_parsed_definition_and_stores_nothing(api: Api) -> None:
    checked = await api.definitions.UploadJobDefinition(
        pb.UploadJobDefinitionRequest(yaml=playbook("aws-region-failover.yaml"), validate_only=True)
    )
    assert not checked.new_version
    assert (checked.job_definition.id, checked.job_definition.version) == ("", 0)
    assert checked.job_definition.job_type == "aws-region-failover"
    assert checked.job_definition.tasks[2].method == task_pb2.TASK_METHOD_MANUAL
    assert await job_types(api, include_disabled=True) == []


async def test_list_pages_and_filters(api: Api) -> None:
    for yaml in (playbook("secure-go-cicd.yaml"), playbook("aws-region-failover.yaml"), SHELL_YAML):
        await api.upload(yaml)

    seen: list[str] = []
    token = ""
    while True:
        page = await api.definitions.ListJobDefinitions(
            pb.ListJobDefinitionsRequest(page_size=2, page_token=token)
        )
        seen += [d.job_type for d in page.job_definitions]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["aws-region-failover", "secure-go-cicd", "shell-hello"]

    assert await job_types(api, job_type_contains="SECURE") == ["secure-go-cicd"]
    assert await job_types(api, method=task_pb2.TASK_METHOD_SHELL) == ["shell-hello"]
    assert await job_types(api, method=task_pb2.TASK_METHOD_MANUAL) == [
        "aws-region-failover",
        "secure-go-cicd",
    ]
    assert await job_types(api, tags=["gpu"]) == []

    first = await api.definitions.ListJobDefinitions(pb.ListJobDefinitionsRequest(page_size=1))
    filtered = await api.definitions.ListJobDefinitions(
        pb.ListJobDefinitionsRequest(page_size=1, method=task_pb2.TASK_METHOD_MANUAL)
    )
    assert [d.job_type for d in filtered.job_definitions] == ["aws-region-failover"]
    rest = await api.definitions.ListJobDefinitions(
        pb.ListJobDefinitionsRequest(
            page_size=1, method=task_pb2.TASK_METHOD_MANUAL, page_token=filtered.next_page_token
        )
    )
    assert [d.job_type for d in rest.job_definitions] == ["secure-go-cicd"]

    other_filters = await failure(
        api.definitions.ListJobDefinitions(
            pb.ListJobDefinitionsRequest(page_size=1, page_token=first.next_page_token, job_type_contains="x")
        )
    )
    assert other_filters.code is grpc.StatusCode.INVALID_ARGUMENT
    (violation,) = other_filters.unpacked(error_details_pb2.BadRequest)
    assert violation.field_violations[0].field == "page_token"
    for bad in ("!!!", "bm90LWEtdG9rZW4", "LTE6eA"):
        refused = await failure(
            api.definitions.ListJobDefinitions(pb.ListJobDefinitionsRequest(page_token=bad))
        )
        assert refused.code is grpc.StatusCode.INVALID_ARGUMENT, bad
    negative = await failure(api.definitions.ListJobDefinitions(pb.ListJobDefinitionsRequest(page_size=-1)))
    assert negative.code is grpc.StatusCode.INVALID_ARGUMENT

    versions = await api.definitions.ListJobDefinitionVersions(
        pb.ListJobDefinitionVersionsRequest(job_type="shell-hello", page_size=1000)
    )
    assert [d.version for d in versions.job_definitions] == [1]


async def test_get_refuses_bad_selectors(api: Api) -> None:
    await api.upload(SHELL_YAML)
    no_selector = await failure(api.definitions.GetJobDefinition(pb.GetJobDefinitionRequest()))
    assert no_selector.code is grpc.StatusCode.INVALID_ARGUMENT
    unknown_version = await failure(
        api.definitions.GetJobDefinition(pb.GetJobDefinitionRequest(job_type="shell-hello", version=7))
    )
    assert unknown_version.code is grpc.StatusCode.NOT_FOUND
    unknown_id = await failure(api.definitions.GetJobDefinition(pb.GetJobDefinitionRequest(id="nope")))
    assert unknown_id.code is grpc.StatusCode.NOT_FOUND
    too_long = await failure(api.definitions.GetJobDefinition(pb.GetJobDefinitionRequest(job_type="x" * 300)))
    assert too_long.code is grpc.StatusCode.INVALID_ARGUMENT


async def test_many_problems_still_reach_the_client(api: Api) -> None:
    tasks = "".join(
        f"- task_type: t{n}\n  method: SHELL\n  script: [echo {n}]\n  colour{n}: blue\n"
        f"  on_completed: t{n + 1}\n"
        for n in range(300)
    )
    failed = await failure(api.upload(f"job_type: noisy\ntasks:\n{tasks}"))
    assert failed.code is grpc.StatusCode.INVALID_ARGUMENT
    problems = failed.unpacked(job_definition_pb2.ValidationProblem)
    assert 5 < len(problems) < 300
    assert problems[0].code == "unknown_field"
    # 300 unknown fields and the route of the last task to a missing t300; the status says how many
    # problems did not fit in the trailer
    assert failed.message.startswith("301 error(s)")
    assert int(failed.info.metadata["omitted_details"]) == 301 - len(problems)


async def test_a_bug_is_internal_and_leaks_nothing(
    api: Api, queen: Queen, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("password=hunter2 in /srv/queen/secret.py")

    monkeypatch.setattr(queen.services.definitions, "list_definitions", broken)
    failed = await failure(api.definitions.ListJobDefinitions(pb.ListJobDefinitionsRequest()))
    assert failed.code is grpc.StatusCode.INTERNAL
    assert "hunter2" not in failed.message
    assert failed.info.metadata["incident"] in failed.message
