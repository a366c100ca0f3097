"""One CLI command's session with a Queen: which Queen, the client, one-line errors and the exit code.

Exit codes of the client commands:

    0  done (for `submit --wait`: the job COMPLETED)
    1  the Queen said no (not found, invalid input or definition, not possible in this state), or
       (`submit --wait`) the job FAILED
    2  a usage error, or (`submit --wait`) the job ended otherwise (CANCELLED)
    3  the Queen could not be asked: unreachable, no answer in time, or it failed internally
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from sdk.client import ADDRESS_VARIABLE, DEFAULT_ADDRESS, Client, resolve_address
from sdk.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FormicaryError,
    InternalError,
    InvalidArgument,
    InvalidDefinition,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_OTHER",
    "EXIT_UNREACHABLE",
    "Server",
    "describe_error",
    "exit_code_of",
    "run",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_OTHER = 2
EXIT_UNREACHABLE = 3

Server = Annotated[
    str | None,
    typer.Option(
        "--server",
        "-s",
        envvar=ADDRESS_VARIABLE,
        metavar="HOST:PORT",
        show_default=False,
        help=f"The Queen's gRPC address (default {DEFAULT_ADDRESS}; or set {ADDRESS_VARIABLE}).",
    ),
]

_PREFIXES: tuple[tuple[type[FormicaryError], str], ...] = (
    (NotFound, "not found"),
    (AlreadyExists, "already exists"),
    (InvalidArgument, "invalid"),
    (FailedPrecondition, "not possible now"),
    (PermissionDenied, "permission denied"),
    (Unauthenticated, "not authenticated"),
    (Unimplemented, "not supported by this Queen"),
    (InternalError, "the Queen failed"),
    (Cancelled, "cancelled"),
)
_UNREACHABLE = (Unavailable, DeadlineExceeded, InternalError, Cancelled)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe_error(exc: FormicaryError, *, address: str = "", source: str = "definition") -> list[str]:
    """What to print for a failed call: one line, or one line per validation problem
    (`FILE:LINE:COLUMN: severity: message (fix: ...)`)."""
    if isinstance(exc, InvalidDefinition) and exc.problems:
        return [_one_line(problem.format(source)) for problem in exc.problems]
    message = _one_line(exc.message)
    if isinstance(exc, Unavailable):
        where = f" at {address}" if address else ""
        return [
            f"formicary: cannot reach the Queen{where}: {message} (is it running? choose it with "
            f"--server HOST:PORT or {ADDRESS_VARIABLE})"
        ]
    if isinstance(exc, DeadlineExceeded):
        return [
            f"formicary: the Queen{' at ' + address if address else ''} did not answer in time: {message}"
        ]
    prefix = next((text for kind, text in _PREFIXES if isinstance(exc, kind)), exc.code.lower())
    return [f"formicary: {prefix}: {message}"]


def exit_code_of(exc: FormicaryError) -> int:
    if isinstance(exc, _UNREACHABLE) or type(exc) is FormicaryError:
        return EXIT_UNREACHABLE
    return EXIT_FAILED


def fail(exc: FormicaryError, *, address: str = "", source: str = "definition") -> typer.Exit:
    """Print `exc` (see describe_error) on stderr; the Exit to raise."""
    for line in describe_error(exc, address=address, source=source):
        typer.echo(line, err=True)
    return typer.Exit(exit_code_of(exc))


def run(server: str | None, work: Callable[[Client], Awaitable[int]]) -> None:
    """Run `work` with a client of the chosen Queen and exit with its code; a failed call is one line on
    stderr (no traceback) and the exit code of `exit_code_of`."""
    address = server or ""
    try:
        address = resolve_address(server)
        code = asyncio.run(_with_client(address, work))
    except FormicaryError as exc:
        raise fail(exc, address=address) from None
    except KeyboardInterrupt:
        typer.echo("formicary: interrupted", err=True)
        raise typer.Exit(130) from None
    raise typer.Exit(code)


async def _with_client(address: str, work: Callable[[Client], Awaitable[int]]) -> int:
    async with Client(address) as client:
        return await work(client)
