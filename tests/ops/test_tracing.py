"""One trace from the API request to the agent calls: a real web process and a real worker export over
OTLP/HTTP to a receiver the test starts; the Celery message headers carry the context across."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token

from orchestrator.models import Step
from tests.agents.fakes import AgentFakes
from tests.conftest import ARTIFACTS, start_worker, stop_worker, wait_for_plan
from tests.fakes import FakeServer
from tests.ops.otlp import OtlpReceiver, ReceivedSpan
from tests.ops.web import web_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.close()


def _traced_agents(directory: Path, fake_server: FakeServer, agent_fakes: AgentFakes) -> Path:
    """Agents on a queue only this test's worker consumes, so that no untraced worker takes a step."""
    path = directory / "agents.traced.yaml"
    path.write_text(f"""
agents:
  traced_llm:
    kind: llm
    provider: openai
    base_url: {agent_fakes.url}/v1
    model: fake-gpt
    max_tokens: 50
    queue: traced
  traced_http:
    kind: http
    url: {fake_server.url}/agent
    allow_private: true
    queue: traced
""")
    return path


def test_a_plans_trace_links_request_tasks_and_agent_calls(
        receiver: OtlpReceiver, user: Any, fake_server: FakeServer, agent_fakes: AgentFakes, test_agents: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agents_file = f"{test_agents}:{_traced_agents(tmp_path, fake_server, agent_fakes)}"
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
            "AGENTS_FILE": agents_file}
    for name, value in otel.items():
        monkeypatch.setenv(name, value)  # the worker started below inherits them
    # DEBUG: a step's path logs nothing at INFO (issue 13); its agent call's line is DEBUG.
    worker, _ = start_worker("traced", agents_file, concurrency=4, env={"LOG_LEVEL": "DEBUG"})
    token = Token.objects.create(user=user).key
    log_start = (ARTIFACTS / "worker.log").stat().st_size
    try:
        with web_process(otel) as url:
            response = httpx.post(f"{url}/api/plans/", headers={"Authorization": f"Token {token}"}, timeout=30, json={
                "request": "traced", "steps": [
                    {"key": "ask", "agent": "traced_llm", "input": {"prompt": "hello key:traced"}},
                    {"key": "call", "agent": "traced_http", "input": {"q": 1}, "depends_on": ["ask"]},
                ]})
            assert response.status_code == 201, response.text
            plan = wait_for_plan(response.json()["id"])
            assert plan.status == "succeeded"
            steps = {s.key: s for s in Step.objects.filter(plan=plan)}

            def complete(spans: list[ReceivedSpan]) -> bool:
                names = {s.name for s in spans}
                return {"chat fake-gpt", "invoke_agent traced_http"} <= names and \
                    "run/orchestrator.run_step" in names

            spans = receiver.wait_for(complete)
    finally:
        stop_worker(worker)

    request = [s for s in spans if s.service == "orchestrator-web" and s.kind == 2  # SERVER
               and s.attributes.get("http.route", "").startswith("api/plans")]
    assert len(request) == 1, sorted({(s.service, s.name) for s in spans})
    trace_id = request[0].trace_id
    in_trace = [s for s in spans if s.trace_id == trace_id]
    by_name: dict[str, list[ReceivedSpan]] = {}
    for span in in_trace:
        by_name.setdefault(span.name, []).append(span)
    # Both steps ran on the worker in the request's trace, in the one task the request queued: the success of
    # the first freed the second on the same queue, which that worker thread claimed and ran next, with no
    # message of its own (services/steps.step_run).
    runs = by_name["run/orchestrator.run_step"]
    assert len(runs) == 1 and {s.service for s in runs} == {"orchestrator-worker"}
    assert len(by_name["apply_async/orchestrator.run_step"]) == 1
    assert {"invoke_agent traced_llm", "invoke_agent traced_http"} <= set(by_name)
    # The agent calls, with the GenAI attributes the fake provider's answer gives.
    chat = by_name["chat fake-gpt"][0]
    assert chat.attributes["gen_ai.request.model"] == "fake-gpt"
    assert chat.attributes["gen_ai.usage.input_tokens"] == steps["ask"].prompt_tokens > 0
    assert chat.attributes["gen_ai.usage.output_tokens"] == steps["ask"].completion_tokens > 0
    assert by_name["invoke_agent traced_llm"][0].attributes["gen_ai.agent.name"] == "traced_llm"
    http_calls = [s for s in in_trace if s.kind == 3 and s.service == "orchestrator-worker"  # CLIENT
                  and s.name == "POST"]
    assert len(http_calls) >= 2  # the LLM provider and the agent service, over httpx
    # Each span's parent is in the trace too (no orphan from a lost context), the request being the root.
    ids = {s.span_id for s in in_trace}
    assert all(s.parent_span_id in ids for s in in_trace if s is not request[0])
    # The worker's log lines carry the trace and span ids, with the step's ids.
    with open(ARTIFACTS / "worker.log", "rb") as log:
        log.seek(log_start)
        lines = [json.loads(line) for line in log.read().decode().splitlines() if line.startswith("{")]
    step_ids = {str(s.id) for s in steps.values()}
    traced = [line for line in lines if line.get("step_id") in step_ids and line.get("trace_id") == trace_id]
    assert {line["step_id"] for line in traced} == step_ids  # the second step's lines too, in the same task
    assert all(len(line["span_id"]) == 16 for line in traced)


def test_tracing_off_installs_nothing() -> None:
    """Without OTEL_EXPORTER_OTLP_ENDPOINT, a web process installs no tracer provider and imports no
    instrumentation or exporter (redis-py 8 itself imports parts of the SDK when it is installed)."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    prefixes = ("opentelemetry.instrumentation", "opentelemetry.exporter")
    probe = ("import sys, config.asgi; from opentelemetry import trace; "
             f"loaded = [m for m in sys.modules if m.startswith({prefixes!r})]; "
             "print(sorted(loaded), type(trace.get_tracer_provider()).__name__)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == "[] ProxyTracerProvider"
