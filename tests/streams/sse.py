"""A small real SSE client for the tests: reads a text/event-stream in a thread and parses it as the
EventSource spec does (event, id, data lines; a blank line ends an event)."""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SseEvent:
    type: str
    id: str | None
    data: str

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class SseClient:
    """Connects on construction; ``status`` and ``headers`` are the response's. Always ``close()`` it."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None,
                 connect_timeout: float = 10, method: str = "GET", json_body: Any = None) -> None:
        self.events: queue.Queue[SseEvent | None] = queue.Queue()
        self._client = httpx.Client(timeout=httpx.Timeout(connect_timeout, read=None), cookies=cookies)
        request = self._client.build_request(method, url, headers=headers, json=json_body)
        self._response = self._client.send(request, stream=True)
        self.status = self._response.status_code
        self.content_type = self._response.headers.get("content-type", "")
        self._closed = threading.Event()
        if self.status == 200 and self.content_type.startswith("text/event-stream"):
            threading.Thread(target=self._read, daemon=True).start()
        else:
            self.body = self._response.read()

    def _read(self) -> None:
        kind, event_id, data = "message", None, []  # type: tuple[str, str | None, list[str]]
        try:
            for line in self._response.iter_lines():
                if line == "":
                    if data:
                        self.events.put(SseEvent(kind, event_id, "\n".join(data)))
                    kind, event_id, data = "message", None, []
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        kind = value
                    elif field == "id":
                        event_id = value
                    elif field == "data":
                        data.append(value)
        except (httpx.HTTPError, RuntimeError):
            if not self._closed.is_set():
                raise
        finally:
            self.events.put(None)

    def plan_events(self, *, until: str, timeout: float = 30) -> list[SseEvent]:
        """Plan events (not the library's stream-open / keep-alive) up to and including the first of type
        ``until``; raises AssertionError on timeout or if the stream ends first."""
        found: list[SseEvent] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {until!r} within {timeout}s; got {[e.type for e in found]}") from None
            if event is None:
                raise AssertionError(f"the stream ended before {until!r}; got {[e.type for e in found]}")
            if event.type in ("stream-open", "keep-alive", "message"):
                continue
            found.append(event)
            if event.type == until:
                return found

    def plan_events_with_ids(self, wanted: set[int], *, timeout: float = 30) -> list[SseEvent]:
        """Plan events until every id in ``wanted`` has arrived; raises AssertionError on timeout."""
        found: list[SseEvent] = []
        missing = set(wanted)
        deadline = time.monotonic() + timeout
        while missing:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"ids {sorted(missing)} never arrived within {timeout}s") from None
            if event is None:
                raise AssertionError(f"the stream ended before ids {sorted(missing)}")
            if event.type not in ("stream-open", "keep-alive", "message"):
                found.append(event)
                missing.discard(event.json["id"])
        return found

    def close(self) -> None:
        self._closed.set()
        self._response.close()
        self._client.close()
