"""Thin task: one webhook delivery attempt (integrations/webhooks.py schedules its own retries)."""

from __future__ import annotations

import uuid

from celery import shared_task
from django.db import connection

from integrations import webhooks


@shared_task(name="integrations.webhook_deliver", acks_late=True, ignore_result=True)
def webhook_deliver(delivery_id: str) -> str:
    try:
        return webhooks.webhook_deliver(delivery_id=uuid.UUID(delivery_id))
    finally:
        connection.close()
