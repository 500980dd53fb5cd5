from __future__ import annotations

from celery import shared_task

from approvals import services


@shared_task(name="approvals.expire", queue="scheduler", ignore_result=True, send_events=False)  # not in Flower's view
def expire() -> dict[str, int]:
    """Beat: default decisions on overdue approvals, and escalations."""
    return services.approvals_expire()
