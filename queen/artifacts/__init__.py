"""Artifact content: the object-store interface, its local-directory and S3 implementations, settings.

The records describing artifacts live in `queen.store.artifacts`; the rules (names, limits, scoping) in
`queen.services.artifacts`.
"""

from queen.artifacts.errors import ContentMismatch, ObjectNotFound, ObjectStoreError, ObjectTooLarge
from queen.artifacts.keys import artifact_key, check_artifact_name, check_key, check_task_type
from queen.artifacts.local_store import LocalObjectStore
from queen.artifacts.object_store import DEFAULT_CHUNK_SIZE, DEFAULT_CONTENT_TYPE, ObjectStore, StoredObject
from queen.artifacts.s3_store import S3ObjectStore
from queen.artifacts.settings import (
    DEFAULT_MAX_ARTIFACT_BYTES,
    ArtifactStoreKind,
    ArtifactStoreSettings,
    build_object_store,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CONTENT_TYPE",
    "DEFAULT_MAX_ARTIFACT_BYTES",
    "ArtifactStoreKind",
    "ArtifactStoreSettings",
    "ContentMismatch",
    "LocalObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "ObjectTooLarge",
    "S3ObjectStore",
    "StoredObject",
    "artifact_key",
    "build_object_store",
    "check_artifact_name",
    "check_key",
    "check_task_type",
]
