"""AntService servicer: the Connect stream's reader and writer; all protocol state lives in `AntRegistry`."""

from __future__ import annotations

import asyncio
import itertools

import grpc

from formicary.v1 import ant_service_pb2, ant_service_pb2_grpc
from queen.ants._convert import method_from_proto
from queen.ants.registry import AntRegistry, RegistrationError
from queen.ants.session import AntSession, StreamEnd, StreamHandle
from queen.domain.errors import FormicaryError, PermissionDenied, Unauthenticated
from queen.domain.job_definition import TaskMethod
from queen.security.authenticator import Authenticator
from queen.security.permissions import Permission
from queen.security.principal import CredentialKind, Principal, current_principal

__all__ = ["AntServiceServicer"]

_REGISTER_TIMEOUT = 30.0
_END_CODES = {
    StreamEnd.TAKEN_OVER: grpc.StatusCode.ABORTED,
    StreamEnd.EXPIRED: grpc.StatusCode.UNAVAILABLE,
    StreamEnd.SHUTDOWN: grpc.StatusCode.UNAVAILABLE,
}


class AntServiceServicer(ant_service_pb2_grpc.AntServiceServicer):
    """One Connect call per Ant; frames are handed to the registry as they arrive."""

    def __init__(self, registry: AntRegistry, authenticator: Authenticator) -> None:
        self._registry = registry
        self._auth = authenticator
        self._nonces = itertools.count(1)

    # The read/write form of a bidi handler (context.read()/write()) returns None, unlike the stub's
    # generator signature; it lets the reader and the writer run as two tasks.
    async def Connect(  # type: ignore[override]
        self,
        request_iterator: object,
        context: grpc.aio.ServicerContext[ant_service_pb2.ConnectRequest, ant_service_pb2.ConnectResponse],
    ) -> None:
        try:
            first: object = await asyncio.wait_for(context.read(), _REGISTER_TIMEOUT)
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "no Register frame within 30s")
            return
        if not isinstance(first, ant_service_pb2.ConnectRequest) or first.WhichOneof("frame") != "register":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first frame must be Register")
            return
        register = first.register
        methods = frozenset(m for m in (method_from_proto(v) for v in register.methods) if m is not None)
        try:
            principal = await self._admit(register, methods)
        except FormicaryError as exc:
            code = "UNAUTHENTICATED" if isinstance(exc, Unauthenticated) else "PERMISSION_DENIED"
            await context.abort(grpc.StatusCode[code], str(exc))
            return
        # Bound to the credential's organisation; only the local identity (no authentication) serves all.
        local = principal.kind is CredentialKind.LOCAL
        bound = None if local else principal.identity.organization_id
        try:
            session, stream, _ = self._registry.connect(register, methods, organization_id=bound)
        except RegistrationError as exc:
            await context.abort(grpc.StatusCode[exc.code], str(exc))
            return
        reader = asyncio.create_task(self._read(context, session), name=f"ant-reader-{session.ant_id}")
        try:
            end = await self._write(context, stream, reader)
        finally:
            reader.cancel()
            results = await asyncio.gather(reader, return_exceptions=True)
            self._registry.disconnected(session, stream)
        problem = results[0] if isinstance(results[0], str) else None
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if end is not None and end is not StreamEnd.DRAINED:
            await context.abort(_END_CODES[end], f"stream ended: {end.name.lower()}")

    async def _admit(
        self, register: ant_service_pb2.ConnectRequest.Register, methods: frozenset[TaskMethod]
    ) -> Principal:
        """The Ant's principal (from the call's metadata, else Register.credential), refused when its
        credential does not allow the methods and tags it registers (ant_service.proto, AUTHENTICATION).

        An Ant token bounds methods and tags; a person's credential with the ant permission (an admin)
        does not. Either binds the Ant to the credential's organisation (see Connect).
        """
        principal = current_principal.get()
        if principal is None:
            if not register.credential:
                raise Unauthenticated(
                    "an Ant needs a credential: authorization metadata or Register.credential"
                )
            principal = await self._auth.authenticate_token(register.credential)
            self._auth.authorize(principal, Permission.ANT, "Connect")
        if principal.ant_methods is not None:
            extra = sorted(m.value for m in methods if m.value not in principal.ant_methods)
            if extra:
                raise PermissionDenied(f"the Ant's token does not allow the methods {', '.join(extra)}")
        if principal.ant_tags is not None:
            extra_tags = sorted(set(register.tags) - principal.ant_tags)
            if extra_tags:
                raise PermissionDenied(f"the Ant's token does not allow the tags {', '.join(extra_tags)}")
        return principal

    async def _read(
        self,
        context: grpc.aio.ServicerContext[ant_service_pb2.ConnectRequest, ant_service_pb2.ConnectResponse],
        session: AntSession,
    ) -> str | None:
        """Hand frames to the registry until the Ant closes its side; a protocol error is returned."""
        while True:
            frame: object = await context.read()
            if not isinstance(frame, ant_service_pb2.ConnectRequest):
                return None  # EOF: the Ant half-closed its side
            problem = self._registry.received(session, frame)
            if problem is not None:
                return problem

    async def _write(
        self,
        context: grpc.aio.ServicerContext[ant_service_pb2.ConnectRequest, ant_service_pb2.ConnectResponse],
        stream: StreamHandle,
        reader: asyncio.Task[str | None],
    ) -> StreamEnd | None:
        """Send queued frames (pinging when idle) until the session ends the stream or the Ant closes it.

        A Ping goes when nothing was written for `ping_interval` (ant_service.proto section 8). One timer
        per stream watches for that, re-armed from the last write, rather than a timeout around each
        wait: the writer waits two or three times per task, and each timeout is a timer scheduled and
        cancelled."""
        loop = asyncio.get_running_loop()
        ping_every = self._registry.ping_interval.total_seconds()
        last_write = loop.time()
        ping_due = False
        timer: asyncio.TimerHandle

        def check_idle() -> None:
            nonlocal ping_due, timer
            due = last_write + ping_every
            if loop.time() >= due:
                ping_due = True
                stream.wake()
                due = loop.time() + ping_every
            timer = loop.call_at(due, check_idle)

        timer = loop.call_at(last_write + ping_every, check_idle)
        reader.add_done_callback(lambda _: stream.wake())
        try:
            while True:
                if stream.only_acks:
                    await asyncio.sleep(0)  # a dispatch queued in this turn of the loop goes first
                frame = stream.take()
                if frame is None:
                    if reader.done():
                        return None  # the Ant half-closed its side (§9) or the call broke
                    if not ping_due:
                        await stream.wait()
                        continue
                    frame = ant_service_pb2.ConnectResponse(
                        ping=ant_service_pb2.ConnectResponse.Ping(nonce=next(self._nonces))
                    )
                elif isinstance(frame, StreamEnd):
                    return frame
                ping_due = False
                await context.write(frame)
                last_write = loop.time()
        finally:
            timer.cancel()
