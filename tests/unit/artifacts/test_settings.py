"""Artifact store settings (`FORMICARY_QUEEN_ARTIFACTS_*`): the list, defaults, parsing, the factory."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from queen.artifacts import (
    DEFAULT_MAX_ARTIFACT_BYTES,
    ArtifactStoreKind,
    ArtifactStoreSettings,
    LocalObjectStore,
    S3ObjectStore,
    build_object_store,
)
from queen.settings import QueenSettings

pytestmark = pytest.mark.unit

SUPPORTED = {
    "kind", "root_dir", "endpoint", "access_key", "secret_key", "bucket", "secure", "region",
    "max_artifact_bytes", "default_retention",
}  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FORMICARY_QUEEN_"):
            monkeypatch.delenv(name)


def test_every_setting_is_listed_and_documented() -> None:
    assert set(ArtifactStoreSettings.model_fields) == SUPPORTED
    assert all(field.description for field in ArtifactStoreSettings.model_fields.values())


def test_defaults_run_the_embedded_local_store(tmp_path: Path) -> None:
    settings = ArtifactStoreSettings()
    assert settings.kind is ArtifactStoreKind.LOCAL
    assert settings.max_artifact_bytes == DEFAULT_MAX_ARTIFACT_BYTES == 512 * 1024 * 1024
    assert settings.default_retention is None
    store = build_object_store(settings, tmp_path)
    assert isinstance(store, LocalObjectStore)
    assert store.root == tmp_path / "artifacts"
    assert (tmp_path / "artifacts").is_dir()
    assert store.bucket == "artifacts"


def test_environment_configures_s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "KIND": "s3",
        "ENDPOINT": "minio.internal:9000",
        "ACCESS_KEY": "formicary",
        "SECRET_KEY": "s3cr3t",
        "BUCKET": "team-artifacts",
        "SECURE": "false",
        "REGION": "eu-west-1",
        "MAX_ARTIFACT_BYTES": "1048576",
        "DEFAULT_RETENTION": "P30D",
    }.items():
        monkeypatch.setenv(f"FORMICARY_QUEEN_ARTIFACTS_{name}", value)
    settings = ArtifactStoreSettings()
    assert (settings.kind, settings.endpoint, settings.bucket, settings.secure, settings.region) == (
        ArtifactStoreKind.S3,
        "minio.internal:9000",
        "team-artifacts",
        False,
        "eu-west-1",
    )
    assert settings.max_artifact_bytes == 1024 * 1024
    assert settings.default_retention == timedelta(days=30)
    assert "s3cr3t" not in repr(settings)
    assert settings.secret_key.get_secret_value() == "s3cr3t"
    store = build_object_store(settings, tmp_path)
    assert isinstance(store, S3ObjectStore)
    assert store.bucket == "team-artifacts"
    assert not (tmp_path / "artifacts").exists()


def test_nested_in_queen_settings_under_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """How QueenSettings carries it: one field whose default reads FORMICARY_QUEEN_ARTIFACTS_*."""

    class Settings(QueenSettings):
        artifacts: ArtifactStoreSettings = Field(default_factory=ArtifactStoreSettings, description="x")

    monkeypatch.setenv("FORMICARY_QUEEN_ARTIFACTS_ROOT_DIR", "/srv/artifacts")
    assert Settings().artifacts.root_dir == Path("/srv/artifacts")
    assert Settings(artifacts=ArtifactStoreSettings(bucket="other")).artifacts.bucket == "other"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kind": "s3"}, "needs an endpoint"),
        ({"kind": "s3", "endpoint": "https://s3.amazonaws.com"}, "without the scheme"),
        ({"bucket": "Upper_Case"}, "bucket name"),
        ({"bucket": "ab"}, "bucket name"),
        ({"max_artifact_bytes": 0}, "greater than 0"),
        ({"default_retention": "PT0S"}, "must be positive"),
        ({"kind": "ftp"}, "'local' or 's3'"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ArtifactStoreSettings.model_validate(values)


def test_root_dir_overrides_the_data_dir(tmp_path: Path) -> None:
    settings = ArtifactStoreSettings(root_dir=tmp_path / "elsewhere")
    assert settings.local_root(tmp_path / "data") == tmp_path / "elsewhere"
