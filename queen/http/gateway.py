"""The REST gateway as a part of the Queen: uvicorn serving the application inside the Queen's event loop.

`HttpGateway(services, settings)` binds `http_host:http_port` (port 0 picks a free one; `port` is the
bound one) in `start()`, serves in a task it owns, and in `stop()` stops accepting, lets requests in
flight finish within a grace period, then cancels what is left. The Queen's entry point owns SIGINT and
SIGTERM: uvicorn's own signal handling is switched off, so a signal stops the Queen (which stops the
gateway) rather than only the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import structlog
import uvicorn

from queen.http.application import build_app
from queen.http.body_limits import body_limits_for
from queen.http.routes.session import SessionCookies
from queen.services.service_set import Services
from queen.settings import QueenSettings

__all__ = ["HttpGateway"]

log = structlog.get_logger(__name__)

_GRACE_SECONDS = 5.0
_START_TIMEOUT = 10.0
_STARTED_POLL = 0.01  # uvicorn sets a flag, not an event, once it listens


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers (the Queen's entry point has its own)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpGateway:
    """The REST API and the dashboard of one Queen."""

    def __init__(
        self, services: Services, settings: QueenSettings, *, sessions: SessionCookies | None = None
    ) -> None:
        self._host = settings.http_host
        self._requested_port = settings.http_port
        self.app = build_app(services, limits=body_limits_for(settings.max_params_bytes), sessions=sessions)
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The bound port (0 before start)."""
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        """Listen and serve; returns once connections are accepted. OSError if the port is taken."""
        if self._task is not None:
            raise RuntimeError("the HTTP gateway is already started")
        listener = _bind(self._host, self._requested_port)
        self._port = int(listener.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(_GRACE_SECONDS),
        )
        server = _EmbeddedServer(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[listener]), name="http-gateway")
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                while not server.started:
                    if self._task.done():
                        self._task.result()  # re-raises why it stopped
                        raise RuntimeError("the HTTP gateway stopped while starting")
                    await asyncio.sleep(_STARTED_POLL)
        except BaseException:
            await self.stop()
            listener.close()
            raise
        log.info("http_gateway_started", url=self.url)

    async def stop(self) -> None:
        """Stop accepting, finish requests in flight within the grace period, cancel the rest."""
        task, server = self._task, self._server
        self._task = self._server = None
        if task is None or server is None:
            return
        # Open event streams (dashboards following a job) would hold the shutdown for its grace period.
        self.app.state.event_streams.close()
        server.should_exit = True
        try:
            async with asyncio.timeout(_GRACE_SECONDS + 2):
                await asyncio.shield(task)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        log.info("http_gateway_stopped")


def _bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on host:port (IPv4 or IPv6, as the host is written)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener
