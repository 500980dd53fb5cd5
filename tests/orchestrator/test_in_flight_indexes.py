"""The reconciler's indexes (stale queued steps, expired leases) hold the steps in flight only: a finished step
leaves no entry in them, so they stay as small as the work in flight however many steps have ever run, and a
step's success, the commonest write of all, adds nothing to them (migration 0017)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator import services
from orchestrator.models import Step

pytestmark = pytest.mark.django_db(transaction=True)

RECONCILER_INDEXES = ("step_queued_by_agent", "step_running_lease")


def _entries(index: str) -> int:
    """The entries ``index`` holds, as VACUUM counted them (the table's dead versions pruned first)."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM orchestrator_step")
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [index])
        return int(cursor.fetchone()[0])


def test_finished_steps_leave_no_entry_in_the_reconcilers_indexes(user: Any) -> None:
    plan = services.plan_create(owner=user, request="many", steps=[{"key": f"s{i}", "agent": "held"}
                                                                     for i in range(120)])
    queued = list(Step.objects.filter(plan=plan).values_list("id", flat=True))
    running = queued[:100]
    for step_id in running:
        assert services.step_claim(step_id=step_id, attempt=1, worker="w") is not None
    assert (_entries("step_queued_by_agent"), _entries("step_running_lease")) == (20, 100)

    for step_id in running[:90]:
        assert services.step_succeed(step_id=step_id, attempt=1, output=None, usage=None)

    # Before migration 0017 these were (status, queued_at) and (status, lease_expires_at) over every step: 120 each.
    assert (_entries("step_queued_by_agent"), _entries("step_running_lease")) == (20, 10)


def test_the_reconciler_finds_stale_queued_steps_and_expired_leases_through_them(user: Any) -> None:
    services.plan_create(owner=user, request="in flight", steps=[{"key": f"s{i}", "agent": "held"} for i in range(4)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orchestrator_step")
    with CaptureQueriesContext(connection) as captured:
        services.reconcile(now=timezone.now())
    scans = {query["sql"]: _indexes_used(query["sql"]) for query in captured.captured_queries
             if query["sql"].lstrip().startswith("SELECT") and '"orchestrator_step"."status" = ' in query["sql"]
             and ("queued_at" in query["sql"] or "lease_expires_at" in query["sql"])}
    assert scans, "the reconciler's scans of queued and running steps"
    assert all(used & set(RECONCILER_INDEXES) for used in scans.values()), scans


def _indexes_used(sql: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a tiny test table: show which index would serve it
        try:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
            plan = cursor.fetchone()[0][0]["Plan"]
        finally:
            cursor.execute("RESET enable_seqscan")

    def names(node: dict[str, Any]) -> set[str]:
        return {node.get("Index Name", ""), *(n for child in node.get("Plans", []) for n in names(child))}

    return names(plan) - {""}
