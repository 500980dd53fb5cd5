"""What may run next: the one definition of "ready", and of "doomed", in SQL.

A pending step is *ready* when every step it depends on has succeeded, and *doomed* when a step it depends
on (directly or through other pending steps) ended without success: it can never run.

Readiness is kept as counts, so that a step's end never reads the whole plan: each step carries the keys of
its ``dependents`` and ``waiting_on``, how many of its dependencies have not succeeded. The statement that
records a success decrements its dependents' counts (``transitions.steps_transition``); a dependent whose
count reaches 0 is ready, and only that statement can see it reach 0. Whatever changes a plan's structure
(creation, growth, edits, retries) calls ``counts_refresh`` under the plan lock, which recomputes both from
``depends_on`` (the truth) in one statement; the lock excludes every step end meanwhile (rule 2 in
``services/__init__.py``).
"""

from __future__ import annotations

import uuid

from django.db import connection

from orchestrator.models import Step
from orchestrator.states import STEP_TERMINAL, STEP_UNSUCCESSFUL

_STEP = Step._meta.db_table
_UNSUCCESSFUL = [str(s) for s in STEP_UNSUCCESSFUL]
# Literal, so that the planner matches the partial index ``step_open`` (a parameter would not).
_TERMINAL_SQL = ", ".join(f"'{s}'" for s in sorted(STEP_TERMINAL))

# One pass over the plan's edges (hash joins: linear in its size). A dependency that does not exist counts as
# not succeeded. Rows whose counts are already right are not rewritten.
COUNTS_REFRESH = f"""
    WITH edges AS (
        SELECT s.key AS dependent, u.dep, d.status AS dep_status
        FROM {_STEP} s CROSS JOIN LATERAL unnest(s.depends_on) AS u(dep)
        LEFT JOIN {_STEP} d ON d.plan_id = s.plan_id AND d.key = u.dep
        WHERE s.plan_id = %(plan)s
    ), dependents AS (
        SELECT dep AS key, array_agg(DISTINCT dependent ORDER BY dependent)::varchar[] AS keys
        FROM edges GROUP BY dep
    ), waits AS (
        SELECT dependent AS key, count(*) FILTER (WHERE dep_status IS DISTINCT FROM 'succeeded') AS n
        FROM edges GROUP BY dependent
    ), counted AS (
        SELECT s.id, COALESCE(dependents.keys, '{{}}') AS keys, COALESCE(waits.n, 0) AS n
        FROM {_STEP} s LEFT JOIN dependents ON dependents.key = s.key LEFT JOIN waits ON waits.key = s.key
        WHERE s.plan_id = %(plan)s
    )
    UPDATE {_STEP} s SET dependents = counted.keys, waiting_on = counted.n
    FROM counted
    WHERE s.id = counted.id AND (s.dependents <> counted.keys OR s.waiting_on <> counted.n)"""


def counts_refresh(*, plan_id: uuid.UUID) -> None:
    """Recompute every step's ``dependents`` and ``waiting_on`` from ``depends_on``. The caller holds the plan
    lock (FOR NO KEY UPDATE: no step of the plan can end meanwhile)."""
    with connection.cursor() as cursor:
        cursor.execute(COUNTS_REFRESH, {"plan": plan_id})


def steps_ready(*, plan_id: uuid.UUID) -> list[uuid.UUID]:
    """Pending steps of the plan whose dependencies have all succeeded (an indexed read: ``step_ready``)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {_STEP} WHERE plan_id = %s AND status = 'pending' AND waiting_on = 0",
                       [plan_id])
        return [row[0] for row in cursor.fetchall()]


def steps_doomed(*, plan_id: uuid.UUID) -> list[uuid.UUID]:
    """Pending steps that can never run: a dependency, or a dependency's dependency, ended unsuccessfully."""
    with connection.cursor() as cursor:
        cursor.execute(f"""
            WITH RECURSIVE doomed(key) AS (
                SELECT s.key FROM {_STEP} s
                WHERE s.plan_id = %(plan)s AND s.status = 'pending'
                  AND EXISTS (SELECT 1 FROM {_STEP} d WHERE d.plan_id = s.plan_id AND d.key = ANY(s.depends_on)
                              AND d.status = ANY(%(unsuccessful)s))
                UNION
                SELECT s.key FROM {_STEP} s JOIN doomed ON doomed.key = ANY(s.depends_on)
                WHERE s.plan_id = %(plan)s AND s.status = 'pending'
            )
            SELECT id FROM {_STEP} WHERE plan_id = %(plan)s AND key IN (SELECT key FROM doomed)""",
                       {"plan": plan_id, "unsuccessful": _UNSUCCESSFUL})
        return [row[0] for row in cursor.fetchall()]


def plan_settled(*, plan_id: uuid.UUID) -> bool:
    """Has every step of the plan ended? (An indexed read: ``step_open``.)"""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {_STEP} WHERE plan_id = %s "
                       f"AND NOT status IN ({_TERMINAL_SQL}))", [plan_id])
        return bool(cursor.fetchone()[0])
