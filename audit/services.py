"""Writes to the audit trail (append-only: ``AuditEntry`` rows are never updated or deleted).

Sources: every API and admin write (``audit.middleware``), and, from the plans' event record (a database
trigger on the event table, in the statement that writes the events: migration 0002), agent calls
(``step.started``/``succeeded``/``failed``) and human decisions (``approval.decided``, ``approval.voted``,
``approval.timed_out``, ``plan.cancelled`` by a person).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from audit.models import AuditEntry
from common.bulk import copy_insert

log = logging.getLogger("audit")


def audit_record(*, action: str, actor_id: int | None = None, actor_name: str = "", target: str = "",
                 plan_id: uuid.UUID | None = None, organisation_id: int | None = None,
                 status_code: int | None = None, ip: str | None = None,
                 user_agent: str = "", data: dict[str, Any] | None = None) -> AuditEntry:
    """One entry, written by COPY (the middleware writes one per API write; the ORM's insert cost more CPU to
    compile than to run). The entry's id is the database's, and not read back."""
    entry = AuditEntry(action=action[:100], actor_id=actor_id, actor_name=actor_name[:150], target=target[:500],
                       plan_id=plan_id, organisation_id=organisation_id, status_code=status_code, ip=ip,
                       user_agent=user_agent[:300], data=data or {})
    return copy_insert([entry])[0]
