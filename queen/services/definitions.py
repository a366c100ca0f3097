"""Job definitions: upload (validated, versioned, identical uploads are no-ops), read, disable, delete."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from queen.domain.definition_parser import check_job_definition
from queen.domain.errors import InvalidArgument, InvalidDefinition, NotFound
from queen.domain.identity import Identity
from queen.domain.problems import Problem
from queen.store import Database, DefinitionRecord, definitions

__all__ = ["DefinitionService", "UploadResult"]


@dataclass(frozen=True, slots=True)
class UploadResult:
    """The stored (or, with validate_only, would-be) definition; `created` is False for a no-op upload."""

    definition: DefinitionRecord | None
    created: bool
    warnings: tuple[Problem, ...]


class DefinitionService:
    """Operations on job definitions, scoped to the caller's organisation."""

    def __init__(self, db: Database, *, on_change: Callable[[], None] = lambda: None) -> None:
        self._db = db
        self._on_change = on_change

    async def upload(
        self, identity: Identity, yaml: str | bytes, *, validate_only: bool = False
    ) -> UploadResult:
        """Validate and store a definition; InvalidDefinition (nothing stored) lists every problem."""
        report = check_job_definition(yaml, source="upload")
        if report.definition is None:
            raise InvalidDefinition(report.problems, source="upload")
        if validate_only:
            return UploadResult(None, False, report.warnings)
        text = yaml.decode("utf-8") if isinstance(yaml, bytes) else yaml
        async with self._db.transaction() as session:
            record, created = await definitions.save_definition(
                session,
                organization_id=identity.organization_id,
                user_id=identity.user_id,
                yaml=text,
                definition=report.definition,
            )
        if created:
            self._on_change()
        return UploadResult(record, created, report.warnings)

    async def get(
        self,
        identity: Identity,
        *,
        definition_id: str = "",
        job_type: str = "",
        version: int = 0,
    ) -> DefinitionRecord:
        """By id, or by job type (latest version unless `version`)."""
        async with self._db.transaction() as session:
            if definition_id:
                record = await definitions.get_definition(session, definition_id)
                if record.organization_id != identity.organization_id or record.deleted_at is not None:
                    raise NotFound(f"job definition {definition_id} does not exist")
                return record
            if not job_type:
                raise InvalidArgument("give a definition id or a job_type", field="job_type")
            if version:
                return await definitions.get_definition_version(
                    session, identity.organization_id, job_type, version
                )
            return await definitions.get_latest_definition(
                session, identity.organization_id, job_type, include_disabled=True
            )

    async def list_definitions(
        self, identity: Identity, *, limit: int, offset: int
    ) -> list[DefinitionRecord]:
        async with self._db.transaction() as session:
            return await definitions.list_definitions(
                session, identity.organization_id, limit=limit, offset=offset
            )

    async def versions(self, identity: Identity, job_type: str) -> list[DefinitionRecord]:
        async with self._db.transaction() as session:
            found = await definitions.list_versions(session, identity.organization_id, job_type)
        if not found:
            raise NotFound(f"job type {job_type!r} does not exist")
        return found

    async def set_disabled(self, identity: Identity, job_type: str, disabled: bool) -> DefinitionRecord:
        async with self._db.transaction() as session:
            record = await definitions.set_disabled(session, identity.organization_id, job_type, disabled)
        self._on_change()
        return record

    async def delete(self, identity: Identity, job_type: str) -> int:
        async with self._db.transaction() as session:
            count = await definitions.soft_delete(session, identity.organization_id, job_type)
        self._on_change()
        return count
