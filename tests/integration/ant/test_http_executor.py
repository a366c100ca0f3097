"""The HTTP executors against a small HTTP server on 127.0.0.1 (a thread of the test)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ant.executors import ExecutionContext, ExecutionStatus, LogStream, Method, TaskSpec, Variable
from ant.executors.http import HttpExecutor
from tests.integration.ant.recording import RecordingSink

pytestmark = pytest.mark.integration

MakeContext = Callable[..., ExecutionContext]


class Handler(BaseHTTPRequestHandler):
    release: threading.Event

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        url = urlsplit(self.path)
        self._answer(
            200,
            json.dumps(
                {
                    "method": self.command,
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "content_type": self.headers.get("Content-Type"),
                    "x_token": self.headers.get("X-Token"),
                    "body": body,
                }
            ),
            "application/json",
        )

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/hello":
            self._answer(200, "hello\nworld\n::set-output name=status::green\n")
        elif path == "/echo":
            self._echo()
        elif path == "/slow":
            self.release.wait(10)
            self._answer(200, "late")
        elif path == "/big":
            self._answer(200, "x" * 5000 + "\n")
        else:
            self._answer(404, "no such thing")

    def do_POST(self) -> None:
        self._echo()

    def do_PUT(self) -> None:
        self._echo()

    def do_DELETE(self) -> None:
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def server() -> Iterator[str]:
    release = threading.Event()
    handler = type("BoundHandler", (Handler,), {"release": release})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def http_spec(method: Method, url: str = "", **overrides: Any) -> TaskSpec:
    return TaskSpec(
        task_execution_id="te-h", job_request_id=3, task_type="call", method=method, url=url, **overrides
    )


async def test_get_200_body_is_stdout(server: str, make_context: MakeContext, sink: RecordingSink) -> None:
    result = await HttpExecutor().run(http_spec(Method.HTTP_GET, f"{server}/hello"), make_context())
    assert result.status is ExecutionStatus.COMPLETED
    assert result.exit_code == "200"
    assert result.exit_message == "OK"
    assert result.stdout == ("hello", "world", "::set-output name=status::green")
    assert result.task_context == {"status": "green"}
    assert sink.texts(LogStream.SYSTEM) == [f"GET {server}/hello", "HTTP 200 OK"]


async def test_post_json_sends_the_variables_with_headers_and_query(
    server: str, make_context: MakeContext
) -> None:
    spec = http_spec(
        Method.HTTP_POST_JSON,
        f"{server}/echo",
        variables={"region": Variable("us-west-2"), "token": Variable("s3cr3t", secret=True)},
        headers={"X-Token": "abc"},
        query={"dry_run": "1"},
    )
    result = await HttpExecutor().run(spec, make_context())
    assert result.status is ExecutionStatus.COMPLETED
    echoed = json.loads("\n".join(result.stdout))
    assert echoed["method"] == "POST"
    assert echoed["content_type"] == "application/json"
    assert json.loads(echoed["body"]) == {"region": "us-west-2", "token": "s3cr3t"}
    assert echoed["query"] == {"dry_run": ["1"]}
    assert echoed["x_token"] == "abc"


@pytest.mark.parametrize(("method", "verb"), [(Method.HTTP_POST_FORM, "POST"), (Method.HTTP_PUT_FORM, "PUT")])
async def test_form_methods_send_the_variables_as_a_form(
    server: str, make_context: MakeContext, method: Method, verb: str
) -> None:
    spec = http_spec(method, f"{server}/echo", variables={"a": Variable("1"), "b": Variable("x y")})
    echoed = json.loads("\n".join((await HttpExecutor().run(spec, make_context())).stdout))
    assert echoed["method"] == verb
    assert echoed["content_type"] == "application/x-www-form-urlencoded"
    assert parse_qs(echoed["body"]) == {"a": ["1"], "b": ["x y"]}


async def test_put_json_and_delete(server: str, make_context: MakeContext) -> None:
    put = await HttpExecutor().run(http_spec(Method.HTTP_PUT_JSON, f"{server}/echo"), make_context())
    assert json.loads("\n".join(put.stdout))["method"] == "PUT"
    deleted = await HttpExecutor().run(http_spec(Method.HTTP_DELETE, f"{server}/thing"), make_context())
    assert (deleted.status, deleted.exit_code) == (ExecutionStatus.COMPLETED, "204")


async def test_404_fails_with_the_status_as_exit_code(server: str, make_context: MakeContext) -> None:
    result = await HttpExecutor().run(http_spec(Method.HTTP_GET, f"{server}/missing"), make_context())
    assert result.status is ExecutionStatus.FAILED
    assert result.exit_code == "404"
    assert result.exit_message == "Not Found"
    assert result.failed_command == f"GET {server}/missing"
    assert result.stdout == ("no such thing",)


async def test_script_lines_are_urls_requested_until_one_fails(
    server: str, make_context: MakeContext, sink: RecordingSink
) -> None:
    spec = http_spec(Method.HTTP_GET, script=(f"{server}/hello", f"{server}/missing", f"{server}/echo"))
    result = await HttpExecutor().run(spec, make_context())
    assert result.exit_code == "404"
    assert f"GET {server}/echo" not in sink.texts(LogStream.SYSTEM)


async def test_a_refused_connection_fails_without_a_status(make_context: MakeContext) -> None:
    result = await HttpExecutor().run(http_spec(Method.HTTP_GET, "http://127.0.0.1:9/"), make_context())
    assert result.status is ExecutionStatus.FAILED
    assert result.exit_code == "FAILED"
    assert result.error_code == "ERR_HTTP_REQUEST"


async def test_the_task_timeout_bounds_the_request(server: str, make_context: MakeContext) -> None:
    spec = http_spec(Method.HTTP_GET, f"{server}/slow", timeout=timedelta(milliseconds=300))
    result = await HttpExecutor().run(spec, make_context())
    assert result.status is ExecutionStatus.FAILED
    assert result.error_code == "ERR_TASK_TIMEOUT"


async def test_cancel_stops_the_request(server: str, make_context: MakeContext, sink: RecordingSink) -> None:
    cancel = asyncio.Event()
    run = asyncio.create_task(
        HttpExecutor().run(http_spec(Method.HTTP_GET, f"{server}/slow"), make_context(cancel))
    )
    await sink.wait_for("GET ")
    cancel.set()
    result = await asyncio.wait_for(run, 5)
    assert result.status is ExecutionStatus.CANCELLED


async def test_the_body_kept_is_bounded(server: str, make_context: MakeContext) -> None:
    result = await HttpExecutor(max_body_bytes=1000).run(
        http_spec(Method.HTTP_GET, f"{server}/big"), make_context()
    )
    assert result.status is ExecutionStatus.COMPLETED
    assert sum(len(line) for line in result.stdout) <= 1000
    assert any("cut to 1000 bytes" in w for w in result.warnings)
