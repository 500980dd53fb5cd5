"""Flower as deployed: basic auth required (no default), the declared queues on its broker view, and the
periodic tasks kept out of its tasks view."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ARTIFACTS, ROOT, _free_port
from tests.ops.web import served_database_url

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def flower() -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": served_database_url(), "ORCH_EMBEDDED": "1", "FLOWER_BASIC_AUTH": "ops:pw"}
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "flower.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "flower", f"--port={port}",
                                    "--address=127.0.0.1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthcheck", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"flower did not start; see {ARTIFACTS / 'flower.log'}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def test_flower_asks_for_credentials_and_lists_the_declared_queues(flower: str) -> None:
    assert httpx.get(f"{flower}/api/queues/length", timeout=10).status_code == 401
    answer = httpx.get(f"{flower}/api/queues/length", auth=("ops", "pw"), timeout=10)
    assert answer.status_code == 200
    assert {"agents", "scheduler"} <= {queue["name"] for queue in answer.json()["active_queues"]}


def test_periodic_tasks_send_no_task_events() -> None:
    from approvals.tasks import expire
    from orchestrator.tasks import reconcile, run_step

    assert reconcile.send_events is False and expire.send_events is False
    assert run_step.send_events is True
