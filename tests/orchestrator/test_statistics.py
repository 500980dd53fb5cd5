"""The steps table's statistics, as the planner sees them: a plan that more than doubles the table has it
analyzed (services/plans.py, ``_statistics_follow``), the success statement finds its rows by key even
with no statistics at all (services/transitions.py, ``_BY_KEY``), and a pull cannot read the index of every
plan's open steps whatever the statistics say (``step_open``, orchestrator/models.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from orchestrator import services
from orchestrator.services import readiness
from orchestrator.services.transitions import step_claimed_oldest
from tests.orchestrator.test_hop import plan_nodes, step_scans, steps_of

pytestmark = pytest.mark.django_db(transaction=True)
TABLES = ("orchestrator_step", "orchestrator_stepslot")


@pytest.fixture(autouse=True)
def no_autovacuum(transactional_db: None) -> Iterator[None]:
    """No autovacuum ANALYZE of the tables while a test runs (its workers visit each database once a minute and
    would write the statistics these tests count on)."""
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    yield
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")


def statistics_clear(*tables: str) -> None:
    """Leave ``tables`` without statistics, as a new database's: no row count, no column statistics."""
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute("SELECT pg_clear_relation_stats('public', %s)", [table])
            cursor.execute("SELECT pg_clear_attribute_stats('public', %s, attname, false) FROM pg_attribute "
                           "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", [table, table])


def counted() -> float:
    """The steps table's row count as its statistics have it (-1: never analyzed)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'orchestrator_step'::regclass")
        return float(cursor.fetchone()[0])


def held(n: int) -> list[dict[str, Any]]:
    return [{"key": f"s{i}", "agent": "held"} for i in range(n)]


def test_a_plan_that_more_than_doubles_the_steps_table_has_it_analyzed_on_commit(user: Any) -> None:
    """Workers plan their hot statements once per connection: planned over a table of a few pages they read it
    whole, and kept doing so as a first big plan filled it (a new database's first 5,000-step plan: 19 s, not
    12). Such a plan now has the table analyzed once it commits, so every connection plans again."""
    statistics_clear(*TABLES)
    services.plan_create(owner=user, request="small", steps=held(99))
    assert counted() == -1  # fewer than 100 steps: not even asked
    with transaction.atomic():
        services.plan_create(owner=user, request="big", steps=held(100))
        assert counted() == -1  # not before it commits: an ANALYZE cannot see what is not committed
    assert counted() == 199
    services.plan_create(owner=user, request="as big again", steps=held(150))
    assert counted() == 199  # 150 more do not double 199: statistics still close enough


def test_a_success_finds_its_dependents_by_key_whatever_the_statistics(user: Any) -> None:
    """No statistics yet (a new database) made the success statement's counting down a hash join over a scan of
    every step and slot row, and a connection keeps a statement's plan (common/prepared.py), so each step's end read
    both tables whole as they grew. Its rows are now named by key, which the (plan, key) indexes serve."""
    statistics_clear(*TABLES)  # whatever earlier tests' ANALYZE left
    plan = services.plan_create(owner=user, request="fan-in", steps=[
        *({"key": f"s{i}", "agent": "held"} for i in range(40)),
        {"key": "join", "agent": "held", "depends_on": [f"s{i}" for i in range(40)]},
        {"key": "narrow", "agent": "held", "depends_on": ["s0", "s1"]}])
    with connection.cursor() as cursor:  # still none: a plan of fewer than 100 steps asks for no ANALYZE
        cursor.execute("SELECT max(reltuples) FROM pg_class WHERE relname = ANY(%s)", [list(TABLES)])
        assert cursor.fetchone()[0] < 0
    s0 = steps_of(plan)["s0"]
    services.step_claim(step_id=s0.id, attempt=1, worker="w")
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        services.step_succeed(step_id=s0.id, attempt=1, output=None, usage=None)
        transaction.set_rollback(True)  # still running: EXPLAIN ANALYZE below runs the same success
    (success,) = [q["sql"] for q in captured.captured_queries if "slots AS" in q["sql"]]

    scans = [(n["Node Type"], n.get("Index Name"))
             for n in step_scans(success, TABLES)]
    assert scans and all(kind != "Seq Scan" and index != "step_open" for kind, index in scans), scans


def indexes_read(sql: str) -> set[str]:
    """The indexes ``sql``'s plan reads (not run), bitmap scans' included."""
    return {n["Index Name"] for n in plan_nodes(sql, run=False) if "Index Name" in n}


def test_a_pull_cannot_read_the_index_of_every_plans_open_steps(user: Any) -> None:
    """A pull (the oldest queued step of some agents) names no plan, so the index of each plan's open steps, keyed
    by plan, could serve it only whole: every open step of every plan read, filtered and sorted, for each pull. The
    planner took it whenever the statistics made it look the cheaper (after a vacuum between two big plans both
    it and the pull's own index count no rows, and the pull's, wider, has more pages): a plan of 5,000 steps ran in
    43 s instead of 15, Postgres reading ~5,000 entries of ``step_open`` per pull. Its predicate now also asks for
    a plan, which only a statement that names one implies. Here the pull's own index and the other one keyed by
    plan are dropped, and sequential scans priced out: ``step_open`` is what the planner takes if it may, as it
    still does for what it is for, whether a plan has any step left open."""
    plan = services.plan_create(owner=user, request="queued", steps=held(3))
    with CaptureQueriesContext(connection) as captured:
        step_claimed_oldest(agents=["held"], worker="w")
        readiness.plan_settled(plan_id=plan.id)
    pull, settled = (next(q["sql"] for q in captured.captured_queries if marker in q["sql"])
                     for marker in ("SKIP LOCKED", "NOT EXISTS"))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DROP INDEX step_queued_by_agent")
        cursor.execute(f"ALTER TABLE {TABLES[0]} DROP CONSTRAINT step_unique_key_per_plan CASCADE")
        cursor.execute("SET LOCAL enable_seqscan = off")
        pulled_through, settled_through = indexes_read(pull), indexes_read(settled)
        transaction.set_rollback(True)
    assert "step_open" not in pulled_through, pulled_through
    assert settled_through == {"step_open"}, settled_through
