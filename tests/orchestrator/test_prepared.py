"""The hot paths' statements are prepared once per connection and planned once (common/prepared.py): a claim
or a step's end spent more time in Postgres' planner than running (0.33 against 0.25 ms for a claim), and under
the default ``plan_cache_mode`` Postgres would have kept planning them at every run."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from orchestrator import services
from orchestrator.models import Step

pytestmark = pytest.mark.django_db(transaction=True)


def _prepared(fragment: str) -> list[tuple[int, int]]:
    """(generic plans, custom plans) of this session's prepared statements that contain ``fragment``, but for a
    worker's pull (the same claim, of another step: an earlier test may have prepared it on this connection)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %s "
                       "AND statement NOT LIKE '%%SKIP LOCKED%%'", [f"%{fragment}%"])
        return cursor.fetchall()


def test_claims_and_step_ends_are_prepared_and_planned_once(user: Any) -> None:
    plan = services.plan_create(owner=user, request="prepared", steps=[
        {"key": f"s{i}", "agent": "held"} for i in range(12)])
    with connection.cursor():  # one connection for the whole test: prepared statements live in its session
        for step in Step.objects.filter(plan=plan):
            assert services.step_claim(step_id=step.id, attempt=1, worker="w") is not None
            assert services.step_succeed(step_id=step.id, attempt=1, output={"ok": True}, usage=None)
        claims = _prepared("SET status = $1, started_at = $2")
        ends = _prepared("FOR SHARE")
    # each prepared on this connection, after psycopg's threshold of runs, then run on its one generic plan (an
    # earlier test may have prepared a variant on the same pooled connection: none is ever planned per run)
    assert any(generic >= 5 for generic, _ in claims) and all(custom == 0 for _, custom in claims)
    assert any(generic >= 5 for generic, _ in ends) and all(custom == 0 for _, custom in ends)
    assert Step.objects.filter(plan=plan, status="succeeded").count() == 12


def test_a_success_without_output_runs_on_the_same_prepared_statement(user: Any) -> None:
    """A prepared statement is keyed on its parameters' types too: when no output was a parameter of its own type,
    a success with none (a noop step, a join) was a statement apart, run too seldom on a connection to be prepared,
    so planned at each run (3.1 ms for a DAG's join against 1.2 prepared)."""
    plan = services.plan_create(owner=user, request="prepared", steps=[
        {"key": f"s{i}", "agent": "held"} for i in range(10)])
    steps = list(Step.objects.filter(plan=plan).order_by("key"))
    with connection.cursor():  # one connection: prepared statements live in its session
        for step in steps:
            assert services.step_claim(step_id=step.id, attempt=1, worker="w") is not None
        for step in steps[:6]:  # past psycopg's threshold: the success is prepared
            assert services.step_succeed(step_id=step.id, attempt=1, output={"ok": True}, usage=None)
        before = sum(generic for generic, _ in _prepared("FOR SHARE"))
        for step in steps[6:]:
            assert services.step_succeed(step_id=step.id, attempt=1, output=None, usage=None)
        after = sum(generic for generic, _ in _prepared("FOR SHARE"))
    assert after - before == 4  # each of the four ran on that statement's one generic plan
    outputs = dict(Step.objects.filter(plan=plan).values_list("key", "output"))
    assert outputs["s0"] == {"ok": True} and outputs["s9"] is None  # None is still stored as SQL NULL
    assert Step.objects.filter(plan=plan, key="s9", output__isnull=True).exists()


@pytest.mark.parametrize(("pgbouncer", "expected"), [("0", "5 -c plan_cache_mode=force_generic_plan"),
                                                     ("1", "None None")])
def test_behind_pgbouncer_nothing_is_prepared_and_no_startup_option_is_sent(pgbouncer: str, expected: str) -> None:
    """PgBouncer in transaction mode may hand a transaction another server connection (a statement prepared on
    one is unknown on the next) and refuses unknown startup parameters."""
    from tests.test_configuration import run

    shown = run(["manage.py", "shell", "-c", "from django.conf import settings; o = settings.DATABASES['default']"
                 "['OPTIONS']; print(o.get('prepare_threshold'), o.get('options'))"], DB_PGBOUNCER=pgbouncer)
    assert shown.stdout.strip().splitlines()[-1] == expected, shown.stderr[-2000:]
