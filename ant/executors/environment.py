"""The environment variables of a task's process or container."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from ant.executors.spec import TaskSpec

__all__ = ["HOST_BASE_VARIABLES", "host_base_environment", "task_environment"]

HOST_BASE_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "TMPDIR")
"""The only variables a SHELL task inherits from the Ant's own environment: the Ant's settings and
credential (FORMICARY_ANT_*) and anything else the Ant process was given never leak into tasks."""

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def host_base_environment(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean base for SHELL tasks: HOST_BASE_VARIABLES from `source` (the Ant's environment)."""
    source = os.environ if source is None else source
    base = {name: source[name] for name in HOST_BASE_VARIABLES if source.get(name)}
    base.setdefault("PATH", _DEFAULT_PATH)
    base.setdefault("LANG", "C.UTF-8")
    return base


def task_environment(
    spec: TaskSpec, base: Mapping[str, str], work_dir: str
) -> tuple[dict[str, str], list[str]]:
    """`base`, then FORMICARY_* facts about the attempt, then the variables, then `environment`.

    Names that are not shell identifiers or values holding a NUL byte cannot be passed to a process:
    they are left out with a warning (names only, never values, which may be secret).
    """
    env = dict(base)
    env.update(
        {
            "CI": "true",
            "FORMICARY_JOB_REQUEST_ID": str(spec.job_request_id),
            "FORMICARY_JOB_TYPE": spec.job_type,
            "FORMICARY_TASK_TYPE": spec.task_type,
            "FORMICARY_TASK_EXECUTION_ID": spec.task_execution_id,
            "FORMICARY_TASK_RETRY": str(spec.task_retry),
            "FORMICARY_WORK_DIR": work_dir,
        }
    )
    warnings: list[str] = []
    pairs = [*((k, v.value) for k, v in spec.variables.items()), *spec.environment.items()]
    for name, value in pairs:
        if not _NAME.fullmatch(name) or "\0" in value:
            warnings.append(f"variable {name!r} not exported: not a valid environment variable")
            continue
        env[name] = value
    return env, warnings
