"""/metrics after real plans: steps, durations, tokens and cost by agent and model, queues, approvals,
breakers and the reconciler's repairs, read back with Prometheus' own parser."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from orchestrator import services, tasks
from orchestrator.metrics import REPAIRS_KEY, _redis
from orchestrator.models import Step
from tests.agents.fakes import AgentFakes
from tests.agents.test_e2e_costs import price
from tests.conftest import ROOT, wait_for_plan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: Client | None = None, **headers: Any) -> Samples:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.mark.usefixtures("idle_worker")
def test_metrics_after_a_plan_show_its_steps_tokens_and_cost(user: Any, agent_fakes: AgentFakes) -> None:
    before = len(agent_fakes.usage_of("fake-gpt")), len(agent_fakes.usage_of("fake-claude"))
    plan = wait_for_plan(services.plan_create(owner=user, request="metrics", steps=[
        {"key": "a", "agent": "gpt", "input": {"prompt": "one key:metrics-a"}},
        {"key": "b", "agent": "claude", "input": {"prompt": "two key:metrics-b"}},
        {"key": "c", "agent": "gpt", "input": {"prompt": "three key:metrics-c"}, "depends_on": ["a", "b"]},
        {"key": "d", "agent": "echo", "depends_on": ["c"]},
    ]).id)
    assert plan.status == "succeeded"

    samples = scrape()

    gpt = agent_fakes.usage_of("fake-gpt")[before[0]:]
    claude = agent_fakes.usage_of("fake-claude")[before[1]:]
    assert len(gpt) == 2 and len(claude) == 1
    assert value(samples, "orch_plans", status="succeeded") == 1
    assert value(samples, "orch_steps", status="succeeded", agent="gpt") == 2
    assert value(samples, "orch_steps", status="succeeded", agent="claude") == 1
    assert value(samples, "orch_steps", status="succeeded", agent="echo") == 1
    for agent, model, calls in (("gpt", "fake-gpt", gpt), ("claude", "fake-claude", claude)):
        assert value(samples, "orch_tokens_total", agent=agent, model=model, kind="prompt") == \
            sum(p for _, p, _ in calls)
        assert value(samples, "orch_tokens_total", agent=agent, model=model, kind="completion") == \
            sum(c for _, _, c in calls)
        cost = sum((price(m, p, c) for m, p, c in calls), Decimal(0))
        assert Decimal(str(value(samples, "orch_cost_usd_total", agent=agent, model=model))) == cost > 0
    # Durations: one observation per finished step, each within its bucket.
    assert value(samples, "orch_step_duration_seconds_count", agent="gpt", status="succeeded") == 2
    assert value(samples, "orch_step_duration_seconds_bucket", agent="gpt", status="succeeded", le="+Inf") == 2
    took = sum((s.finished_at - s.started_at).total_seconds() for s in Step.objects.filter(plan=plan, agent="gpt"))
    assert value(samples, "orch_step_duration_seconds_sum", agent="gpt", status="succeeded") == pytest.approx(took)
    assert value(samples, "orch_queue_depth", queue="agents") == 0
    assert value(samples, "orch_approvals_pending") == 0
    assert value(samples, "orch_agent_breaker_state", agent="gpt", state="closed") == 1


def test_reconciler_repairs_are_counted_across_runs(user: Any) -> None:
    _redis().delete(REPAIRS_KEY)
    plan = services.plan_create(owner=user, request="lost", steps=[{"key": "a", "agent": "held"},
                                                                   {"key": "b", "agent": "held"}])
    Step.objects.filter(plan=plan).update(queued_at=timezone.now() - timedelta(hours=1))  # messages "lost"

    assert tasks.reconcile()["requeued"] == 2
    Step.objects.filter(plan=plan).update(queued_at=timezone.now() - timedelta(hours=1))
    tasks.reconcile()

    samples = scrape()
    assert value(samples, "orch_reconciler_repairs_total", kind="requeued") == 4
    assert value(samples, "orch_queue_depth", queue="agents") == 0  # "held" is not a declared queue
    assert value(samples, "orch_steps", status="queued", agent="held") == 2


def test_metrics_answer_loopback_or_the_token_only(monkeypatch: pytest.MonkeyPatch) -> None:
    remote = Client(REMOTE_ADDR="10.1.2.3")
    response = remote.get("/metrics")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "metrics.forbidden"

    monkeypatch.setenv("METRICS_TOKEN", "s3cret")
    assert remote.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert scrape(remote, HTTP_AUTHORIZATION="Bearer s3cret")


def test_the_grafana_dashboard_uses_only_series_that_metrics_exposes() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "orchestrator.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\borch_[a-z_]+", target["expr"])}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    text = Client().get("/metrics").content.decode()  # families are declared even with no samples yet
    exposed = {family.name + suffix for family in text_string_to_metric_families(text)
               for suffix in suffixes[family.type]}
    assert used and used <= exposed, used - exposed
