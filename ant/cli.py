"""`formicary ant`: run an Ant until SIGINT/SIGTERM (added to `formicary` by the `formicary.commands`
entry point)."""

from __future__ import annotations

import asyncio
import signal
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
from pydantic import ValidationError

from ant import telemetry
from ant.errors import AntError, ConfigurationError
from ant.executors.selection import ExecutorTuning, select_executors
from ant.settings import AntSettings
from ant.stream import AntClient
from sdk.telemetry import configure_logging as configure_sdk_logging

__all__ = ["ant", "register"]


def register(app: typer.Typer) -> None:
    """Add the Ant's command to the `formicary` CLI."""
    app.command("ant")(ant)


def ant(  # noqa: PLR0917 - a CLI command: typer passes each option as an argument
    queen: Annotated[
        str | None,
        typer.Option("--queen", help="host:port of the Queen's gRPC endpoint.", show_default=False),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods", help="Comma-separated task methods to run, e.g. SHELL,DOCKER.", show_default=False
        ),
    ] = None,
    tags: Annotated[
        str | None,
        typer.Option("--tags", help="Comma-separated tags offered for routing.", show_default=False),
    ] = None,
    capacity: Annotated[
        int | None, typer.Option("--capacity", min=1, help="Most tasks held at once.", show_default=False)
    ] = None,
    local_fallback: Annotated[
        bool | None,
        typer.Option(
            "--local-fallback/--no-local-fallback",
            help="Run DOCKER/KUBERNETES tasks with SHELL when no engine/cluster answers "
            "(said in each task's log).",
            show_default=False,
        ),
    ] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            "--work-dir", help="Where task attempts get their working directories.", show_default=False
        ),
    ] = None,
    ant_id: Annotated[
        str | None,
        typer.Option(
            "--ant-id", help="Unique id of this Ant process (default <hostname>-<pid>).", show_default=False
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="The Ant's token (`formicary tokens create --role ant ...`); prefer "
            "FORMICARY_ANT_CREDENTIAL: a command line is visible to every local user.",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Run an Ant: connect to the Queen, run the tasks it dispatches, leave cleanly on SIGINT/SIGTERM.

    Settings not given as options come from FORMICARY_ANT_* environment variables (see ant/settings.py).
    The first SIGINT/SIGTERM stops taking tasks and lets running ones finish (FORMICARY_ANT_SHUTDOWN_GRACE),
    the second stops at once.
    """
    given: dict[str, Any] = {
        "queen_address": queen,
        "methods": methods,
        "tags": tags,
        "capacity": capacity,
        "local_fallback": local_fallback,
        "work_dir": work_dir,
        "ant_id": ant_id,
        "credential": token,
    }
    try:
        settings = AntSettings(**{name: value for name, value in given.items() if value is not None})
    except ValidationError as exc:
        typer.echo(f"formicary ant: invalid settings:\n{exc}", err=True)
        raise typer.Exit(2) from None
    telemetry.configure_logging(log_level, settings)
    tracing = telemetry.configure_tracing(settings, _version())
    try:
        status = asyncio.run(serve(settings))
    finally:
        tracing.shutdown()  # the spans still buffered go out before the process ends
    raise typer.Exit(status)


def _version() -> str:
    try:
        return version("formicary")
    except PackageNotFoundError:
        return ""


def configure_logging(level: str) -> None:
    """structlog JSON lines on stderr at `level`, for Ants run by other programs (the benchmark)."""
    configure_sdk_logging(level, fmt="json")


async def serve(settings: AntSettings) -> int:
    """Run the Ant until it leaves; the process exit status."""
    log = structlog.get_logger("ant").bind(ant_id=settings.ant_id)
    try:
        await asyncio.to_thread(settings.work_dir.mkdir, parents=True, exist_ok=True)
        executors = await select_executors(
            settings.methods,
            ant_id=settings.ant_id,
            host=settings.host,
            local_fallback=settings.local_fallback,
            logger=log,
            tuning=ExecutorTuning(
                kill_grace=settings.kill_grace.total_seconds(),
                after_script_timeout=settings.after_script_timeout.total_seconds(),
                http_default_timeout=settings.http_timeout.total_seconds(),
                api_timeout=settings.api_timeout.total_seconds(),
                kubernetes_namespace=settings.kubernetes_namespace,
                kubernetes_poll_interval=settings.kubernetes_poll_interval.total_seconds(),
            ),
        )
    except (ConfigurationError, OSError) as exc:
        log.error("ant_start_failed", error=str(exc))
        return 2
    client = AntClient(settings, executors, logger=log)
    loop = asyncio.get_running_loop()
    run_task = asyncio.create_task(client.run(), name="ant")
    signals_seen = 0

    def on_signal(signum: signal.Signals) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info("ant_signal_received", signal=signum.name, action="leave after running tasks")
            client.request_shutdown()
        else:
            log.warning("ant_signal_received", signal=signum.name, action="stop now")
            run_task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await run_task
        return 0
    except asyncio.CancelledError:
        return 130
    except AntError as exc:
        log.error("ant_failed", error=str(exc))
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await executors.aclose()
