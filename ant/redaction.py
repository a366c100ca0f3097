"""Masking the values of secret variables in everything the Ant sends about a task (the redactor shared
with the Queen, `sdk.redaction`: the values and their common encodings)."""

from __future__ import annotations

from sdk.redaction import MASK, MIN_SECRET_LENGTH, Redactor

__all__ = ["MASK", "MIN_SECRET_LENGTH", "Redactor"]
