"""Server-sent events (`text/event-stream`) from the REST gateway: named JSON events, keep-alives, and an
end when the gateway stops.

A stream is an async iterator of `(event name, payload)`; a payload is a pydantic model or JSON data.
Between events a comment line goes out every `KEEPALIVE_SECONDS`, so that proxies keep an idle stream
open and a vanished client is noticed. An error raised by the iterator after the response started
cannot change its status any more: it is sent as a `problem` event with the usual error body (see
`queen.http.errors`), and the stream ends. When the gateway stops, every open stream ends at once
(`EventStreams.close`), rather than holding the shutdown for its grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from queen.api.errors import INTERNAL_ERROR, error_status
from queen.domain.errors import FormicaryError
from queen.http.errors import error_body, internal_error_body

__all__ = ["KEEPALIVE_SECONDS", "EventStreams", "ServerEvent"]

log = structlog.get_logger(__name__)

KEEPALIVE_SECONDS = 15.0
# How long a browser waits before reconnecting a stream that broke (the SSE `retry` field).
_RETRY_MILLISECONDS = 2000
_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One event: its name (the SSE `event` field) and its JSON payload."""

    name: str
    payload: BaseModel | dict[str, Any] | list[Any] | None = None


@dataclass(frozen=True, slots=True)
class _Failed:
    body: dict[str, Any]


class _End:
    pass


_END = _End()


def _encode(event: ServerEvent) -> bytes:
    if isinstance(event.payload, BaseModel):
        data = event.payload.model_dump_json(by_alias=True)
    else:
        data = json.dumps(event.payload, separators=(",", ":"), default=str)
    # JSON has no raw newlines, so the payload is always one `data:` line.
    return f"event: {event.name}\ndata: {data}\n\n".encode()


class EventStreams:
    """The gateway's server-sent event streams; `close()` ends every open one (and any opened later)."""

    def __init__(self) -> None:
        self._closing = asyncio.Event()

    def close(self) -> None:
        self._closing.set()

    def response(self, events: AsyncGenerator[ServerEvent, None]) -> StreamingResponse:
        """A streaming response of `events`, ended by an `end` event when they are exhausted."""
        return StreamingResponse(self._stream(events), media_type="text/event-stream", headers=_HEADERS)

    async def _stream(self, events: AsyncGenerator[ServerEvent, None]) -> AsyncIterator[bytes]:
        # The iterator runs in a task of its own feeding a one-slot queue, so that waiting for its next
        # event can be interrupted for a keep-alive without cancelling (and so finalizing) the iterator.
        queue: asyncio.Queue[ServerEvent | _Failed | _End] = asyncio.Queue(maxsize=1)
        producer = asyncio.create_task(_produce(events, queue), name="sse-producer")
        closing = asyncio.create_task(self._closing.wait(), name="sse-closing")
        getter: asyncio.Task[ServerEvent | _Failed | _End] | None = None
        try:
            yield f"retry: {_RETRY_MILLISECONDS}\n\n".encode()
            while True:
                if getter is None:
                    getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait(
                    {getter, closing}, timeout=KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    item = getter.result()
                    getter = None
                    if isinstance(item, _End):
                        yield _encode(ServerEvent("end"))
                        return
                    if isinstance(item, _Failed):
                        yield _encode(ServerEvent("problem", item.body))
                        return
                    yield _encode(item)
                elif closing in done:
                    return  # the gateway stops; the client reconnects to whatever serves next
                else:
                    yield b": keep-alive\n\n"
        finally:
            for task in (producer, closing, getter):
                if task is not None:
                    task.cancel()
            await asyncio.gather(
                *(t for t in (producer, closing, getter) if t is not None), return_exceptions=True
            )


async def _produce(
    events: AsyncGenerator[ServerEvent, None], queue: asyncio.Queue[ServerEvent | _Failed | _End]
) -> None:
    try:
        async with contextlib.aclosing(events):
            async for event in events:
                await queue.put(event)
    except FormicaryError as exc:
        if error_status(exc) is INTERNAL_ERROR:
            await queue.put(_Failed(internal_error_body(_incident())))
        else:
            await queue.put(_Failed(error_body(exc)[1]))
    except Exception:
        await queue.put(_Failed(internal_error_body(_incident())))
    else:
        await queue.put(_END)


def _incident() -> str:
    """Log the exception being handled (a bug) once, with an id the client is shown."""
    incident = uuid.uuid4().hex[:12]
    log.exception("event_stream_failed", incident=incident)
    return incident
