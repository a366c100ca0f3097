"""`/api/artifacts`: list (by job request, task type, kind), describe, download (streamed), delete."""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time, and the
# dependency aliases they use (`Caller`) are local to the router factories.

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse

from queen.domain.errors import InvalidArgument
from queen.domain.identity import Identity
from queen.http import _convert as convert
from queen.http.paging import Paging, page_of
from queen.http.schemas import ArtifactOut, ErrorOut, Page
from queen.services.artifacts import ArtifactService
from queen.store.records import ArtifactKind

__all__ = ["DOWNLOAD_CHUNK_SIZE", "artifacts_router"]

DOWNLOAD_CHUNK_SIZE = 64 * 1024
_MAX_REQUEST_ID = 2**63 - 1
_MAX_NAME = 256

ArtifactId = Annotated[str, Path(max_length=64, description="An artifact id.")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Invalid input."},
    404: {"model": ErrorOut, "description": "No such artifact (or job request)."},
}


def _kind(value: str) -> ArtifactKind | None:
    if not value:
        return None
    try:
        return ArtifactKind(value.upper())
    except ValueError:
        known = ", ".join(kind.value for kind in ArtifactKind)
        raise InvalidArgument(f"kind must be one of {known}", field="kind") from None


def _attachment(name: str) -> str:
    """A Content-Disposition naming the file: ASCII fallback plus the exact UTF-8 name (RFC 6266)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def artifacts_router(
    artifacts: ArtifactService, caller: Callable[[Request], Awaitable[Identity]]
) -> APIRouter:
    router = APIRouter(responses=_ERRORS)
    Caller = Annotated[Identity, Depends(caller)]

    @router.get("", summary="List artifacts, newest first")
    async def list_artifacts(
        identity: Caller,
        paging: Paging,
        job_request_id: Annotated[
            int | None, Query(ge=1, le=_MAX_REQUEST_ID, description="Only this job request's.")
        ] = None,
        task_type: Annotated[str, Query(max_length=_MAX_NAME, description="Only this task's.")] = "",
        kind: Annotated[str, Query(description="TASK, LOG, CACHE or USER.")] = "",
    ) -> Page[ArtifactOut]:
        found = await artifacts.list(
            identity,
            job_request_id=job_request_id,
            task_type=task_type or None,
            kind=_kind(kind),
            limit=paging.page_size + 1,
            offset=paging.offset,
        )
        records = [convert.artifact(record) for record in found[: paging.page_size]]
        return page_of(records, paging, has_more=len(found) > paging.page_size)

    @router.get("/{artifact_id}", summary="Describe an artifact")
    async def get_artifact(artifact_id: ArtifactId, identity: Caller) -> ArtifactOut:
        return convert.artifact(await artifacts.get(identity, artifact_id))

    @router.get(
        "/{artifact_id}/download",
        summary="Download an artifact's content (streamed)",
        description="The content, with its content type, length and SHA-256 (`X-Checksum-Sha256`, "
        "`ETag`). Content that changed in the object store since it was recorded ends the stream short "
        "of its length rather than pass as the artifact.",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    async def download_artifact(artifact_id: ArtifactId, identity: Caller) -> StreamingResponse:
        record, content = await artifacts.download(identity, artifact_id, chunk_size=DOWNLOAD_CHUNK_SIZE)

        async def body() -> AsyncIterator[bytes]:
            async with contextlib.aclosing(content):
                async for chunk in content:
                    yield chunk

        return StreamingResponse(
            body(),
            media_type=record.content_type,
            headers={
                "Content-Length": str(record.content_length),
                "Content-Disposition": _attachment(record.name),
                "X-Checksum-Sha256": record.sha256,
                "ETag": f'"{record.sha256}"',
            },
        )

    @router.delete("/{artifact_id}", summary="Delete an artifact (its record, then its content)")
    async def delete_artifact(artifact_id: ArtifactId, identity: Caller) -> ArtifactOut:
        return convert.artifact(await artifacts.delete(identity, artifact_id))

    return router
