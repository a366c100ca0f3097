"""The services scripts/test starts are up and usable: PostgreSQL, SeaweedFS's S3, dockerd; and the
per-test database and object store fixtures work for every kind."""

from __future__ import annotations

import io
import uuid

import docker
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.fixtures.object_stores import ObjectStoreConfig, minio_client, remove_bucket
from tests.fixtures.services import S3Endpoint

pytestmark = pytest.mark.integration

# Applets the Docker executor's tests may rely on in the busybox image.
COMMON_APPLETS = (
    "sh", "echo", "cat", "ls", "sleep", "true", "false", "env", "mkdir", "rm", "cp", "mv", "test", "[",
    "grep", "sed", "wc", "head", "tail", "printf", "pwd", "touch", "date", "id", "base64", "sha256sum",
)  # fmt: skip


async def test_postgresql_answers_a_query(postgres_url: str) -> None:
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT version()"))).scalar_one()
            database = (await conn.execute(text("SELECT current_database()"))).scalar_one()
    finally:
        await engine.dispose()
    assert version.startswith("PostgreSQL ")
    assert database == "formicary_test"


def test_seaweedfs_puts_gets_and_lists_objects(s3_endpoint: S3Endpoint) -> None:
    client = minio_client(s3_endpoint)
    bucket = f"smoke-{uuid.uuid4().hex}"
    payload = b"hello from formicary"
    client.make_bucket(bucket)
    try:
        client.put_object(bucket, "runs/1/hello.txt", io.BytesIO(payload), len(payload))
        response = client.get_object(bucket, "runs/1/hello.txt")
        try:
            body = response.read()
        finally:
            response.close()
            response.release_conn()
        names = [obj.object_name for obj in client.list_objects(bucket, prefix="runs/", recursive=True)]
    finally:
        remove_bucket(client, bucket)
    assert body == payload
    assert names == ["runs/1/hello.txt"]
    assert not client.bucket_exists(bucket)


def test_dockerd_runs_the_busybox_image(docker_client: docker.DockerClient, docker_image: str) -> None:
    output = docker_client.containers.run(docker_image, ["echo", "hello"], remove=True)
    assert output == b"hello\n"


def test_busybox_image_has_the_common_applets(docker_client: docker.DockerClient, docker_image: str) -> None:
    script = 'for a in "$@"; do command -v "$a" >/dev/null || echo "missing: $a"; done; echo done'
    output = docker_client.containers.run(
        docker_image, ["sh", "-c", script, "sh", *COMMON_APPLETS], remove=True, network_mode="none"
    )
    assert output == b"done\n"


async def test_database_url_gives_a_usable_database(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
            # Fresh: a table of any name can be created.
            await conn.execute(text("CREATE TABLE smoke (id INTEGER PRIMARY KEY)"))
    finally:
        await engine.dispose()


def test_object_store_config_is_ready(object_store_config: ObjectStoreConfig) -> None:
    if object_store_config.kind == "local":
        assert object_store_config.root is not None
        assert object_store_config.root.is_dir()
        assert not any(object_store_config.root.iterdir())
        return
    assert object_store_config.endpoint is not None
    assert object_store_config.bucket is not None
    s3 = S3Endpoint(
        endpoint=object_store_config.endpoint,
        access_key=object_store_config.access_key or "",
        secret_key=object_store_config.secret_key or "",
    )
    client = minio_client(s3)
    assert client.bucket_exists(object_store_config.bucket)
    assert not list(client.list_objects(object_store_config.bucket, recursive=True))
