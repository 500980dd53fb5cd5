"""common.bulk.copy_insert (a plan's steps are written with COPY): the rows read back are the ones
``bulk_create`` writes, for every kind of value a step holds, text COPY must escape included."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict

from common.bulk import copy_insert
from orchestrator.models import Plan, Step

pytestmark = pytest.mark.django_db(transaction=True)

AWKWARD = 'tab\there, newline\nthere, back\\slash, "quotes", \\N, comma,{brace}, é, 🙂'


def _steps(plan: Plan) -> list[Step]:
    return [
        Step(id=uuid.uuid4(), plan=plan, key="a", agent="echo", input={"text": AWKWARD, "n": [1, 2.5, None, True]},
             depends_on=[], dependents=["b, with comma", 'c "quoted"'], fan_out={"over": "items"}, replan=True,
             cost=Decimal("0.001250"), error_message=AWKWARD),
        Step(id=uuid.uuid4(), plan=plan, key="b, with comma", agent="echo", depends_on=["a"], waiting_on=1,
             output=None, usage=None),
        Step(id=uuid.uuid4(), plan=plan, key='c "quoted"', agent="echo", depends_on=["a", AWKWARD], input={}),
    ]


def _rows(plan: Plan) -> list[dict[str, Any]]:
    return [model_to_dict(step, exclude=["id", "plan"]) for step in Step.objects.filter(plan=plan).order_by("key")]


def test_copy_insert_writes_what_bulk_create_writes(user: Any) -> None:
    by_orm, by_copy = (Plan.objects.create(owner=user, request="bulk") for _ in range(2))
    Step.objects.bulk_create(_steps(by_orm))

    written = copy_insert(_steps(by_copy))

    assert _rows(by_copy) == _rows(by_orm) and len(_rows(by_copy)) == 3
    assert [step._state.adding for step in written] == [False] * 3  # saved instances, as bulk_create leaves them
    assert Step.objects.get(plan=by_copy, key="a").input["text"] == AWKWARD


def test_copy_insert_fails_whole_as_the_orm_would(user: Any) -> None:
    plan = Plan.objects.create(owner=user, request="bulk")
    copy_insert(_steps(plan)[:1])

    with pytest.raises(IntegrityError), transaction.atomic():  # a Django error, as from bulk_create
        copy_insert(_steps(plan))  # "a" again: the unique key per plan

    assert Step.objects.filter(plan=plan).count() == 1  # nothing of the failed COPY stayed
