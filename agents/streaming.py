"""Batching of streamed text for the live progress: a model streams dozens of tokens a second, and the
event record should get a few rows a second, not one per token."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ChunkBuffer:
    """Collects text chunks and hands them to ``flush`` at most every ``interval`` seconds, or sooner
    once ``max_chars`` have gathered; ``close()`` flushes the rest. Thread-safe; no timer thread: a
    flush happens on the thread that adds the chunk that makes one due."""

    def __init__(self, flush: Callable[[str], None], *, interval: float = 0.2, max_chars: int = 2000) -> None:
        self._flush = flush
        self.interval = interval
        self.max_chars = max_chars
        self._parts: list[str] = []
        self._size = 0
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            due = self._size >= self.max_chars or time.monotonic() - self._last >= self.interval
            pending = self._take() if due else ""
        if pending:
            self._flush(pending)

    def close(self) -> None:
        with self._lock:
            pending = self._take()
        if pending:
            self._flush(pending)

    def _take(self) -> str:
        text = "".join(self._parts)
        self._parts, self._size, self._last = [], 0, time.monotonic()
        return text
