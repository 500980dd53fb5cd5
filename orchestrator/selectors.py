"""Reads of plans and steps, always scoped to who may see them."""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import QuerySet

from common import prepared
from common.errors import DomainError, NotFound
from orchestrator.models import Plan, PlanEvent, Step
from organisations.api import tenancy_of


class PlanForbidden(DomainError):
    code = "plan.forbidden"
    http_status = 403


def _reads_whole_organisation(user: User) -> bool:
    tenancy = tenancy_of(user)
    return (tenancy.shared_plans or tenancy.is_admin
            or (user.is_staff and user.has_perm("orchestrator.view_plan")))


def plans_visible(*, user: User) -> QuerySet[Plan]:
    """The plans of the user's organisation that they may read (docs/organisations.md): their own; every
    plan of the organisation if it shares plans between members, or if they are its admin or staff with
    orchestrator.view_plan. Superusers see every plan of every organisation. Another organisation's plan is
    never in it, so its lookups are 404s."""
    plans = Plan.objects.select_related("owner")
    if user.is_superuser:
        return plans
    plans = plans.filter(organisation_id=tenancy_of(user).organisation_id)
    return plans if _reads_whole_organisation(user) else plans.filter(owner=user)


def plan_get(*, user: User, plan_id: uuid.UUID | str) -> Plan:
    """Raises NotFound (also for a plan the user may not see: its existence is not revealed)."""
    try:
        return plans_visible(user=user).get(id=plan_id)
    except (Plan.DoesNotExist, ValueError):
        raise NotFound(f"no plan {plan_id}") from None


def plan_detail(*, user: User, plan_id: uuid.UUID | str) -> Plan:
    """``plan_get`` with the plan's steps loaded (in their order), for the plan's detail answer: the same
    instances the ORM builds, read by two statements written once (``_detail_sql``). The detail is the API's
    most read answer, and compiling its two querysets cost more than running them. NotFound as plan_get."""
    try:
        plan_uuid = plan_id if isinstance(plan_id, uuid.UUID) else uuid.UUID(str(plan_id))
    except ValueError:
        raise NotFound(f"no plan {plan_id}") from None
    plan_sql, steps_sql, plan_fields, step_fields = _detail_sql()
    everyone = user.is_superuser
    organisation = None if everyone else tenancy_of(user).organisation_id
    whole = everyone or _reads_whole_organisation(user)
    with prepared.cursor() as cursor:
        cursor.execute(plan_sql, [plan_uuid, everyone, organisation, whole, user.pk])
        row = cursor.fetchone()
        if row is None:
            raise NotFound(f"no plan {plan_id}")
        cursor.execute(steps_sql, [plan_uuid])
        steps = [Step.from_db(connection.alias, step_fields, _converted(Step, r)) for r in cursor.fetchall()]
    plan = Plan.from_db(connection.alias, plan_fields, _converted(Plan, row[:-1]))
    plan.owner = User.from_db(connection.alias, ["id", "username"], [plan.owner_id, row[-1]])
    # What prefetch_related("steps") leaves: plan.steps.all() reads no more. Its query is an empty one, built
    # once (a queryset clones its query before changing it), so a filter chained on it finds nothing.
    loaded: QuerySet[Step] = QuerySet(model=Step, query=_no_steps())
    loaded._result_cache, loaded._prefetch_done = steps, True  # type: ignore[attr-defined]
    plan._prefetched_objects_cache = {"steps": loaded}  # type: ignore[attr-defined]
    return plan


def _converted(model: type[Plan] | type[Step], row: tuple[Any, ...]) -> list[Any]:
    """A row's values as the ORM hands them to ``from_db``: through each field's ``from_db_value`` (JSON)."""
    values = list(row)
    for i, field in _converters(model):
        values[i] = field.from_db_value(values[i], None, connection)
    return values


@cache
def _converters(model: type[Plan] | type[Step]) -> list[tuple[int, Any]]:
    return [(i, f) for i, f in enumerate(model._meta.concrete_fields) if hasattr(f, "from_db_value")]


def steps_pending(step_ids: list[uuid.UUID]) -> list[Step]:
    """Those of the given steps still pending, by key: what the gate judges when steps become ready (a
    statement written once: it runs on a step path whenever a success frees a step, and at every create)."""
    return steps_pending_to_gate(step_ids)[0]


def steps_pending_to_gate(step_ids: list[uuid.UUID]) -> tuple[list[Step], int | None, str]:
    """``steps_pending``, with what the approval policies need of their plan (its organisation and template),
    in the same statement: a chain's hop reads them in its one transaction (``scheduling.advance_shared``).
    The steps must be of one plan; ([], None, "") when none is pending any more.

    The steps are found by their ids; their status is checked, never searched (``|| ''``, as in
    ``transitions.steps_transition``): a plain ``status = 'pending'`` matched the partial index of open steps,
    and the planner read every open step of every plan to find these (5,459 rows filtered out, 3.3 ms, the
    slowest statement of a hop)."""
    if not step_ids:
        return [], None, ""
    columns, fields = _select(Step, "s")
    with prepared.cursor() as cursor:
        cursor.execute(f"SELECT {columns}, p.organisation_id, p.template FROM {Step._meta.db_table} s "
                       f"JOIN {Plan._meta.db_table} p ON p.id = s.plan_id "
                       "WHERE s.id = ANY(%s) AND (s.status || '') = 'pending' ORDER BY s.key", [list(step_ids)])
        rows = cursor.fetchall()
    if not rows:
        return [], None, ""
    steps = [Step.from_db(connection.alias, fields, _converted(Step, row[:-2])) for row in rows]
    return steps, rows[0][-2], rows[0][-1]


def plan_row(where: str, params: list[Any]) -> Plan | None:
    """The plan that ``SELECT <every plan column> FROM <plans> <where>`` finds, built as the ORM builds it (the
    services' hot paths: reading or locking a step's plan, by a statement written once; a RawQuerySet spent
    more time resolving its columns than the statement took)."""
    columns, fields = _select(Plan)
    with prepared.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {Plan._meta.db_table} {where}", params)
        row = cursor.fetchone()
    return None if row is None else Plan.from_db(connection.alias, fields, _converted(Plan, row))


@cache
def _select(model: type[Plan] | type[Step], alias: str = "") -> tuple[str, list[str]]:
    """Every column of the model (of table ``alias``, if given), and its field names in that order (the models'
    fields never change)."""
    fields = model._meta.concrete_fields
    prefix = f"{alias}." if alias else ""
    return ", ".join(f'{prefix}"{f.column}"' for f in fields), [f.attname for f in fields]


@cache
def _no_steps() -> Any:
    return Step.objects.none().query


@cache
def _detail_sql() -> tuple[str, str, list[str], list[str]]:
    """The plan (with its owner's username) as ``plans_visible`` scopes it, and its steps in Step's order."""
    plan_columns, plan_fields = _select(Plan, "p")
    plan_sql = (f"SELECT {plan_columns}, u.username FROM {Plan._meta.db_table} p "
                f"JOIN {User._meta.db_table} u ON u.id = p.owner_id WHERE p.id = %s "
                "AND (%s OR p.organisation_id = %s) AND (%s OR p.owner_id = %s)")
    step_columns, step_fields = _select(Step)
    steps_sql = f"SELECT {step_columns} FROM {Step._meta.db_table} WHERE plan_id = %s ORDER BY queued_at, key"
    return plan_sql, steps_sql, plan_fields, step_fields


def plan_get_for_change(*, user: User, plan_id: uuid.UUID | str) -> Plan:
    """A plan the user may cancel or retry: their own, or any plan of their organisation if they are its
    admin (or staff with orchestrator.change_plan, or a superuser). Raises NotFound for a plan they cannot
    see, PlanForbidden (403 ``plan.forbidden``) for one they may only read."""
    plan = plan_get(user=user, plan_id=plan_id)
    if (plan.owner_id == user.pk or user.is_superuser or tenancy_of(user).is_admin
            or (user.is_staff and user.has_perm("orchestrator.change_plan"))):
        return plan
    raise PlanForbidden("only the plan's owner or an admin of its organisation may change it")


def plan_ids_of_organisation(*, organisation_id: int) -> QuerySet[Plan, uuid.UUID]:
    """The ids of an organisation's plans, as a subquery (the audit trail's scope)."""
    return Plan.objects.filter(organisation_id=organisation_id).values_list("id", flat=True)


def plan_steps(*, plan: Plan) -> QuerySet[Step]:
    return plan.steps.order_by("queued_at", "key")


def plan_events_after(*, plan_id: uuid.UUID, after_id: int = 0) -> list[PlanEvent]:
    return list(PlanEvent.objects.filter(plan_id=plan_id, id__gt=after_id).order_by("id"))


def step_context(step: Step) -> dict[str, Any]:
    """The outputs of the step's dependencies, by key: what its agent receives as context. Succeeded
    outputs never change, so this read needs no lock or transaction."""
    if not step.depends_on:
        return {}
    return dict(Step.objects.filter(plan_id=step.plan_id, key__in=step.depends_on).values_list("key", "output"))
