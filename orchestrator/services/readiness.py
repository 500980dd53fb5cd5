"""What may run next: the one definition of "ready", and of "doomed", both in SQL.

A pending step is *ready* when every step it depends on has succeeded, and *doomed* when a step it depends
on (directly or through other pending steps) ended without success: it can never run. Callers hold the
plan's lock, so the answer cannot change under them.
"""

from __future__ import annotations

import uuid

from django.db import connection

from orchestrator.models import Step
from orchestrator.states import STEP_TERMINAL, STEP_UNSUCCESSFUL

_STEP = Step._meta.db_table
_UNSUCCESSFUL = [str(s) for s in STEP_UNSUCCESSFUL]
_TERMINAL = [str(s) for s in STEP_TERMINAL]

_READY = f"""
    SELECT s.id FROM {_STEP} s
    WHERE s.plan_id = %(plan)s AND s.status = 'pending' {{dependents}}
      AND NOT EXISTS (SELECT 1 FROM {_STEP} d WHERE d.plan_id = s.plan_id AND d.key = ANY(s.depends_on)
                      AND d.status <> 'succeeded')"""


def steps_ready(*, plan_id: uuid.UUID, dependents_of: str | None = None) -> list[uuid.UUID]:
    """Pending steps of the plan whose dependencies have all succeeded; with ``dependents_of``, only
    those that depend on that step (what one step's success can have made ready)."""
    dependents = "AND %(key)s = ANY(s.depends_on)" if dependents_of is not None else ""
    with connection.cursor() as cursor:
        cursor.execute(_READY.format(dependents=dependents), {"plan": plan_id, "key": dependents_of})
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
    """Has every step of the plan ended?"""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {_STEP} WHERE plan_id = %s AND status <> ALL(%s))",
                       [plan_id, _TERMINAL])
        return bool(cursor.fetchone()[0])
