"""The Ant's settings: `FORMICARY_ANT_*` environment variables (or CLI options), built once by the
entry point and passed down."""

from __future__ import annotations

import os
import socket
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ant.executors.methods import Method

__all__ = ["AntSettings", "default_ant_id"]


def default_ant_id() -> str:
    """`<hostname>-<pid>`: unique per process on a host, as the protocol requires."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _default_work_dir() -> Path:
    return Path(tempfile.gettempdir()) / "formicary-ant"


def _split(value: Any) -> Any:
    """ "A,B , C" -> ["A", "B", "C"]; lists pass through."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class AntSettings(BaseSettings):
    """Everything an Ant can be told. Lists are comma-separated in the environment
    (FORMICARY_ANT_METHODS=SHELL,DOCKER), labels are `key=value` pairs
    (FORMICARY_ANT_LABELS=zone=a,gpu=t4)."""

    model_config = SettingsConfigDict(env_prefix="FORMICARY_ANT_", frozen=True, extra="forbid")

    queen_address: str = Field(
        default="127.0.0.1:7070", description="host:port of the Queen's gRPC endpoint (plaintext for now)."
    )
    ant_id: str = Field(
        default_factory=default_ant_id,
        min_length=1,
        description="Unique, stable id of this Ant process; two processes must never share it.",
    )
    methods: Annotated[list[Method], NoDecode] = Field(
        default_factory=lambda: [Method.SHELL],
        min_length=1,
        description="Task methods this Ant runs (SHELL, DOCKER, KUBERNETES, HTTP_GET, HTTP_POST_FORM, "
        "HTTP_POST_JSON, HTTP_PUT_FORM, HTTP_PUT_JSON, HTTP_DELETE).",
    )
    tags: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Tags offered for routing: a task goes here only if all its tags are in it.",
    )
    capacity: int = Field(default=4, ge=1, description="Maximum number of tasks held at once (max_capacity).")
    labels: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="Free-form labels shown to operators (zone, instance type)."
    )
    host: str = Field(
        default_factory=socket.gethostname, description="Host name reported to the Queen and in task records."
    )
    work_dir: Path = Field(
        default_factory=_default_work_dir,
        description="Directory under which each task attempt gets a fresh working directory.",
    )
    keep_work_dirs: bool = Field(
        default=False, description="Keep each attempt's directory after it ended (for debugging)."
    )
    local_fallback: bool = Field(
        default=False,
        description="Run DOCKER/KUBERNETES tasks with SHELL on this host when no Docker engine / cluster "
        "answers at start; said in the task log and record. For demonstrations, not production.",
    )
    credential: SecretStr | None = Field(
        default=None, description="Bearer token sent as `authorization` metadata on the Ant stream."
    )
    cost_factor: float = Field(
        default=1.0, ge=0, description="Cost factor reported for tasks whose definition sets none."
    )
    register_timeout: timedelta = Field(
        default=timedelta(seconds=10), description="How long to wait for Registered after opening the stream."
    )
    reconnect_initial_backoff: timedelta = Field(
        default=timedelta(milliseconds=200),
        description="First delay before reconnecting after a broken stream.",
    )
    reconnect_backoff_cap: timedelta = Field(
        default=timedelta(seconds=5),
        description="Longest delay between reconnection attempts; also capped at a quarter of the Queen's "
        "heartbeat_timeout so that a session is resumed before it expires.",
    )
    refused_retry_interval: timedelta = Field(
        default=timedelta(seconds=60),
        description="Delay before retrying after the Queen refused the Ant (UNAUTHENTICATED, "
        "PERMISSION_DENIED, INVALID_ARGUMENT, FAILED_PRECONDITION); 0 means stop instead.",
    )
    shutdown_grace: timedelta = Field(
        default=timedelta(seconds=30),
        description="On SIGTERM/SIGINT, how long running tasks may finish before they are cancelled.",
    )
    ack_timeout: timedelta = Field(
        default=timedelta(seconds=10),
        description="When leaving, how long to wait for the Queen's ResultAcks and end of stream.",
    )
    log_flush_interval: timedelta = Field(
        default=timedelta(milliseconds=250),
        le=timedelta(milliseconds=500),
        description="Longest time a log line waits before it is sent (at most 500 ms, as the protocol says).",
    )
    log_linger: timedelta = Field(
        default=timedelta(milliseconds=5),
        ge=timedelta(0),
        le=timedelta(milliseconds=500),
        description="How long a task's first waiting log line may wait for more, on an idle stream, so "
        "that a short task's lines travel with its result (protocol 2); 0 sends at once. Lines never "
        "wait beyond log_flush_interval.",
    )
    protocol_version: int = Field(
        default=3,
        ge=1,
        le=3,
        description="Highest version of the stream protocol to offer the Queen (ant_service.proto, PROTOCOL "
        "VERSIONS); the stream uses the lower of this and the Queen's. Lower it only to compare versions "
        "or to work around a peer's fault.",
    )
    log_max_pending_lines: int = Field(
        default=20_000,
        ge=100,
        description="Log lines of one task kept while they cannot be sent; beyond, lines are dropped and "
        "a SYSTEM line says how many.",
    )
    log_resend_lines: int = Field(
        default=20_000,
        ge=0,
        description="Sent log lines of one task kept to re-send after a reconnect.",
    )
    kill_grace: timedelta = Field(
        default=timedelta(seconds=2),
        description="Between SIGTERM and SIGKILL when a SHELL task times out or is cancelled.",
    )
    after_script_timeout: timedelta = Field(
        default=timedelta(minutes=5), description="Time limit of a task's after_script."
    )
    http_timeout: timedelta = Field(
        default=timedelta(seconds=60),
        description="Time limit of HTTP tasks that have no timeout of their own.",
    )
    api_timeout: timedelta = Field(
        default=timedelta(seconds=30), description="Time limit of each Docker and Kubernetes API call."
    )
    kubernetes_namespace: str = Field(
        default="default", description="Namespace of the pods of KUBERNETES tasks."
    )
    kubernetes_poll_interval: timedelta = Field(
        default=timedelta(seconds=1), description="How often a KUBERNETES task's pod is checked."
    )
    artifact_transfer_timeout: timedelta = Field(
        default=timedelta(hours=1),
        gt=timedelta(0),
        description="Deadline of one artifact upload or download (one file, the whole of it).",
    )
    artifact_stall_timeout: timedelta = Field(
        default=timedelta(seconds=60),
        gt=timedelta(0),
        description="An artifact upload or download in which nothing moved for this long fails; also the "
        "time limit of deleting the artifacts of a failed upload.",
    )
    artifact_reconnect_timeout: timedelta = Field(
        default=timedelta(seconds=60),
        gt=timedelta(0),
        description="How long an artifact transfer waits for the Ant's connection to the Queen while it "
        "reconnects before the transfer fails.",
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="Log output on stderr: JSON lines, a console rendering, or auto (console when stderr "
        "is a terminal). Tracing is configured by the standard OTEL_* variables.",
    )

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("methods", mode="before")
    @classmethod
    def _split_methods(cls, value: Any) -> Any:
        value = _split(value)
        if isinstance(value, list):
            return [item.strip().upper() if isinstance(item, str) else item for item in value]
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _parse_labels(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        labels: dict[str, str] = {}
        for pair in _split(value):
            key, sep, val = pair.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"label {pair!r} is not key=value")
            labels[key.strip()] = val.strip()
        return labels

    @model_validator(mode="after")
    def _no_duplicate_methods(self) -> AntSettings:
        if len(set(self.methods)) != len(self.methods):
            raise ValueError("methods are listed more than once")
        return self
