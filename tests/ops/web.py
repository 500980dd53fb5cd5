"""A real uvicorn process on the test database, with an environment of the test's choosing."""

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


def served_database_url() -> str:
    return _database_url_for(settings.DATABASES["default"]["NAME"])


@contextmanager
def web_process(env: dict[str, str], *, ready_path: str = "/accounts/login/") -> Iterator[str]:
    """Serve config.asgi with ``env`` (added to this process's environment; a value of "" removes the
    variable) and yield its base URL once ``ready_path`` answers 200; stopped on exit."""
    ARTIFACTS.mkdir(exist_ok=True)
    port = _free_port()
    full = {**os.environ, "DATABASE_URL": served_database_url(), "ORCH_EMBEDDED": "1", **env}
    full = {k: v for k, v in full.items() if v != ""}
    full.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    with open(ARTIFACTS / "ops-web.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
             "--timeout-graceful-shutdown", "2"],
            cwd=ROOT, env=full, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}{ready_path}", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the web process did not start; see {ARTIFACTS / 'ops-web.log'}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
