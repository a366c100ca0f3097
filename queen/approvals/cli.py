"""`formicary audit`: export the approval ledger as JSON Lines, and verify it (a database or an export).

Both read the Queen's database directly (`--database-url`, else the Queen's settings: the
FORMICARY_QUEEN_DATABASE_URL variable or the SQLite file in the data directory), so an auditor needs
no running Queen and need not trust one. `verify` exits 0 when every chain is intact, 1 when an entry
was edited or deleted (each problem on its own line), 2 when it cannot read what it was given.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from queen.approvals import ledger
from queen.approvals.ledger import LedgerReport
from queen.settings import QueenSettings
from queen.store import Database

__all__ = ["audit", "register"]

audit = typer.Typer(
    help="The approval ledger: export it, verify that nobody edited it.", no_args_is_help=True
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="SQLAlchemy URL of the Queen's database (default: the Queen's settings)."
    ),
]
RequestId = Annotated[
    int | None, typer.Option("--job-request-id", help="Only the gates of this job request.", min=1)
]


def register(app: typer.Typer) -> None:
    """Add `formicary audit ...` to the `formicary` CLI."""
    app.add_typer(audit, name="audit")


def _database_url(database_url: str | None) -> str:
    if database_url:
        return database_url
    try:
        return QueenSettings().resolved_database_url()
    except ValueError as exc:
        typer.echo(f"formicary audit: invalid Queen settings: {exc}", err=True)
        raise typer.Exit(2) from exc


@audit.command("export")
def export(
    database_url: DatabaseUrl = None,
    job_request_id: RequestId = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: standard output).")
    ] = None,
) -> None:
    """Write every ledger entry as one JSON object per line, gate by gate, oldest first."""
    lines = asyncio.run(_export(_database_url(database_url), job_request_id))
    text = "".join(f"{line}\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"formicary audit: {len(lines)} entries written to {output}", err=True)


async def _export(url: str, job_request_id: int | None) -> list[str]:
    db = Database(url)
    await db.start()
    try:
        async with db.transaction() as session:
            return [line async for line in ledger.export_lines(session, job_request_id=job_request_id)]
    finally:
        await db.stop()


@audit.command("verify")
def verify(
    database_url: DatabaseUrl = None,
    job_request_id: RequestId = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Verify this export (JSON Lines) instead of the database."),
    ] = None,
) -> None:
    """Check every gate's hash chain; exit 1 if any entry was edited or deleted."""
    if file is not None:
        try:
            report = ledger.verify_lines(file.read_text(encoding="utf-8").splitlines())
        except (OSError, UnicodeDecodeError) as exc:
            typer.echo(f"formicary audit: cannot read {file}: {exc}", err=True)
            raise typer.Exit(2) from exc
    else:
        report = asyncio.run(_verify(_database_url(database_url), job_request_id))
    _print(report)
    raise typer.Exit(0 if report.ok else 1)


async def _verify(url: str, job_request_id: int | None) -> LedgerReport:
    db = Database(url)
    await db.start()
    try:
        async with db.transaction() as session:
            return await ledger.verify_database(session, job_request_id=job_request_id)
    finally:
        await db.stop()


def _print(report: LedgerReport) -> None:
    for problem in report.problems:
        typer.echo(f"TAMPERED: {problem}")
    verdict = "intact" if report.ok else f"{len(report.problems)} problem(s) found"
    typer.echo(f"formicary audit: {report.gates} gate(s), {report.entries} entries: {verdict}", err=True)
