"""`formicary artifacts list|get`: what tasks produced (and their logs), downloaded to a file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sdk.client import Client
from sdk.commands.session import EXIT_OK, Server, run
from sdk.commands.tables import new_table, print_table

__all__ = ["artifacts_app"]


def artifacts_app() -> typer.Typer:
    app = typer.Typer(help="Artifacts: list a request's, download one.", no_args_is_help=True)
    app.command("list")(list_artifacts)
    app.command("get")(get)
    return app


def _size(length: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if length >= scale:
            return f"{length / scale:.1f} {unit}"
    return f"{length} B"


def list_artifacts(
    request: Annotated[
        int | None, typer.Option("--request", "-r", min=1, help="Only this job request's.")
    ] = None,
    task: Annotated[str, typer.Option("--task", "-t", help="Only this task's.")] = "",
    server: Server = None,
) -> None:
    """List artifacts, newest first."""

    async def work(client: Client) -> int:
        found = await client.list_artifacts(request_id=request, task_type=task)
        if not found:
            typer.echo("no artifacts")
            return EXIT_OK
        table = new_table("ID", "NAME", "KIND", "SIZE", "REQUEST", "TASK", "CREATED")
        for artifact in found:
            table.add_row(
                artifact.id,
                artifact.name,
                artifact.kind,
                _size(artifact.content_length),
                str(artifact.job_request_id or "-"),
                artifact.task_type or "-",
                artifact.created_at.isoformat(timespec="seconds") if artifact.created_at else "-",
            )
        print_table(table)
        return EXIT_OK

    run(server, work)


def get(
    artifact_id: Annotated[str, typer.Argument(help="The artifact id.", show_default=False)],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write it ('-' for stdout; default: its name, here)."),
    ] = None,
    server: Server = None,
) -> None:
    """Download an artifact."""

    async def work(client: Client) -> int:
        if output is not None and str(output) == "-":
            await client.download_artifact(artifact_id, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return EXIT_OK
        partial = (
            Path(f".formicary-{artifact_id}.part")
            if output is None
            else output.with_name(f".{output.name}.part")
        )
        try:
            with partial.open("wb") as sink:
                artifact = await client.download_artifact(artifact_id, sink)
            # the artifact's own name, reduced to a file name: it is the Queen's text, not a path to trust
            target = output if output is not None else Path(Path(artifact.name).name or artifact.id)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        typer.echo(
            f"saved {artifact.name} ({_size(artifact.content_length)}, sha256 {artifact.sha256}) to {target}",
            err=True,
        )
        return EXIT_OK

    run(server, work)
