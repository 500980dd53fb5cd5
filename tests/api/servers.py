"""Extra uvicorn processes with settings of their own (the session's ``asgi_server`` has the defaults)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from django.conf import settings

from tests.conftest import ARTIFACTS, ROOT, _database_url_for, _free_port


@contextmanager
def web_processes(count: int, env: dict[str, str], agents_file: str) -> Iterator[list[str]]:
    """``count`` uvicorn processes on the test database and Redis with ``env`` added; yields their URLs."""
    ARTIFACTS.mkdir(exist_ok=True)
    base = {**os.environ, "DATABASE_URL": _database_url_for(settings.DATABASES["default"]["NAME"]),
            "AGENTS_FILE": agents_file, "ORCH_EMBEDDED": "1", **env}
    base.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    processes, urls = [], []
    with open(ARTIFACTS / "asgi-extra.log", "ab") as log:
        try:
            for _ in range(count):
                port = _free_port()
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                     "--port", str(port), "--log-level", "warning", "--no-access-log"],
                    cwd=ROOT, env=base, stdout=log, stderr=subprocess.STDOUT))
                urls.append(f"http://127.0.0.1:{port}")
            for process, url in zip(processes, urls, strict=True):
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"an extra web process did not start; see {ARTIFACTS / 'asgi-extra.log'}")
                    time.sleep(0.1)
            yield urls
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
