"""The REST gateway against a real Queen on SQLite and PostgreSQL: the brief's curl commands, errors from
the one table (with their details), paging, the controls, artifacts, Ants, health, metrics, OpenAPI."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shlex
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from queen.app import Queen
from queen.http import HttpGateway
from queen.security.authenticator import Authenticator, AuthSettings
from queen.services.artifacts import ArtifactUpload
from tests.fixtures.auth import authorized_channel
from tests.fixtures.waiting import assert_eventually
from tests.integration.api.conftest import ScriptedAnt
from tests.integration.http.conftest import PLAYBOOKS, REPO, shell_playbook, unique

pytestmark = pytest.mark.integration

# A day ahead: the scheduler leaves such requests PENDING (and no Ant is connected anyway).
LATER = (datetime.now(UTC) + timedelta(days=1)).isoformat()

BRIEF_UPLOAD = (
    'curl -X POST http://localhost:7777/api/jobs/definitions -H "Content-Type: application/yaml" '
    "--data-binary @playbook.yaml"
)
BRIEF_SUBMIT = (
    'curl -X POST http://localhost:7777/api/jobs/requests -H "Content-Type: application/json" -d '
    '\'{"job_type": "secure-go-cicd"}\''
)


def detail(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [d for d in body["details"] if d["@type"].endswith(f".{kind}")]


async def curl(command: str, port: int, cwd: Path) -> tuple[int, dict[str, Any]]:
    """Run one of the brief's curl commands as written, only with the gateway's port for 7777; returns
    the HTTP status (curl -w) and the JSON body."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    args = shlex.split(command.replace("localhost:7777", f"localhost:{port}"))
    args[1:1] = ["--silent", "--show-error", "--write-out", "\n%{http_code}"]
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    text, _, status = out.decode().rpartition("\n")
    return int(status), json.loads(text)


async def upload(http: httpx.AsyncClient, yaml: str) -> dict[str, Any]:
    response = await http.post(
        "/api/jobs/definitions", content=yaml, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def submit(
    http: httpx.AsyncClient, job_type: str, *, now: bool = False, **extra: Any
) -> dict[str, Any]:
    """Submit; scheduled a day ahead unless `now`, so that only the test that runs jobs runs any."""
    body = {"job_type": job_type, **extra}
    if not now:
        body.setdefault("scheduled_at", LATER)
    response = await http.post("/api/jobs/requests", json=body)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# -- the brief -------------------------------------------------------------------------------------------


@pytest.fixture
async def dev_gateway(queen: Queen) -> AsyncIterator[HttpGateway]:
    """The gateway as `formicary dev` serves it: without authentication, as the local admin identity."""
    local = Authenticator(AuthSettings(required=False, local=queen.services.local_identity), tokens=None)
    served = HttpGateway(dataclasses.replace(queen.services, authenticator=local), queen.settings)
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


async def test_the_brief_curl_commands_work_verbatim(dev_gateway: HttpGateway, tmp_path: Path) -> None:
    """The brief's curl commands carry no credential: they run against the embedded (dev) mode."""
    gateway = dev_gateway
    shutil.copy(REPO / "examples" / "secure-go-cicd.yaml", tmp_path / "playbook.yaml")

    status, definition = await curl(BRIEF_UPLOAD, gateway.port, tmp_path)
    assert status == 201, definition
    assert definition["job_type"] == "secure-go-cicd"
    assert definition["tasks"][0]["task_type"] == "build"
    assert definition["raw_yaml"] == (tmp_path / "playbook.yaml").read_text()

    status, request = await curl(BRIEF_SUBMIT, gateway.port, tmp_path)
    assert status == 201, request
    assert request["job_type"] == "secure-go-cicd"
    assert request["job_state"] == "PENDING"
    assert isinstance(request["id"], int)
    for name in ("job_priority", "params", "error_code", "error_message", "created_at"):
        assert name in request


async def test_the_as_published_dr_playbook_is_refused_at_line_21_and_nothing_is_stored(
    http: httpx.AsyncClient,
) -> None:
    yaml = (PLAYBOOKS / "aws-region-failover.as-published.yaml").read_text()
    response = await http.post(
        "/api/jobs/definitions", content=yaml, headers={"Content-Type": "application/yaml"}
    )

    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["reason"]) == ("INVALID_ARGUMENT", "INVALID_DEFINITION")
    (problem,) = detail(body, "ValidationProblem")
    assert (problem["line"], problem["column"]) == (21, 38)
    assert problem["severity"] == "VALIDATION_SEVERITY_ERROR"
    assert problem["fix"].startswith("quote the whole value")
    assert detail(body, "ErrorInfo")[0]["reason"] == "INVALID_DEFINITION"
    # nothing stored: the job type is unknown
    missing = await http.get("/api/jobs/definitions/aws-region-failover")
    assert missing.status_code == 404
    assert missing.json()["reason"] == "NOT_FOUND"


# -- definitions -----------------------------------------------------------------------------------------


async def test_a_json_upload_stores_a_version_and_an_identical_one_is_a_no_op(
    http: httpx.AsyncClient,
) -> None:
    job_type = unique("json-upload")
    first = await http.post("/api/jobs/definitions", json={"yaml": shell_playbook(job_type)})
    again = await http.post("/api/jobs/definitions", json={"yaml": shell_playbook(job_type)})
    changed = await http.post("/api/jobs/definitions", json={"yaml": shell_playbook(job_type, fail=True)})

    assert (first.status_code, first.json()["new_version"], first.json()["version"]) == (201, True, 1)
    assert (again.status_code, again.json()["new_version"], again.json()["version"]) == (200, False, 1)
    assert (changed.status_code, changed.json()["version"]) == (201, 2)
    task = first.json()["tasks"][0]
    assert (task["task_type"], task["method"], task["on_completed"]) == ("greet", "SHELL", "bye")


async def test_a_definition_is_read_by_id_or_type_disabled_enabled_and_deleted(
    http: httpx.AsyncClient,
) -> None:
    job_type = unique("lifecycle")
    stored = await upload(http, shell_playbook(job_type))

    by_id = (await http.get(f"/api/jobs/definitions/{stored['id']}")).json()
    by_type = (await http.get(f"/api/jobs/definitions/{job_type}")).json()
    yaml = await http.get(f"/api/jobs/definitions/{job_type}/yaml")
    assert by_id == by_type == {k: v for k, v in stored.items() if k not in ("new_version", "warnings")}
    assert yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.text == shell_playbook(job_type)

    disabled = await http.post(f"/api/jobs/definitions/{stored['id']}/disable")
    refused = await http.post("/api/jobs/requests", json={"job_type": job_type})
    enabled = await http.post(f"/api/jobs/definitions/{job_type}/enable")
    assert disabled.json()["disabled"] is True
    assert (refused.status_code, refused.json()["reason"]) == (409, "FAILED_PRECONDITION")
    assert enabled.json()["disabled"] is False

    listed = (await http.get("/api/jobs/definitions", params={"page_size": 500})).json()
    assert job_type in [d["job_type"] for d in listed["records"]]

    deleted = await http.delete(f"/api/jobs/definitions/{job_type}")
    assert deleted.json() == {"job_type": job_type, "deleted_versions": 1}
    assert (await http.get(f"/api/jobs/definitions/{job_type}")).status_code == 404
    assert (await http.delete(f"/api/jobs/definitions/{job_type}")).status_code == 404


async def test_an_upload_that_is_neither_yaml_nor_json_is_415(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/jobs/definitions", content=b"job_type: x", headers={"Content-Type": "application/xml"}
    )
    assert response.status_code == 415
    assert response.json()["reason"] == "UNSUPPORTED_MEDIA_TYPE"
    assert "application/yaml" in response.json()["message"]


async def test_bodies_above_the_limit_are_refused_with_413(http: httpx.AsyncClient) -> None:
    declared = await http.post(
        "/api/jobs/definitions",
        content=b"#" * (3 * 1024 * 1024),
        headers={"Content-Type": "application/yaml"},
    )

    async def chunks() -> Any:
        for _ in range(64):
            yield b" " * (16 * 1024)

    # no Content-Length: counted as it arrives
    streamed = await http.post(
        "/api/jobs/requests", content=chunks(), headers={"Content-Type": "application/json"}
    )

    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        body = response.json()
        assert (body["code"], body["reason"]) == ("RESOURCE_EXHAUSTED", "REQUEST_TOO_LARGE")
        assert "at most" in body["message"]


# -- requests --------------------------------------------------------------------------------------------


async def test_requests_are_listed_newest_first_with_filters_and_pages(http: httpx.AsyncClient) -> None:
    job_type = unique("paging")
    await upload(http, shell_playbook(job_type))
    ids = [(await submit(http, job_type, params={"n": n}))["id"] for n in range(5)]
    await http.post(f"/api/jobs/requests/{ids[0]}/cancel")

    pages = [
        (
            await http.get("/api/jobs/requests", params={"job_type": job_type, "page_size": 2, "page": n})
        ).json()
        for n in range(3)
    ]
    assert [[r["id"] for r in page["records"]] for page in pages] == [
        [ids[4], ids[3]],
        [ids[2], ids[1]],
        [ids[0]],
    ]
    assert [(p["page"], p["total_records"], p["total_pages"], p["has_more"]) for p in pages] == [
        (0, 5, 3, True),
        (1, 5, 3, True),
        (2, 5, 3, False),
    ]
    assert pages[0]["records"][0]["params"] == {"n": "4"}  # numbers are written as text

    cancelled = (
        await http.get("/api/jobs/requests", params={"job_type": job_type, "job_state": "CANCELLED,FAILED"})
    ).json()
    pending = (
        await http.get("/api/jobs/requests", params=[("job_type", job_type), ("job_state", "PENDING")])
    ).json()
    assert [r["id"] for r in cancelled["records"]] == [ids[0]]
    assert pending["total_records"] == 4

    bad = await http.get("/api/jobs/requests", params={"job_state": "DONE"})
    assert (bad.status_code, bad.json()["reason"]) == (400, "INVALID_ARGUMENT")
    assert detail(bad.json(), "BadRequest")[0]["field_violations"][0]["field"] == "job_state"


async def test_a_duplicate_user_key_is_409_naming_the_existing_request(http: httpx.AsyncClient) -> None:
    job_type = unique("dedupe")
    await upload(http, shell_playbook(job_type))
    first = await submit(http, job_type, user_key="release-42")

    again = await http.post("/api/jobs/requests", json={"job_type": job_type, "user_key": "release-42"})

    assert again.status_code == 409
    body = again.json()
    assert (body["code"], body["reason"]) == ("ALREADY_EXISTS", "DUPLICATE_USER_KEY")
    assert detail(body, "ErrorInfo")[0]["metadata"]["existing_job_request_id"] == str(first["id"])
    assert detail(body, "ResourceInfo")[0]["resource_name"] == str(first["id"])


async def test_unknown_things_are_404_and_malformed_input_is_400(http: httpx.AsyncClient) -> None:
    for path in (
        "/api/jobs/requests/999999999",
        "/api/jobs/definitions/no-such-job",
        "/api/jobs/definitions/no-such-job/yaml",
        "/api/artifacts/no-such-artifact",
        "/api/artifacts/no-such-artifact/download",
        "/api/no-such-route",
    ):
        response = await http.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "NOT_FOUND", path
    unknown_type = await http.post("/api/jobs/requests", json={"job_type": "no-such-job"})
    assert (unknown_type.status_code, unknown_type.json()["reason"]) == (404, "NOT_FOUND")

    not_a_number = await http.get("/api/jobs/requests/abc")
    typo = await http.post("/api/jobs/requests", json={"job_typ": "x"})
    not_json = await http.post(
        "/api/jobs/requests", content=b"{", headers={"Content-Type": "application/json"}
    )
    for response in (not_a_number, typo, not_json):
        assert response.status_code == 400
        assert response.json()["code"] == "INVALID_ARGUMENT"
    fields = [v["field"] for v in detail(typo.json(), "BadRequest")[0]["field_violations"]]
    assert fields == ["job_type", "job_typ"]


async def test_the_controls_follow_the_request_state_machine(http: httpx.AsyncClient) -> None:
    job_type = unique("controls")
    await upload(http, shell_playbook(job_type))
    request = await submit(http, job_type)
    path = f"/api/jobs/requests/{request['id']}"

    paused = await http.post(f"{path}/pause")
    resumed = await http.post(f"{path}/resume")
    cancelled = await http.post(f"{path}/cancel", params={"reason": "changed my mind"})
    again = await http.post(f"{path}/cancel")
    triggered = await http.post(f"{path}/trigger")  # only a PENDING request (test_trigger.py)
    restarted = await http.post(f"{path}/restart", params={"hard": "true"})

    assert paused.json()["job_state"] == "PAUSED"
    assert resumed.json()["job_state"] == "PENDING"
    assert cancelled.json()["job_state"] == "CANCELLED"
    assert cancelled.json()["error_message"] == "changed my mind"
    assert again.status_code == 409
    assert (triggered.status_code, triggered.json()["reason"]) == (409, "INVALID_TRANSITION")
    body = again.json()
    assert body["reason"] == "INVALID_TRANSITION"
    assert detail(body, "ErrorInfo")[0]["metadata"]["current_state"] == "CANCELLED"
    assert restarted.json()["job_state"] == "PENDING"
    assert (await http.post("/api/jobs/requests/999999999/trigger")).status_code == 404


async def test_a_run_shows_its_tasks_with_formicary_field_names(
    http: httpx.AsyncClient, queen: Queen, admin_token: str
) -> None:
    job_type = unique("run")
    await upload(http, shell_playbook(job_type))
    async with authorized_channel(f"127.0.0.1:{queen.grpc_port}", admin_token) as channel:
        ant = ScriptedAnt(channel, ant_id=unique("ant"))
        await ant.start()
        try:
            ants = (await http.get("/api/ants")).json()
            mine = [a for a in ants["records"] if a["ant_id"] == ant.ant_id]
            assert mine
            assert mine[0]["methods"] == ["SHELL"]
            assert mine[0]["connected"] is True
            metrics = (await http.get("/metrics")).text
            assert "formicary_ants_connected" in metrics

            request = await submit(http, job_type, now=True)
            await ant.run_next(["hello"], exit_code="0")
            await ant.run_next(["bye"], exit_code="0")

            async def completed() -> dict[str, Any] | None:
                found: dict[str, Any] = (await http.get(f"/api/jobs/requests/{request['id']}")).json()
                return found if found["job_state"] == "COMPLETED" else None

            done = await assert_eventually(completed, message="the request completed")
        finally:
            await ant.stop()
    assert done is not None
    tasks = done["execution"]["tasks"]
    assert [(t["task_type"], t["task_state"], t["exit_code"], t["ant_id"]) for t in tasks] == [
        ("greet", "COMPLETED", "0", ant.ant_id),
        ("bye", "COMPLETED", "0", ant.ant_id),
    ]
    for name in ("exit_message", "artifacts", "started_at", "ended_at"):
        assert name in tasks[0]
    listed = (
        await http.get("/api/jobs/requests", params={"job_type": job_type, "include_execution": "true"})
    ).json()
    assert listed["records"][0]["execution"]["job_state"] == "COMPLETED"


# -- artifacts -------------------------------------------------------------------------------------------


async def test_artifacts_are_listed_by_request_and_downloaded_streamed(
    http: httpx.AsyncClient, queen: Queen
) -> None:
    job_type = unique("artifacts")
    await upload(http, shell_playbook(job_type))
    request = await submit(http, job_type)
    content = b"terraform state\n" * 10_000  # several download chunks

    async def chunks() -> Any:
        yield content

    stored = await queen.services.artifacts.upload(
        queen.services.local_identity,
        ArtifactUpload(
            name="terraform é.tfstate", content_type="application/json", job_request_id=request["id"]
        ),
        chunks(),
    )

    listed = (await http.get("/api/artifacts", params={"job_request_id": request["id"]})).json()
    assert [a["id"] for a in listed["records"]] == [stored.id]
    assert listed["has_more"] is False
    assert listed["total_records"] is None
    described = listed["records"][0]
    assert (described["name"], described["kind"], described["content_length"]) == (
        "terraform é.tfstate",
        "USER",
        len(content),
    )
    async with http.stream("GET", described["url"]) as response:
        received = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert response.status_code == 200
    assert received == content
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-checksum-sha256"] == stored.sha256
    assert "filename*=UTF-8''terraform%20%C3%A9.tfstate" in response.headers["content-disposition"]

    deleted = await http.delete(f"/api/artifacts/{stored.id}")
    assert deleted.status_code == 200
    assert (await http.get(f"/api/artifacts/{stored.id}")).status_code == 404
    bad_kind = await http.get("/api/artifacts", params={"kind": "PHOTO"})
    assert bad_kind.status_code == 400


# -- operations ------------------------------------------------------------------------------------------


async def test_health_is_open_and_names_the_database(http: httpx.AsyncClient, queen: Queen) -> None:
    response = await http.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["healthy"] is True
    assert body["components"][0]["name"] == "database"
    assert queen.db.dialect_name in body["components"][0]["message"]


async def test_metrics_count_requests_by_state_and_connected_ants(http: httpx.AsyncClient) -> None:
    job_type = unique("metrics")
    await upload(http, shell_playbook(job_type))
    await submit(http, job_type)

    response = await http.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    lines = response.text.splitlines()
    pending = [line for line in lines if line.startswith('formicary_job_requests{state="PENDING"}')]
    assert pending
    assert float(pending[0].split()[-1]) >= 1
    assert any(line.startswith("formicary_ants_connected ") for line in lines)
    assert "# TYPE formicary_job_requests gauge" in lines


async def test_the_openapi_document_and_the_docs_page_are_served_with_local_assets_only(
    http: httpx.AsyncClient,
) -> None:
    spec = (await http.get("/openapi.json")).json()
    paths = spec["paths"]
    for path, method in [
        ("/api/jobs/definitions", "post"),
        ("/api/jobs/definitions/{ref}", "delete"),
        ("/api/jobs/definitions/{job_type}/yaml", "get"),
        ("/api/jobs/requests", "get"),
        ("/api/jobs/requests/{request_id}/restart", "post"),
        ("/api/artifacts/{artifact_id}/download", "get"),
        ("/api/ants", "get"),
        ("/api/health", "get"),
        ("/metrics", "get"),
    ]:
        assert method in paths[path], (path, method)
    assert set(paths["/api/jobs/definitions"]["post"]["requestBody"]["content"]) == {
        "application/yaml",
        "application/json",
    }
    request_schema = spec["components"]["schemas"]["JobRequestOut"]["properties"]
    assert {"id", "job_type", "job_state", "job_priority", "params", "error_code", "created_at"} <= set(
        request_schema
    )

    page = await http.get("/docs")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for asset in ("/docs/assets/docs.js", "/docs/assets/docs.css"):
        text = (await http.get(asset)).text
        assert "http://" not in text, asset
        assert "https://" not in text, asset
    assert "https://" not in page.text
    assert "http://" not in page.text
    assert (await http.get("/redoc")).status_code == 404
