"""Web processes for the benchmarks that go through HTTP (sse, api): uvicorn on the bench's database and Redis,
DEBUG off (the harness sets DJANGO_DEBUG=0), no access log."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.harness import ROOT, WORK_DIR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Web:
    url: str
    pid: int


@contextmanager
def web_server(label: str, *, workers: int = 1, env: dict[str, str] | None = None) -> Iterator[Web]:
    """One uvicorn server (``--workers`` processes sharing its socket); yields its base URL and pid."""
    port = free_port()
    log_path = WORK_DIR / f"uvicorn-{label}.log"
    command = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port",
               str(port), "--log-level", "warning", "--no-access-log", "--backlog", "4096"]
    if workers > 1:
        command += ["--workers", str(workers)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start; see {log_path}")
            time.sleep(0.1)
        yield Web(url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def web_servers(label: str, count: int, *, env: dict[str, str] | None = None) -> Iterator[list[Web]]:
    """``count`` separate uvicorn processes, each on its own port (a client spreads its connections evenly over
    them, as a load balancer would); yields their base URLs."""
    with ExitStack() as stack:
        yield [stack.enter_context(web_server(f"{label}-{i}", env=env)) for i in range(count)]
