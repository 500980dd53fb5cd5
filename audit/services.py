"""Writes to the audit trail (append-only: ``AuditEntry`` rows are never updated or deleted).

Sources: every API and admin write (``audit.middleware``), and, from the plans' event record (a hook on
``orchestrator.events``, after commit), agent calls (``step.started``/``succeeded``/``failed``) and human
decisions (``approval.decided``, ``approval.voted``, ``plan.cancelled`` by a person).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from audit.models import AuditEntry

log = logging.getLogger("audit")

EVENT_ACTIONS = frozenset({"step.started", "step.succeeded", "step.failed", "approval.decided",
                           "approval.voted", "approval.timed_out", "plan.cancelled"})


def audit_record(*, action: str, actor_id: int | None = None, actor_name: str = "", target: str = "",
                 plan_id: uuid.UUID | None = None, organisation_id: int | None = None,
                 status_code: int | None = None, ip: str | None = None,
                 user_agent: str = "", data: dict[str, Any] | None = None) -> AuditEntry:
    return AuditEntry.objects.create(action=action[:100], actor_id=actor_id, actor_name=actor_name[:150],
                                      target=target[:500], plan_id=plan_id,
                                      organisation_id=organisation_id, status_code=status_code, ip=ip,
                                      user_agent=user_agent[:300], data=data or {})


def events_recorded(events: list[Any]) -> None:
    """The orchestrator's hook (after commit): agent calls and human decisions, from the plans' events."""
    rows = [AuditEntry(action=e.type, actor_id=e.actor_id, actor_name=e.actor.get_username() if e.actor_id else "",
                       target=f"step {e.step_key}" if e.step_key else "plan", plan_id=e.plan_id,
                       data={"event_id": e.id, **{k: v for k, v in (e.data or {}).items()
                                                  if k in ("agent", "attempt", "code", "decision", "worker")}})
            for e in events if e.type in EVENT_ACTIONS]
    if rows:
        AuditEntry.objects.bulk_create(rows)
