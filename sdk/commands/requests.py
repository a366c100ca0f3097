"""`formicary submit|status|logs|cancel|restart|pause|resume`: job requests from a terminal."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Annotated

import typer

from sdk.client import Client
from sdk.commands.progress import Display, Progress, open_display
from sdk.commands.session import EXIT_FAILED, EXIT_OK, EXIT_OTHER, Server, describe_error, run
from sdk.commands.tables import new_table, print_table
from sdk.errors import FormicaryError, NotFound, Unavailable
from sdk.models import JobRequest, JobState, LogLine, TaskExecution

__all__ = ["register_request_commands"]

# After the request ends, the log stream gets this long to deliver its last lines.
_LOG_DRAIN_SECONDS = 10.0
# A Queen that went away (a restart) gets this long to come back before --wait gives up.
_RECONNECT_FOR_SECONDS = 120.0
_RECONNECT_BACKOFF = (0.5, 1.0, 2.0, 5.0)

RequestId = Annotated[int, typer.Argument(help="The job request id.", min=1, show_default=False)]


def register_request_commands(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("status")(status)
    app.command("logs")(logs)
    app.command("cancel")(cancel)
    app.command("restart")(restart)
    app.command("pause")(pause)
    app.command("resume")(resume)


def parse_params(values: list[str]) -> dict[str, str]:
    """`--param k=v` values as a mapping (the last of repeated names wins)."""
    params: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{value!r} is not NAME=VALUE", param_hint="--param")
        params[name] = text
    return params


def outcome_exit_code(state: JobState | None) -> int:
    """0 COMPLETED, 1 FAILED, 2 anything else (CANCELLED)."""
    if state is JobState.COMPLETED:
        return EXIT_OK
    if state is JobState.FAILED:
        return EXIT_FAILED
    return EXIT_OTHER


def _log_text(line: LogLine) -> str:
    return f"[{line.task_type}] {line.text}"


def _duration(task: TaskExecution) -> str:
    if task.started_at is None:
        return ""
    end = task.ended_at or datetime.now(UTC)
    return f"{(end - task.started_at).total_seconds():.1f}s"


def _ending(request: JobRequest, elapsed: str) -> str:
    state = request.job_state.value if request.job_state else "UNKNOWN"
    text = f"request {request.id} ({request.job_type}) {state} after {elapsed}"
    if request.error_code or request.error_message:
        text += f": {request.error_code} {request.error_message}".rstrip()
    failed = [t for t in request.tasks if t.task_state is not None and t.task_state.value == "FAILED"]
    if failed and request.job_state is not JobState.COMPLETED:
        task = failed[-1]
        text += f" (task {task.task_type} exit code {task.exit_code or '-'})"
    return text


# -- submit --------------------------------------------------------------------------------------------


def submit(
    job_type: Annotated[str, typer.Argument(help="The job type to run.", show_default=False)],
    *,
    param: Annotated[
        list[str], typer.Option("--param", "-p", metavar="NAME=VALUE", help="A param (repeatable).")
    ] = [],  # noqa: B006 - typer copies defaults; a list is how it declares a repeatable option
    priority: Annotated[int, typer.Option("--priority", help="Scheduling priority.")] = 0,
    user_key: Annotated[str, typer.Option("--user-key", help="Submit at most once per key.")] = "",
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait for the outcome; the exit code follows it.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print the tasks' logs while waiting (implies --wait).")
    ] = False,
    server: Server = None,
) -> None:
    """Submit a job request. With --wait: progress on stderr, exit 0 COMPLETED, 1 FAILED, 2 otherwise."""
    params = parse_params(param)

    async def work(client: Client) -> int:
        request = await client.submit(job_type, params, priority=priority, user_key=user_key)
        typer.echo(f"submitted job request {request.id} ({request.job_type} v{request.job_version})")
        if not (wait or follow):
            return EXIT_OK
        final, elapsed = await wait_for(client, request, follow=follow)
        typer.echo(_ending(final, elapsed), err=True)
        return outcome_exit_code(final.job_state)

    run(server, work)


async def wait_for(client: Client, request: JobRequest, *, follow: bool) -> tuple[JobRequest, str]:
    """Follow the request's events (and, with `follow`, its logs) until it ends; the final request and
    how long it took."""
    total = 0
    with contextlib.suppress(NotFound):  # a deleted definition: the count is unknown, nothing else
        total = len((await client.get_definition(definition_id=request.job_definition_id)).tasks)
    progress = Progress(request.id, request.job_type, total)
    display = open_display(progress)
    printer = asyncio.create_task(_print_logs(client, request.id, display)) if follow else None
    try:
        await _follow_events(client, progress, display)
        final = await client.get_request(request.id)
        if printer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(printer), _LOG_DRAIN_SECONDS)
    finally:
        if printer is not None:
            printer.cancel()
            await asyncio.gather(printer, return_exceptions=True)
        display.close()
    return final, progress.elapsed()


async def _follow_events(client: Client, progress: Progress, display: Display) -> None:
    """Apply the watch stream's events until it ends (the request is terminal); reconnect (the stream
    replays from the start) when the Queen goes away for a while."""
    lost_since: float | None = None
    attempt = 0
    told_gate = ""
    while True:
        try:
            async for event in client.watch(progress.request_id):
                lost_since, attempt = None, 0
                progress.apply(event)
                display.update(progress)
                gate = progress.gate
                if gate and gate != told_gate:
                    told_gate = gate
                    display.note(
                        f"request {progress.request_id} waits at manual gate {gate!r} for approval "
                        f"(formicary approve|reject {progress.request_id} {gate}); still waiting "
                        "(Ctrl-C stops waiting, not the job)"
                    )
            return
        except Unavailable as exc:
            now = time.monotonic()
            lost_since = now if lost_since is None else lost_since
            if now - lost_since > _RECONNECT_FOR_SECONDS:
                raise
            delay = _RECONNECT_BACKOFF[min(attempt, len(_RECONNECT_BACKOFF) - 1)]
            attempt += 1
            display.note(f"formicary: lost the Queen ({exc.message}); reconnecting in {delay:g}s")
            await asyncio.sleep(delay)
            progress.restart()


async def _print_logs(client: Client, request_id: int, display: Display) -> None:
    """Print the request's log lines as they come; a broken log stream is noted, not fatal to waiting."""
    try:
        async for line in client.stream_logs(request_id, follow=True):
            typer.echo(_log_text(line))
    except FormicaryError as exc:
        display.note(describe_error(exc)[0] + " (log stream; still waiting for the outcome)")


# -- status and logs -----------------------------------------------------------------------------------


def status(request_id: RequestId, server: Server = None) -> None:
    """Show a job request: state, error, and each task's state, exit code, Ant and duration."""

    async def work(client: Client) -> int:
        request = await client.get_request(request_id)
        state = request.job_state.value if request.job_state else "UNKNOWN"
        created = request.created_at.isoformat(timespec="seconds") if request.created_at else "-"
        typer.echo(
            f"request {request.id}: {request.job_type} v{request.job_version} {state} (created {created})"
        )
        if request.params:
            typer.echo("params: " + ", ".join(f"{k}={v}" for k, v in sorted(request.params.items())))
        if request.error_code or request.error_message:
            typer.echo(f"error: {request.error_code} {request.error_message}".rstrip())
        if request.wait_reason:
            typer.echo(f"waiting: {request.wait_reason}")
        if request.tasks:
            table = new_table("TASK", "STATE", "EXIT", "ANT", "DURATION", "MESSAGE")
            for task in request.tasks:
                table.add_row(
                    task.task_type,
                    task.task_state.value if task.task_state else "-",
                    task.exit_code or "-",
                    task.ant_id or "-",
                    _duration(task) or "-",
                    task.error_message or task.exit_message,
                )
            print_table(table)
        return EXIT_OK

    run(server, work)


def logs(
    request_id: RequestId,
    task: Annotated[str, typer.Option("--task", "-t", help="Only this task's lines.")] = "",
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
    server: Server = None,
) -> None:
    """Print a job request's task logs, each line prefixed with its task type."""

    async def work(client: Client) -> int:
        async for line in client.stream_logs(request_id, task_type=task, follow=follow):
            typer.echo(_log_text(line))
        return EXIT_OK

    run(server, work)


# -- controls ------------------------------------------------------------------------------------------


def _report(request: JobRequest, done: JobState, doing: str) -> None:
    state = request.job_state.value if request.job_state else "UNKNOWN"
    suffix = "" if request.job_state is done else f" ({doing}; now {state})"
    typer.echo(f"job request {request.id}: {done.value if request.job_state is done else doing}{suffix}")


def cancel(
    request_id: RequestId,
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded with the request.")] = "",
    server: Server = None,
) -> None:
    """Cancel a job request (a running one first runs the always_run tasks it owes)."""

    async def work(client: Client) -> int:
        _report(await client.cancel(request_id, reason), JobState.CANCELLED, "cancelling")
        return EXIT_OK

    run(server, work)


def restart(
    request_id: RequestId,
    hard: Annotated[
        bool, typer.Option("--hard", help="Run every task again, not only the unfinished.")
    ] = False,
    server: Server = None,
) -> None:
    """Run a finished job request again."""

    async def work(client: Client) -> int:
        _report(await client.restart(request_id, hard=hard), JobState.PENDING, "restarting")
        return EXIT_OK

    run(server, work)


def pause(request_id: RequestId, server: Server = None) -> None:
    """Pause a job request (a running one after its current task)."""

    async def work(client: Client) -> int:
        _report(await client.pause(request_id), JobState.PAUSED, "pausing after the current task")
        return EXIT_OK

    run(server, work)


def resume(request_id: RequestId, server: Server = None) -> None:
    """Resume a paused job request."""

    async def work(client: Client) -> int:
        request = await client.resume(request_id)
        state = request.job_state.value if request.job_state else "UNKNOWN"
        typer.echo(f"job request {request.id}: resumed (now {state})")
        return EXIT_OK

    run(server, work)
