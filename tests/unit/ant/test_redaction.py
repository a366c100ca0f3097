"""Masking secret values (ant.redaction) and the quantities of container limits."""

from __future__ import annotations

import pytest

from ant.executors.quantity import InvalidQuantity, parse_bytes, parse_cpu
from ant.redaction import MASK, Redactor

pytestmark = pytest.mark.unit


def test_every_occurrence_is_masked_longest_first() -> None:
    redact = Redactor(["hunter2", "hunter2-extended", ""])
    assert redact("pw=hunter2 and hunter2-extended!") == f"pw={MASK} and {MASK}!"
    assert bool(redact)


def test_regex_characters_in_secrets_are_literal() -> None:
    assert Redactor(["a.b*c"])("a.b*c axbbc") == f"{MASK} axbbc"


def test_short_secrets_are_counted_not_masked() -> None:
    redact = Redactor(["on", "1"])
    assert redact.too_short == 2
    assert not redact
    assert redact("on 1") == "on 1"


@pytest.mark.parametrize(("text", "cores"), [("500m", 0.5), ("2", 2.0), ("0.25", 0.25), ("1500m", 1.5)])
def test_cpu_quantities(text: str, cores: float) -> None:
    assert parse_cpu(text) == cores


@pytest.mark.parametrize(
    ("text", "size"), [("512Mi", 512 * 2**20), ("1G", 10**9), ("1024", 1024), ("1.5Ki", 1536)]
)
def test_byte_quantities(text: str, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["", "lots", "5 GB", "-1", "1Xi"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(InvalidQuantity):
        parse_bytes(text)
