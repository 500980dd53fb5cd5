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
from typing import Literal

import yaml
from django.conf import settings
from django.contrib.auth.models import Group
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from approvals.models import RISK_ORDER, ApprovalPolicy, OnTimeout, Risk
from common import prepared
from common.errors import DomainError

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MatchModel(_Strict):
    agent: str = ""
    template: str = ""
    step: str = ""
    min_risk: Literal["", "low", "medium", "high"] = ""
    min_cost: Decimal | None = None


class EscalateModel(_Strict):
    after: PositiveInt | None = None
    group: str = ""
    webhook: str = ""


class PolicyModel(_Strict):
    match: MatchModel = Field(default_factory=MatchModel)
    approvals: PositiveInt = 1
    allow_self_approval: bool = False
    timeout: PositiveInt | None = None
    on_timeout: Literal["approve", "reject", "fail"] = "reject"
    escalate: EscalateModel = Field(default_factory=EscalateModel)

    def policy(self, name: str) -> Policy:
        return Policy(
            name=name, agent=self.match.agent, template=self.match.template, step_key=self.match.step,
            min_risk=self.match.min_risk, min_cost=self.match.min_cost, required_approvals=self.approvals,
            allow_self_approval=self.allow_self_approval, timeout_seconds=self.timeout, on_timeout=self.on_timeout,
            escalate_after_seconds=self.escalate.after, escalate_group=self.escalate.group,
            escalate_webhook=os.path.expandvars(self.escalate.webhook).strip(),
        )


class PoliciesFileModel(_Strict):
    policies: dict[str, PolicyModel] = Field(default_factory=dict)


class PoliciesFileInvalid(DomainError):
    code = "approvals.invalid_policies"


@cache
def _yaml_policies() -> tuple[Policy, ...]:
    """The policies of APPROVALS_FILE, validated whole. Raises PoliciesFileInvalid naming the problem.
    Loaded when the process starts (approvals.apps), never first inside a transaction."""
    path = Path(settings.APPROVALS_FILE)
    if not path.exists():
        return ()
    try:
        data = PoliciesFileModel.model_validate(yaml.safe_load(path.read_text()) or {})
    except ValidationError as exc:
        detail = exc.errors()[0]
        where = ".".join(str(part) for part in detail["loc"])
        raise PoliciesFileInvalid(f"{path}: {where}: {detail['msg']}") from None
    except yaml.YAMLError as exc:
        raise PoliciesFileInvalid(f"{path}: not valid YAML: {exc}") from None
    return tuple(model.policy(name) for name, model in data.policies.items())


# The admin's policies, hand-written: every step's gate reads them, and compiling the ORM's query (a join
# for the escalation group's name) cost more than running it. The columns in Policy's order.
_COLUMNS = ("name", "agent", "template", "step_key", "min_risk", "min_cost", "required_approvals",
            "allow_self_approval", "timeout_seconds", "on_timeout", "escalate_after_seconds")
_POLICIES = (
    f"SELECT {', '.join(f'p.{column}' for column in _COLUMNS)}, COALESCE(g.name, ''), p.escalate_webhook "
    f"FROM {ApprovalPolicy._meta.db_table} p LEFT JOIN {Group._meta.db_table} g ON g.id = p.escalate_group_id "
    "WHERE p.enabled AND (p.organisation_id IS NULL OR p.organisation_id = %s) ORDER BY p.id")


def policies(*, organisation_id: int | None = None) -> list[Policy]:
    """The policies that apply to a plan of ``organisation_id``: approvals.yaml's, the admin's policies for
    every organisation, and that organisation's own (none given: only those for every organisation)."""
    with prepared.cursor() as cursor:
        cursor.execute(_POLICIES, [organisation_id])
        rows = cursor.fetchall()
    return [*_yaml_policies(), *(Policy(*row) for row in rows)]


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
