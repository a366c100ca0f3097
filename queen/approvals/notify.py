"""The notification hook of approval reminders and escalations: a webhook POST now, email and chat later.

A hook delivers one `Notice` and says, per recipient, what happened; it never raises for a recipient
that cannot be reached (the timers record every result in the gate's ledger and carry on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import structlog

from queen.domain.job_definition import Webhook

__all__ = ["Delivery", "Notice", "NotificationHook", "WebhookHook", "is_webhook_url"]

log = structlog.get_logger(__name__)

_TIMEOUT_SECONDS = 5.0
_MAX_ERROR_CHARS = 300


def is_webhook_url(recipient: str) -> bool:
    """Recipients the webhook hook can reach: absolute http(s) URLs."""
    return recipient.startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class Notice:
    """A reminder or an escalation of one gate, for its recipients and the job's own webhook."""

    event: str  # "approval.reminder" | "approval.escalation"
    recipients: tuple[str, ...]
    payload: Mapping[str, Any]
    job_webhook: Webhook | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """What happened to one recipient of a notice."""

    recipient: str
    delivered: bool
    status_code: int | None = None
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "delivered": self.delivered,
            "status_code": self.status_code,
            "error": self.error,
        }


class NotificationHook(Protocol):
    """Delivers notices; one `Delivery` per recipient (and one for the job's webhook, if any)."""

    async def deliver(self, notice: Notice) -> list[Delivery]: ...


@dataclass
class WebhookHook:
    """POSTs the notice as JSON to every http(s) recipient and to the job's `webhook` (with its headers
    and query), concurrently, each bounded by `timeout`. Other recipients (user names, group names,
    addresses) are reported as not delivered: no channel reaches them yet."""

    client: httpx.AsyncClient | None = None
    timeout: float = _TIMEOUT_SECONDS
    _owned: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    def _client(self) -> httpx.AsyncClient:
        if self.client is not None:
            return self.client
        if self._owned is None:
            self._owned = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        return self._owned

    async def aclose(self) -> None:
        """Close the client this hook created (a client passed in belongs to the caller)."""
        owned, self._owned = self._owned, None
        if owned is not None:
            await owned.aclose()

    async def deliver(self, notice: Notice) -> list[Delivery]:
        body = {"event": notice.event, **notice.payload}
        posts = [self._post(url, body, {}, {}) for url in notice.recipients if is_webhook_url(url)]
        skipped = [
            Delivery(
                name, False, error="no notification channel reaches this recipient yet (webhook URLs only)"
            )
            for name in notice.recipients
            if not is_webhook_url(name)
        ]
        if notice.job_webhook is not None:
            hook = notice.job_webhook
            posts.append(self._post(hook.url, body, hook.headers, hook.query))
        return [*await asyncio.gather(*posts), *skipped]

    async def _post(
        self, url: str, body: Mapping[str, Any], headers: Mapping[str, str], query: Mapping[str, str]
    ) -> Delivery:
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client().post(
                    url, json=dict(body), headers=dict(headers), params=dict(query)
                )
        except (httpx.HTTPError, TimeoutError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
            log.warning("approval_notification_failed", recipient=url, error=error)
            return Delivery(url, False, error=error)
        delivered = response.is_success
        if not delivered:
            log.warning("approval_notification_refused", recipient=url, status_code=response.status_code)
        return Delivery(url, delivered, status_code=response.status_code)
