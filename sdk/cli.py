"""The `formicary` command. Server packages add subcommands (`lint`, `queen`, `ant`, `dev`) via entry points.

The client commands (definitions, submit, status, logs, ...) are the SDK's own (`sdk.commands`).

A client-only install has the client commands; installing the Queen or the Ant adds theirs through the
`formicary.commands` entry-point group, whose objects are `register(app: typer.Typer) -> None`.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer

from sdk.commands import register_client_commands

__all__ = ["COMMAND_GROUP", "build_app", "main"]

COMMAND_GROUP = "formicary.commands"


def build_app() -> typer.Typer:
    """The CLI with every installed plugin's subcommands registered."""
    app = typer.Typer(
        name="formicary",
        help="Formicary: playbooks as DAGs of tasks, run by Ants, with manual approval gates.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root() -> None:
        """Formicary command-line interface."""

    register_client_commands(app)
    for entry_point in sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name):
        try:
            register = entry_point.load()
            register(app)
        except Exception as exc:
            # one broken plugin must not take the other commands down with it
            print(  # noqa: T201 - the CLI's own diagnostic, before any logging exists
                f"formicary: the '{entry_point.name}' commands are unavailable: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
    return app


def main() -> None:
    """Entry point of the `formicary` console script."""
    build_app()()
