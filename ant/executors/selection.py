"""Choosing the executors of an Ant at start: one per method it registers with, after checking that
the engines they need answer (Docker, Kubernetes), with `--local-fallback` for when they do not."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import docker
from docker.errors import DockerException
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from structlog.typing import FilteringBoundLogger

from ant.errors import ConfigurationError
from ant.executors.docker import DockerExecutor
from ant.executors.errors import ExecutorUnavailable
from ant.executors.fallback import LocalFallbackExecutor
from ant.executors.http import HttpExecutor
from ant.executors.kubernetes import KubernetesExecutor
from ant.executors.methods import CONTAINER_METHODS, HTTP_METHODS, Method
from ant.executors.registry import Executor, ExecutorRegistry
from ant.executors.shell import ShellExecutor

__all__ = ["ExecutorTuning", "connect_docker", "connect_kubernetes", "select_executors"]


@dataclass(frozen=True, slots=True)
class ExecutorTuning:
    """Limits and defaults of the executors (from the Ant's settings), in seconds."""

    kill_grace: float = 2.0
    after_script_timeout: float = 300.0
    http_default_timeout: float = 60.0
    api_timeout: float = 30.0
    kubernetes_namespace: str = "default"
    kubernetes_poll_interval: float = 1.0


async def connect_docker(api_timeout: float) -> docker.DockerClient:
    """A client of the engine at DOCKER_HOST (or the default socket) that answered a ping."""

    def connect() -> docker.DockerClient:
        client = docker.from_env(timeout=int(max(1, api_timeout)))
        try:
            client.ping()
        except BaseException:
            client.close()
            raise
        return client

    try:
        return await asyncio.to_thread(connect)
    except DockerException as exc:
        raise ExecutorUnavailable(Method.DOCKER, f"no Docker engine answers: {exc}") from exc


async def connect_kubernetes(api_timeout: float) -> k8s.CoreV1Api:
    """A CoreV1Api of the cluster of the in-cluster service account or the kubeconfig, checked with a
    version request."""

    def connect() -> k8s.CoreV1Api:
        try:
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
        k8s.VersionApi().get_code(_request_timeout=api_timeout)
        return k8s.CoreV1Api()

    try:
        return await asyncio.to_thread(connect)
    except Exception as exc:  # the client raises many kinds (config, TLS, connection, API errors)
        raise ExecutorUnavailable(Method.KUBERNETES, f"no Kubernetes cluster answers: {exc}") from exc


async def select_executors(
    methods: Iterable[Method],
    *,
    ant_id: str,
    host: str,
    local_fallback: bool,
    logger: FilteringBoundLogger,
    tuning: ExecutorTuning | None = None,
) -> ExecutorRegistry:
    """An executor for every method; raises ConfigurationError when a container method's engine does
    not answer and `local_fallback` is off."""
    tuning = tuning or ExecutorTuning()
    shell = ShellExecutor(kill_grace=tuning.kill_grace, after_script_timeout=tuning.after_script_timeout)
    http = HttpExecutor(default_timeout=tuning.http_default_timeout)
    executors: dict[Method, Executor] = {}
    for method in dict.fromkeys(methods):
        if method is Method.SHELL:
            executors[method] = shell
        elif method in HTTP_METHODS:
            executors[method] = http
        elif method in CONTAINER_METHODS:
            try:
                executors[method] = await _container_executor(method, ant_id, tuning)
            except ExecutorUnavailable as exc:
                if not local_fallback:
                    raise ConfigurationError(
                        f"{exc}; start the Ant with --local-fallback to run {method} tasks with SHELL instead"
                    ) from exc
                logger.warning("local_fallback_enabled", method=str(method), host=host, reason=exc.reason)
                executors[method] = LocalFallbackExecutor(
                    shell, replaced=method, host=host, reason=exc.reason
                )
    return ExecutorRegistry(executors)


async def _container_executor(method: Method, ant_id: str, tuning: ExecutorTuning) -> Executor:
    if method is Method.DOCKER:
        client = await connect_docker(tuning.api_timeout)
        return DockerExecutor(client, ant_id=ant_id, after_script_timeout=tuning.after_script_timeout)
    api = await connect_kubernetes(tuning.api_timeout)
    return KubernetesExecutor(
        api,
        ant_id=ant_id,
        namespace=tuning.kubernetes_namespace,
        poll_interval=tuning.kubernetes_poll_interval,
        api_timeout=tuning.api_timeout,
    )
