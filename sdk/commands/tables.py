"""Tables on stdout: aligned columns, wide enough not to wrap when the output is not a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

__all__ = ["new_table", "print_table"]

_PIPE_WIDTH = 240  # a pipe has no width; rows stay whole for grep and friends


def new_table(*columns: str) -> Table:
    return Table(*columns, box=None, pad_edge=False, header_style="bold")


def print_table(table: Table) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=_PIPE_WIDTH, no_color=True, highlight=False)
    console.print(table)
