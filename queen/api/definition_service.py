"""JobDefinitionService servicer: playbook upload, lookup, listing, versions, disable/enable, delete."""

from __future__ import annotations

from typing import Any

import grpc

from formicary.v1 import job_definition_service_pb2 as pb
from formicary.v1 import job_definition_service_pb2_grpc as pb_grpc
from queen.api import _convert as convert
from queen.api.errors import unary_rpc
from queen.domain.definition_parser import check_job_definition
from queen.domain.errors import InvalidArgument, InvalidDefinition
from queen.domain.identity import Identity
from queen.services.service_set import Services
from queen.store import DefinitionRecord

__all__ = ["JobDefinitionServicer"]

# Longest job type accepted in a request; longer ones cannot exist, so they are refused before any query.
_MAX_JOB_TYPE = 256
# How many stored definitions one ListJobDefinitions call reads at a time while filtering.
_SCAN_CHUNK = 500

_Context = grpc.aio.ServicerContext[Any, Any]


def _job_type(value: str, *, field: str = "job_type") -> str:
    if not value:
        raise InvalidArgument(f"{field} is required", field=field)
    if len(value) > _MAX_JOB_TYPE:
        raise InvalidArgument(f"{field} is longer than {_MAX_JOB_TYPE} characters", field=field)
    return value


class JobDefinitionServicer(pb_grpc.JobDefinitionServiceServicer):
    """Thin: convert, call `DefinitionService` as the caller, convert back."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._definitions = services.definitions

    def _identity(self, context: _Context) -> Identity:
        return convert.identity_of(context)

    @unary_rpc
    async def UploadJobDefinition(
        self, request: pb.UploadJobDefinitionRequest, context: _Context
    ) -> pb.UploadJobDefinitionResponse:
        result = await self._definitions.upload(
            self._identity(context), request.yaml, validate_only=request.validate_only
        )
        problems = [convert.validation_problem(p) for p in result.warnings]
        if result.definition is not None:
            definition = convert.job_definition(result.definition)
        else:
            # validate_only: UploadResult carries no definition, yet the response shows the parsed one,
            # so the YAML the service just found valid is parsed once more here.
            report = check_job_definition(request.yaml, source="upload")
            if report.definition is None:
                raise InvalidDefinition(report.problems, source="upload")
            definition = convert.parsed_job_definition(report.definition, yaml=request.yaml)
        return pb.UploadJobDefinitionResponse(
            job_definition=definition, new_version=result.created, problems=problems
        )

    @unary_rpc
    async def GetJobDefinition(
        self, request: pb.GetJobDefinitionRequest, context: _Context
    ) -> pb.GetJobDefinitionResponse:
        identity = self._identity(context)
        selector = request.WhichOneof("selector")
        if selector == "id":
            if not request.id or len(request.id) > 64:
                raise InvalidArgument("id must be a job definition id", field="id")
            record = await self._definitions.get(identity, definition_id=request.id)
        elif selector == "job_type":
            if request.version < 0:
                raise InvalidArgument("version must not be negative", field="version")
            record = await self._definitions.get(
                identity, job_type=_job_type(request.job_type), version=request.version
            )
        else:
            raise InvalidArgument("give either id or job_type", field="selector")
        return pb.GetJobDefinitionResponse(job_definition=convert.job_definition(record))

    @unary_rpc
    async def ListJobDefinitions(
        self, request: pb.ListJobDefinitionsRequest, context: _Context
    ) -> pb.ListJobDefinitionsResponse:
        identity = self._identity(context)
        if len(request.job_type_contains) > _MAX_JOB_TYPE:
            raise InvalidArgument("job_type_contains is too long", field="job_type_contains")
        if len(request.tags) > 64:
            raise InvalidArgument("at most 64 tags", field="tags")
        method = convert.method_from_proto(request.method)
        contains = request.job_type_contains.casefold()
        tags = frozenset(request.tags)
        filters = (contains, tuple(sorted(tags)), method, request.include_disabled)
        page = convert.page_request(request.page_size, request.page_token, filters)

        def wanted(record: DefinitionRecord) -> bool:
            return (
                (request.include_disabled or not record.disabled)
                and contains in record.job_type.casefold()
                and tags <= frozenset(record.tags)
                and (method is None or method.value in record.methods)
            )

        # DefinitionService.list_definitions has no filters yet: read the listing in chunks from the
        # token's offset (an offset in the unfiltered listing) until the page is full.
        found: list[DefinitionRecord] = []
        offset = page.offset
        more = True
        while more and len(found) < page.limit:
            chunk = await self._definitions.list_definitions(identity, limit=_SCAN_CHUNK, offset=offset)
            chunk_start = offset
            for record in chunk:
                offset += 1
                if wanted(record):
                    found.append(record)
                    if len(found) == page.limit:
                        break
            # a short chunk read to its end is the end of the listing
            more = not (len(chunk) < _SCAN_CHUNK and offset == chunk_start + len(chunk))
        return pb.ListJobDefinitionsResponse(
            job_definitions=[convert.job_definition(r) for r in found],
            next_page_token=page.next_token(offset) if more else "",
        )

    @unary_rpc
    async def ListJobDefinitionVersions(
        self, request: pb.ListJobDefinitionVersionsRequest, context: _Context
    ) -> pb.ListJobDefinitionVersionsResponse:
        job_type = _job_type(request.job_type)
        page = convert.page_request(request.page_size, request.page_token, (job_type,))
        versions = await self._definitions.versions(self._identity(context), job_type)
        end = page.offset + page.limit
        return pb.ListJobDefinitionVersionsResponse(
            job_definitions=[convert.job_definition(r) for r in versions[page.offset : end]],
            next_page_token=page.next_token(end) if end < len(versions) else "",
        )

    @unary_rpc
    async def DisableJobDefinition(
        self, request: pb.DisableJobDefinitionRequest, context: _Context
    ) -> pb.DisableJobDefinitionResponse:
        record = await self._definitions.set_disabled(
            self._identity(context), _job_type(request.job_type), True
        )
        return pb.DisableJobDefinitionResponse(job_definition=convert.job_definition(record))

    @unary_rpc
    async def EnableJobDefinition(
        self, request: pb.EnableJobDefinitionRequest, context: _Context
    ) -> pb.EnableJobDefinitionResponse:
        record = await self._definitions.set_disabled(
            self._identity(context), _job_type(request.job_type), False
        )
        return pb.EnableJobDefinitionResponse(job_definition=convert.job_definition(record))

    @unary_rpc
    async def DeleteJobDefinition(
        self, request: pb.DeleteJobDefinitionRequest, context: _Context
    ) -> pb.DeleteJobDefinitionResponse:
        await self._definitions.delete(self._identity(context), _job_type(request.job_type))
        return pb.DeleteJobDefinitionResponse()
