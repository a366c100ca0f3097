"""Cron triggers: a job request for each fire time of every enabled job type with a `cron_trigger`.

Dialect (croniter): 5 fields `minute hour day-of-month month day-of-week`, or 6 fields with *seconds
first* (`0 */5 * * * *`), as Formicary writes them; times are UTC. Each fire time creates exactly one
request: its `user_key` is `cron:<job_type>:<fire time>`, so a second Queen or a restarted one that
sees the same fire time is refused by the store. Fire times missed while no Queen ran are coalesced:
at start the Queen catches up only the latest fire time of the last `catch_up` window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from croniter import croniter

from queen.domain.errors import AlreadyExists
from queen.store import Database, DefinitionRecord, definitions, requests
from queen.store._clock import utc_now

__all__ = ["CronTrigger", "cron_user_key", "latest_fire_time"]

log = structlog.get_logger(__name__)

_SYSTEM_USER = "cron"


def latest_fire_time(expression: str, after: datetime, until: datetime) -> datetime | None:
    """The latest fire time in (after, until], or None."""
    six = len(expression.split()) == 6
    previous: datetime = croniter(expression, until, second_at_beginning=six).get_prev(datetime)
    # croniter's get_prev is strictly before `until`; a fire exactly at `until` counts too
    at_until = croniter(expression, until - timedelta(seconds=1), second_at_beginning=six).get_next(datetime)
    if at_until == until:
        previous = until
    return previous if previous > after else None


def next_fire_time(expression: str, after: datetime) -> datetime:
    six = len(expression.split()) == 6
    fire: datetime = croniter(expression, after, second_at_beginning=six).get_next(datetime)
    return fire


def cron_user_key(job_type: str, fire: datetime) -> str:
    return f"cron:{job_type}:{fire.isoformat()}"


class CronTrigger:
    """Wakes at the next fire time of any cron job type and submits its request."""

    def __init__(
        self,
        db: Database,
        *,
        on_submitted: Callable[[], None],
        max_sleep: timedelta = timedelta(seconds=60),
        catch_up: timedelta = timedelta(minutes=5),
    ) -> None:
        self._db = db
        self._on_submitted = on_submitted
        self._max_sleep = max_sleep.total_seconds()
        self._catch_up = catch_up
        self._since: dict[str, datetime] = {}
        self._started_at: datetime | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Definitions changed: look again now."""
        self._wake.set()

    async def start(self) -> None:
        self._started_at = utc_now()
        self._task = asyncio.create_task(self._loop(), name="cron")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                upcoming = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cron_pass_failed")
                upcoming = None
            sleep = self._max_sleep
            if upcoming is not None:
                sleep = min(sleep, max((upcoming - utc_now()).total_seconds(), 0.0))
            try:
                async with asyncio.timeout(sleep):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def run_once(self, now: datetime | None = None) -> datetime | None:
        """Submit the request of every fire time due since the last pass; return the next fire time."""
        now = now or utc_now()
        start = self._started_at or now
        async with self._db.transaction() as session:
            due = await definitions.cron_definitions(session)
        upcoming: datetime | None = None
        submitted = False
        for definition in due:
            key = f"{definition.organization_id}/{definition.job_type}"
            since = self._since.get(key, start - self._catch_up)
            fire = latest_fire_time(definition.cron_trigger, since, now)
            if fire is not None:
                submitted = await self._submit(definition, fire) or submitted
            self._since[key] = now
            following = next_fire_time(definition.cron_trigger, now)
            upcoming = following if upcoming is None else min(upcoming, following)
        if submitted:
            self._on_submitted()
        return upcoming

    async def _submit(self, definition: DefinitionRecord, fire: datetime) -> bool:
        try:
            async with self._db.transaction() as session:
                record = await requests.create_request(
                    session,
                    definition=definition,
                    user_id=_SYSTEM_USER,
                    user_key=cron_user_key(definition.job_type, fire),
                    cron_triggered=True,
                )
        except AlreadyExists:
            return False  # this fire time already has its request
        log.info(
            "cron_request_submitted", job_type=definition.job_type, fire_time=fire.isoformat(), id=record.id
        )
        return True
