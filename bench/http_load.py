"""The load generator of ``bench.api``: CONNECTIONS keep-alive HTTP/1.1 connections on raw asyncio streams on
uvloop, as the server runs (no HTTP library: it shares the 2 cores with the server), each sending one request
after another for SECONDS. URLS is one base URL or several, comma-separated: the connections are spread over
them in turn, as a load balancer spreads its connections over the web processes behind it.

    python -m bench.http_load URLS METHOD PATH TOKEN CONNECTIONS SECONDS EXPECTED_STATUS [BODY_JSON]

Prints one JSON line: responses with EXPECTED_STATUS, the others (by status), and latencies' p50 and p99 (ms).
No Django: it imports nothing of the project.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import uvloop


async def connection(host: str, port: int, request: bytes, until: float, statuses: Counter[int],
                     latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < until:
            sent = time.monotonic()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append((time.monotonic() - sent) * 1000)
            statuses[status] += 1
            if b"connection: close" in head.lower():
                return
    finally:
        writer.close()


async def main(urls: str, method: str, path: str, token: str, connections: int, seconds: float, expected: int,
               body: str) -> None:
    servers = [urlsplit(url) for url in urls.split(",")]
    parts = servers[0]
    payload = body.encode()
    request = (f"{method} {path} HTTP/1.1\r\nHost: {parts.hostname}\r\nAuthorization: Token {token}\r\n"
               f"Accept: application/json\r\n"
               + (f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n" if payload else "")
               + "\r\n").encode() + payload
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    started = time.monotonic()
    results = await asyncio.gather(*(connection(server.hostname or "127.0.0.1", server.port or 80, request,
                                                started + seconds, statuses, latencies)
                                     for server in (servers[i % len(servers)] for i in range(connections))),
                                   return_exceptions=True)
    wall = time.monotonic() - started
    latencies.sort()
    errors = [repr(r)[:200] for r in results if isinstance(r, BaseException)]
    print(json.dumps({"ok": statuses.pop(expected, 0), "other": {str(k): v for k, v in statuses.items()},
                      "seconds": wall, "errors": errors[:3],
                      "p50": latencies[len(latencies) // 2] if latencies else None,
                      "p99": latencies[int(len(latencies) * 0.99)] if latencies else None}), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    uvloop.run(main(args[0], args[1], args[2], args[3], int(args[4]), float(args[5]), int(args[6]),
                     args[7] if len(args) > 7 else ""))
