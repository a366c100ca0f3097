"""The client commands of `formicary` (over `sdk.client`), registered by `sdk.cli` itself."""

from __future__ import annotations

import typer

from sdk.commands.ants import ants
from sdk.commands.approvals import approve, reject
from sdk.commands.artifacts import artifacts_app
from sdk.commands.definitions import definitions_app
from sdk.commands.requests import register_request_commands

__all__ = ["register_client_commands"]


def register_client_commands(app: typer.Typer) -> None:
    """Add definitions, submit, status, logs, cancel, restart, pause, resume, approve, reject, artifacts
    and ants."""
    app.add_typer(definitions_app(), name="definitions")
    register_request_commands(app)
    app.command("approve")(approve)
    app.command("reject")(reject)
    app.add_typer(artifacts_app(), name="artifacts")
    app.command("ants")(ants)
