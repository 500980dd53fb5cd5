"""A local endpoint for the I/O-bound benchmarks: answers any POST with ``{"ok": true}`` after a fixed
latency, one thread per request, on 127.0.0.1 in the bench process. It can note when each request arrived: the
one clock on which a plan's calls and a raw Celery chord's can be compared."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 would drop SYNs from hundreds of simultaneous calls


@contextmanager
def slow_endpoint(latency: float, arrivals: list[float] | None = None) -> Iterator[str]:
    """Serve the endpoint while the block runs; yields its URL. ``arrivals``: a list the epoch time of each
    request's arrival is appended to."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if arrivals is not None:
                arrivals.append(time.time())
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(latency)
            body = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/agent"
    finally:
        server.shutdown()
        server.server_close()
