"""The dashboard's server side against a real Queen on SQLite and PostgreSQL: its pages and assets (local
only, modules that resolve), and the server-sent event streams it follows (a request with its logs, a
listing, the approval gates), which end when the gateway stops."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import httpx
import pytest

from queen.app import Queen
from queen.http import HttpGateway
from tests.fixtures.auth import authorized_channel, bearer
from tests.integration.api.conftest import ScriptedAnt
from tests.integration.http.conftest import shell_playbook, unique

pytestmark = pytest.mark.integration

Event = tuple[str, Any]

GATED = """\
job_type: {job_type}
tasks:
- task_type: go-ahead
  method: MANUAL
  description: Approve to finish.
  approval_policy:
    allow_self_approval: true
  on_exit_code:
    APPROVED: finish
    REJECTED: finish
- task_type: finish
  method: SHELL
  script: [echo finished]
"""


class Events:
    """The events of one server-sent event stream, read as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 10.0) -> Event:  # noqa: ASYNC109 - a deadline per event
        async with asyncio.timeout(timeout):
            name, data = "message", []
            async for line in self._lines:
                if not line:
                    if data:
                        return name, json.loads("\n".join(data))
                    name = "message"
                    continue
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
        raise EOFError("the stream ended")

    async def until(self, done: Callable[[Event], bool], timeout: float = 15.0) -> list[Event]:  # noqa: ASYNC109
        """Every event up to and including the first one `done` accepts."""
        seen: list[Event] = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                seen.append(event)
                if done(event):
                    return seen


@asynccontextmanager
async def events_of(http: httpx.AsyncClient, path: str, **params: Any) -> AsyncIterator[Events]:
    async with http.stream("GET", path, params=params, headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Events(response)


async def _upload(http: httpx.AsyncClient, yaml: str) -> None:
    response = await http.post(
        "/api/jobs/definitions", content=yaml, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code in (200, 201), response.text


async def _submit(http: httpx.AsyncClient, job_type: str) -> int:
    response = await http.post("/api/jobs/requests", json={"job_type": job_type})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


# -- the streams ----------------------------------------------------------------------------------------


async def test_a_request_stream_sends_the_request_as_it_changes_its_log_lines_and_an_end(
    http: httpx.AsyncClient, queen: Queen, admin_token: str
) -> None:
    job_type = unique("stream")
    await _upload(http, shell_playbook(job_type))
    async with authorized_channel(f"127.0.0.1:{queen.grpc_port}", admin_token) as channel:
        ant = ScriptedAnt(channel, ant_id=unique("ant"))
        await ant.start()
        try:
            request_id = await _submit(http, job_type)
            async with events_of(http, f"/api/jobs/requests/{request_id}/stream") as stream:
                first = await stream.next()
                await ant.run_next(["hello", "world"])
                await ant.run_next(["bye"])
                rest = await stream.until(lambda event: event[0] == "end")
        finally:
            await ant.stop()

    assert first[0] == "request"
    assert first[1]["id"] == request_id
    seen = [first, *rest]
    states = [data["job_state"] for name, data in seen if name == "request"]
    assert states[-1] == "COMPLETED"
    assert len(states) == len(set(map(str, (d for n, d in seen if n == "request")))), "no request sent twice"
    lines = [
        (data["task_type"], line["text"]) for name, data in seen if name == "logs" for line in data["lines"]
    ]
    assert lines == [("greet", "hello"), ("greet", "world"), ("bye", "bye")]
    last = [data for name, data in seen if name == "request"][-1]
    assert [(t["task_type"], t["task_state"], t["exit_code"]) for t in last["execution"]["tasks"]] == [
        ("greet", "COMPLETED", "0"),
        ("bye", "COMPLETED", "0"),
    ]
    assert seen[-1] == ("end", None)

    # a finished request: its state, the lines kept, the end; one task's lines only, or none
    async with events_of(http, f"/api/jobs/requests/{request_id}/stream", task_type="bye") as again:
        replay = await again.until(lambda event: event[0] == "end")
    assert [name for name, _ in replay] == ["request", "logs", "end"]
    assert [line["text"] for line in replay[1][1]["lines"]] == ["bye"]
    async with events_of(http, f"/api/jobs/requests/{request_id}/stream", logs="false") as quiet:
        assert [name for name, _ in await quiet.until(lambda event: event[0] == "end")] == ["request", "end"]


async def test_a_listing_stream_sends_its_page_again_when_it_changes(http: httpx.AsyncClient) -> None:
    job_type = unique("listing")
    await _upload(http, shell_playbook(job_type))
    async with events_of(http, "/api/jobs/requests/stream", job_type=job_type, page_size=5) as stream:
        empty = await stream.next()
        request_id = await _submit(http, job_type)
        listed = await stream.next()
        await http.post(f"/api/jobs/requests/{request_id}/cancel")
        cancelled = await stream.until(
            lambda event: bool(event[1]["records"]) and event[1]["records"][0]["job_state"] == "CANCELLED"
        )

    assert empty == ("page", {**empty[1], "records": [], "total_records": 0})
    assert listed[0] == "page"
    assert [r["id"] for r in listed[1]["records"]] == [request_id]
    assert listed[1]["total_records"] == 1
    assert cancelled[-1][1]["records"][0]["id"] == request_id


async def test_the_approvals_stream_follows_a_gate_from_open_to_decided(http: httpx.AsyncClient) -> None:
    job_type = unique("gated")
    await _upload(http, GATED.format(job_type=job_type))
    async with events_of(http, "/api/approvals/pending/stream") as stream:
        await stream.until(lambda event: event[0] == "snapshot_complete")
        request_id = await _submit(http, job_type)

        def of_mine(state: str) -> Callable[[Event], bool]:
            return lambda event: (
                event[0] == "approval"
                and event[1]["job_request_id"] == request_id
                and event[1]["state"] == state
            )

        opened = (await stream.until(of_mine("OPEN"), timeout=30))[-1][1]
        vote = await http.post(
            f"/api/jobs/requests/{request_id}/tasks/go-ahead/vote",
            json={"decision": "APPROVED", "comments": "fine", "gate_version": opened["version"]},
        )
        assert vote.status_code == 200, vote.text
        decided = (await stream.until(of_mine("APPROVED")))[-1][1]

    assert (opened["task_type"], opened["tally"]["approvals"]) == ("go-ahead", 0)
    assert decided["decision_comments"] == "fine"


async def test_an_unknown_request_is_404_before_any_event(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/jobs/requests/999999999/stream")

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


async def test_stopping_the_gateway_ends_its_open_streams_at_once(queen: Queen, admin_token: str) -> None:
    gateway = HttpGateway(queen.services, queen.settings)
    await gateway.start()
    stopped = False
    try:
        async with (
            httpx.AsyncClient(base_url=gateway.url, timeout=30, headers=bearer(admin_token)) as http,
            events_of(http, "/api/jobs/requests/stream", job_type=unique("none")) as stream,
        ):
            assert (await stream.next())[0] == "page"
            loop = asyncio.get_running_loop()
            started = loop.time()
            await gateway.stop()
            stopped = True
            took = loop.time() - started
            with pytest.raises((EOFError, httpx.HTTPError)):
                await stream.next(timeout=5)
    finally:
        if not stopped:
            await gateway.stop()
    # well within the 5 s grace a request in flight gets
    assert took < 2.0


# -- the pages and assets -------------------------------------------------------------------------------

STATIC = resources.files("queen.http.dashboard").joinpath("static")
# XML namespaces name things; nothing is fetched from them.
_NAMESPACES = ("http://www.w3.org/2000/svg",)


def _assets(folder: Any = STATIC, prefix: str = "") -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in folder.iterdir():
        if entry.is_dir():
            found.update(_assets(entry, f"{prefix}{entry.name}/"))
        else:
            found[f"{prefix}{entry.name}"] = entry.read_text()
    return found


async def test_the_dashboard_pages_are_served_without_credentials_and_with_a_strict_policy(
    gateway: HttpGateway,
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as anonymous:
        for path in (
            "/",
            "/requests",
            "/requests/42",
            "/definitions",
            "/definitions/x-y",
            "/approvals",
            "/ants",
        ):
            page = await anonymous.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert 'src="/dashboard/assets/js/main.js"' in page.text
            policy = page.headers["content-security-policy"]
            assert "default-src 'none'" in policy
            assert "script-src 'self'" in policy
            assert "connect-src 'self'" in policy
        again = await anonymous.get("/", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304
        assert (await anonymous.get("/dashboard/assets/nope.js")).status_code == 404
        assert (await anonymous.get("/nothing-here")).status_code == 404


async def test_every_asset_is_local_and_every_module_import_resolves(gateway: HttpGateway) -> None:
    assets = _assets()
    assert {"index.html", "dashboard.css", "js/main.js", "js/dag.js", "js/pages/request.js"} <= set(assets)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as anonymous:
        for name, text in assets.items():
            served = await anonymous.get(f"/dashboard/assets/{name}")
            assert served.status_code == 200, name
            assert served.text == text
            if name.endswith(".js"):
                assert served.headers["content-type"].startswith("text/javascript")
            stripped = text
            for namespace in _NAMESPACES:
                stripped = stripped.replace(namespace, "")
            assert "http://" not in stripped, name
            assert "https://" not in stripped, name
            assert "//cdn" not in stripped, name
            for target in re.findall(r"""^import .* from "(\.[^"]+)";$""", text, re.MULTILINE):
                resolved = (httpx.URL(f"http://x/dashboard/assets/{name}").join(target)).path
                assert (await anonymous.get(resolved)).status_code == 200, (name, target)
    spec_paths = (await anonymous_spec(gateway)).keys()
    assert not [path for path in spec_paths if not path.startswith(("/api/", "/metrics"))]


async def anonymous_spec(gateway: HttpGateway) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as anonymous:
        paths: dict[str, Any] = (await anonymous.get("/openapi.json")).json()["paths"]
        return paths
