"""common.bulk (a plan, its steps and the audit trail's entries are written with COPY, or a few rows by one
prepared INSERT; events with a written-once INSERT): the rows read back are the ones the ORM writes, for every
kind of value a step holds, text COPY must escape included, by either path."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict

from audit.models import AuditEntry
from common.bulk import FEW_ROWS, ROWS_PER_INSERT, copy_insert, insert_returning
from orchestrator.models import Plan, PlanEvent, Step

pytestmark = pytest.mark.django_db(transaction=True)

AWKWARD = 'tab\there, newline\nthere, back\\slash, "quotes", \\N, comma,{brace}, é, 🙂'


def _steps(plan: Plan, copies: int = 1) -> list[Step]:
    """Three steps of every kind of value; ``copies`` > 1 adds more of them (keys ``<key> #n``)."""
    steps = [
        Step(id=uuid.uuid4(), plan=plan, key="a", agent="echo", input={"text": AWKWARD, "n": [1, 2.5, None, True]},
             depends_on=[], dependents=["b, with comma", 'c "quoted"'], fan_out={"over": "items"}, replan=True,
             cost=Decimal("0.001250"), error_message=AWKWARD),
        Step(id=uuid.uuid4(), plan=plan, key="b, with comma", agent="echo", depends_on=["a"], waiting_on=1,
             output=None, usage=None),
        Step(id=uuid.uuid4(), plan=plan, key='c "quoted"', agent="echo", depends_on=["a", AWKWARD], input={}),
    ]
    more = [Step(**{**model_to_dict(step, exclude=["id", "plan"]), "id": uuid.uuid4(), "plan": plan,
                    "key": f"{step.key} #{n}"}) for n in range(1, copies) for step in steps]
    return steps + more


def _rows(plan: Plan) -> list[dict[str, Any]]:
    return [model_to_dict(step, exclude=["id", "plan"]) for step in Step.objects.filter(plan=plan).order_by("key")]


@pytest.mark.parametrize("copies", [1, FEW_ROWS])  # 3 rows: one prepared INSERT; 3 x FEW_ROWS: COPY
def test_copy_insert_writes_what_bulk_create_writes(user: Any, copies: int) -> None:
    by_orm, by_copy = (Plan.objects.create(owner=user, request="bulk") for _ in range(2))
    Step.objects.bulk_create(_steps(by_orm, copies))

    written = copy_insert(_steps(by_copy, copies))

    assert _rows(by_copy) == _rows(by_orm) and len(_rows(by_copy)) == 3 * copies
    assert [step._state.adding for step in written] == [False] * 3 * copies  # saved, as bulk_create leaves them
    assert Step.objects.get(plan=by_copy, key="a").input["text"] == AWKWARD


@pytest.mark.parametrize("copies", [1, FEW_ROWS])
def test_copy_insert_fails_whole_as_the_orm_would(user: Any, copies: int) -> None:
    plan = Plan.objects.create(owner=user, request="bulk")
    copy_insert(_steps(plan)[:1])

    with pytest.raises(IntegrityError), transaction.atomic():  # a Django error, as from bulk_create
        copy_insert(_steps(plan, copies))  # "a" again: the unique key per plan

    assert Step.objects.filter(plan=plan).count() == 1  # nothing of the failed COPY stayed


def test_copy_insert_sets_auto_now_add_and_leaves_a_serial_key_to_the_database() -> None:
    entries = [AuditEntry(action="api.post", target=AWKWARD, data={"n": i}) for i in range(2)]

    written = copy_insert(entries)

    stored = list(AuditEntry.objects.filter(action="api.post").order_by("id"))
    assert [e.data for e in stored] == [{"n": 0}, {"n": 1}] and stored[0].target == AWKWARD
    assert stored[0].id < stored[1].id  # the sequence's
    assert all(e.at is not None for e in written) and [e.at for e in stored] == [e.at for e in written]
    assert [e.pk for e in written] == [None, None]  # not read back: said so in its docstring


def test_insert_returning_writes_what_bulk_create_writes_and_reads_back_the_keys_in_order(user: Any) -> None:
    plan = Plan.objects.create(owner=user, request="bulk")
    count = ROWS_PER_INSERT * 2 + 3  # three statements: two full, one of three rows

    def events(tag: str) -> list[PlanEvent]:
        return [PlanEvent(plan=plan, type=f"{tag}.{i}", step_key=AWKWARD if i % 2 else "", actor=user if i else None,
                          data={"i": i, "text": AWKWARD}) for i in range(count)]

    by_orm = PlanEvent.objects.bulk_create(events("orm"))
    written = insert_returning(events("fast"))

    assert [e.type for e in PlanEvent.objects.filter(id__in=[e.id for e in written]).order_by("id")] == [
        f"fast.{i}" for i in range(count)]  # each instance got its own row's key
    assert [e._state.adding for e in written] == [False] * count
    fields = ["plan", "step_key", "data", "actor"]
    assert [model_to_dict(e, fields) for e in PlanEvent.objects.filter(type__startswith="fast.").order_by("id")] == [
        model_to_dict(e, fields) for e in PlanEvent.objects.filter(id__in=[e.id for e in by_orm]).order_by("id")]
