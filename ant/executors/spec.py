"""What an executor is asked to run: `TaskSpec`, a frozen description of one task attempt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from ant.executors.methods import Method

__all__ = ["ContainerSpec", "PullPolicy", "ResourceSpec", "TaskSpec", "Variable"]


class PullPolicy(StrEnum):
    """When a container image is pulled (Kubernetes spelling, honoured by DOCKER too)."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


@dataclass(frozen=True, slots=True)
class Variable:
    """One task variable. Secret values are masked in everything the Ant sends or logs."""

    value: str
    secret: bool = False


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """Container requests and limits as Kubernetes quantity strings ("500m", "512Mi"); empty = none."""

    cpu_request: str = ""
    cpu_limit: str = ""
    memory_request: str = ""
    memory_limit: str = ""
    ephemeral_storage_request: str = ""
    ephemeral_storage_limit: str = ""


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """The container that runs the scripts (DOCKER, KUBERNETES) and its placement options."""

    image: str
    # The scripts always run through `sh -c`; an entrypoint or command of the definition is not used
    # for the main container (executors say so with a warning).
    entrypoint: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT
    user: str = ""
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    privileged: bool = False
    network_mode: str = ""
    host_network: bool = False
    node_selector: Mapping[str, str] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One attempt of one task execution, as an executor needs it.

    `variables` are exposed to scripts as environment variables and are the body of HTTP requests;
    `environment` (ExecutorOptions.environment) is added after them and wins on conflict.
    `working_dir` empty means the executor's default: the attempt's fresh directory on the Ant,
    "/workspace" inside containers. `timeout` None means no limit other than a cancel.
    """

    task_execution_id: str
    job_request_id: int
    task_type: str
    method: Method
    job_type: str = ""
    script: tuple[str, ...] = ()
    before_script: tuple[str, ...] = ()
    after_script: tuple[str, ...] = ()
    variables: Mapping[str, Variable] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    timeout: timedelta | None = None
    working_dir: str = ""
    container: ContainerSpec | None = None
    executor_name: str = ""
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    allow_failure: bool = False
    task_retry: int = 0
    job_retry: int = 0
    cost_factor: float = 0.0
    tags: tuple[str, ...] = ()

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values of the secret variables, to be masked."""
        return tuple(v.value for v in self.variables.values() if v.secret and v.value)

    @property
    def timeout_seconds(self) -> float | None:
        """The timeout in seconds; None when there is none (0 or unset)."""
        if self.timeout is None or self.timeout <= timedelta(0):
            return None
        return self.timeout.total_seconds()

    def resource_name(self) -> str:
        """Name for the attempt's container or pod: `executor_name`, or one derived from the ids."""
        if self.executor_name:
            return self.executor_name
        return f"frm-{self.job_request_id}-{self.task_type}-{self.task_retry}"
