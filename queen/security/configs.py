"""Configs of an organisation, a job type or a user: secret ones encrypted at rest, decrypted only into
the TaskRequest an Ant receives (see `queen.security.injection`), revealed only by an audited admin."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from queen.domain.errors import InvalidArgument
from queen.domain.work import TaskConfigs
from queen.security.secret_box import SecretBox
from queen.store import Database
from queen.store import security as store
from queen.store.security import ConfigRecord, ConfigScope

__all__ = ["ConfigService", "TaskConfigs"]

_MAX_VALUE_BYTES = 64 * 1024
_MAX_NAME = 128


def _context(organization_id: str, scope: ConfigScope, owner: str, name: str) -> str:
    return f"{organization_id}\x1f{scope.value}\x1f{owner}\x1f{name}"


class ConfigService:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self._db = db
        self._box = box

    async def set(
        self,
        *,
        organization_id: str,
        scope: ConfigScope,
        owner: str,
        name: str,
        value: str,
        secret: bool,
        actor: str,
    ) -> ConfigRecord:
        if not name or len(name) > _MAX_NAME or not name.replace("_", "a").isalnum():
            raise InvalidArgument("a config name is letters, digits and `_`, at most 128", field="name")
        if len(value.encode()) > _MAX_VALUE_BYTES:
            raise InvalidArgument("a config value is at most 64 KiB", field="value")
        if (scope is ConfigScope.ORGANIZATION) != (owner == ""):
            raise InvalidArgument("job and user configs name their owner; organisation ones do not")
        key_id, stored = "", value
        if secret:
            key_id, stored = self._box.encrypt(value, context=_context(organization_id, scope, owner, name))
        async with self._db.transaction() as session:
            record = await store.set_config(
                session,
                organization_id=organization_id,
                scope=scope,
                owner=owner,
                name=name,
                value=stored,
                secret=secret,
                key_id=key_id,
                created_by=actor,
            )
            await store.audit(
                session,
                organization_id=organization_id,
                actor=actor,
                action="secret_set" if secret else "config_set",
                subject=f"{scope.value}:{owner}:{name}",
            )
        return record

    async def list(self, organization_id: str) -> list[ConfigRecord]:
        async with self._db.transaction() as session:
            return await store.list_configs(session, organization_id)

    async def reveal(
        self, *, organization_id: str, scope: ConfigScope, owner: str, name: str, actor: str
    ) -> str:
        """A config's value in clear; for a secret, recorded in the audit log first."""
        async with self._db.transaction() as session:
            record = await store.get_config(
                session, organization_id=organization_id, scope=scope, owner=owner, name=name
            )
            if record.secret:
                await store.audit(
                    session,
                    organization_id=organization_id,
                    actor=actor,
                    action="secret_revealed",
                    subject=f"{scope.value}:{owner}:{name}",
                )
        return self._plain(record)

    async def delete(
        self, *, organization_id: str, scope: ConfigScope, owner: str, name: str, actor: str
    ) -> None:
        async with self._db.transaction() as session:
            await store.delete_config(
                session, organization_id=organization_id, scope=scope, owner=owner, name=name
            )
            await store.audit(
                session,
                organization_id=organization_id,
                actor=actor,
                action="config_deleted",
                subject=f"{scope.value}:{owner}:{name}",
            )

    async def reencrypt(self, *, actor: str) -> int:
        """Every secret not under the current key, re-encrypted under it (key rotation)."""
        count = 0
        async with self._db.transaction() as session:
            for record in await store.list_configs(session, None):
                if not record.secret or record.key_id == self._box.current:
                    continue
                plain = self._plain(record)
                context = _context(record.organization_id, record.scope, record.owner, record.name)
                key_id, stored = self._box.encrypt(plain, context=context)
                await store.set_config(
                    session,
                    organization_id=record.organization_id,
                    scope=record.scope,
                    owner=record.owner,
                    name=record.name,
                    value=stored,
                    secret=True,
                    key_id=key_id,
                    created_by=actor,
                )
                count += 1
            if count:
                await store.audit(
                    session, organization_id="", actor=actor, action="secrets_reencrypted", subject=str(count)
                )
        return count

    async def for_task(self, *, organization_id: str, job_type: str, user_id: str) -> TaskConfigs:
        """The configs a task sees, decrypted (for the TaskRequest only), in a transaction of their own."""
        async with self._db.transaction() as session:
            configs = await self.read_later(
                session, organization_id=organization_id, job_type=job_type, user_id=user_id
            )
        return configs()

    async def read_later(
        self, session: AsyncSession, *, organization_id: str, job_type: str, user_id: str
    ) -> Callable[[], TaskConfigs]:
        """`for_task` read with the caller's transaction (the supervisor's, creating the task's row) among
        its deferred statements; call the result once the transaction has ended (at the dispatch)."""
        found = await store.task_configs(
            session, organization_id=organization_id, job_type=job_type, user_id=user_id
        )
        return lambda: self._task_configs(found())

    def _task_configs(self, found: Sequence[ConfigRecord]) -> TaskConfigs:
        values: dict[str, str] = {}
        secret: set[str] = set()
        for record in found:  # lowest precedence first: later ones replace earlier ones
            values[record.name] = self._plain(record)
            if record.secret:
                secret.add(record.name)
            else:
                secret.discard(record.name)
        return TaskConfigs(values, frozenset(secret))

    def _plain(self, record: ConfigRecord) -> str:
        if not record.secret:
            return record.value
        context = _context(record.organization_id, record.scope, record.owner, record.name)
        return self._box.decrypt(record.key_id, record.value, context=context)
