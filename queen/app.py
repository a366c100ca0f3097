"""The Queen process: builds every part from the settings, starts them in order, stops them in reverse.

Start order matters for durability: the database is migrated, the supervisors of running jobs resume
(registering the attempts they expect Ants to re-attach) and only then does the gRPC server accept
Ants and clients.
"""

from __future__ import annotations

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from formicary.v1 import (
    admin_service_pb2,
    ant_service_pb2,
    ant_service_pb2_grpc,
    approval_service_pb2,
    artifact_service_pb2,
    job_definition_service_pb2,
    job_request_service_pb2,
)
from queen.ants.registry import AntRegistry
from queen.api import register_public_servicers
from queen.api.ant_service import AntServiceServicer
from queen.api.auth_interceptor import AuthInterceptor
from queen.approvals.timers import GateTimers
from queen.artifacts import build_object_store
from queen.domain.identity import Identity
from queen.domain.job_definition import TaskMethod
from queen.http import HttpGateway
from queen.http.routes.session import SessionCookies
from queen.log_archive import LogArchive
from queen.notifier import ChangeNotifier
from queen.scheduler.cron import CronTrigger
from queen.scheduler.scheduler import Scheduler
from queen.security.assembly import build_security
from queen.security.configs import ConfigService
from queen.security.injection import RedactingLogSink, SecretInjector
from queen.services.admin import AdminService
from queen.services.approvals import ApprovalService
from queen.services.artifacts import ArtifactService
from queen.services.definitions import DefinitionService
from queen.services.requests import RequestService
from queen.services.service_set import Services
from queen.settings import QueenSettings
from queen.store import Database
from queen.supervisor.job_supervisor import FinishedAttempt, SupervisorDeps
from queen.supervisor.supervisors import Supervisors
from queen.task_logs import LogHub

__all__ = ["Queen"]

log = structlog.get_logger(__name__)

_QUEEN_METHODS = frozenset(m for m in TaskMethod if m.runs_in_queen)
_GRACE_SECONDS = 5.0


class Queen:
    """One Queen: database, Ant registry, supervisors, scheduler and the gRPC server."""

    def __init__(self, settings: QueenSettings) -> None:
        self.settings = settings
        self.db = Database(settings.resolved_database_url())
        self.security = build_security(settings, self.db)
        self.artifact_store = build_object_store(settings.artifacts, settings.data_dir)
        self.notifier = ChangeNotifier()
        self.logs = LogHub()
        # Secrets: configs go into each attempt's TaskRequest; their values are masked in what comes back.
        self.redacting_logs = RedactingLogSink(self.logs)
        self.configs = ConfigService(self.db, self.security.secrets)
        self.registry = AntRegistry(
            heartbeat_interval=settings.heartbeat_interval,
            heartbeat_timeout=settings.ant_lost_after,
            log_sink=self.redacting_logs,
            on_capacity=self._capacity_changed,
            queen_methods=_QUEEN_METHODS,
        )
        dispatcher = SecretInjector(self.registry, self.configs, self.redacting_logs)
        self.supervisors = Supervisors(
            SupervisorDeps(
                db=self.db,
                dispatcher=dispatcher,
                notifier=self.notifier,
                attempt_finished=self._attempt_finished,
                configs=self.configs,
            )
        )
        self.scheduler = Scheduler(
            db=self.db,
            dispatcher=dispatcher,
            supervisors=self.supervisors,
            notifier=self.notifier,
            sweep_interval=settings.sweep_interval,
        )
        self.supervisors.on_finished = self.scheduler.supervisor_ended
        self.cron = CronTrigger(self.db, on_submitted=self.scheduler.wake)
        self.approvals = ApprovalService(db=self.db, notifier=self.notifier, launch=self.supervisors.launch)
        self.gate_timers = GateTimers(
            db=self.db,
            notifier=self.notifier,
            launch=self.supervisors.launch,
            sweep_interval=settings.sweep_interval,
        )
        identity = Identity(settings.organization_id, settings.user_id)
        self.services = Services(
            definitions=DefinitionService(self.db, on_change=self._definitions_changed),
            requests=RequestService(
                db=self.db,
                supervisors=self.supervisors,
                notifier=self.notifier,
                wake_scheduler=self.scheduler.wake,
                max_params_bytes=settings.max_params_bytes,
            ),
            registry=self.registry,
            admin=AdminService(db=self.db, registry=self.registry),
            approvals=self.approvals,
            artifacts=ArtifactService(
                self.db,
                self.artifact_store,
                settings.artifacts.max_artifact_bytes,
                default_retention=settings.artifacts.default_retention,
            ),
            logs=self.logs,
            local_identity=identity,
            authenticator=self.security.authenticator,
        )
        self.services.artifacts.mask_name = self.redacting_logs.mask
        self.log_archive = LogArchive(self.logs, self.services.artifacts)
        self._server: grpc.aio.Server | None = None
        self._health = HealthServicer()
        self.grpc_port = 0
        self.http = HttpGateway(
            self.services,
            settings,
            sessions=SessionCookies(
                csrf_key=self.security.signing_key,
                ttl=settings.session_ttl,
                secure=settings.session_cookie_secure,
            ),
        )

    @property
    def http_port(self) -> int:
        return self.http.port

    def _attempt_finished(self, attempt: FinishedAttempt) -> None:
        self.log_archive.attempt_finished(attempt)

    def _capacity_changed(self) -> None:
        self.scheduler.wake()

    def _definitions_changed(self) -> None:
        self.scheduler.wake()
        self.cron.wake()

    async def start(self) -> None:
        if not self.settings.auth_required:
            log.warning(
                "authentication_disabled",
                identity=f"{self.settings.user_id}@{self.settings.organization_id}",
                roles="admin",
                note="every call acts as this local identity; never expose this Queen to a network",
            )
        await self.db.start()
        await self.registry.start()
        await self.log_archive.start()
        await self.supervisors.resume_all()
        await self.gate_timers.start()
        await self.scheduler.start()
        await self.cron.start()
        self._server, self.grpc_port = await self._start_server()
        await self.http.start()
        log.info(
            "queen_started", grpc_port=self.grpc_port, http_port=self.http.port, database=self.db.dialect_name
        )

    async def stop(self) -> None:
        await self._health.enter_graceful_shutdown()
        await self.http.stop()
        if self._server is not None:
            await self._server.stop(_GRACE_SECONDS)
        await self.gate_timers.stop()
        await self.cron.stop()
        await self.scheduler.stop()
        await self.supervisors.stop_all()
        await self.registry.stop()
        await self.log_archive.stop()
        await self.artifact_store.close()
        await self.security.close()
        await self.db.stop()
        log.info("queen_stopped")

    async def _start_server(self) -> tuple[grpc.aio.Server, int]:
        size = self.settings.max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
            ],
            interceptors=[AuthInterceptor(self.security.authenticator)],
        )
        ant_service_pb2_grpc.add_AntServiceServicer_to_server(
            AntServiceServicer(self.registry, self.security.authenticator), server
        )
        register_public_servicers(server, self.services)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [
            ant_service_pb2.DESCRIPTOR.services_by_name["AntService"].full_name,
            job_definition_service_pb2.DESCRIPTOR.services_by_name["JobDefinitionService"].full_name,
            job_request_service_pb2.DESCRIPTOR.services_by_name["JobRequestService"].full_name,
            admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
            artifact_service_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name,
            approval_service_pb2.DESCRIPTOR.services_by_name["ApprovalService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, server)
        port = server.add_insecure_port(f"{self.settings.grpc_host}:{self.settings.grpc_port}")
        await server.start()
        for name in names[:-1]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        return server, port
