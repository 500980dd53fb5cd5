"""Policy matching and strict combination (pure: no database rows needed for the shipped file)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from approvals import policies
from approvals.policies import Policy, StepFacts

SHIPPED = Path(__file__).resolve().parents[2] / "approvals.yaml"


def facts(**changes: object) -> StepFacts:
    base = {"agent": "synthesis_agent", "template": "research", "step_key": "synthesis", "risk": "low",
            "estimated_cost": Decimal("0.01"), "requested": False}
    return StepFacts(**{**base, **changes})  # type: ignore[arg-type]


@pytest.fixture
def shipped(settings: object) -> None:
    settings.APPROVALS_FILE = SHIPPED  # type: ignore[attr-defined]
    policies._yaml_policies.cache_clear()
    yield
    policies._yaml_policies.cache_clear()


@pytest.mark.django_db
@pytest.mark.usefixtures("shipped")
def test_the_shipped_policy_gates_the_research_synthesis() -> None:
    requirement = policies.requirement_for(facts())

    assert requirement is not None
    assert requirement.policies == ("research-synthesis",)
    assert (requirement.required_approvals, requirement.allow_self_approval) == (1, False)
    assert (requirement.timeout_seconds, requirement.on_timeout) == (3600, "reject")
    assert policies.requirement_for(facts(step_key="search")) is None


@pytest.mark.django_db
@pytest.mark.usefixtures("shipped")
def test_matching_policies_combine_strictly() -> None:
    requirement = policies.requirement_for(facts(risk="high", requested=True))

    assert requirement is not None
    assert set(requirement.policies) == {"research-synthesis", "high-risk", "plan"}
    assert requirement.required_approvals == 2  # the largest quorum
    assert requirement.allow_self_approval is False  # any policy forbidding it wins over the plan's gate
    assert requirement.timeout_seconds == 3600  # the earliest deadline
    assert requirement.on_timeout == "fail"  # the most conservative default


def test_a_policy_matches_on_risk_and_estimated_cost() -> None:
    expensive = Policy(name="expensive", min_cost=Decimal("1.00"))
    risky = Policy(name="risky", min_risk="medium")

    assert expensive.matches(facts(estimated_cost=Decimal("1.50")))
    assert not expensive.matches(facts(estimated_cost=Decimal("0.50")))
    assert risky.matches(facts(risk="high")) and not risky.matches(facts(risk="low"))
