"""Masking the values of secret variables in everything the Ant sends about a task."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MASK", "MIN_SECRET_LENGTH", "Redactor"]

MASK = "[MASKED]"
MIN_SECRET_LENGTH = 4
"""Shorter secret values are not masked: masking every "1" or "on" would garble whole logs and tell
the reader where the secret occurs anyway. Such values are reported (by count) in the task's log."""


class Redactor:
    """Replaces every occurrence of the given secret values with MASK (longest first, so a secret that
    contains another is masked whole)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.too_short = sum(1 for s in values if len(s) < MIN_SECRET_LENGTH)
        masked = [s for s in values if len(s) >= MIN_SECRET_LENGTH]
        self._pattern = re.compile("|".join(re.escape(s) for s in masked)) if masked else None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def __bool__(self) -> bool:
        return self._pattern is not None
