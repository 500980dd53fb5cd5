"""The README's "Using it" block, run as written by bash against a live stack (issue 15).

The stack is what `make up` runs, minus beat and Flower: uvicorn on a free port and a worker on the agents
and scheduler queues, with the shipped agents.yaml (offline LLM) and approvals.yaml (the research
synthesis gate, no self-approval), on the test database and a Redis database of its own (so the session's
test worker, which has the test agents, never takes these tasks). The block's one variable, ``BASE``,
points it at this web server; only the ``make up`` line is left out (this is the stack it starts).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from django.conf import settings

from approvals.models import Approval
from orchestrator.models import Plan
from tests.conftest import ARTIFACTS, ROOT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def using_it_block() -> str:
    """The first ```sh block after the README's "## Using it" heading."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Using it\n", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "no sh block under ## Using it"
    return match.group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def readme_stack() -> Iterator[tuple[str, dict[str, str]]]:
    """A web server and a worker as `make up` runs them; yields the base URL and the shell's environment."""
    database = urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{settings.DATABASES['default']['NAME']}")
    redis = urlsplit(os.environ["REDIS_URL"])._replace(path="/9")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "OPENAI_", "ANTHROPIC_", "DJANGO_ALLOW"))}
    env.update(DATABASE_URL=urlunsplit(database), REDIS_URL=urlunsplit(redis), ORCH_EMBEDDED="1",
               AGENTS_FILE=str(ROOT / "agents.yaml"), APPROVALS_FILE=str(ROOT / "approvals.yaml"))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "readme-stack.log", "ab")
    processes = [
        subprocess.Popen([sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                          "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env, stdout=log,
                         stderr=subprocess.STDOUT),
        subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "agents,scheduler",
                          "-P", "threads", "-c", "8", "-n", f"readme-{port}@localhost", "--loglevel", "WARNING",
                          "--without-mingle", "--without-gossip"], cwd=ROOT, env=env, stdout=log,
                         stderr=subprocess.STDOUT),
    ]
    try:
        deadline = time.monotonic() + 90
        while True:  # /health answers 200 once the database, Redis and a worker answer
            try:
                if httpx.get(f"{base}/health", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"the README's stack did not start; see {ARTIFACTS / 'readme-stack.log'}")
            time.sleep(0.3)
        yield base, {**env, "BASE": base}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_the_using_it_block_runs_as_written(shell: str, readme_stack: tuple[str, dict[str, str]]) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (scripts/test.sh installs it)")
    base, env = readme_stack
    lines = [line for line in using_it_block().splitlines() if line.strip() and not line.startswith("make up")]
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"

    done = subprocess.run([shell, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)

    (ARTIFACTS / f"readme-run-{shell}.txt").write_text(f"{done.stdout}\n--- stderr ---\n{done.stderr}")
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    research = Plan.objects.get(request="How do solid-state batteries compare with lithium-ion ones?")
    assert (research.owner.username, research.status) == ("alice", "succeeded")
    approval = Approval.objects.get(plan_id=research.id)
    assert (approval.step_key, approval.status, approval.decided_by.username) == ("synthesis", "approved", "admin")
    assert f"watch it: {base}/plans/{research.id}/" in done.stdout
    assert f'"page_url":"/plans/{research.id}/"' in done.stdout  # the plan, as the API answers it
    assert Plan.objects.get(request="Compare Rust and Go for CLIs").status == "succeeded"
    assert Plan.objects.get(request="Plan a 3-day trip to Lisbon").status == "succeeded"
    assert "[offline" in done.stdout and "these answers are offline" in done.stdout
    assert httpx.get(f"{base}/plans/{research.id}/", follow_redirects=False).status_code == 302  # sign in first
