"""Validation problems: what is wrong in a job definition, where, and how to fix it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Problem", "ProblemCode", "Severity"]


class Severity(enum.StrEnum):
    """An ERROR rejects the definition; a WARNING is reported and the definition is still accepted."""

    ERROR = "ERROR"
    WARNING = "WARNING"


class ProblemCode(enum.StrEnum):
    """Stable identifiers of validation rules, for tools that filter or count problems."""

    YAML_SYNTAX = "yaml-syntax"
    COLON_IN_PLAIN_SCALAR = "colon-in-plain-scalar"
    DUPLICATE_KEY = "duplicate-key"
    TOO_LARGE = "too-large"
    TOO_MANY_TASKS = "too-many-tasks"
    TOO_COMPLEX = "too-complex"
    NOT_A_MAPPING = "not-a-mapping"
    UNKNOWN_FIELD = "unknown-field"
    MISSING_FIELD = "missing-field"
    WRONG_TYPE = "wrong-type"
    BAD_VALUE = "bad-value"
    BAD_DURATION = "bad-duration"
    BAD_METHOD = "bad-method"
    BAD_CRON = "bad-cron"
    BAD_EXIT_CODE = "bad-exit-code"
    DUPLICATE_TASK_TYPE = "duplicate-task-type"
    UNKNOWN_ROUTE_TARGET = "unknown-route-target"
    UNKNOWN_DEPENDENCY = "unknown-dependency"
    CYCLE = "cycle"
    UNREACHABLE_TASK = "unreachable-task"
    MANUAL_UNROUTED = "manual-unrouted"
    MISPLACED_FIELD = "misplaced-field"
    NOT_SUPPORTED = "not-supported"


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem, at a 1-based line and column of the YAML source, with the offending text and a fix."""

    severity: Severity
    code: ProblemCode
    message: str
    line: int
    column: int
    text: str = ""
    fix: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def format(self, source: str) -> str:
        """`FILE:LINE:COLUMN: severity: message (fix: ...)`, the shape compilers and `argo lint` print."""
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{source}:{self.line}:{self.column}: {self.severity.lower()}: {self.message}{fix}"
