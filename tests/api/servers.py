"""Extra uvicorn processes with settings of their own (the session's ``asgi_server`` has the defaults)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from django.conf import settings

from tests.conftest import _database_url_for, _free_port, serving


@contextmanager
def web_processes(count: int, env: dict[str, str], agents_file: str) -> Iterator[list[str]]:
    """``count`` uvicorn processes on the test database and Redis with ``env`` added; yields their URLs."""
    base = {**os.environ, "DATABASE_URL": _database_url_for(settings.DATABASES["default"]["NAME"]),
            "AGENTS_FILE": agents_file, "ORCH_EMBEDDED": "1", **env}
    base.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    with ExitStack() as stack:
        urls = []
        for _ in range(count):
            url = f"http://127.0.0.1:{_free_port()}"
            stack.enter_context(serving(
                ["-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
                 "--log-level", "warning", "--no-access-log"],
                env=base, log_name="asgi-extra.log", ready_url=f"{url}/health/live"))
            urls.append(url)
        yield urls
