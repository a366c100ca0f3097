"""HTTP_*: sends the task's request with `httpx.AsyncClient`; the status is the exit code and the
response body is the task's standard output."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx

from ant.executors.context import ExecutionContext, LogStream
from ant.executors.lines import LineSplitter
from ant.executors.methods import Method
from ant.executors.output import OutputCollector
from ant.executors.result import EXIT_CODE_FAILED, ErrorCode, ExecutionResult, ExecutionStatus, Timings
from ant.executors.spec import TaskSpec
from ant.executors.stopping import StopReason, run_cancellable

__all__ = ["HttpExecutor"]

_VERBS = {
    Method.HTTP_GET: "GET",
    Method.HTTP_POST_FORM: "POST",
    Method.HTTP_POST_JSON: "POST",
    Method.HTTP_PUT_FORM: "PUT",
    Method.HTTP_PUT_JSON: "PUT",
    Method.HTTP_DELETE: "DELETE",
}
_FORM = frozenset({Method.HTTP_POST_FORM, Method.HTTP_PUT_FORM})
_JSON = frozenset({Method.HTTP_POST_JSON, Method.HTTP_PUT_JSON})


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    reason: str


class HttpExecutor:
    """Sends GET / POST / PUT / DELETE to `spec.url` with its headers and query parameters.

    POST and PUT send the task's variables (name -> value) as the body: a form
    (application/x-www-form-urlencoded) or a JSON object, as the method says. When `url` is empty each
    `script` line is a URL, requested in order until one fails. The exit code is the last HTTP status;
    a status outside 2xx fails the task (failed_command names the request). A network error fails it
    with ERR_HTTP_REQUEST and exit code FAILED. The whole attempt is bounded by the task's timeout, or
    `default_timeout` when it has none (every request has a limit); at most `max_body_bytes` of each
    response are read. Redirects are not followed: a 3xx is reported as it is.
    """

    def __init__(
        self,
        *,
        default_timeout: float = 60.0,
        max_body_bytes: int = 1024 * 1024,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._default_timeout = default_timeout
        self._max_body = max_body_bytes
        self._transport = transport

    async def run(self, spec: TaskSpec, ctx: ExecutionContext) -> ExecutionResult:
        verb = _VERBS.get(spec.method)
        urls = [spec.url] if spec.url else [line.strip() for line in spec.script if line.strip()]
        if verb is None or not urls:
            problem = f"not an HTTP method: {spec.method}" if verb is None else "an HTTP task needs a url"
            return ExecutionResult(
                status=ExecutionStatus.FAILED,
                exit_code=EXIT_CODE_FAILED,
                error_code=ErrorCode.INVALID_TASK,
                error_message=problem,
            )
        timeout = spec.timeout_seconds or self._default_timeout
        collector = OutputCollector(ctx.sink)
        start_time = datetime.now(UTC)
        answer: _Answer | None = None
        request = ""
        failure: tuple[str, str] | None = None  # (error_code, message) of a request that did not complete
        stopped: StopReason | None = None
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), transport=self._transport, follow_redirects=False
        ) as client:
            for url in urls:
                request = f"{verb} {url}"
                await collector.system(request)
                try:
                    answer, stopped = await run_cancellable(
                        self._send(client, spec, verb, url, collector), cancel=ctx.cancel, timeout=timeout
                    )
                except httpx.TimeoutException as exc:
                    failure = (ErrorCode.TASK_TIMEOUT, f"{request} timed out: {exc!r}")
                except httpx.HTTPError as exc:
                    failure = (ErrorCode.HTTP_REQUEST, f"{request} failed: {exc}")
                if failure is not None or stopped is not None or answer is None:
                    break
                await collector.system(f"HTTP {answer.status} {answer.reason}")
                if not 200 <= answer.status < 300:
                    break
        timings = Timings(start_time=start_time, script_finish_time=datetime.now(UTC))
        base = ExecutionResult(
            status=ExecutionStatus.FAILED,
            exit_code=EXIT_CODE_FAILED,
            failed_command=request,
            stdout=collector.stdout,
            task_context=dict(collector.task_context),
            job_context=dict(collector.job_context),
            warnings=tuple(collector.warnings),
            timings=timings,
        )
        if stopped is StopReason.CANCELLED:
            return replace(
                base,
                status=ExecutionStatus.CANCELLED,
                error_code=ErrorCode.TASK_CANCELLED,
                error_message="the task was cancelled",
            )
        if stopped is StopReason.TIMEOUT:
            failure = (ErrorCode.TASK_TIMEOUT, f"{request} did not complete within {timeout:g}s")
        if failure is not None or answer is None:
            code, message = failure or (ErrorCode.HTTP_REQUEST, f"{request} got no answer")
            return replace(base, error_code=code, error_message=message)
        if 200 <= answer.status < 300:
            return replace(
                base,
                status=ExecutionStatus.COMPLETED,
                exit_code=str(answer.status),
                exit_message=answer.reason,
                failed_command="",
            )
        return replace(
            base,
            exit_code=str(answer.status),
            exit_message=answer.reason,
            error_message=f"{request} answered {answer.status} {answer.reason}",
        )

    async def _send(
        self, client: httpx.AsyncClient, spec: TaskSpec, verb: str, url: str, collector: OutputCollector
    ) -> _Answer:
        body = {name: variable.value for name, variable in spec.variables.items()}
        request = client.build_request(
            verb,
            url,
            headers=dict(spec.headers),
            params=dict(spec.query),
            data=body if spec.method in _FORM else None,
            json=body if spec.method in _JSON else None,
        )
        response = await client.send(request, stream=True)
        try:
            splitter = LineSplitter()
            received = 0
            async for chunk in response.aiter_bytes():
                room = self._max_body - received
                received += len(chunk)
                for line in splitter.feed(chunk[:room]):
                    await collector.line(LogStream.STDOUT, line)
                if received > self._max_body:
                    collector.warnings.append(f"response body cut to {self._max_body} bytes")
                    break
            for line in splitter.flush():
                await collector.line(LogStream.STDOUT, line)
        finally:
            await response.aclose()
        return _Answer(response.status_code, response.reason_phrase)
