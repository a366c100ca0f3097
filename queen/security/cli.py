"""`formicary tokens` and `formicary configs`: server-side admin commands working on the Queen's database.

Like `formicary audit`, they read the Queen's settings (FORMICARY_QUEEN_*: database URL, data directory,
signing key, secret keys) or take `--database-url` / `--data-dir`; whoever can run them can read the
database and the keys, so they are the installation's administrator by construction. Every token issued
or revoked and every secret set, revealed or deleted is recorded in the security audit log.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from queen.domain.durations import DurationError, parse_duration
from queen.domain.errors import FormicaryError
from queen.security.api_tokens import TokenIssuer, load_or_create_key
from queen.security.configs import ConfigService
from queen.security.secret_box import load_secret_box
from queen.settings import QueenSettings
from queen.store import Database
from queen.store.security import ConfigScope

__all__ = ["configs", "register", "tokens"]

T = TypeVar("T")

tokens = typer.Typer(help="API tokens: create (printed once), list, revoke.", no_args_is_help=True)
configs = typer.Typer(
    help="Configs of an organisation, a job type or a user; secret ones are encrypted (AES-GCM).",
    no_args_is_help=True,
)

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="The Queen's database (default: the Queen's settings).")
]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="The Queen's data directory (keys generated there).")
]
Org = Annotated[str, typer.Option("--org", help="Organisation.")]
Actor = Annotated[str, typer.Option("--actor", help="Who does this, for the audit log.")]


def register(app: typer.Typer) -> None:
    """Add `formicary tokens ...` and `formicary configs ...` to the `formicary` CLI."""
    app.add_typer(tokens, name="tokens")
    app.add_typer(configs, name="configs")


def _settings(database_url: str | None, data_dir: Path | None) -> QueenSettings:
    overrides: dict[str, object] = {}
    if database_url:
        overrides["database_url"] = database_url
    if data_dir is not None:
        overrides["data_dir"] = data_dir.expanduser()
    try:
        return QueenSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        typer.echo(f"formicary: invalid Queen settings: {exc}", err=True)
        raise typer.Exit(2) from exc


def _run(settings: QueenSettings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = Database(settings.resolved_database_url())
        await db.start()
        try:
            return await work(db)
        finally:
            await db.stop()

    try:
        return asyncio.run(run())
    except FormicaryError as exc:
        typer.echo(f"formicary: {exc}", err=True)
        raise typer.Exit(1) from exc


def _issuer(settings: QueenSettings, db: Database) -> TokenIssuer:
    key = load_or_create_key(
        settings.auth_signing_key.get_secret_value(), settings.data_dir / "auth" / "signing.key"
    )
    return TokenIssuer(db, key)


def _lifetime(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _split(values: list[str]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


@tokens.command("create")
def create_token(  # noqa: PLR0917 - typer options are keyword-only in use
    name: Annotated[str, typer.Argument(help="A name for the token (shown in listings).")],
    org: Org,
    user: Annotated[str, typer.Option("--user", help="Who the token acts as (an Ant: its name).")],
    role: Annotated[
        list[str], typer.Option("--role", help="admin, operator, developer, viewer, or ant (repeat).")
    ],
    expires_in: Annotated[str, typer.Option("--expires-in", help="Lifetime: 30d, 12h, ...")] = "90d",
    method: Annotated[
        list[str], typer.Option("--method", help="Ant tokens: a method the Ant may serve (repeat or a,b).")
    ] = [],  # noqa: B006 - typer copies list defaults
    tag: Annotated[list[str], typer.Option("--tag", help="Ant tokens: a tag the Ant may offer.")] = [],  # noqa: B006
    actor: Actor = "cli",
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Create a token and print it on stdout (the only time it is shown; the Queen keeps its hash)."""
    settings = _settings(database_url, data_dir)
    lifetime = _lifetime(expires_in)

    async def work(db: Database) -> str:
        issued = await _issuer(settings, db).issue(
            organization_id=org,
            user_id=user,
            name=name,
            roles=_split(role),
            lifetime=lifetime,
            created_by=actor,
            ant_methods=[m.upper() for m in _split(method)],
            ant_tags=_split(tag),
        )
        typer.echo(
            f"formicary: token {issued.record.id} ({name}) for {user}@{org}, roles "
            f"{', '.join(issued.record.roles)}, expires {issued.record.expires_at.isoformat()}",
            err=True,
        )
        return issued.token

    sys.stdout.write(_run(settings, work) + "\n")


@tokens.command("list")
def list_tokens(
    org: Annotated[str | None, typer.Option("--org", help="Only this organisation.")] = None,
    include_revoked: Annotated[bool, typer.Option("--include-revoked")] = False,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """One JSON object per token (never the token itself)."""
    settings = _settings(database_url, data_dir)

    async def work(db: Database) -> list[str]:
        found = await _issuer(settings, db).list_tokens(org, include_revoked=include_revoked)
        return [
            json.dumps(
                {
                    "id": r.id,
                    "name": r.name,
                    "organization_id": r.organization_id,
                    "user_id": r.user_id,
                    "kind": r.kind,
                    "roles": list(r.roles),
                    "methods": list(r.methods),
                    "tags": list(r.tags),
                    "created_by": r.created_by,
                    "created_at": r.created_at.isoformat(),
                    "expires_at": r.expires_at.isoformat(),
                    "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
                }
            )
            for r in found
        ]

    for line in _run(settings, work):
        typer.echo(line)


@tokens.command("revoke")
def revoke_token(
    token: Annotated[str, typer.Argument(help="The token's id, or its name (every token of that name).")],
    org: Annotated[str | None, typer.Option("--org", help="Only in this organisation.")] = None,
    actor: Actor = "cli",
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Revoke tokens: Queens refuse them within their auth_cache_ttl."""
    settings = _settings(database_url, data_dir)

    async def work(db: Database) -> int:
        records = await _issuer(settings, db).revoke(token, organization_id=org, revoked_by=actor)
        return len(records)

    typer.echo(f"formicary: {_run(settings, work)} token(s) revoked", err=True)


# -- configs -------------------------------------------------------------------------------------------

Scope = Annotated[ConfigScope, typer.Option("--scope", help="organization, job or user.")]
Owner = Annotated[str, typer.Option("--owner", help="The job type (scope job) or user id (scope user).")]


def _configs(settings: QueenSettings, db: Database) -> ConfigService:
    box = load_secret_box(settings.secret_keys.get_secret_value(), settings.data_dir)
    return ConfigService(db, box)


@configs.command("set")
def set_config(  # noqa: PLR0917 - typer options are keyword-only in use
    name: Annotated[str, typer.Argument(help="The variable name tasks see.")],
    org: Org,
    scope: Scope = ConfigScope.ORGANIZATION,
    owner: Owner = "",
    secret: Annotated[bool, typer.Option("--secret", help="Encrypt it, and redact it everywhere.")] = False,
    value_stdin: Annotated[
        bool,
        typer.Option("--value-stdin", help="Read the value from stdin (keeps it out of the shell history)."),
    ] = False,
    value: Annotated[str | None, typer.Option("--value", help="The value (prefer --value-stdin).")] = None,
    actor: Actor = "cli",
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Create or replace a config."""
    settings = _settings(database_url, data_dir)
    text = sys.stdin.read().rstrip("\n") if value_stdin else value
    if text is None:
        raise typer.BadParameter("give --value or --value-stdin")

    async def work(db: Database) -> None:
        await _configs(settings, db).set(
            organization_id=org, scope=scope, owner=owner, name=name, value=text, secret=secret, actor=actor
        )

    _run(settings, work)
    typer.echo(f"formicary: {scope.value} config {name} set{' (secret)' if secret else ''}", err=True)


@configs.command("list")
def list_configs(org: Org, database_url: DatabaseUrl = None, data_dir: DataDir = None) -> None:
    """One JSON object per config; secret values are shown as `***`."""
    settings = _settings(database_url, data_dir)

    async def work(db: Database) -> list[str]:
        found = await _configs(settings, db).list(org)
        return [
            json.dumps(
                {
                    "scope": c.scope.value,
                    "owner": c.owner,
                    "name": c.name,
                    "secret": c.secret,
                    "value": "***" if c.secret else c.value,
                    "key_id": c.key_id,
                }
            )
            for c in found
        ]

    for line in _run(settings, work):
        typer.echo(line)


@configs.command("reveal")
def reveal_config(  # noqa: PLR0917 - typer options are keyword-only in use
    name: Annotated[str, typer.Argument()],
    org: Org,
    scope: Scope = ConfigScope.ORGANIZATION,
    owner: Owner = "",
    actor: Actor = "cli",
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Print a secret's value (recorded in the security audit log)."""
    settings = _settings(database_url, data_dir)

    async def work(db: Database) -> str:
        return await _configs(settings, db).reveal(
            organization_id=org, scope=scope, owner=owner, name=name, actor=actor
        )

    sys.stdout.write(_run(settings, work) + "\n")


@configs.command("delete")
def delete_config(  # noqa: PLR0917 - typer options are keyword-only in use
    name: Annotated[str, typer.Argument()],
    org: Org,
    scope: Scope = ConfigScope.ORGANIZATION,
    owner: Owner = "",
    actor: Actor = "cli",
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    settings = _settings(database_url, data_dir)

    async def work(db: Database) -> None:
        await _configs(settings, db).delete(
            organization_id=org, scope=scope, owner=owner, name=name, actor=actor
        )

    _run(settings, work)


@configs.command("reencrypt")
def reencrypt(actor: Actor = "cli", database_url: DatabaseUrl = None, data_dir: DataDir = None) -> None:
    """Re-encrypt every secret under the current (first) key: the last step of a key rotation."""
    settings = _settings(database_url, data_dir)

    async def work(db: Database) -> int:
        return await _configs(settings, db).reencrypt(actor=actor)

    typer.echo(f"formicary: {_run(settings, work)} secret(s) re-encrypted", err=True)
