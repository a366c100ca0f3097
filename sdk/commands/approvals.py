"""`formicary approve|reject ID TASK`: decide a MANUAL gate from a terminal (ApprovalService.Decide).

The vote is the authenticated caller's, never a name given on the command line; with `--comment` and
`--input NAME=VALUE` (the gate's declared inputs) it is recorded in the approval ledger.
"""

from __future__ import annotations

from typing import Annotated

import typer

from sdk.client import Client
from sdk.commands.requests import RequestId, parse_params
from sdk.commands.session import EXIT_OK, Server, run

__all__ = ["approve", "reject"]

Task = Annotated[str, typer.Argument(help="The MANUAL task (gate) to decide.", show_default=False)]
Comment = Annotated[str, typer.Option("--comment", "-m", help="Why; recorded in the approval ledger.")]
Inputs = Annotated[
    list[str],
    typer.Option("--input", "-i", metavar="NAME=VALUE", help="A value the gate asks for (repeatable)."),
]


def _decide(
    server: str | None, request_id: int, task: str, *, approve: bool, comment: str, inputs: list[str]
) -> None:
    values = parse_params(inputs)

    async def work(client: Client) -> int:
        approval = await client.decide(request_id, task, approve=approve, comment=comment, inputs=values)
        verb = "approved" if approve else "rejected"
        tally = f" ({approval.progress})" if approval.progress else ""
        typer.echo(f"{verb} gate {task!r} of job request {request_id}: {approval.state}{tally}")
        return EXIT_OK

    run(server, work)


def approve(
    request_id: RequestId,
    task: Task,
    comment: Comment = "",
    inputs: Inputs = [],  # noqa: B006 - typer copies defaults; a list declares a repeatable option
    server: Server = None,
) -> None:
    """Approve a MANUAL gate."""
    _decide(server, request_id, task, approve=True, comment=comment, inputs=inputs)


def reject(
    request_id: RequestId,
    task: Task,
    comment: Comment = "",
    inputs: Inputs = [],  # noqa: B006
    server: Server = None,
) -> None:
    """Reject a MANUAL gate."""
    _decide(server, request_id, task, approve=False, comment=comment, inputs=inputs)
