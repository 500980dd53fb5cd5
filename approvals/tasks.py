"""Celery tasks of the approvals app: thin adapters with stable names, ids only."""

from __future__ import annotations

import smtplib
import uuid

import httpx
from celery import shared_task

from approvals import services
from common.queues import Queue

# Escalation notifications retry on their own (exponential backoff up to 10 minutes, for about a day): a
# mail server or webhook that is down for a while delays them, never loses them. Each is sent once: the
# approval's pending flag is cleared after the send (a crash between the two may send it twice).


@shared_task(name="approvals.expire", queue=Queue.SCHEDULER, ignore_result=True)
def expire() -> dict[str, int]:
    """Beat: default decisions on overdue approvals, escalations, and escalation notices whose message was lost."""
    return services.approvals_expire()


@shared_task(name="approvals.escalation_mail", autoretry_for=(smtplib.SMTPException, OSError), queue=Queue.NOTIFY,
             acks_late=True, reject_on_worker_lost=True, ignore_result=True, retry_backoff=True,
             retry_backoff_max=600, max_retries=150)
def escalation_mail(approval_id: str) -> None:
    services.escalation_mail_send(approval_id=uuid.UUID(approval_id))


@shared_task(name="approvals.escalation_webhook", autoretry_for=(httpx.HTTPError,), queue=Queue.NOTIFY,
             acks_late=True, reject_on_worker_lost=True, ignore_result=True, retry_backoff=True,
             retry_backoff_max=600, max_retries=150)
def escalation_webhook(approval_id: str) -> None:
    services.escalation_webhook_send(approval_id=uuid.UUID(approval_id))
