"""Flower as deployed: basic auth required (no default), the declared queues on its broker view, and the
periodic tasks kept out of its tasks view."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import _free_port, serving
from tests.ops.web import served_database_url

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def flower() -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": served_database_url(), "ORCH_EMBEDDED": "1", "FLOWER_BASIC_AUTH": "ops:pw"}
    url = f"http://127.0.0.1:{port}"
    with serving(["-m", "celery", "-A", "config", "flower", f"--port={port}", "--address=127.0.0.1"], env=env,
                 log_name="flower.log", ready_url=f"{url}/healthcheck", stop_timeout=5):
        yield url


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
