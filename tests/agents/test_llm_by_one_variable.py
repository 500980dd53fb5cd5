"""A real LLM is switched on by one variable (issue 15). Each case runs in a fresh Python process whose
environment holds only the variables under test (no LLM_PROVIDER, no agents file of the tests'), with the
shipped agents.yaml, against the fake OpenAI-compatible and Anthropic servers (tests/agents/fakes.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.agents.fakes import ANSWER, AgentFakes

ROOT = Path(__file__).resolve().parents[2]
_LLM_VARS = ("LLM_", "OPENAI_", "ANTHROPIC_")
_PROBE = """
import json, uuid, django
django.setup()
from agents.api import AgentCall, agent_run, llm_choices, llm_summary
choices = {c.agent: [c.provider, c.model, c.base_url] for c in llm_choices()}
out = {"choices": choices, "summary": llm_summary(llm_choices())}
if RUN:
    call = AgentCall(plan_id="p", step_id=str(uuid.uuid4()), step_key="s", attempt=1,
                     input={"prompt": "one variable"}, context={}, timeout=10)
    out["output"] = agent_run(name="query_analyst", call=call).output
print("RESULT " + json.dumps(out))
"""


def _fresh_process(variables: dict[str, str], *, run: bool) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LLM_VARS)}
    env.update(variables, AGENTS_FILE=str(ROOT / "agents.yaml"), DJANGO_SETTINGS_MODULE="config.settings",
               ORCH_EMBEDDED="1")
    done = subprocess.run([sys.executable, "-c", _PROBE.replace("RUN", repr(run))], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def test_no_key_is_offline_and_says_so() -> None:
    found = _fresh_process({}, run=False)

    assert found["choices"]["query_analyst"] == ["offline", "gpt-4o-mini", ""]
    assert "offline (no LLM key set" in found["summary"]


def test_only_llm_api_key_switches_to_the_openai_compatible_provider(agent_fakes: AgentFakes) -> None:
    only_key = _fresh_process({"LLM_API_KEY": "sk-only-this"}, run=False)
    assert only_key["choices"]["query_analyst"] == ["openai", "gpt-4o-mini", "https://api.openai.com/v1"]
    assert only_key["choices"]["planner"][0] == "openai"
    assert only_key["summary"].startswith("llm agents: openai gpt-4o-mini for ")
    assert "planner" in only_key["summary"]

    # the same key, with the fake standing in for api.openai.com, is really called with it
    before = len(agent_fakes.keys)
    called = _fresh_process({"LLM_API_KEY": "sk-only-this", "LLM_BASE_URL": f"{agent_fakes.url}/v1"}, run=True)

    assert called["output"] == {"text": ANSWER, "model": "gpt-4o-mini"}
    assert agent_fakes.keys[before:] == [("gpt-4o-mini", "Bearer sk-only-this")]


def test_openai_api_key_alone_also_switches(agent_fakes: AgentFakes) -> None:
    found = _fresh_process({"OPENAI_API_KEY": "sk-openai"}, run=False)

    assert found["choices"]["synthesis_agent"][:2] == ["openai", "gpt-4o-mini"]


def test_only_anthropic_api_key_switches_to_anthropic_with_llm_model(agent_fakes: AgentFakes) -> None:
    before = len(agent_fakes.keys)

    found = _fresh_process({"ANTHROPIC_API_KEY": "sk-ant-only", "LLM_MODEL": "fake-claude",
                            "ANTHROPIC_BASE_URL": f"{agent_fakes.url}/anthropic/v1"}, run=True)

    assert found["choices"]["query_analyst"][:2] == ["anthropic", "fake-claude"]
    assert found["output"] == {"text": ANSWER, "model": "fake-claude"}
    assert agent_fakes.keys[before:] == [("fake-claude", "sk-ant-only")]


def test_llm_model_is_honoured_by_the_offline_provider_too() -> None:
    found = _fresh_process({"LLM_MODEL": "my-model"}, run=True)

    assert found["choices"]["query_analyst"] == ["offline", "my-model", ""]
    assert found["output"]["text"].startswith("[offline my-model] query_analyst:")
