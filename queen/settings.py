"""The Queen's settings: `FORMICARY_QUEEN_*` environment variables, built once by the entry point."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from queen.artifacts.settings import ArtifactStoreSettings
from queen.domain.durations import DurationError, parse_duration

__all__ = ["QueenSettings"]


def _default_data_dir() -> Path:
    return Path.home() / ".formicary"


class QueenSettings(BaseSettings):
    """Everything the Queen can be told; every field has a default that runs the embedded system."""

    model_config = SettingsConfigDict(env_prefix="FORMICARY_QUEEN_", frozen=True, extra="forbid")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the embedded defaults keep their files (SQLite database, local artifact store).",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL: `sqlite+aiosqlite:///path` or `postgresql+psycopg://user@host/db`; "
        "empty means a SQLite file in data_dir.",
    )
    grpc_host: str = Field(default="127.0.0.1", description="Address the gRPC server binds.")
    grpc_port: int = Field(default=7070, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    http_host: str = Field(default="127.0.0.1", description="Address the REST gateway and dashboard bind.")
    http_port: int = Field(default=7777, ge=0, le=65535, description="HTTP port; 0 picks a free one.")
    organization_id: str = Field(
        default="local",
        description="Organisation of the local identity used while authentication is off (embedded mode).",
    )
    user_id: str = Field(default="local-admin", description="User of the local identity (embedded mode).")
    heartbeat_interval: timedelta = Field(
        default=timedelta(seconds=5), description="How often Ants send heartbeats (told to each Ant)."
    )
    ant_lost_after: timedelta = Field(
        default=timedelta(seconds=20),
        description="An Ant silent for this long is lost: its tasks are retried or fail with ERR_ANT_LOST.",
    )
    sweep_interval: timedelta = Field(
        default=timedelta(seconds=10),
        description="Safety-net sweep of the scheduler and timers; events wake them sooner.",
    )
    max_message_bytes: int = Field(
        default=8 * 1024 * 1024, description="Largest gRPC message accepted or sent, in bytes."
    )
    artifacts: ArtifactStoreSettings = Field(
        default_factory=ArtifactStoreSettings,
        description="Where artifact content is kept: its own settings, `FORMICARY_QUEEN_ARTIFACTS_*` "
        "(kind, root_dir, endpoint, access_key, secret_key, bucket, secure, region, max_artifact_bytes, "
        "default_retention).",
    )
    max_params_bytes: int = Field(
        default=64 * 1024, description="Largest total size of a job request's params, in bytes."
    )

    # -- security (design.md §8) --------------------------------------------------------------------
    auth_required: bool = Field(
        default=True,
        description="Every call but health needs a credential. False makes every call act as the local "
        "identity (organization_id, user_id) with the admin role: for development only, logged loudly "
        "(`formicary dev` turns it off unless this variable is set).",
    )
    auth_signing_key: SecretStr = Field(
        default=SecretStr(""),
        description="Key (base64, at least 32 bytes) signing the Queen's API tokens; every Queen of an "
        "installation needs the same one. Empty: a key generated in data_dir/auth/signing.key.",
    )
    auth_cache_ttl: timedelta = Field(
        default=timedelta(seconds=5),
        description="How long a verified credential is remembered: a revoked token is refused at most "
        "this long after revocation. 0 verifies every call against the database.",
    )
    oidc_issuer: str = Field(
        default="", description="OpenID Connect issuer whose bearer tokens are accepted; empty: none."
    )
    oidc_audience: str = Field(default="", description="The `aud` OIDC tokens must carry (the client id).")
    oidc_jwks_url: str = Field(
        default="", description="The issuer's JWKS URL; empty: from its discovery document."
    )
    oidc_roles_claim: str = Field(
        default="roles", description="OIDC claim listing the caller's roles (admin, operator, ...)."
    )
    oidc_organization_claim: str = Field(
        default="org", description="OIDC claim naming the caller's organisation."
    )
    oidc_default_organization: str = Field(
        default="", description="Organisation of OIDC tokens without the organisation claim; empty: refuse."
    )
    oidc_jwks_cache_ttl: timedelta = Field(
        default=timedelta(minutes=5), description="How long the issuer's key set is used before refetching."
    )
    oidc_jwks_min_refresh_interval: timedelta = Field(
        default=timedelta(seconds=10),
        description="Least time between two fetches of the key set for an unknown key id (a rotation).",
    )
    secret_keys: SecretStr = Field(
        default=SecretStr(""),
        description="AES-256-GCM keys of secret configs, `key_id:base64key` separated by commas; the "
        "first encrypts, all decrypt (rotation: put the new key first, then `formicary configs "
        "reencrypt`). Empty: a key generated in data_dir/auth/secrets.key.",
    )
    submit_rate_per_minute: float = Field(
        default=600, ge=0, description="Job submissions a credential may make per minute (0: no limit)."
    )
    submit_burst: int = Field(default=100, ge=1, description="Submissions a credential may make at once.")
    decide_rate_per_minute: float = Field(
        default=120, ge=0, description="Approval votes a credential may cast per minute (0: no limit)."
    )
    decide_burst: int = Field(default=30, ge=1, description="Approval votes a credential may cast at once.")
    session_ttl: timedelta = Field(
        default=timedelta(hours=8),
        description="Longest life of a dashboard session cookie (never beyond its token's expiry).",
    )
    session_cookie_secure: bool = Field(
        default=False,
        description="Mark the session cookie Secure (set it when the dashboard is served over HTTPS).",
    )

    # -- telemetry (design.md §9; tracing itself is configured by the standard OTEL_* variables) -------
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe log events written (debug, info, warning, error)."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="structlog output on stderr: JSON lines, a console rendering, or auto (console when "
        "stderr is a terminal, JSON otherwise).",
    )

    @field_validator(
        "heartbeat_interval",
        "ant_lost_after",
        "sweep_interval",
        "auth_cache_ttl",
        "oidc_jwks_cache_ttl",
        "oidc_jwks_min_refresh_interval",
        "session_ttl",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: object) -> object:
        """Durations as job definitions write them (`5s`, `1m30s`), or a number of seconds."""
        if isinstance(value, str):
            text = value.strip()
            try:
                return timedelta(seconds=float(text))
            except ValueError:
                pass
            try:
                return parse_duration(text)
            except DurationError as exc:
                raise ValueError(str(exc)) from exc
        return value

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'formicary.db'}"
