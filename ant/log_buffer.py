"""The console log of one task attempt on its way to the Queen: numbering, batching, bounded buffering,
dropping under pressure (said in the log), and re-sending after a reconnect (AntService section 6)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ant.executors.context import LogStream

__all__ = ["MAX_FRAME_BYTES", "MAX_FRAME_LINES", "AttemptLog", "LogEntry"]

MAX_FRAME_LINES = 1000
"""Most lines in one LogLines frame."""
MAX_FRAME_BYTES = 1024 * 1024
"""Most text bytes in one LogLines frame (frames must stay far below gRPC's 4 MiB)."""
_LINE_OVERHEAD = 32  # sequence, timestamp, stream and field tags of a LogLine, roughly


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One numbered line."""

    sequence: int
    time: datetime
    stream: LogStream
    text: str
    size: int = field(default=0, compare=False)

    @classmethod
    def make(cls, sequence: int, time: datetime, stream: LogStream, text: str) -> LogEntry:
        return cls(sequence, time, stream, text, len(text.encode("utf-8", errors="replace")) + _LINE_OVERHEAD)


class AttemptLog:
    """Lines of one attempt: pending (numbered, not sent yet) and recently sent (kept for re-sending).

    Sequence numbers start at 1 and are given when a line is accepted, so the numbers the Queen sees
    have no gaps even when lines are dropped: when more than `max_pending_lines` / `max_pending_bytes`
    wait (the stream is down or slower than the task's output), new lines are dropped and counted, and
    the next accepted line is preceded by one SYSTEM line saying how many were lost.
    """

    def __init__(
        self,
        *,
        max_pending_lines: int = 20_000,
        max_pending_bytes: int = 16 * 1024 * 1024,
        keep_sent_lines: int = 20_000,
        keep_sent_bytes: int = 8 * 1024 * 1024,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._max_pending_lines = max_pending_lines
        self._max_pending_bytes = max_pending_bytes
        self._keep_sent_lines = keep_sent_lines
        self._keep_sent_bytes = keep_sent_bytes
        self._clock = clock
        self._next = 1
        self._pending: deque[LogEntry] = deque()
        self._pending_bytes = 0
        self._sent: deque[LogEntry] = deque()
        self._sent_bytes = 0
        self._dropped = 0

    @property
    def last_sequence(self) -> int:
        """Sequence of the last accepted line; 0 before the first."""
        return self._next - 1

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def dropped(self) -> int:
        """Lines dropped and not yet reported by a SYSTEM line."""
        return self._dropped

    def append(self, stream: LogStream, text: str) -> bool:
        """Number and queue a line; False if it was dropped because too much is waiting."""
        if self._dropped and self._has_room(2):
            self._accept(LogStream.SYSTEM, self._drop_note())
        if self._dropped or not self._has_room(1):
            self._dropped += 1
            return False
        self._accept(stream, text)
        return True

    def close(self) -> None:
        """The attempt ended: report lines dropped since the last note, even beyond the bounds."""
        if self._dropped:
            self._accept(LogStream.SYSTEM, self._drop_note())

    def take_batch(
        self, max_lines: int = MAX_FRAME_LINES, max_bytes: int = MAX_FRAME_BYTES
    ) -> list[LogEntry]:
        """The next pending lines for one frame (at least one if any is pending); they count as sent."""
        batch: list[LogEntry] = []
        size = 0
        while self._pending and len(batch) < max_lines:
            entry = self._pending[0]
            if batch and size + entry.size > max_bytes:
                break
            self._pending.popleft()
            self._pending_bytes -= entry.size
            batch.append(entry)
            size += entry.size
        for entry in batch:
            self._remember(entry)
        return batch

    def rewind(self, after_sequence: int) -> int:
        """Queue again the sent lines numbered above `after_sequence` (what the Queen stored), so they
        are re-sent. Returns how many of those lines are no longer kept and cannot be re-sent."""
        resend = [entry for entry in self._sent if entry.sequence > after_sequence]
        if resend:
            kept = [entry for entry in self._sent if entry.sequence <= after_sequence]
            self._sent = deque(kept)
            self._sent_bytes = sum(entry.size for entry in kept)
            for entry in reversed(resend):
                self._pending.appendleft(entry)
                self._pending_bytes += entry.size
        first_available = self._pending[0].sequence if self._pending else self._next
        return max(0, first_available - after_sequence - 1)

    def _has_room(self, lines: int) -> bool:
        return (
            len(self._pending) + lines <= self._max_pending_lines
            and self._pending_bytes < self._max_pending_bytes
        )

    def _accept(self, stream: LogStream, text: str) -> None:
        entry = LogEntry.make(self._next, self._clock(), stream, text)
        self._next += 1
        self._pending.append(entry)
        self._pending_bytes += entry.size

    def _drop_note(self) -> str:
        note = (
            f"formicary: {self._dropped} log lines were dropped: the Ant could not send them to the Queen "
            "fast enough"
        )
        self._dropped = 0
        return note

    def _remember(self, entry: LogEntry) -> None:
        if self._keep_sent_lines <= 0:
            return
        self._sent.append(entry)
        self._sent_bytes += entry.size
        while self._sent and (
            len(self._sent) > self._keep_sent_lines or self._sent_bytes > self._keep_sent_bytes
        ):
            self._sent_bytes -= self._sent.popleft().size
