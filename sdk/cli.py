"""The `formicary` command. Server packages add subcommands (`lint`, `queen`, `ant`, `dev`) via entry points.

The client commands (definitions, submit, status, logs, ...) are the SDK's own (`sdk.commands`).

A client-only install has the client commands; installing the Queen or the Ant adds theirs through the
`formicary.commands` entry-point group, whose objects are `register(app: typer.Typer) -> None`. Each
entry point is named after a command it adds (one `register` may be listed under several names): a
command line naming one loads only that plugin, so `formicary ant` or `formicary status` never imports
the Queen (an Ant starts in a fraction of the time and memory); `--help` and unknown names load all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated

import typer

from sdk.commands import register_client_commands
from sdk.credentials import TOKEN_VARIABLE
from sdk.telemetry import configure_logging, configure_tracing

__all__ = ["COMMAND_GROUP", "build_app", "main"]

COMMAND_GROUP = "formicary.commands"


def build_app(*, telemetry: bool = False, argv: Sequence[str] | None = None) -> typer.Typer:
    """The CLI with the installed plugins' subcommands registered: all of them, or with `argv` (the
    command line after the program name) only what it invokes (see the module's docstring).

    `telemetry`: the client commands set up this process's logs and traces (the console script does;
    a program or test that runs the app in its own process keeps its own set-up)."""
    app = typer.Typer(
        name="formicary",
        help="Formicary: playbooks as DAGs of tasks, run by Ants, with manual approval gates.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    client_commands: set[str] = set()

    @app.callback()
    def _root(
        ctx: typer.Context,
        token: Annotated[
            str | None,
            typer.Option(
                "--token",
                envvar=TOKEN_VARIABLE,
                show_default=False,
                help=f"Bearer token for the Queen (or set {TOKEN_VARIABLE}); prefer the variable: "
                "a command line is visible to every local user.",
            ),
        ] = None,
    ) -> None:
        """Formicary command-line interface."""
        if telemetry and ctx.invoked_subcommand in client_commands:
            # the server commands (queen, dev, ant) set up their own logs and traces
            _configure_client_telemetry()
        if token:
            # the client commands read the token where the SDK's Client does
            os.environ[TOKEN_VARIABLE] = token

    register_client_commands(app)
    client_commands.update(_command_names(app))
    for entry_point in _plugins_for(argv, client_commands):
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


def _plugins_for(argv: Sequence[str] | None, client_commands: set[str]) -> list[EntryPoint]:
    """The plugins to load for `argv`: none for a client command, the one named after the invoked
    command, else (no command, help, an unknown name) every plugin, each `register` once."""
    plugins = sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name)
    invoked = _invoked_command(argv or ())
    if argv is not None and invoked is not None:
        if invoked in client_commands:
            return []
        named = [ep for ep in plugins if ep.name == invoked]
        if named:
            return named
    unique: dict[str, EntryPoint] = {}
    for ep in plugins:
        unique.setdefault(ep.value, ep)
    return list(unique.values())


def _invoked_command(argv: Sequence[str]) -> str | None:
    """The first word of `argv` that is not a root option or its value (`--token T`)."""
    words = iter(argv)
    for word in words:
        if word == "--token":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _command_names(app: typer.Typer) -> set[str]:
    commands = {command.name or "" for command in app.registered_commands}
    groups = {group.name or "" for group in app.registered_groups}
    return (commands | groups) - {""}


def _configure_client_telemetry() -> None:
    """Warnings and errors as console lines on stderr; traces of the gRPC calls when OTEL_* asks for
    them (service `formicary-cli`; the SDK flushes them when the process exits)."""
    configure_logging("warning", fmt="console")
    configure_tracing("formicary-cli")


def main() -> None:
    """Entry point of the `formicary` console script."""
    build_app(telemetry=True, argv=sys.argv[1:])()
