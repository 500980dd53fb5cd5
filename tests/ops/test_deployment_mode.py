"""A web process as the image runs it: DEBUG off, a real DATABASE_URL (the embedded server's, as a
deployment would give), static files collected beforehand by the image's own command, served by the
web process itself; the live page loads its CSS and JS and draws the plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from django.conf import settings

from orchestrator import services
from tests.conftest import ARTIFACTS, ROOT, browser_login
from tests.ops.web import web_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

# What the Dockerfile's build stage sets to run collectstatic: placeholders, never connected to.
BUILD_ENV = {"DATABASE_URL": "postgres://build@localhost/build", "REDIS_URL": "redis://localhost:1/0",
             "DJANGO_SECRET_KEY": "build-only", "DJANGO_ALLOWED_HOSTS": "build"}


def collectstatic(static_root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ORCH_EMBEDDED", "DJANGO_DEBUG")}
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"], cwd=ROOT,
                   env={**env, **BUILD_ENV, "STATIC_ROOT": str(static_root)}, check=True, timeout=120)


def test_a_deployment_mode_web_process_serves_static_files_and_the_live_page(
        tmp_path: Path, page: Any, user: Any) -> None:
    static_root = tmp_path / "staticfiles"
    collectstatic(static_root)
    assert (static_root / "streams" / "plan_live.js").exists()
    assert (static_root / "drf_spectacular_sidecar" / "swagger-ui-dist" / "swagger-ui-bundle.js").exists()
    plan = services.plan_create(owner=user, request="deployed", steps=[{"key": "a", "agent": "held"}])

    # The session cookie browser_login makes is signed with this process's key.
    deployment = {"ORCH_EMBEDDED": "", "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": settings.SECRET_KEY,
                  "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "STATIC_ROOT": str(static_root),
                  "MEMORY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
                  "MEMORY_BLIND_INDEX_KEY": "a-long-random-blind-index-key-for-the-test",
                  "DJANGO_SECURE_SSL_REDIRECT": "0"}  # plain HTTP on loopback: no TLS proxy in front here
    log_start = (ARTIFACTS / "ops-web.log").stat().st_size if (ARTIFACTS / "ops-web.log").exists() else 0
    with web_process(deployment) as url:
        for path in ("/static/streams/plan_live.js", "/static/streams/plan_live.css", "/static/admin/css/base.css"):
            response = httpx.get(f"{url}{path}", timeout=10)
            assert response.status_code == 200, path
        missing = httpx.get(f"{url}/static/streams/nothing.js", timeout=10)
        assert missing.status_code == 404 and "Traceback" not in missing.text  # DEBUG is off

        loaded: list[str] = []
        page.on("response", lambda r: loaded.append(f"{r.status} {r.url}") if "/static/" in r.url else None)
        browser_login(page, url, user)
        page.goto(f"{url}/plans/{plan.id}/")
        page.wait_for_selector('#dag .node[data-step="a"]', timeout=15_000)  # drawn by plan_live.js
        assert f"200 {url}/static/streams/plan_live.js" in loaded
        page.wait_for_selector('#connection[data-state="live"]', timeout=15_000)

        docs = httpx.get(f"{url}/api/docs/", timeout=10)
        assert docs.status_code == 200
        assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in docs.text
        assert "cdn.jsdelivr" not in docs.text and "unpkg" not in docs.text
    # The web process logs JSON lines, uvicorn's access log included.
    with open(ARTIFACTS / "ops-web.log", "rb") as log:
        log.seek(log_start)
        lines = [json.loads(line) for line in log.read().decode().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    wanted = {"method": "GET", "path": "/static/streams/plan_live.js", "status": 200}.items()
    assert any(wanted <= line.items() for line in access)
