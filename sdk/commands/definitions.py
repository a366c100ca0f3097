"""`formicary definitions upload|list|show`: job definitions (playbooks) on the Queen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sdk.client import Client
from sdk.commands.session import EXIT_FAILED, EXIT_OK, Server, describe_error, run
from sdk.commands.tables import new_table, print_table
from sdk.errors import InvalidDefinition

__all__ = ["definitions_app"]


def definitions_app() -> typer.Typer:
    app = typer.Typer(help="Job definitions (playbooks): upload, list, show.", no_args_is_help=True)
    app.command("upload")(upload)
    app.command("list")(list_definitions)
    app.command("show")(show)
    return app


def upload(
    files: Annotated[list[Path], typer.Argument(help="Job definition YAML files.", show_default=False)],
    server: Server = None,
) -> None:
    """Upload job definitions; problems print as `FILE:LINE:COLUMN: severity: message (fix: ...)`."""

    async def work(client: Client) -> int:
        failed = False
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                typer.echo(f"{path}:1:1: error: cannot read the file: {exc}", err=True)
                failed = True
                continue
            try:
                result = await client.upload_definition(text)
            except InvalidDefinition as exc:
                for line in describe_error(exc, source=str(path)):
                    typer.echo(line, err=True)
                failed = True
                continue
            for warning in result.warnings:
                typer.echo(warning.format(str(path)), err=True)
            definition = result.definition
            state = "uploaded" if result.new_version else "unchanged"
            tasks = len(definition.tasks)
            typer.echo(f"{path}: {state}: {definition.job_type} v{definition.version} ({tasks} tasks)")
        return EXIT_FAILED if failed else EXIT_OK

    run(server, work)


def list_definitions(server: Server = None) -> None:
    """List job types (their latest versions)."""

    async def work(client: Client) -> int:
        found = await client.list_definitions()
        if not found:
            typer.echo("no job definitions")
            return EXIT_OK
        table = new_table("JOB TYPE", "VERSION", "TASKS", "STATE", "DESCRIPTION")
        for definition in found:
            table.add_row(
                definition.job_type,
                str(definition.version),
                str(len(definition.tasks)),
                "disabled" if definition.disabled else "enabled",
                definition.description,
            )
        print_table(table)
        return EXIT_OK

    run(server, work)


def show(
    job_type: Annotated[str, typer.Argument(help="The job type.", show_default=False)],
    version: Annotated[int, typer.Option("--version", help="A version (default: the latest).")] = 0,
    yaml: Annotated[bool, typer.Option("--yaml", help="Print the YAML as uploaded.")] = False,
    server: Server = None,
) -> None:
    """Show a job definition: its tasks and where each one leads."""

    async def work(client: Client) -> int:
        definition = await client.get_definition(job_type, version=version)
        if yaml:
            typer.echo(definition.yaml, nl=not definition.yaml.endswith("\n"))
            return EXIT_OK
        state = "disabled" if definition.disabled else "enabled"
        typer.echo(f"{definition.job_type} v{definition.version} ({state}): {definition.description}")
        if definition.required_params:
            typer.echo(f"required params: {', '.join(definition.required_params)}")
        if definition.cron_trigger:
            typer.echo(f"cron: {definition.cron_trigger}")
        table = new_table("TASK", "METHOD", "ON COMPLETED", "ON FAILED", "ON EXIT CODE")
        for task in definition.tasks:
            exits = ", ".join(f"{code}→{target}" for code, target in task.on_exit_code.items())
            table.add_row(task.task_type, task.method, task.on_completed, task.on_failed, exits)
        print_table(table)
        return EXIT_OK

    run(server, work)
