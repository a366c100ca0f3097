"""The Queen's settings: `FORMICARY_QUEEN_*` environment variables, built once by the entry point."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, field_validator
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

    @field_validator("heartbeat_interval", "ant_lost_after", "sweep_interval", mode="before")
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
