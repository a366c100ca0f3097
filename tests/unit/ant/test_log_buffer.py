"""Numbering, batching, dropping and re-sending of an attempt's log lines (ant.log_buffer)."""

from __future__ import annotations

import pytest

from ant.executors import LogStream
from ant.log_buffer import MAX_FRAME_BYTES, MAX_FRAME_LINES, AttemptLog

pytestmark = pytest.mark.unit


def fill(log: AttemptLog, count: int, prefix: str = "line") -> None:
    for n in range(count):
        log.append(LogStream.STDOUT, f"{prefix} {n}")


def test_sequences_start_at_one_and_have_no_gaps() -> None:
    log = AttemptLog()
    fill(log, 3)
    batch = log.take_batch()
    assert [e.sequence for e in batch] == [1, 2, 3]
    assert [e.text for e in batch] == ["line 0", "line 1", "line 2"]
    assert log.last_sequence == 3
    assert log.pending_count == 0
    assert log.take_batch() == []


def test_a_frame_holds_at_most_1000_lines() -> None:
    log = AttemptLog()
    fill(log, 2500)
    sizes = []
    while batch := log.take_batch():
        sizes.append(len(batch))
    assert sizes == [MAX_FRAME_LINES, MAX_FRAME_LINES, 500]


def test_a_frame_holds_at_most_1_mib_of_text() -> None:
    log = AttemptLog()
    for _ in range(40):
        log.append(LogStream.STDOUT, "x" * 60_000)
    batch = log.take_batch()
    assert sum(e.size for e in batch) <= MAX_FRAME_BYTES
    assert 10 <= len(batch) < 40


def test_a_line_bigger_than_a_frame_still_goes_alone() -> None:
    log = AttemptLog()
    log.append(LogStream.STDOUT, "x" * 100)
    assert len(log.take_batch(max_bytes=10)) == 1


def test_lines_beyond_the_bound_are_dropped_and_said_once_with_no_gap() -> None:
    log = AttemptLog(max_pending_lines=100)
    fill(log, 150)
    assert log.pending_count == 100
    assert log.dropped == 50
    first = log.take_batch()
    assert [e.sequence for e in first] == list(range(1, 101))
    log.append(LogStream.STDOUT, "after the jam")
    second = log.take_batch()
    assert [e.sequence for e in second] == [101, 102]
    assert second[0].stream is LogStream.SYSTEM
    assert "50 log lines were dropped" in second[0].text
    assert second[1].text == "after the jam"
    assert log.dropped == 0


def test_close_reports_drops_even_when_full() -> None:
    log = AttemptLog(max_pending_lines=100)
    fill(log, 101)
    log.close()
    lines = log.take_batch()
    assert len(lines) == 101
    assert "1 log lines were dropped" in lines[-1].text


def test_rewind_resends_what_the_queen_did_not_store() -> None:
    log = AttemptLog()
    fill(log, 5)
    assert len(log.take_batch()) == 5
    fill(log, 2, prefix="new")
    assert log.rewind(3) == 0
    batch = log.take_batch()
    assert [e.sequence for e in batch] == [4, 5, 6, 7]
    assert [e.text for e in batch] == ["line 3", "line 4", "new 0", "new 1"]


def test_rewind_counts_lines_no_longer_kept() -> None:
    log = AttemptLog(keep_sent_lines=2)
    fill(log, 6)
    log.take_batch()
    assert log.rewind(1) == 3  # lines 2, 3, 4 were sent and forgotten; 5 and 6 are kept
    assert [e.sequence for e in log.take_batch()] == [5, 6]


def test_rewind_past_everything_sent_changes_nothing() -> None:
    log = AttemptLog()
    fill(log, 3)
    log.take_batch()
    assert log.rewind(3) == 0
    assert log.pending_count == 0
