"""A real uvicorn process on the test database, with an environment of the test's choosing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings

from tests.conftest import _database_url_for, _free_port, serving


def served_database_url() -> str:
    return _database_url_for(settings.DATABASES["default"]["NAME"])


@contextmanager
def web_process(env: dict[str, str], *, ready_path: str = "/accounts/login/",
                args: tuple[str, ...] = ()) -> Iterator[str]:
    """Serve config.asgi with ``env`` (added to this process's environment; a value of "" removes the
    variable) and uvicorn's ``args``, and yield its base URL once ``ready_path`` answers 200; stopped on exit."""
    port = _free_port()
    full = {**os.environ, "DATABASE_URL": served_database_url(), "ORCH_EMBEDDED": "1", **env}
    full = {k: v for k, v in full.items() if v != ""}
    full.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    url = f"http://127.0.0.1:{port}"
    with serving(["-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                  "--timeout-graceful-shutdown", "2", *args], env=full, log_name="ops-web.log",
                 ready_url=f"{url}{ready_path}"):
        yield url
