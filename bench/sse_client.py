"""The watchers of ``bench.sse``: one process holding many SSE connections, each a bare asyncio ``Protocol`` on
uvloop as the server runs (no HTTP library, no stream reader).

    python -m bench.sse_client URLS PATH TOKEN CONNECTIONS

URLS is a comma-separated list of base URLs (connection i goes to URLS[i % len]); PATH the stream's path with
its query. Prints ``ready`` once every connection has received ``stream-open``; then reads until each
connection has seen an event whose data says ``"final": true``, and prints one JSON line: per connection the
distinct event ids received, and every event's latency (arrival - the ``published_at`` in its data, in ms).
No Django: it imports nothing of the project.

The load generator shares the machine's 2 cores with what it measures, so while events arrive a connection
only stamps each chunk with its arrival time and keeps it; the frames are parsed once the last event is in (an
event's arrival is still that of the chunk that completed it). Parsing each chunk as it came, through asyncio's
stream reader, the watchers used as much CPU as the two web processes serving them (0.89 against 0.94 cores
at 2,000 watchers), and what they took the web processes lacked.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from urllib.parse import urlsplit

import uvloop

OPEN_AT_ONCE = 64
FINAL = b'"final": true'
EVENT = re.compile(rb'^id: plan-[0-9a-f-]+:(\d+)\ndata: [^\n]*"published_at": ([0-9.]+)([^\n]*)$', re.MULTILINE)


class Watch(asyncio.Protocol):
    """One stream: its opening is awaited (``opened``), then its chunks are kept with their arrival times until
    the final event or the end of the connection (``done``)."""

    def __init__(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.opened: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.head = b""
        self.chunks: list[tuple[float, bytes]] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.opened.done():
            last = self.chunks[-1][1][-len(FINAL):] if self.chunks else b""
            self.chunks.append((time.time(), data))
            if FINAL in data or FINAL in last + data[:len(FINAL)]:
                self._end()
            return
        self.head += data
        if not self.head.startswith(b"HTTP/1.1 200") and b"\r\n\r\n" in self.head:
            self._end(RuntimeError(self.head.decode(errors="replace")[:200]))
        elif b"stream-open" in self.head:
            self.opened.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(None if self.opened.done() else RuntimeError(f"the stream ended before stream-open: {exc!r}"))

    def _end(self, error: Exception | None = None) -> None:
        for future in (self.opened, self.done):
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(None)
        if self.transport is not None:
            self.transport.close()


def parse(chunks: list[tuple[float, bytes]], ids: set[int], latencies: list[float], first: dict[int, float],
          last: dict[int, float]) -> None:
    """What a connection received: its event ids and their latencies, up to its final event."""
    buffer = b""
    for arrived, chunk in chunks:
        buffer += chunk
        end = buffer.rfind(b"\n")
        if end < 0:
            continue
        complete, buffer = buffer[:end + 1], buffer[end + 1:]
        for match in EVENT.finditer(complete):
            event_id = int(match.group(1))
            ids.add(event_id)
            latencies.append((arrived - float(match.group(2))) * 1000)
            first.setdefault(event_id, arrived)
            last[event_id] = arrived
            if FINAL in match.group(3):
                return


async def open_one(url: str, path: str, token: str, gate: asyncio.Semaphore) -> Watch:
    parts = urlsplit(url)
    request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Token {token}\r\n"
               f"Accept: text/event-stream\r\n\r\n").encode()
    async with gate:
        loop = asyncio.get_running_loop()
        _, watch = await loop.create_connection(lambda: Watch(request), parts.hostname, parts.port)
        await watch.opened
    return watch


async def main(urls: list[str], path: str, token: str, count: int) -> None:
    gate = asyncio.Semaphore(OPEN_AT_ONCE)
    opened = await asyncio.gather(*(open_one(urls[i % len(urls)], path, token, gate) for i in range(count)),
                                  return_exceptions=True)
    print("ready", flush=True)
    watches = [w for w in opened if isinstance(w, Watch)]
    ended = await asyncio.gather(*(w.done for w in watches), return_exceptions=True)
    errors = [repr(r)[:200] for r in [*opened, *ended] if isinstance(r, BaseException)]
    ids: list[set[int]] = [set() for _ in range(count)]
    latencies: list[float] = []
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for i, watch in enumerate(watches):
        parse(watch.chunks, ids[i], latencies, first, last)
    print(json.dumps({"ids": [sorted(s) for s in ids], "latencies": latencies, "errors": errors[:5],
                      "failed": len(errors), "first": first, "last": last}), flush=True)


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1].split(","), sys.argv[2], sys.argv[3], int(sys.argv[4])))
