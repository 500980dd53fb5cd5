"""Memory's beat task: a thin adapter with a stable name."""

from __future__ import annotations

from celery import shared_task

from memory import services


@shared_task(name="memory.compact", ignore_result=True, acks_late=True)
def compact() -> dict[str, int]:
    """Hot -> cold tiering, expiry and stale working memory (idempotent: a second run finds nothing)."""
    return services.compact()
