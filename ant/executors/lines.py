"""Cutting a byte stream into console lines: UTF-8 with U+FFFD for bad bytes, no line over 64 KiB."""

from __future__ import annotations

__all__ = ["MAX_LINE_BYTES", "LineSplitter", "split_long_line"]

MAX_LINE_BYTES = 64 * 1024
"""Longest line sent (LogLine.text); longer lines are split into consecutive lines."""


def split_long_line(text: str, max_bytes: int = MAX_LINE_BYTES) -> list[str]:
    """`text` cut into pieces of at most `max_bytes` UTF-8 bytes, never inside a character."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= max_bytes:
        return [text]
    pieces: list[str] = []
    while len(data) > max_bytes:
        cut = max_bytes
        while cut > 0 and (data[cut] & 0xC0) == 0x80:  # a continuation byte: back up to a boundary
            cut -= 1
        pieces.append(data[:cut].decode("utf-8", errors="replace"))
        data = data[cut:]
    pieces.append(data.decode("utf-8", errors="replace"))
    return pieces


class LineSplitter:
    """Turns chunks of bytes into lines. Feed chunks, then `flush()` at the end of the stream.

    A line is cut at "\\n" (a "\\r" before it is dropped). A partial line longer than `max_bytes` is
    emitted in pieces rather than buffered without bound.
    """

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_bytes
        self._partial = bytearray()

    def feed(self, chunk: bytes) -> list[str]:
        self._partial.extend(chunk)
        lines: list[str] = []
        while True:
            end = self._partial.find(b"\n")
            if end < 0:
                break
            raw = bytes(self._partial[:end])
            del self._partial[: end + 1]
            lines.extend(self._decode(raw))
        while len(self._partial) > self._max:
            cut = self._max
            while cut > 0 and (self._partial[cut] & 0xC0) == 0x80:
                cut -= 1
            lines.append(bytes(self._partial[:cut]).decode("utf-8", errors="replace"))
            del self._partial[:cut]
        return lines

    def flush(self) -> list[str]:
        """The last line if the stream did not end with a newline."""
        if not self._partial:
            return []
        raw = bytes(self._partial)
        self._partial.clear()
        return self._decode(raw)

    def _decode(self, raw: bytes) -> list[str]:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        return split_long_line(raw.decode("utf-8", errors="replace"), self._max)
