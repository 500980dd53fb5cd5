"""A broken agents.yaml or approvals.yaml stops every process at startup, and ``manage.py check``, with the
problem on one line: never a traceback, never a typo silently ignored or first found inside a transaction."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import ROOT, _database_url_for

pytestmark = pytest.mark.django_db


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DATABASE_URL": _database_url_for(settings.DATABASES["default"]["NAME"]),
                   "ORCH_EMBEDDED": "1", **env}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def bad_policies(tmp_path: Path) -> str:
    path = tmp_path / "approvals.yaml"
    path.write_text("policies:\n  gate:\n    match: {agent: search_agent}\n    on_timout: reject\n")
    return str(path)


@pytest.fixture
def bad_agents(tmp_path: Path) -> str:
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  helper:\n    kind: llm\n    sytem_prompt: You help.\n")
    return str(path)


def test_a_typo_in_approvals_yaml_fails_manage_py_check_with_a_clear_message(bad_policies: str) -> None:
    done = run(["manage.py", "check"], APPROVALS_FILE=bad_policies)

    assert done.returncode == 1
    assert "approvals.E001" in done.stderr and "on_timout" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_typo_in_agents_yaml_fails_manage_py_check_with_a_clear_message(bad_agents: str) -> None:
    done = run(["manage.py", "check"], AGENTS_FILE=bad_agents)

    assert done.returncode == 1
    assert "agents.E001" in done.stderr and "sytem_prompt" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("process", [["-c", "import config.asgi"],
                                     ["-m", "celery", "-A", "config", "worker", "-Q", "nothing", "--pool", "solo"]])
def test_a_typo_stops_the_web_process_and_the_worker_at_startup(process: list[str], bad_agents: str) -> None:
    done = run(process, AGENTS_FILE=bad_agents)

    assert done.returncode == 1
    assert "configuration error (agents.E001)" in done.stderr and "sytem_prompt" in done.stderr


@pytest.mark.parametrize("code", [
    "import config.asgi",
    "import config.wsgi",
    # a worker's own process (the threads pool's) once it is ready, and a prefork child once it has started
    "from celery import signals; from config.celery import app; signals.worker_ready.send(sender=None)",
    "from celery import signals; from config.celery import app; signals.worker_process_init.send(sender=None)",
])
def test_a_process_keeps_what_it_loaded_out_of_the_collectors_full_passes(code: str) -> None:
    """A full collection walks every object it can see while the process holds the GIL: 120-220 ms for what
    the application loads, a stall for every stream and step of the process (config/startup.py)."""
    done = run(["-c", f"{code}\nimport gc\nprint(gc.get_freeze_count())"])

    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 50_000
