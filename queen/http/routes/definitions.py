"""`/api/jobs/definitions`: upload (YAML or JSON), list, read, disable/enable, delete, and the stored YAML.

Thin, like the gRPC servicer: parse the HTTP request, call `DefinitionService` as the caller, convert.
As in Formicary, `{ref}` is a definition id or a job type: a value shaped like an id (a UUID) is looked
up as an id first, then as a job type.
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time, and the
# dependency aliases they use (`Caller`) are local to the router factories.

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import ValidationError

from queen.domain.errors import InvalidArgument, NotFound
from queen.domain.identity import Identity
from queen.http import _convert as convert
from queen.http.errors import HttpProblem
from queen.http.paging import Paging, page_of
from queen.http.schemas import (
    DeletedDefinitionOut,
    ErrorOut,
    JobDefinitionOut,
    Page,
    UploadDefinitionJsonIn,
    UploadedDefinitionOut,
)
from queen.services.definitions import DefinitionService
from queen.store import DefinitionRecord

__all__ = ["definitions_router"]

_MAX_REF = 256
_YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"})
_JSON_TYPES = frozenset({"application/json"})

Ref = Annotated[str, Path(description="A job definition id, or a job type.", max_length=_MAX_REF)]
JobType = Annotated[str, Path(description="A job type.", max_length=_MAX_REF)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Invalid input; validation problems list line, column and fix."},
    404: {"model": ErrorOut, "description": "No such definition."},
}

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}, "example": "job_type: hello\ntasks: ..."},
            "application/json": {"schema": {"$ref": "#/components/schemas/UploadDefinitionJsonIn"}},
        },
    }
}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _upload_text(media_type: str, body: bytes) -> bytes | str:
    """The YAML of an upload: the body itself, or the `yaml` member of a JSON body."""
    if media_type in _YAML_TYPES:
        return body
    if media_type in _JSON_TYPES:
        try:
            return UploadDefinitionJsonIn.model_validate(json.loads(body)).yaml
        except (ValueError, ValidationError) as exc:
            raise InvalidArgument(
                'a JSON upload is an object {"yaml": "<the definition as YAML text>"}', field="yaml"
            ) from exc
    accepted = ", ".join(sorted(_YAML_TYPES | _JSON_TYPES))
    raise HttpProblem(
        415,
        f"send the definition as YAML (Content-Type: application/yaml) or as JSON "
        f'{{"yaml": "..."}} (Content-Type: application/json); got {media_type or "no Content-Type"}; '
        f"accepted: {accepted}",
    )


def _looks_like_id(ref: str) -> bool:
    try:
        uuid.UUID(ref)
    except ValueError:
        return False
    return True


def definitions_router(
    definitions: DefinitionService, caller: Callable[[Request], Awaitable[Identity]]
) -> APIRouter:
    router = APIRouter(responses=_ERRORS)
    Caller = Annotated[Identity, Depends(caller)]

    async def resolve(identity: Identity, ref: str, version: int = 0) -> DefinitionRecord:
        if _looks_like_id(ref) and not version:
            try:
                return await definitions.get(identity, definition_id=ref)
            except NotFound:
                pass
        return await definitions.get(identity, job_type=ref, version=version)

    async def job_type_of(identity: Identity, ref: str) -> str:
        return (await resolve(identity, ref)).job_type if _looks_like_id(ref) else ref

    @router.post(
        "",
        status_code=201,
        summary="Upload a job definition",
        description="The body is the definition's YAML (`Content-Type: application/yaml`, e.g. "
        '`curl --data-binary @playbook.yaml`) or JSON `{"yaml": "..."}`. A new version is stored '
        "(201) unless the YAML is identical to the latest version (200, `new_version` false). An "
        "invalid definition is refused with 400 and every problem (line, column, fix); nothing is "
        "stored. Bodies above 2 MiB are refused with 413.",
        openapi_extra=_UPLOAD_BODY,
        responses={
            200: {"model": UploadedDefinitionOut, "description": "Identical to the latest version."},
            413: {"model": ErrorOut, "description": "Body too large."},
            415: {"model": ErrorOut, "description": "Neither YAML nor JSON."},
        },
    )
    async def upload_definition(
        request: Request, response: Response, identity: Caller
    ) -> UploadedDefinitionOut:
        text = _upload_text(_media_type(request), await request.body())
        result = await definitions.upload(identity, text)
        if not result.created:
            response.status_code = 200
        return convert.uploaded_definition(result)

    @router.get("", summary="List job definitions (the latest version of each job type, by job type)")
    async def list_definitions(identity: Caller, paging: Paging) -> Page[JobDefinitionOut]:
        # One more than the page says whether another page follows; the service does not count.
        found = await definitions.list_definitions(identity, limit=paging.page_size + 1, offset=paging.offset)
        records = [convert.job_definition(r) for r in found[: paging.page_size]]
        return page_of(records, paging, has_more=len(found) > paging.page_size)

    @router.get("/{ref}", summary="Get a job definition by id, or the latest (or `version`) of a job type")
    async def get_definition(
        ref: Ref,
        identity: Caller,
        version: Annotated[int, Query(ge=0, le=10**9, description="A version of the job type.")] = 0,
    ) -> JobDefinitionOut:
        return convert.job_definition(await resolve(identity, ref, version))

    @router.get(
        "/{job_type}/yaml",
        summary="The YAML of a job type's latest version, as uploaded",
        response_class=PlainTextResponse,
        responses={200: {"content": {"application/yaml": {"schema": {"type": "string"}}}}},
    )
    async def get_definition_yaml(job_type: JobType, identity: Caller) -> PlainTextResponse:
        record = await definitions.get(identity, job_type=job_type)
        return PlainTextResponse(record.yaml, media_type="application/yaml; charset=utf-8")

    @router.post("/{ref}/disable", summary="Disable a job type: new requests are refused, running ones go on")
    async def disable_definition(ref: Ref, identity: Caller) -> JobDefinitionOut:
        job_type = await job_type_of(identity, ref)
        return convert.job_definition(await definitions.set_disabled(identity, job_type, True))

    @router.post("/{ref}/enable", summary="Enable a disabled job type")
    async def enable_definition(ref: Ref, identity: Caller) -> JobDefinitionOut:
        job_type = await job_type_of(identity, ref)
        return convert.job_definition(await definitions.set_disabled(identity, job_type, False))

    @router.delete("/{ref}", summary="Delete a job type (every version); its requests are kept")
    async def delete_definition(ref: Ref, identity: Caller) -> DeletedDefinitionOut:
        job_type = await job_type_of(identity, ref)
        count = await definitions.delete(identity, job_type)
        return DeletedDefinitionOut(job_type=job_type, deleted_versions=count)

    return router
