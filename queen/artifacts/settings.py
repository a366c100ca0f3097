"""Where the Queen keeps artifact content: `FORMICARY_QUEEN_ARTIFACTS_*` settings and the store they build."""

from __future__ import annotations

import enum
import re
from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from queen.artifacts.local_store import LocalObjectStore
from queen.artifacts.object_store import ObjectStore
from queen.artifacts.s3_store import S3ObjectStore

__all__ = ["DEFAULT_MAX_ARTIFACT_BYTES", "ArtifactStoreKind", "ArtifactStoreSettings", "build_object_store"]

DEFAULT_MAX_ARTIFACT_BYTES = 512 * 1024 * 1024
# S3 bucket naming rules (the common subset of AWS, MinIO and SeaweedFS).
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class ArtifactStoreKind(enum.StrEnum):
    """Which object store holds artifact content."""

    LOCAL = "local"
    S3 = "s3"


class ArtifactStoreSettings(BaseSettings):
    """The artifact store. A settings class of its own (prefix `FORMICARY_QUEEN_ARTIFACTS_`) nested in
    QueenSettings as `artifacts`: `FORMICARY_QUEEN_ARTIFACTS_KIND=s3` and so on."""

    model_config = SettingsConfigDict(env_prefix="FORMICARY_QUEEN_ARTIFACTS_", frozen=True, extra="forbid")

    kind: ArtifactStoreKind = Field(
        default=ArtifactStoreKind.LOCAL,
        description="`local` (a directory; the embedded default) or `s3` (SeaweedFS, MinIO, AWS S3).",
    )
    root_dir: Path | None = Field(
        default=None, description="Directory of the local store; unset means `<data_dir>/artifacts`."
    )
    endpoint: str = Field(
        default="",
        description="S3 server as host[:port], without scheme (`s3.eu-west-1.amazonaws.com`, "
        "`minio.internal:9000`); required for kind s3.",
    )
    access_key: str = Field(default="", description="S3 access key id.")
    secret_key: SecretStr = Field(default=SecretStr(""), description="S3 secret access key.")
    bucket: str = Field(
        default="formicary-artifacts", description="S3 bucket holding the artifacts; created if missing."
    )
    secure: bool = Field(default=True, description="Use HTTPS to reach the S3 server.")
    region: str = Field(default="", description="S3 region; empty lets the client discover it.")
    max_artifact_bytes: int = Field(
        default=DEFAULT_MAX_ARTIFACT_BYTES, gt=0, description="Largest artifact accepted, in bytes."
    )
    default_retention: timedelta | None = Field(
        default=None,
        description="How long an artifact is kept when its uploader gives no retention; unset means "
        "until deleted.",
    )

    @field_validator("endpoint")
    @classmethod
    def _plain_endpoint(cls, value: str) -> str:
        if "://" in value:
            raise ValueError("give host[:port] without the scheme; `secure` chooses HTTPS or HTTP")
        return value.rstrip("/")

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET_NAME.fullmatch(value) or ".." in value:
            raise ValueError(
                "a bucket name has 3 to 63 lowercase letters, digits, `.` and `-`, "
                "and starts and ends with a letter or digit"
            )
        return value

    @field_validator("default_retention")
    @classmethod
    def _positive_retention(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("default_retention must be positive (or unset: keep until deleted)")
        return value

    @model_validator(mode="after")
    def _s3_needs_endpoint(self) -> ArtifactStoreSettings:
        if self.kind is ArtifactStoreKind.S3 and not self.endpoint:
            raise ValueError("kind s3 needs an endpoint (FORMICARY_QUEEN_ARTIFACTS_ENDPOINT)")
        return self

    def local_root(self, data_dir: Path) -> Path:
        """The local store's directory."""
        return self.root_dir if self.root_dir is not None else data_dir / "artifacts"


def build_object_store(settings: ArtifactStoreSettings, data_dir: Path) -> ObjectStore:
    """The store the settings describe (the local one creates its directory). Close it when done."""
    if settings.kind is ArtifactStoreKind.S3:
        return S3ObjectStore(
            endpoint=settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key.get_secret_value(),
            bucket=settings.bucket,
            secure=settings.secure,
            region=settings.region or None,
        )
    return LocalObjectStore(settings.local_root(data_dir))
