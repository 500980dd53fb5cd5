"""Which steps must wait for people, and on what terms.

Policies come from approvals.yaml (APPROVALS_FILE) and from the admin (ApprovalPolicy rows). Every policy
that matches a step applies, combined strictly: the largest quorum, self-approval only if every policy
allows it, the earliest deadline and escalation, the most conservative default on timeout. A plan may
add a gate (``approval: true`` on a step) but has no way to remove one. Every approval has a deadline:
APPROVAL_DEFAULT_TIMEOUT unless a policy sets a shorter one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from approvals.models import RISK_ORDER, ApprovalPolicy, OnTimeout, Risk

TIMEOUT_STRICTNESS = {OnTimeout.APPROVE: 0, OnTimeout.REJECT: 1, OnTimeout.FAIL: 2}


@dataclass(frozen=True)
class StepFacts:
    """What a policy can look at when a step becomes ready."""

    agent: str
    template: str
    step_key: str
    risk: str
    estimated_cost: Decimal
    requested: bool  # the plan (or its template) asked for a gate on this step
    budget_reason: str = ""  # set when running the step would exceed a budget


@dataclass(frozen=True)
class Policy:
    name: str
    agent: str = ""
    template: str = ""
    step_key: str = ""
    min_risk: str = ""
    min_cost: Decimal | None = None
    required_approvals: int = 1
    allow_self_approval: bool = False
    timeout_seconds: int | None = None
    on_timeout: str = OnTimeout.REJECT
    escalate_after_seconds: int | None = None
    escalate_group: str = ""
    escalate_webhook: str = ""

    def matches(self, facts: StepFacts) -> bool:
        return (
            (not self.agent or self.agent == facts.agent)
            and (not self.template or self.template == facts.template)
            and (not self.step_key or self.step_key == facts.step_key)
            and (not self.min_risk or RISK_ORDER[Risk(facts.risk)] >= RISK_ORDER[Risk(self.min_risk)])
            and (self.min_cost is None or facts.estimated_cost >= self.min_cost)
        )


@dataclass(frozen=True)
class Requirement:
    """The combined terms of every policy that matched."""

    policies: tuple[str, ...]
    reason: str
    required_approvals: int
    allow_self_approval: bool
    timeout_seconds: int
    on_timeout: str
    escalate_after_seconds: int | None
    escalate_group: str
    escalate_webhook: str


def _from_yaml(name: str, raw: dict[str, Any]) -> Policy:
    match = raw.get("match") or {}
    escalate = raw.get("escalate") or {}
    return Policy(
        name=name, agent=match.get("agent", ""), template=match.get("template", ""),
        step_key=match.get("step", ""), min_risk=match.get("min_risk", ""),
        min_cost=Decimal(str(match["min_cost"])) if "min_cost" in match else None,
        required_approvals=int(raw.get("approvals", 1)), allow_self_approval=bool(raw.get("allow_self_approval")),
        timeout_seconds=raw.get("timeout"), on_timeout=raw.get("on_timeout", OnTimeout.REJECT),
        escalate_after_seconds=escalate.get("after"), escalate_group=escalate.get("group", ""),
        escalate_webhook=os.path.expandvars(escalate.get("webhook", "")).strip(),
    )


@cache
def _yaml_policies() -> tuple[Policy, ...]:
    path = Path(settings.APPROVALS_FILE)
    if not path.exists():
        return ()
    data = yaml.safe_load(path.read_text()) or {}
    return tuple(_from_yaml(name, raw or {}) for name, raw in (data.get("policies") or {}).items())


def _from_row(row: ApprovalPolicy) -> Policy:
    return Policy(
        name=row.name, agent=row.agent, template=row.template, step_key=row.step_key, min_risk=row.min_risk,
        min_cost=row.min_cost, required_approvals=row.required_approvals,
        allow_self_approval=row.allow_self_approval, timeout_seconds=row.timeout_seconds,
        on_timeout=row.on_timeout, escalate_after_seconds=row.escalate_after_seconds,
        escalate_group=row.escalate_group.name if row.escalate_group else "", escalate_webhook=row.escalate_webhook,
    )


def policies() -> list[Policy]:
    rows = ApprovalPolicy.objects.filter(enabled=True).select_related("escalate_group")
    return [*_yaml_policies(), *(_from_row(row) for row in rows)]


def requirement_for(facts: StepFacts, *, among: list[Policy] | None = None) -> Requirement | None:
    """The terms on which this step must wait, or None if it may run straight away. ``among``: the
    policies to consider (default: ``policies()``; pass them in to judge many steps with one query)."""
    matched = [policy for policy in (policies() if among is None else among) if policy.matches(facts)]
    reasons = [f"policy {policy.name}" for policy in matched]
    if facts.requested:
        matched.append(Policy(name="plan", allow_self_approval=True))  # the owner asked to review it
        reasons.append("the plan asks for approval of this step")
    if facts.budget_reason:
        matched.append(Policy(name="budget"))
        reasons.append(facts.budget_reason)
    if not matched:
        return None
    default_timeout = settings.APPROVAL_DEFAULT_TIMEOUT
    escalations = [p.escalate_after_seconds for p in matched if p.escalate_after_seconds]
    escalating = next((p for p in matched if p.escalate_group or p.escalate_webhook), None)
    return Requirement(
        policies=tuple(p.name for p in matched),
        reason="; ".join(reasons),
        required_approvals=max(p.required_approvals for p in matched),
        allow_self_approval=all(p.allow_self_approval for p in matched),
        timeout_seconds=min(p.timeout_seconds or default_timeout for p in matched),
        on_timeout=max((p.on_timeout for p in matched), key=lambda t: TIMEOUT_STRICTNESS[OnTimeout(t)]),
        escalate_after_seconds=min(escalations) if escalations else None,
        escalate_group=escalating.escalate_group if escalating else "",
        escalate_webhook=escalating.escalate_webhook if escalating else "",
    )
