"""Operator views of the installation: connected Ants, the health of the Queen's dependencies, counters."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata

import structlog

from queen.ants.registry import AntRegistry, AntSnapshot
from queen.domain.identity import Identity
from queen.domain.job_definition import TaskMethod
from queen.domain.states import JobState, TaskState
from queen.store import Database, stats
from queen.store._clock import utc_now

__all__ = ["AdminService", "ComponentHealth", "Health", "Stats"]

log = structlog.get_logger(__name__)

# A health probe that takes longer than this reports the database unhealthy rather than hanging the probe.
_DATABASE_CHECK_TIMEOUT = 5.0
# The text of a failed check is shown to operators: enough to diagnose, never a whole traceback.
_MAX_CHECK_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """The result of checking one dependency."""

    name: str
    healthy: bool
    message: str
    checked_at: datetime


@dataclass(frozen=True, slots=True)
class Health:
    """The Queen's health: every component checked, and facts about this process."""

    components: tuple[ComponentHealth, ...]
    version: str
    scheduler_leader: bool
    started_at: datetime

    @property
    def healthy(self) -> bool:
        return all(component.healthy for component in self.components)


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of the counters: job counters are the organization's, Ant counters installation-wide."""

    requests_by_state: dict[JobState, int]
    queue_depth: int
    ready_tasks: int
    running_tasks: int
    connected_ants: int
    total_capacity: int
    free_slots: int
    pending_approvals: int
    taken_at: datetime


def _software_version() -> str:
    try:
        return metadata.version("formicary")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class AdminService:
    """Read-only operator views; nothing here changes state."""

    def __init__(
        self,
        *,
        db: Database,
        registry: AntRegistry,
        started_at: datetime | None = None,
        version: str | None = None,
    ) -> None:
        self._db = db
        self._registry = registry
        self._started_at = started_at or utc_now()
        self._version = version or _software_version()

    def list_ants(self, *, method: TaskMethod | None = None, tags: Collection[str] = ()) -> list[AntSnapshot]:
        """Known Ants ordered by id; only those declaring `method` (if given) and offering every tag."""
        wanted = frozenset(tags)
        return [
            ant
            for ant in self._registry.snapshot()
            if (method is None or method.value in ant.methods) and wanted <= frozenset(ant.tags)
        ]

    async def health(self) -> Health:
        """Check the database (a `SELECT 1` within a timeout). Only one Queen exists per installation
        today, so it always leads the scheduler."""
        return Health(
            components=(await self._check_database(),),
            version=self._version,
            scheduler_leader=True,
            started_at=self._started_at,
        )

    async def _check_database(self) -> ComponentHealth:
        try:
            async with asyncio.timeout(_DATABASE_CHECK_TIMEOUT):
                async with self._db.transaction() as session:
                    await stats.ping(session)
        except TimeoutError:
            message = f"no answer within {_DATABASE_CHECK_TIMEOUT:g}s"
            log.warning("health_check_failed", component="database", error=message)
            return ComponentHealth("database", False, message, utc_now())
        except Exception as exc:
            # Shown to operators: the driver's first line says what is wrong ("connection refused ...")
            # without the traceback; the full error goes to the log.
            first_line = (str(exc).strip().splitlines() or [""])[0]
            message = f"{type(exc).__name__}: {first_line}"[:_MAX_CHECK_MESSAGE]
            log.warning("health_check_failed", component="database", exc_info=True)
            return ComponentHealth("database", False, message, utc_now())
        return ComponentHealth("database", True, f"{self._db.dialect_name} answers", utc_now())

    async def stats(self, identity: Identity) -> Stats:
        now = utc_now()
        organization_id = identity.organization_id
        async with self._db.transaction() as session:
            by_state = await stats.requests_by_state(session, organization_id)
            depth = await stats.queue_depth(session, organization_id, now)
            ready = await stats.count_tasks(
                session, organization_id, {TaskState.READY}, ant_methods_only=True
            )
            running = await stats.count_tasks(
                session, organization_id, {TaskState.STARTED, TaskState.EXECUTING}
            )
            approvals = await stats.count_tasks(
                session, organization_id, {TaskState.MANUAL_APPROVAL_REQUIRED}
            )
        connected = [ant for ant in self._registry.snapshot() if ant.connected]
        return Stats(
            requests_by_state=by_state,
            queue_depth=depth,
            ready_tasks=ready,
            running_tasks=running,
            connected_ants=len(connected),
            total_capacity=sum(ant.max_capacity for ant in connected),
            # AntSnapshot does not say whether an Ant is draining; a draining Ant's window is 0 anyway
            # (AntSession.window), so its slots do not count here.
            free_slots=sum(ant.free_slots for ant in connected),
            pending_approvals=approvals,
            taken_at=now,
        )
