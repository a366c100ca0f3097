"""`formicary ants`: the Ants registered with the Queen."""

from __future__ import annotations

import typer

from sdk.client import Client
from sdk.commands.session import EXIT_OK, Server, run
from sdk.commands.tables import new_table, print_table

__all__ = ["ants"]


def ants(server: Server = None) -> None:
    """List Ants: methods, tags, capacity, load, last heartbeat."""

    async def work(client: Client) -> int:
        found = await client.list_ants()
        if not found:
            typer.echo("no Ants registered")
            return EXIT_OK
        table = new_table("ANT", "STATE", "HOST", "METHODS", "TAGS", "SLOTS", "LOAD", "LAST HEARTBEAT")
        for ant in found:
            heartbeat = ant.last_heartbeat_at.isoformat(timespec="seconds") if ant.last_heartbeat_at else "-"
            table.add_row(
                ant.ant_id,
                ant.state,
                ant.host,
                ",".join(ant.methods),
                ",".join(ant.tags) or "-",
                f"{ant.max_capacity - ant.free_slots}/{ant.max_capacity}",
                f"{ant.load:.2f}",
                heartbeat,
            )
        print_table(table)
        return EXIT_OK

    run(server, work)
