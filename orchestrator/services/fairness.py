"""Fairness between owners: at most ORCH_OWNER_MAX_IN_FLIGHT steps of one owner are queued or running at
once, across all their plans (0, the default: no cap; config/settings.py says when to set it). So one
owner's plan of 200 steps puts at most that many messages in front of another owner's one-step plan,
instead of all 200.

A ready step over its owner's cap stays ``pending`` (ready: its count is 0, see ``readiness``), and is
admitted when steps of that owner end (``scheduling.owner_release``), oldest plan first, in batches: once
fewer than half the cap are in flight, as many as fit. The cap is soft by the width of a
race: two plans of one owner gated at the same moment (under their own plan locks) may both take the last
free place. If a release is lost (its worker died), the reconciler advances plans with nothing in flight.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.conf import settings
from django.db import connection

from orchestrator.models import Plan, Step

_STEP, _PLAN = Step._meta.db_table, Plan._meta.db_table


def admit(plan: Plan, free: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """The steps of ``free`` (gated, free to run) that the owner's cap lets start now, in order; the rest
    stay pending. The caller holds the plan's lock."""
    cap = settings.ORCH_OWNER_MAX_IN_FLIGHT
    if not cap or not free:
        return list(free)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {_STEP} s JOIN {_PLAN} p ON p.id = s.plan_id "
                       "WHERE p.owner_id = %s AND p.status = 'running' AND s.status IN ('queued', 'running')",
                       [plan.owner_id])
        in_flight = int(cursor.fetchone()[0])
    return list(free)[:max(cap - in_flight, 0)]


def deferred_plans(*, plan_id: uuid.UUID) -> list[uuid.UUID]:
    """After a step of this plan's owner ended: the owner's running plans that have ready steps the cap held
    back, oldest first, once fewer than half the cap are in flight (so that admitting is done in batches,
    not one plan lock per step end); else none. One indexed read (``step_ready`` holds only pending steps
    whose count is 0)."""
    cap = settings.ORCH_OWNER_MAX_IN_FLIGHT
    if not cap:
        return []
    with connection.cursor() as cursor:
        cursor.execute(f"""
            WITH owner AS (SELECT owner_id FROM {_PLAN} WHERE id = %(plan)s)
            SELECT (SELECT count(*) FROM {_STEP} s JOIN {_PLAN} p ON p.id = s.plan_id
                    WHERE p.owner_id = (SELECT owner_id FROM owner) AND p.status = 'running'
                      AND s.status IN ('queued', 'running')) < %(low)s,
                   ARRAY(SELECT p.id FROM {_PLAN} p
                         WHERE p.owner_id = (SELECT owner_id FROM owner) AND p.status = 'running'
                           AND EXISTS (SELECT 1 FROM {_STEP} s WHERE s.plan_id = p.id AND s.status = 'pending'
                                       AND s.waiting_on = 0)
                         ORDER BY p.created_at LIMIT 10)""", {"plan": plan_id, "low": max(cap // 2, 1)})
        low, plans = cursor.fetchone()
    return list(plans) if low else []
