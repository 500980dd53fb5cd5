"""Test set-up: embedded Postgres + pgvector and Redis of their own (.run/test), real local fake servers,
and a real Celery worker process for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from tests.agents.fakes import AgentFakes
from tests.fakes import FakeServer

ROOT = Path(__file__).resolve().parent.parent

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def agent_fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFakes]:
    """Fake LLM providers, agent service and MCP server (tests/agents/fakes.py), and their agents."""
    fakes = AgentFakes(tmp_path_factory.mktemp("agent-fakes"))
    yield fakes
    fakes.close()


@pytest.fixture(scope="session", autouse=True)
def test_agents(fake_server: FakeServer, agent_fakes: AgentFakes, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Agents that talk to the fake servers, layered over the shipped agents.yaml."""
    from agents import registry

    path = tmp_path_factory.mktemp("agents") / "agents.test.yaml"
    path.write_text(f"""
agents:
  planner:
    kind: llm
    provider: openai
    base_url: {fake_server.url}/v1
    model: fake-planner
  remote:
    kind: http
    url: {fake_server.url}/agent
    timeout: 10
    allow_private: true
  remote_flaky:
    kind: http
    url: {fake_server.url}/agent
    timeout: 1
    allow_private: true
  remote_fragile:
    kind: http
    url: {fake_server.url}/agent
    timeout: 5
    allow_private: true
    queue: fragile  # only the workers that tests/orchestrator/test_reliability.py starts (and kills)
  remote_chaos:
    kind: http
    url: {fake_server.url}/agent
    timeout: 30
    allow_private: true
    queue: chaos  # only the workers that tests/test_chaos.py starts
  held:
    kind: python
    callable: agents.builtin.echo
    queue: held  # no test worker consumes it: the services tests drive these steps by hand
  fail:
    kind: python
    callable: agents.builtin.fail
  held_llm:
    kind: llm
    provider: offline
    max_tokens: 400
    queue: held
  hang:
    kind: python
    callable: tests.agents.hang.hang  # blocks until the test releases it
    timeout: 0.5
    retries: 2
    max_concurrency: 2
  where:
    kind: python
    callable: tests.agents.hang.where  # names the thread it ran in
  where_inline:
    kind: python
    callable: tests.agents.hang.where
    inline: true
  # issue 10 (tests/orchestrator/test_dynamic.py): a step whose output the test chooses (spawn, fan-out)
  emit:
    kind: python
    callable: tests.orchestrator.dynamic_agents.emit
""")
    # No shipped approval policies in tests: each test that wants one creates it (ApprovalPolicy rows).
    from approvals import policies

    no_policies = path.parent / "approvals.test.yaml"
    no_policies.write_text("policies: {}\n")
    os.environ["APPROVALS_FILE"] = str(no_policies)
    settings.APPROVALS_FILE = no_policies
    policies._yaml_policies.cache_clear()
    # experiments (issue 14): its agents (cache, routing, prices of test models) reach the fake server by
    # ${TEST_FAKE_SERVER_URL}; the worker looks up running experiments on every call (no 5 s memo).
    os.environ["TEST_FAKE_SERVER_URL"] = fake_server.url
    os.environ["EXPERIMENTS_RUNNING_TTL"] = "0"
    settings.EXPERIMENTS_RUNNING_TTL = 0.0
    files = os.pathsep.join([str(ROOT / "agents.yaml"), str(path), str(agent_fakes.agents_file),
                             str(ROOT / "tests" / "experiments" / "agents.test.yaml")])
    os.environ["AGENTS_FILE"] = files
    settings.AGENTS_FILE = files
    registry.reload()
    return files


def _database_url_for(name: str) -> str:
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{name}"))


def start_worker(queues: str, agents_file: str, *, concurrency: int = 16,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start a real worker process (threads pool) on the test database, with ``env`` added to its
    environment; return it and its node name once it answers a ping."""
    from config.celery import app

    ARTIFACTS.mkdir(exist_ok=True)
    name = f"test-{uuid.uuid4().hex[:8]}@localhost"
    env = {**os.environ, "DATABASE_URL": _database_url_for(settings.DATABASES["default"]["NAME"]),
           "AGENTS_FILE": agents_file, "ORCH_EMBEDDED": "1", **(env or {})}
    with open(ARTIFACTS / "worker.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "-P", "threads",
             "-c", str(concurrency), "-n", name, "--loglevel", os.environ.get("TEST_WORKER_LOGLEVEL", "WARNING"),
             "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    _WORKER["started"] = True
    _LIVE_WORKERS[process.pid] = name
    deadline = time.monotonic() + 60
    while not app.control.ping(destination=[name], timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"a test worker did not start; see {ARTIFACTS / 'worker.log'}")
    return process, name


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    _LIVE_WORKERS.pop(process.pid, None)
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: None, test_agents: str) -> Iterator[str]:
    """The session's worker on the agents and scheduler queues; yields its node name."""
    process, name = start_worker("agents,scheduler", test_agents)
    yield name
    stop_worker(process)


_WORKER = {"started": False}
HELD_AGENTS = ("held", "held_llm")  # on the "held" queue: no test worker consumes it
_LIVE_WORKERS: dict[int, str] = {}  # pid -> node name of the test workers running now


@pytest.fixture(autouse=True)
def _settle_before_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """Once a test worker runs, a transactional test waits at its end until no step is queued or running
    (except on the "held" queue, which no worker consumes), then, if a worker ran any of its steps or a plan
    ended, until the workers are idle (one may still be writing a step's memory or archiving a plan): the
    database is emptied between tests, and a TRUNCATE racing a write deadlocks."""
    marker = request.node.get_closest_marker("django_db")
    if not (marker and marker.kwargs.get("transaction")):
        yield
        return
    request.getfixturevalue("transactional_db")  # so this teardown runs before the flush
    yield
    if not _WORKER["started"]:
        return
    from orchestrator.models import Plan, Step

    deadline = time.monotonic() + 30
    busy = Step.objects.filter(status__in=["queued", "running"]).exclude(agent__in=HELD_AGENTS)
    while busy.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # A plan that ended sends orchestrator.plan_remember, which a worker may still be running.
    if Step.objects.exclude(agent__in=HELD_AGENTS).exists() or Plan.objects.filter(finished_at__isnull=False).exists():
        for name in list(_LIVE_WORKERS.values()):
            wait_idle(name, timeout=max(deadline - time.monotonic(), 1))


def wait_idle(worker: str, timeout: float = 30) -> None:
    """Wait until the worker has no task running or reserved (it may still be remembering a step, or
    archiving a plan, after the plan ended)."""
    from config.celery import app

    deadline = time.monotonic() + timeout
    inspect = app.control.inspect(destination=[worker], timeout=0.5)
    while time.monotonic() < deadline:
        try:
            active, reserved = inspect.active() or {}, inspect.reserved() or {}
        except (OSError, KombuError, RedisError):  # the broker was just restarted (tests/test_chaos.py)
            time.sleep(0.1)
            continue
        if not any(active.values()) and not any(reserved.values()):
            return
        time.sleep(0.1)


@pytest.fixture
def idle_worker(celery_worker: str) -> Iterator[str]:
    """The worker, and after the test a wait until it is idle: the database is emptied between tests, and
    a TRUNCATE racing a step that is still being recorded would deadlock."""
    yield celery_worker
    wait_idle(celery_worker)


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username=f"u{uuid.uuid4().hex[:6]}", password="pw-for-tests")


def api_client(user: Any) -> Any:
    """A DRF test client that authenticates as ``user`` with a fresh API token."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def wait_for_plan(plan_id: uuid.UUID, *, timeout: float = 30, statuses: tuple[str, ...] = ()) -> Any:
    """Poll until the plan reaches one of ``statuses`` (default: any terminal status)."""
    from orchestrator.models import Plan
    from orchestrator.states import PLAN_TERMINAL

    wanted = set(statuses) or {str(s) for s in PLAN_TERMINAL}
    deadline = time.monotonic() + timeout
    while True:
        plan = Plan.objects.get(id=plan_id)
        if plan.status in wanted:
            return plan
        if time.monotonic() > deadline:
            raise AssertionError(f"plan {plan_id} still {plan.status} after {timeout}s")
        time.sleep(0.05)


@contextmanager
def serving(args: list[str], *, env: dict[str, str], log_name: str, ready_url: str,
            stop_timeout: float = 20) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python args`` from the project root with ``env``, logging to test-artifacts/``log_name``;
    yield the process once ``ready_url`` answers 200 (within a minute); terminate it on the way out."""
    import httpx

    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / log_name, "ab") as log:
        process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[1] if len(args) > 1 else args[0]} did not start; see {ARTIFACTS / log_name}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def asgi_server(django_db_setup: None, test_agents: str) -> Iterator[str]:
    """A real uvicorn process serving config.asgi on the test database (and the test Redis); yields its
    base URL, e.g. ``http://127.0.0.1:41234``. Data a test commits (transactional tests) is what it serves."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": _database_url_for(settings.DATABASES["default"]["NAME"]),
           "AGENTS_FILE": test_agents, "ORCH_EMBEDDED": "1"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set for the browser tests' own process, never the server's
    url = f"http://127.0.0.1:{port}"
    with serving(["-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                  "--log-level", "warning", "--no-access-log"], env=env, log_name="asgi.log",
                 ready_url=f"{url}/accounts/login/"):
        yield url


CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/test.sh installs it); Playwright downloads nothing
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright (sync API), shared by the session's browser tests."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium package")
    # Playwright's sync API keeps an event loop in this thread; the tests' ORM calls are still plain sync code.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page per test (no shared cookies); closed after the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    yield page
    context.close()


def browser_login(page: Any, base_url: str, user: Any) -> None:
    """Give ``page`` a logged-in Django session for ``user`` (a real session row, no login form)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": base_url}])


# --- issue 11: API throttles ----------------------------------------------------------------------------
def throttle_reset() -> None:
    """Forget every throttle's history (kept in Redis, shared with the test servers): user ids repeat
    between tests once the database is emptied, and one test's requests must not throttle the next."""
    from redis import Redis

    client = Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match="cache:*throttle_*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _throttles_forgotten() -> None:
    throttle_reset()
