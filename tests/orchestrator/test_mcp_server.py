"""The orchestrator as an MCP server: the SDK's own client starts a plan and reads it back over stdio
(``manage.py mcp_server``) and streamable HTTP, with the REST API's token and permissions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest
from django.conf import settings
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from rest_framework.authtoken.models import Token

from orchestrator.models import Step
from orchestrator.services import plan_create
from tests.approvals.test_approvals import make_approver
from tests.conftest import ROOT, _database_url_for, wait_for_plan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.usefixtures("idle_worker")]


def run_async[T](fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """anyio.run on a thread of its own: the thread running the tests may already have a loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, fn, *args).result()


def server_for(token: str) -> StdioServerParameters:
    env = {"ORCH_MCP_TOKEN": token, "ORCH_EMBEDDED": "1", "REDIS_URL": settings.REDIS_URL,
           "DATABASE_URL": _database_url_for(settings.DATABASES["default"]["NAME"]),
           "AGENTS_FILE": str(settings.AGENTS_FILE), "APPROVALS_FILE": str(getattr(settings, "APPROVALS_FILE", "")),
           "ORCH_RUN_DIR": os.environ["ORCH_RUN_DIR"], "LOG_LEVEL": "ERROR", "PATH": os.environ.get("PATH", "")}
    return StdioServerParameters(command=sys.executable, args=["manage.py", "mcp_server"], env=env, cwd=str(ROOT))


def test_an_mcp_client_starts_a_plan_and_reads_it_back(user: Any) -> None:
    token = Token.objects.create(user=user).key
    steps = [{"key": "a", "agent": "echo", "input": {"n": 1}}, {"key": "b", "agent": "echo", "depends_on": ["a"]}]

    async def session() -> tuple[list[str], dict[str, Any], dict[str, Any], Any]:
        async with Client(server_for(token)) as client:
            tools = sorted(t.name for t in (await client.list_tools()).tools)
            started = await client.call_tool("plan_start", {"request": "over MCP", "steps": steps})
            plan_id = started.structured_content["id"]
            await anyio.to_thread.run_sync(lambda: wait_for_plan(plan_id))
            read = await client.call_tool("plan_get", {"plan_id": plan_id})
            missing = await client.call_tool("plan_get", {"plan_id": "00000000-0000-0000-0000-000000000000"})
            return tools, started.structured_content, read.structured_content, missing

    tools, started, read, missing = run_async(session)

    assert {"plan_start", "plan_get", "agents_list", "approvals_pending", "approval_decide"} <= set(tools)
    assert started["owner"] == user.username and [s["key"] for s in started["steps"]] == ["a", "b"]
    assert read["id"] == started["id"] and read["status"] == "succeeded"
    assert read["result"] == {"input": {}, "from": ["a"]}
    assert missing.is_error and "not_found" in missing.content[0].text


def test_over_http_each_request_needs_a_valid_token(user: Any) -> None:
    token = Token.objects.create(user=user).key
    env = {**(server_for(token).env or {}), "ORCH_MCP_TOKEN": ""}  # over HTTP the token comes with each request
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "manage.py", "mcp_server", "--http", "--port", str(port)], cwd=ROOT,
                              env={**os.environ, **env})

    async def call(key: str) -> Any:
        http = create_mcp_http_client(headers={"Authorization": f"Token {key}"})
        async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as client:
            return await client.call_tool("agents_list", {})

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the MCP HTTP server did not start"
                time.sleep(0.1)
        refused, listed = run_async(call, "wrong"), run_async(call, token)
    finally:
        server.terminate()
        server.wait(timeout=20)

    assert refused.is_error and "auth.failed" in refused.content[0].text
    assert not listed.is_error and "echo" in {a["name"] for a in listed.structured_content["result"]}


def test_an_approver_lists_and_decides_an_approval_over_mcp(user: Any, django_user_model: Any) -> None:
    approver = make_approver(django_user_model, "mcp-approver")
    token = Token.objects.create(user=approver).key
    steps = [{"key": "gated", "agent": "echo", "approval": True, "input": {"prompt": "as planned"}}]
    plan = plan_create(owner=user, request="approve over MCP", steps=steps)

    async def session() -> tuple[Any, Any, Any]:
        async with Client(server_for(token)) as client:
            pending = await client.call_tool("approvals_pending", {})
            approval_id = pending.structured_content["result"][0]["id"]
            decided = await client.call_tool("approval_decide", {
                "approval_id": approval_id, "decision": "approve", "edited_input": {"prompt": "edited"}})
            again = await client.call_tool("approval_decide", {"approval_id": approval_id, "decision": "reject"})
            return pending, decided, again

    pending, decided, again = run_async(session)

    assert [a["step_key"] for a in pending.structured_content["result"]] == ["gated"]
    assert decided.structured_content["status"] == "approved"
    assert again.is_error and "approval.already_decided" in again.content[0].text
    plan = wait_for_plan(plan.id)
    assert plan.status == "succeeded" and plan.result == {"input": {"prompt": "edited"}, "from": []}


def test_an_mcp_client_edits_a_running_plan_and_reruns_a_step(user: Any, fake_server: Any) -> None:
    """Issue 10 over MCP: plan_edit adds a step to a running plan, step_rerun runs a finished one again with a
    new input, plan_retry refuses a plan that succeeded (with its code)."""
    import uuid

    token = Token.objects.create(user=user).key
    gate = f"mcp-{uuid.uuid4().hex[:8]}"
    plan = plan_create(owner=user, request="edit over MCP", steps=[
        {"key": "hold", "agent": "remote", "input": {"gate": gate}},
        {"key": "b", "agent": "echo", "input": {"n": 1}, "depends_on": ["hold"]}])
    plan_id = str(plan.id)

    async def session() -> tuple[dict[str, Any], Any, dict[str, Any], Any]:
        async with Client(server_for(token)) as client:
            edited = await client.call_tool("plan_edit", {"plan_id": plan_id, "version": 0, "add": [
                {"key": "added", "agent": "echo", "depends_on": ["hold"]}], "change": {"b": {"input": {"n": 2}}}})
            stale = await client.call_tool("plan_edit", {"plan_id": plan_id, "version": 0, "remove": ["added"]})
            fake_server.open_gate(gate)
            await anyio.to_thread.run_sync(lambda: wait_for_plan(plan_id))
            rerun = await client.call_tool("step_rerun", {"plan_id": plan_id, "key": "b", "input": {"n": 3}})
            await anyio.to_thread.run_sync(lambda: wait_for_plan(plan_id, statuses=("succeeded",)))
            retry = await client.call_tool("plan_retry", {"plan_id": plan_id})
            return edited.structured_content, stale, rerun.structured_content, retry

    edited, stale, rerun, retry = run_async(session)

    assert edited["version"] == 1 and {s["key"] for s in edited["steps"]} == {"hold", "b", "added"}
    assert stale.is_error and "plan.edit_conflict:" in stale.content[0].text
    # The rerun reopens the plan; its echo step may already have finished by the time the answer is read back.
    assert rerun["status"] in ("running", "succeeded") and rerun["version"] == 2
    b = next(s for s in rerun["steps"] if s["key"] == "b")
    assert b["input"] == {"n": 3} and b["status"] in ("pending", "queued", "running", "succeeded")
    assert Step.objects.get(plan_id=plan_id, key="b").output["input"] == {"n": 3}
    assert retry.is_error and "plan.not_retryable:" in retry.content[0].text
