"""The Queen's subcommands of `formicary` (registered through the `formicary.commands` entry point)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from queen.domain.definition_parser import check_job_definition

__all__ = ["lint", "register"]


def register(app: typer.Typer) -> None:
    """Add the Queen's commands to the `formicary` CLI."""
    app.command("lint")(lint)


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
