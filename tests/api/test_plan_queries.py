"""Queries per request on the plan endpoints that bench/api.py measures, pinned: a change that adds a query per
request, or one per step, shows here before it shows in requests per second."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from orchestrator import services
from orchestrator.models import Step
from tests.conftest import api_client

pytestmark = pytest.mark.django_db(transaction=True)


def _plan(user: Any, steps: int) -> Any:
    return services.plan_create(owner=user, request="queries", steps=[
        {"key": f"s{i}", "agent": "held"} for i in range(steps)])


@pytest.mark.parametrize("steps", [1, 20])
def test_plan_detail_takes_three_queries_whatever_its_size(user: Any, steps: int,
                                                          django_assert_num_queries: Any) -> None:
    client = api_client(user)
    plan = _plan(user, steps)

    # the token with its user and the user's organisation (throttle and visibility), the plan with its owner,
    # its steps
    with django_assert_num_queries(3):
        answer = client.get(f"/api/plans/{plan.id}/")

    assert answer.status_code == 200 and len(answer.json()["steps"]) == steps


@pytest.mark.parametrize("steps", [1, 20])
def test_plan_create_takes_a_fixed_number_of_queries(user: Any, steps: int, django_assert_num_queries: Any) -> None:
    client = api_client(user)
    body = {"request": "q", "steps": [{"key": f"s{i}", "agent": "held"} for i in range(steps)]}
    client.post("/api/plans/", body, format="json")  # a user's first request joins the default organisation

    # the token with the user's organisation; in one transaction (BEGIN .. COMMIT): the plan (created running),
    # its two events, its steps, approval policies, the roots queued (the gate judges them as inserted, without
    # reading them back); then the plan read back with its steps for the answer, and the audit entry.
    # (services.plan_create owns the middle part; running experiments are asked of a per-process memo.)
    with django_assert_num_queries(12):
        answer = client.post("/api/plans/", body, format="json")

    assert answer.status_code == 201 and len(answer.json()["steps"]) == steps


def test_plan_answers_are_what_freshly_built_drf_fields_give(user: Any) -> None:
    """The serializers build their fields once per class and read plain columns directly
    (serializers.FieldsOnce): the same output as DRF's own."""
    from rest_framework import serializers

    from orchestrator.selectors import plan_detail, plan_get
    from orchestrator.serializers import PlanDetailSerializer, PlanSerializer, StepSerializer

    class FreshSteps(serializers.ModelSerializer):  # type: ignore[type-arg]
        class Meta(StepSerializer.Meta):
            pass

    class FreshDetail(serializers.ModelSerializer):  # type: ignore[type-arg]
        owner = serializers.CharField(source="owner.get_username", read_only=True)
        page_url = serializers.SerializerMethodField()
        events_url = serializers.SerializerMethodField()
        steps = FreshSteps(many=True, read_only=True)
        get_page_url = PlanSerializer.get_page_url
        get_events_url = PlanSerializer.get_events_url

        class Meta(PlanDetailSerializer.Meta):
            pass

    plan = plan_get(user=user, plan_id=_plan(user, 3).id)
    services.plan_cancel(plan_id=plan.id, actor=user)  # finished_at, error fields, cancelled steps
    Step.objects.filter(plan=plan, key="s0").update(  # every kind of value a step holds: JSON, decimal, times
        output={"text": "done", "n": [1, 2.5, None]}, usage={"prompt_tokens": 3}, prompt_tokens=3,
        completion_tokens=4, cost=Decimal("0.001250"), started_at=timezone.now(), finished_at=timezone.now())
    plan = plan_get(user=user, plan_id=plan.id)

    assert PlanDetailSerializer(plan).data == FreshDetail(plan).data
    assert PlanDetailSerializer(plan).data == PlanDetailSerializer(plan).data  # the cached fields are reusable
    # the detail's hand-written read (selectors.plan_detail) builds what the ORM builds
    detail = PlanDetailSerializer(plan_detail(user=user, plan_id=plan.id)).data
    assert detail == FreshDetail(plan).data and [s["key"] for s in detail["steps"]] == ["s0", "s1", "s2"]


def test_a_plan_detail_read_by_hand_filters_nothing_in_by_mistake(user: Any) -> None:
    """selectors.plan_detail's steps are a loaded queryset: a filter chained on it finds nothing rather than
    every step of every plan (its query is an empty one)."""
    from orchestrator.selectors import plan_detail

    _plan(user, 2)
    plan = plan_detail(user=user, plan_id=_plan(user, 3).id)

    assert [s.key for s in plan.steps.all()] == ["s0", "s1", "s2"]
    assert list(plan.steps.filter(key="s0")) == []
