"""A stored log is cut by one rule whether it is streamed (`_encoded_lines`) or built in memory for a
batch (`_encoded_log`): within the size limit, the note at the cut, nothing after it."""

from __future__ import annotations

import pytest

from queen.services.artifacts import _LOG_BATCH, _LOG_TRUNCATED, _encoded_lines, _encoded_log

pytestmark = pytest.mark.unit

LINES = ["first line", "ünïcödé ✓", "", "x" * 300, "last"]
WHOLE = "".join(f"{line}\n" for line in LINES).encode()


async def _streamed(lines: list[str], limit: int) -> bytes:
    return b"".join([chunk async for chunk in _encoded_lines(lines, limit)])


@pytest.mark.parametrize(
    "limit",
    [
        len(WHOLE) + len(_LOG_TRUNCATED),  # fits exactly: nothing cut
        len(WHOLE) + len(_LOG_TRUNCATED) - 1,  # one byte short: cut, note in full
        len(WHOLE),
        len(_LOG_TRUNCATED) + 5,
        len(_LOG_TRUNCATED),  # room for the note only
        10,  # less than the note: what fits of it
        0,
        10**6,
    ],
)
async def test_streamed_and_in_memory_logs_are_cut_alike(limit: int) -> None:
    streamed = await _streamed(LINES, limit)
    assert _encoded_log(LINES, limit) == streamed
    assert len(streamed) <= limit
    if len(WHOLE) + len(_LOG_TRUNCATED) <= limit:
        assert streamed == WHOLE
    else:
        budget = max(limit - len(_LOG_TRUNCATED), 0)
        assert streamed == WHOLE[:budget] + _LOG_TRUNCATED[: limit - budget]


async def test_a_long_log_streams_in_chunks_and_stops_at_the_cut() -> None:
    lines = [f"line {n:06d} " + "y" * 90 for n in range(3000)]  # about 300 KB
    limit = 200_000
    chunks = [chunk async for chunk in _encoded_lines(lines, limit)]
    assert len(chunks) > 2
    assert all(len(chunk) < _LOG_BATCH + 200 for chunk in chunks)
    whole = b"".join(chunks)
    assert whole == _encoded_log(lines, limit)
    assert len(whole) == limit
    assert whole.endswith(_LOG_TRUNCATED)
