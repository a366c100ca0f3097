"""Masking secret values, and their common encodings, in text: shared by the Ant (before it sends a line
or a result) and the Queen (before it stores one).

Besides the value itself: base64 (standard and URL-safe, also as a part of a longer base64 text, e.g.
`echo $SECRET | base64` which encodes a trailing newline), URL encoding (`%XX` and `+`), and hex (lower
and upper case). Every form is replaced by the same mask.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = ["MASK", "MIN_SECRET_LENGTH", "Redactor", "encodings"]

MASK = "[MASKED]"
MIN_SECRET_LENGTH = 4
"""Shorter secret values are not masked: masking every "1" or "on" would garble whole logs and tell
the reader where the secret occurs anyway. Such values are reported (by count) in the task's log."""

_MIN_BASE64_CORE = 8  # shorter stable parts of an encoding would match unrelated base64 text


def _base64_cores(raw: bytes) -> set[str]:
    """The parts of base64 that are the same wherever `raw` sits in a longer encoded text: for each of
    the 3 alignments, the 4-character groups made only of `raw`'s own bytes."""
    found: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = 4 if offset else 0
        end = len(encoded) if (offset + len(raw)) % 3 == 0 else len(encoded) - 4
        core = encoded[start:end]
        if len(core) >= _MIN_BASE64_CORE:
            found.add(core)
            found.add(core.replace("+", "-").replace("/", "_"))
    return found


def encodings(secret: str) -> set[str]:
    """The secret and the forms a script commonly turns it into."""
    raw = secret.encode()
    hexed = binascii.hexlify(raw).decode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret), hexed, hexed.upper()}
    for variant in (raw, raw + b"\n"):
        whole = base64.b64encode(variant).decode()
        forms |= {whole, whole.rstrip("="), base64.urlsafe_b64encode(variant).decode().rstrip("=")}
    forms |= _base64_cores(raw)
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class Redactor:
    """Replaces every occurrence of the given secret values, and of their encodings, with MASK (longest
    first, so a secret that contains another is masked whole)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {s for s in secrets if s}
        self.too_short = sum(1 for s in values if len(s) < MIN_SECRET_LENGTH)
        forms: set[str] = set()
        for value in values:
            if len(value) >= MIN_SECRET_LENGTH:
                forms |= encodings(value)
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(f) for f in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def __bool__(self) -> bool:
        return self._pattern is not None
