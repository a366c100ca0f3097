"""Reconnect delays (ant.backoff)."""

from __future__ import annotations

import random

import pytest

from ant.backoff import Backoff

pytestmark = pytest.mark.unit


def test_delays_grow_exponentially_within_their_jitter_band() -> None:
    backoff = Backoff(0.1, 10.0, rng=random.Random(7))
    for attempt in range(6):
        nominal = 0.1 * 2**attempt
        assert nominal / 2 <= backoff.next_delay() <= nominal


def test_delays_never_exceed_the_cap_even_after_many_failures() -> None:
    backoff = Backoff(0.1, 2.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(5000)]
    assert max(delays) <= 2.0
    assert min(delays[10:]) >= 1.0


def test_jitter_spreads_the_delays() -> None:
    backoff = Backoff(1.0, 1.0, rng=random.Random(3))
    assert len({round(backoff.next_delay(), 6) for _ in range(20)}) > 10


def test_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(0.2, 5.0, rng=random.Random(2))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 0.2


def test_the_cap_stays_well_below_the_heartbeat_timeout() -> None:
    backoff = Backoff(0.2, 30.0)
    backoff.limit_to(8.0)
    assert backoff.cap == 2.0
    assert all(backoff.next_delay() <= 2.0 for _ in range(100))


def test_a_tiny_heartbeat_timeout_also_limits_the_initial_delay() -> None:
    backoff = Backoff(1.0, 30.0)
    backoff.limit_to(0.4)
    assert backoff.cap == pytest.approx(0.1)
    assert backoff.next_delay() <= 0.1


@pytest.mark.parametrize(("initial", "cap"), [(0, 1), (2, 1), (-1, 5)])
def test_nonsense_is_refused(initial: float, cap: float) -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial, cap)
