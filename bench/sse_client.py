"""The watchers of ``bench.sse``: one process holding many SSE connections on raw asyncio streams, on uvloop as
the server runs (no HTTP library: at 2,000 connections the load generator's own CPU is part of the measurement,
on the same 2 cores; on uvloop it takes half the CPU of the default loop at 500 watchers, a fifth less at 2,000).

    python -m bench.sse_client URLS PATH TOKEN CONNECTIONS

URLS is a comma-separated list of base URLs (connection i goes to URLS[i % len]); PATH the stream's path with
its query. Prints ``ready`` once every connection has received ``stream-open``; then reads until each
connection has seen an event whose data says ``"final": true``, and prints one JSON line: per connection the
distinct event ids received, and every event's latency (arrival - the ``published_at`` in its data, in ms).
No Django: it imports nothing of the project.
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
first: dict[int, float] = {}
last: dict[int, float] = {}
EVENT = re.compile(rb'^id: plan-[0-9a-f-]+:(\d+)\ndata: [^\n]*"published_at": ([0-9.]+)([^\n]*)$', re.MULTILINE)


async def watch(url: str, path: str, token: str, opened: asyncio.Event, gate: asyncio.Semaphore,
                ids: set[int], latencies: list[float], done: list[int]) -> None:
    parts = urlsplit(url)
    try:
        async with gate:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=1 << 20)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Token {token}\r\n"
                         f"Accept: text/event-stream\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace")[:200])
            buffer = b""
            while b"stream-open" not in buffer:
                more = await reader.read(65536)
                if not more:
                    raise RuntimeError("the stream ended before stream-open")
                buffer += more
    finally:
        opened.set()  # a connection that failed is reported at the end, it does not hold the others up
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            arrived = time.time()
            buffer += chunk
            end = buffer.rfind(b"\n")
            if end < 0:
                continue
            complete, buffer = buffer[:end + 1], buffer[end + 1:]
            for match in EVENT.finditer(complete):
                ids.add(int(match.group(1)))
                latencies.append((arrived - float(match.group(2))) * 1000)
                first.setdefault(int(match.group(1)), arrived)
                last[int(match.group(1))] = arrived
                if b'"final": true' in match.group(3):
                    done.append(1)
                    return
    finally:
        writer.close()


async def main(urls: list[str], path: str, token: str, count: int) -> None:
    gate = asyncio.Semaphore(OPEN_AT_ONCE)
    opened = [asyncio.Event() for _ in range(count)]
    ids: list[set[int]] = [set() for _ in range(count)]
    latencies: list[float] = []
    done: list[int] = []
    tasks = [asyncio.create_task(watch(urls[i % len(urls)], path, token, opened[i], gate, ids[i], latencies, done))
             for i in range(count)]
    await asyncio.gather(*(o.wait() for o in opened))
    print("ready", flush=True)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(r)[:200] for r in results if isinstance(r, BaseException)]
    print(json.dumps({"ids": [sorted(s) for s in ids], "latencies": latencies, "errors": errors[:5],
                      "failed": len(errors), "first": first, "last": last}), flush=True)


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1].split(","), sys.argv[2], sys.argv[3], int(sys.argv[4])))
