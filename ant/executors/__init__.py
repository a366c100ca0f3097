"""Executors: a typed `TaskSpec` in, an `ExecutionResult` out, with an `ExecutionContext` (logger, log
sink, cancel event, working directory). They know nothing of gRPC, the Queen or the database."""

from ant.executors.context import ExecutionContext, LogSink, LogStream
from ant.executors.errors import ExecutorError, ExecutorUnavailable, UnsupportedMethod
from ant.executors.methods import CONTAINER_METHODS, HTTP_METHODS, Method
from ant.executors.registry import Executor, ExecutorRegistry
from ant.executors.result import (
    EXIT_CODE_COMPLETED,
    EXIT_CODE_FAILED,
    ArtifactRef,
    ErrorCode,
    ExecutionResult,
    ExecutionStatus,
    Timings,
)
from ant.executors.spec import ContainerSpec, PullPolicy, ResourceSpec, TaskSpec, Variable

__all__ = [
    "CONTAINER_METHODS",
    "EXIT_CODE_COMPLETED",
    "EXIT_CODE_FAILED",
    "HTTP_METHODS",
    "ArtifactRef",
    "ContainerSpec",
    "ErrorCode",
    "ExecutionContext",
    "ExecutionResult",
    "ExecutionStatus",
    "Executor",
    "ExecutorError",
    "ExecutorRegistry",
    "ExecutorUnavailable",
    "LogSink",
    "LogStream",
    "Method",
    "PullPolicy",
    "ResourceSpec",
    "TaskSpec",
    "Timings",
    "UnsupportedMethod",
    "Variable",
]
