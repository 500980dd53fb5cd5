"""Cost controls (issue 14): 100 research plans (the ``research`` template: analysis, then search and
reasoning in parallel, then synthesis; four LLM calls a plan) with the response cache and routing to a
cheaper model off, then on, on one worker (threads, ``-c 40``), 10 plans in flight at a time. The LLM is
a local OpenAI-compatible server started by the benchmark: the main model ``bench-main`` ($2.50 / $10
per million prompt / completion tokens) answers in 300 ms, the cheap ``bench-cheap`` ($0.15 / $0.60) in
100 ms; each answer is 60 tokens and reports a confidence, below 0.5 for one prompt in eight (so routing
escalates some). The 100 requests are drawn from 40 distinct questions (a popular-questions mix: 60 are
repeats). "On": every role has ``cache: {ttl: 600}``; analysis, search and reasoning have
``cheap_model: bench-cheap`` with ``route: {max_chars: 600}`` (synthesis, whose context is long, stays on
the main model). Cost = the sum of the plans' ``cost_used``; latency = a plan's finished_at - created_at
(mean and p95). Figures are shown side by side; the target is the on / off cost ratio <= 0.6.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.harness import Harness, Result

PLANS, DISTINCT, IN_FLIGHT = 100, 40, 10
LATENCY = {"bench-main": 0.3, "bench-cheap": 0.1}
ANSWER_WORDS = 60


class FakeLlm:
    """An OpenAI-compatible chat completions server (non-streaming) on a free loopback port."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        llm = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                model = str(body.get("model"))
                prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
                with llm.lock:
                    llm.calls[model] = llm.calls.get(model, 0) + 1
                time.sleep(LATENCY.get(model, 0.3))
                digest = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
                confidence = 0.3 if digest % 8 == 0 else 0.9
                words = " ".join(f"w{(digest + i) % 997}" for i in range(ANSWER_WORDS - 3))
                text = f"{words} confidence: {confidence}"
                data = json.dumps({"model": model, "choices": [{"message": {"content": text}}],
                                   "usage": {"prompt_tokens": len(prompt) // 4,
                                             "completion_tokens": ANSWER_WORDS}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def agents_yaml(url: str) -> str:
    role = """
  {name}:
    kind: llm
    provider: openai
    base_url: {url}/v1
    model: bench-main
    stream: false
    max_tokens: 200
    system_prompt: You are the {name}.
    cache: {{ttl: 600}}{route}"""
    route = "\n    cheap_model: bench-cheap\n    route: {max_chars: 600}"
    roles = [role.format(name=name, url=url, route=route) for name in ("query_analyst", "search_agent",
                                                                        "reasoning_agent")]
    roles.append(role.format(name="synthesis_agent", url=url, route=""))
    return ("prices:\n  bench-main: {prompt: 2.5, completion: 10}\n  bench-cheap: {prompt: 0.15, completion: 0.6}\n"
            "rate_limits:\n  openai: {requests_per_minute: 100000, tokens_per_minute: 100000000, burst: 100}\n"
            "agents:" + "".join(roles) + "\n")


def batch(h: Harness) -> dict[str, Any]:
    """Run the 100 plans, IN_FLIGHT at a time; return cost, latencies and how steps were served."""
    from orchestrator.models import Step
    from orchestrator.services import plan_create

    requests = [f"How does technology number {(i * 7) % DISTINCT} work?" for i in range(PLANS)]
    plans = []
    started = time.monotonic()
    for first in range(0, PLANS, IN_FLIGHT):
        wave = [plan_create(owner=h.user, request=r, template="research") for r in requests[first:first + IN_FLIGHT]]
        plans += [h.wait_plan(p.id, timeout=120) for p in wave]
    wall = time.monotonic() - started
    latencies = sorted((p.finished_at - p.created_at).total_seconds() for p in plans)
    usages = list(Step.objects.filter(plan_id__in=[p.id for p in plans]).values_list("usage", flat=True))
    served = {"cached": sum(1 for u in usages if u and u.get("cached")),
              "cheap": sum(1 for u in usages if u and u.get("routed") == "cheap"),
              "escalated": sum(1 for u in usages if u and u.get("routed") == "escalated")}
    saved = sum((Decimal(u["saved_cost"]) for u in usages if u and "saved_cost" in u), Decimal(0))
    return {"cost": float(sum((p.cost_used for p in plans), Decimal(0))),
            "tokens": sum(p.tokens_used for p in plans), "mean": statistics.fmean(latencies),
            "p95": latencies[int(0.95 * (len(latencies) - 1))], "wall": wall, "served": served,
            "saved": float(saved)}


def run(h: Harness) -> list[Result]:
    from django.conf import settings

    from agents import cache
    from approvals import policies
    from bench.harness import WORK_DIR

    # The shipped approvals.yaml gates the research template's synthesis: no people here, so no policies.
    no_policies = WORK_DIR / "approvals.experiments.yaml"
    no_policies.write_text("policies: {}\n")
    os.environ["APPROVALS_FILE"] = settings.APPROVALS_FILE = str(no_policies)
    policies._yaml_policies.cache_clear()
    llm = FakeLlm()
    try:
        h.use_agents("experiments", agents_yaml(llm.url))
        found = {}
        for mode, switch in (("off", "0"), ("on", "1")):
            cache.cache_clear()
            env = {"AGENT_CACHE_ENABLED": switch, "AGENT_ROUTING_ENABLED": switch, "DB_POOL_MAX_SIZE": "20"}
            with h.worker(f"experiments-{mode}", concurrency=40, env=env):
                found[mode] = batch(h)
        calls = dict(llm.calls)
    finally:
        llm.close()
        cache.cache_clear()
    off, on = found["off"], found["on"]
    note = (f"off: ${off['cost']:.4f}, {off['tokens']} tokens, latency mean {off['mean']:.2f} s / p95 "
            f"{off['p95']:.2f} s, {off['wall']:.1f} s for 100; on: ${on['cost']:.4f}, {on['tokens']} tokens, "
            f"latency mean {on['mean']:.2f} s / p95 {on['p95']:.2f} s, {on['wall']:.1f} s for 100; on served "
            f"{on['served']['cached']} steps from the cache, {on['served']['cheap']} on the cheap model, "
            f"escalated {on['served']['escalated']} (routing saved ${on['saved']:.4f}); model calls in all "
            f"{calls}")
    return [
        Result.info("cost controls: cost of 100 research plans, off", off["cost"], "USD"),
        Result.info("cost controls: cost of 100 research plans, on", on["cost"], "USD"),
        Result.at_most("cost controls: cost on / off", on["cost"] / off["cost"], "x", 0.6, note),
        Result.info("cost controls: mean plan latency, off", off["mean"], "s"),
        Result.info("cost controls: mean plan latency, on", on["mean"], "s"),
        Result.info("cost controls: p95 plan latency on / off", on["p95"] / off["p95"], "x"),
    ]
