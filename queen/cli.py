"""The Queen's subcommands of `formicary`: `lint`, `queen` and `dev` (registered through an entry point)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
from pydantic import ValidationError

from queen.app import Queen
from queen.domain.definition_parser import check_job_definition
from queen.domain.errors import FormicaryError
from queen.settings import QueenSettings
from queen.telemetry.logging import configure_logging
from queen.telemetry.tracing import configure_tracing

__all__ = ["dev", "lint", "queen", "register"]

log = structlog.get_logger(__name__)


def register(app: typer.Typer) -> None:
    """Add the Queen's commands to the `formicary` CLI."""
    app.command("lint")(lint)
    app.command("queen")(queen)
    app.command("dev")(dev)


def lint(
    files: Annotated[
        list[Path], typer.Argument(help="Job definition YAML files to check.", show_default=False)
    ],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only, not warnings.")] = False,
) -> None:
    """Check job definitions offline; print `FILE:LINE:COLUMN: message (fix: ...)`; exit 1 on any error."""
    failed = False
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            typer.echo(f"{path}:1:1: error: cannot read the file: {exc.strerror or exc}", err=True)
            failed = True
            continue
        report = check_job_definition(data, source=str(path))
        for problem in report.problems:
            if quiet and not problem.is_error:
                continue
            typer.echo(problem.format(str(path)))
        failed = failed or not report.ok
        if report.ok and not quiet:
            definition = report.definition
            assert definition is not None
            typer.echo(f"{path}: ok: job_type {definition.job_type}, {len(definition.tasks)} tasks", err=True)
    raise typer.Exit(1 if failed else 0)


GrpcPort = Annotated[int | None, typer.Option("--grpc-port", help="gRPC port (default 7070; 0 = any free).")]
HttpPort = Annotated[
    int | None, typer.Option("--http-port", help="REST API and dashboard port (default 7777; 0 = any free).")
]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (default ~/.formicary).")]
DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite in the data directory).")
]


def _settings(
    grpc_port: int | None,
    http_port: int | None,
    data_dir: Path | None,
    database_url: str | None,
    *,
    dev_mode: bool = False,
) -> QueenSettings:
    overrides: dict[str, object] = {}
    if dev_mode and "FORMICARY_QUEEN_AUTH_REQUIRED" not in os.environ:
        # the embedded system runs as its local admin identity, unless told otherwise explicitly
        overrides["auth_required"] = False
    if grpc_port is not None:
        overrides["grpc_port"] = grpc_port
    if http_port is not None:
        overrides["http_port"] = http_port
    if data_dir is not None:
        overrides["data_dir"] = data_dir.expanduser()
    if database_url is not None:
        overrides["database_url"] = database_url
    try:
        return QueenSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        typer.echo(f"formicary: invalid Queen settings (FORMICARY_QUEEN_* or options): {problems}", err=True)
        raise typer.Exit(2) from exc


def queen(
    grpc_port: GrpcPort = None,
    http_port: HttpPort = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run a Queen until SIGINT or SIGTERM (settings: FORMICARY_QUEEN_* environment variables)."""
    settings = _settings(grpc_port, http_port, data_dir, database_url)
    _run(_serve(settings, dev_mode=False, examples=[], ant=False), settings)


def dev(
    *,
    grpc_port: GrpcPort = None,
    http_port: HttpPort = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    examples: Annotated[
        Path | None, typer.Option("--examples", help="Directory of playbooks to load (default ./examples).")
    ] = None,
    with_ant: Annotated[bool, typer.Option("--ant/--no-ant", help="Start the embedded Ant.")] = True,
) -> None:
    """The embedded system: a Queen (SQLite, local data) and an Ant child process on loopback.

    Authentication is off (every call acts as the local admin identity) unless
    FORMICARY_QUEEN_AUTH_REQUIRED is set."""
    settings = _settings(grpc_port, http_port, data_dir, database_url, dev_mode=True)
    folder = examples if examples is not None else Path("examples")
    playbooks = (
        [(path.name, path.read_bytes()) for path in sorted(folder.glob("*.yaml"))] if folder.is_dir() else []
    )
    _run(_serve(settings, dev_mode=True, examples=playbooks, ant=with_ant), settings)


def _run(main: Coroutine[Any, Any, None], settings: QueenSettings) -> None:
    """Logs and traces set up once for the process, the Queen run, buffered spans flushed at the end."""
    configure_logging(settings)
    tracing = configure_tracing(settings)
    try:
        asyncio.run(main)
    finally:
        tracing.shutdown()


async def _serve(
    settings: QueenSettings, *, dev_mode: bool, examples: list[tuple[str, bytes]], ant: bool
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    queen_app = Queen(settings)
    await queen_app.start()
    child: asyncio.subprocess.Process | None = None
    try:
        address = f"127.0.0.1:{queen_app.grpc_port}"
        typer.echo(f"formicary: Queen listening on {settings.grpc_host}:{queen_app.grpc_port} (gRPC)")
        typer.echo(f"formicary: REST API on {queen_app.http.url} (OpenAPI at /openapi.json, dashboard at /)")
        typer.echo(f"formicary: database {queen_app.db.dialect_name}: {settings.resolved_database_url()}")
        if not settings.auth_required:
            typer.echo(
                "formicary: WARNING: authentication is off; every call acts as the local admin identity "
                f"{settings.user_id}@{settings.organization_id}"
                + (" (embedded development mode)" if dev_mode else " (FORMICARY_QUEEN_AUTH_REQUIRED=false)")
            )
        if dev_mode:
            await _load_examples(queen_app, examples)
            if ant:
                credential = await _embedded_ant_token(queen_app) if settings.auth_required else ""
                child = await _start_ant(address, settings.data_dir, credential)
            rest = f"http://localhost:{queen_app.http_port}"
            typer.echo(f"formicary: dashboard: {rest}/")
            typer.echo("formicary: try:")
            typer.echo(
                f'  curl -X POST {rest}/api/jobs/definitions -H "Content-Type: application/yaml" '
                "--data-binary @playbook.yaml"
            )
            typer.echo(
                f'  curl -X POST {rest}/api/jobs/requests -H "Content-Type: application/json" '
                """-d '{"job_type": "secure-go-cicd"}'"""
            )
        await stop.wait()
    finally:
        if child is not None:
            await _stop_child(child)
        await queen_app.stop()


async def _load_examples(queen_app: Queen, playbooks: list[tuple[str, bytes]]) -> None:
    identity = queen_app.services.local_identity
    for name, text in playbooks:
        try:
            result = await queen_app.services.definitions.upload(identity, text)
        except FormicaryError as exc:
            typer.echo(f"formicary: {name}: not loaded: {exc}", err=True)
            continue
        record = result.definition
        if record is not None:
            state = "loaded" if result.created else "unchanged"
            typer.echo(f"formicary: {name}: {state} as {record.job_type} v{record.version}")


_EMBEDDED_ANT_METHODS = [
    "SHELL",
    "DOCKER",
    "KUBERNETES",
    "HTTP_GET",
    "HTTP_POST_FORM",
    "HTTP_POST_JSON",
    "HTTP_PUT_FORM",
    "HTTP_PUT_JSON",
    "HTTP_DELETE",
]


async def _embedded_ant_token(queen_app: Queen) -> str:
    """An Ant token for the embedded Ant of a dev Queen that requires authentication (a day long)."""
    settings = queen_app.settings
    issued = await queen_app.security.tokens.issue(
        organization_id=settings.organization_id,
        user_id="ant:embedded",
        name="embedded-ant",
        roles=["ant"],
        lifetime=timedelta(days=1),
        created_by=settings.user_id,
        ant_methods=_EMBEDDED_ANT_METHODS,
    )
    return issued.token


async def _start_ant(address: str, data_dir: Path, credential: str = "") -> asyncio.subprocess.Process:
    """The embedded Ant, a child process on the same stream protocol as any other Ant."""
    # DOCKER and KUBERNETES run on a real engine/cluster when one answers; otherwise --local-fallback
    # runs them with SHELL and says so in every such task's log and record.
    methods = _EMBEDDED_ANT_METHODS
    command = [
        sys.executable,
        "-m",
        "sdk",
        "ant",
        "--queen",
        address,
        "--methods",
        ",".join(methods),
        "--capacity",
        "8",
        "--local-fallback",
        "--work-dir",
        str(data_dir / "ant-work"),
    ]
    # the credential goes by environment, never on the command line (visible to every local user)
    env = {**os.environ, "FORMICARY_ANT_CREDENTIAL": credential} if credential else None
    child = await asyncio.create_subprocess_exec(*command, env=env)
    typer.echo(f"formicary: embedded Ant started (pid {child.pid}) with --local-fallback")
    return child


async def _stop_child(child: asyncio.subprocess.Process) -> None:
    if child.returncode is not None:
        return
    child.terminate()
    try:
        async with asyncio.timeout(10):
            await child.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
