"""Leases: how the reconciler tells a worker that is gone from one that is still busy.

A worker that claims a step (or a planner run) holds a lease on it: ``lease_expires_at``, ORCH_LEASE_TTL
seconds ahead. While the attempt runs, one heartbeat thread per worker process renews the leases of every
attempt that process holds, in one statement every ORCH_HEARTBEAT_EVERY seconds, but never past the
attempt's deadline (plus ORCH_LEASE_GRACE): a call stuck beyond its deadline stops being renewed. So a
lease expires only when its worker died, lost the database for longer than the TTL, or hung past the
deadline; the reconciler then starts a new attempt, and the old one's late result is a stale no-op.

The process also remembers until when each lease is known to be valid (its last successful renewal plus
the TTL): a worker holding a finished result retries recording it until then, and not beyond, since past
that point the reconciler may already have started another attempt.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from common import prepared
from orchestrator.models import Plan, Step

log = logging.getLogger("orchestrator")


@dataclass
class Lease:
    """One attempt this process holds: a step's (``kind`` "step") or a planner run's ("plan")."""

    kind: str
    id: uuid.UUID
    attempt: int
    deadline: float  # time.monotonic() by which the attempt's work must end
    valid_until: float = field(default=0.0)  # time.monotonic() until which the lease is known to hold

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class _Heartbeat:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[str, uuid.UUID, int], Lease] = {}
        self._thread: threading.Thread | None = None

    @contextmanager
    def hold(self, kind: str, id_: uuid.UUID, attempt: int, *, seconds: float) -> Iterator[Lease]:
        now = time.monotonic()
        lease = Lease(kind, id_, attempt, deadline=now + seconds, valid_until=now + settings.ORCH_LEASE_TTL)
        key = (kind, id_, attempt)
        with self._lock:
            self._held[key] = lease
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="orchestrator-heartbeat", daemon=True)
                self._thread.start()
        try:
            yield lease
        finally:
            with self._lock:
                self._held.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(settings.ORCH_HEARTBEAT_EVERY)
            with self._lock:
                held = list(self._held.values())
            if held:
                self.renew(held)

    def renew(self, held: list[Lease]) -> None:
        """Extend the leases of ``held`` attempts that are still current and within their deadline."""
        started = time.monotonic()
        now = timezone.now()
        expires, grace = now + timedelta(seconds=settings.ORCH_LEASE_TTL), timedelta(seconds=settings.ORCH_LEASE_GRACE)
        renewed: set[uuid.UUID] = set()
        try:
            for kind, model, status in (("step", Step, "running"), ("plan", Plan, "planning")):
                mine = [lease for lease in held if lease.kind == kind]
                if not mine:
                    continue
                prefix = "" if kind == "step" else "planning_"
                table = model._meta.db_table
                with prepared.cursor() as cursor:
                    cursor.execute(
                        f"UPDATE {table} SET {prefix}lease_expires_at = %s "
                        f"FROM unnest(%s::uuid[], %s::int[]) AS held(id, attempt) "
                        f"WHERE {table}.id = held.id AND {table}.{prefix}attempt = held.attempt "
                        f"AND {table}.status = %s AND {table}.{prefix}deadline_at > %s RETURNING {table}.id",
                        [expires, [lease.id for lease in mine], [lease.attempt for lease in mine], status, now - grace])
                    renewed.update(row[0] for row in cursor.fetchall())
            for lease in held:
                if lease.id in renewed:
                    lease.valid_until = started + settings.ORCH_LEASE_TTL
        except DatabaseError as exc:
            log.warning("orchestrator.heartbeat.failed", extra={"error": repr(exc), "held": len(held)})
        finally:
            connection.close()


heartbeat = _Heartbeat()


def lease_expires_at() -> datetime:
    """Where a fresh claim's lease ends."""
    return timezone.now() + timedelta(seconds=settings.ORCH_LEASE_TTL)
