"""Templating of task fields in a sandboxed Jinja2 environment; Formicary's `{{.Name}}` works too.

Variables, from lowest to highest precedence (a later layer overrides an earlier one), as in Formicary:
organisation configs → user configs → `job_variables` → built-ins (JobID, JobType, JobRetry, TaskType,
TaskRetry, dates, epoch) → the task's `variables` → request params → outputs of earlier tasks
(`::set-output name=K::V` lines in their logs).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from queen.domain.errors import InvalidArgument

__all__ = [
    "TemplateContext",
    "builtins",
    "is_template",
    "parse_set_output",
    "render",
    "to_jinja",
]

# `{{.JobID}}`, `{{ .Params.x }}`-style Go template references → Jinja names. Only simple dotted
# references are translated; Go control structures (`{{if}}`, `{{range}}`) are not supported.
_GO_REFERENCE = re.compile(r"\{\{-?\s*\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*-?\}\}")
_SET_OUTPUT = re.compile(r"^::set-output name=([A-Za-z_][A-Za-z0-9_.-]*)::(.*)$")
_MAX_RENDERED = 1024 * 1024

_ENVIRONMENT = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)


@dataclass(frozen=True, slots=True)
class TemplateContext:
    """The layers of variables, lowest precedence first (see the module docstring)."""

    organization: Mapping[str, Any]
    user: Mapping[str, Any]
    job: Mapping[str, Any]
    builtins: Mapping[str, Any]
    task: Mapping[str, Any]
    params: Mapping[str, Any]
    outputs: Mapping[str, Any]

    def merged(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for layer in (
            self.organization,
            self.user,
            self.job,
            self.builtins,
            self.task,
            self.params,
            self.outputs,
        ):
            merged.update(layer)
        return merged


def builtins(
    *,
    job_id: int,
    job_type: str,
    job_retry: int,
    task_type: str,
    task_retry: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Formicary's built-in variables (plus Jinja-friendly snake_case aliases)."""
    moment = now or datetime.now(UTC)
    values: dict[str, Any] = {
        "JobID": job_id,
        "JobType": job_type,
        "JobRetry": job_retry,
        "TaskType": task_type,
        "TaskRetry": task_retry,
        "Date": moment.strftime("%Y-%m-%d"),
        "DateTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Epoch": int(moment.timestamp()),
        "EpochMillis": int(moment.timestamp() * 1000),
    }
    values.update(
        job_id=job_id,
        job_type=job_type,
        job_retry=job_retry,
        task_type=task_type,
        task_retry=task_retry,
    )
    return values


def to_jinja(text: str) -> str:
    """Translate Formicary's `{{.Name}}` references into Jinja's `{{ Name }}`."""
    return _GO_REFERENCE.sub(lambda m: "{{ " + m.group(1) + " }}", text)


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> Template:
    """A template compiled once: a job's tasks render the same lines for every request and retry."""
    return _ENVIRONMENT.from_string(to_jinja(text))


def is_template(text: str) -> bool:
    """Whether `text` has anything to render (else `render` returns it as it is)."""
    return "{{" in text or "{%" in text


def render(text: str, variables: Mapping[str, Any]) -> str:
    """Render one template string; a missing variable or unsafe expression raises `InvalidArgument`."""
    if not is_template(text):
        return text
    try:
        rendered = _compiled(text).render(variables)
    except SecurityError as exc:
        raise InvalidArgument(f"template {text!r} is not allowed: {exc}") from exc
    except TemplateError as exc:
        raise InvalidArgument(f"template {text!r} cannot be rendered: {exc}") from exc
    if len(rendered) > _MAX_RENDERED:
        raise InvalidArgument(f"template {text!r} renders to more than {_MAX_RENDERED} characters")
    return rendered


def parse_set_output(lines: Iterable[str]) -> dict[str, str]:
    """Task outputs from `::set-output name=K::V` log lines (the last value of a name wins)."""
    outputs: dict[str, str] = {}
    for line in lines:
        match = _SET_OUTPUT.match(line.rstrip("\r\n"))
        if match:
            outputs[match.group(1)] = match.group(2)
    return outputs
