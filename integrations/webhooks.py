"""Webhooks integrators register: plan finished / failed / cancelled, approval required.

* Emission: ``events_recorded`` is registered with ``orchestrator.events.on_recorded`` (IntegrationsConfig.
  ready); it runs after the events' transaction commits, writes one ``WebhookDelivery`` per matching active
  endpoint of the plan's owner, and queues ``integrations.webhook_deliver`` for each after that commits.
* Delivery (``webhook_deliver``): one POST through the SSRF guard (agents/egress.py: public addresses only,
  no redirects), no DB connection held while it waits. A 2xx delivers; anything else is retried with
  exponential backoff (10 s, 20 s, 40 s ... capped at 1 h) up to WEBHOOK_MAX_ATTEMPTS, then ``failed``; an
  address the guard refuses fails at once. Every attempt is on the row (attempts, last status or error).
* At least once: a retried or duplicated task can send an event twice; the receiver dedupes by
  ``Webhook-Id`` (the delivery's id, the same on every attempt).
* Signature (the Standard Webhooks scheme): ``Webhook-Signature: v1,<base64 HMAC-SHA256(secret,
  "<Webhook-Id>.<Webhook-Timestamp>.<body>")>``; receivers reject timestamps more than 5 minutes old.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from agents.api import EgressRefused, guarded_client, webhook_policy
from integrations.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent

log = logging.getLogger("integrations")

EVENTS = frozenset(str(e) for e in WebhookEvent)
BACKOFF_FIRST = 10.0
BACKOFF_MAX = 3600.0


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance: int = 300) -> bool:
    """What a receiver does (docs/integrators.md): recompute the signature, compare in constant time, and
    refuse an old timestamp (a replay)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = int(lowered["webhook-timestamp"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = sign(secret, lowered["webhook-id"], timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in lowered["webhook-signature"].split())


def events_recorded(events: list[Any]) -> None:
    """The orchestrator's hook (after commit): a delivery per matching endpoint, each sent after commit."""
    wanted = [e for e in events if e.type in EVENTS]
    if not wanted:
        return
    from orchestrator.models import Plan  # integrations sits above orchestrator

    owners = dict(Plan.objects.filter(id__in={e.plan_id for e in wanted}).values_list("id", "owner_id"))
    with transaction.atomic():
        for event in wanted:
            endpoints = WebhookEndpoint.objects.filter(owner_id=owners.get(event.plan_id), is_active=True,
                                                       events__contains=[event.type])
            for endpoint in endpoints:
                delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type=event.type, payload={
                    "type": event.type, "plan_id": str(event.plan_id), "step_key": event.step_key,
                    "event_id": event.id, "time": event.created_at.isoformat(), "data": event.data or {}})
                _send_on_commit(delivery.id)


def _send_on_commit(delivery_id: uuid.UUID, countdown: float = 0) -> None:
    from integrations.tasks import webhook_deliver

    transaction.on_commit(lambda: webhook_deliver.apply_async((str(delivery_id),), countdown=countdown),
                          robust=True)


def _backoff(attempts: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempts - 1))


def webhook_deliver(*, delivery_id: uuid.UUID) -> str:
    """One attempt; returns the delivery's status after it. Must not run inside a transaction."""
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(id=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return delivery.status if delivery else "missing"
    endpoint = delivery.endpoint
    body = json.dumps({"id": str(delivery.id), **delivery.payload}, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "Webhook-Id": str(delivery.id),
               "Webhook-Timestamp": str(timestamp), "Webhook-Signature": sign(endpoint.secret, str(delivery.id),
                                                                              timestamp, body)}
    if not connection.in_atomic_block:
        connection.close()  # nothing held while the receiver answers
    status_code, error, refused = None, "", False
    try:
        with guarded_client(webhook_policy(endpoint.url), timeout=settings.WEBHOOK_TIMEOUT,
                            max_redirects=0) as client:
            status_code = client.post(endpoint.url, content=body, headers=headers).status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except EgressRefused as exc:
        error, refused = exc.message, True
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    return _record(delivery, status_code, error, refused)


def _record(delivery: WebhookDelivery, status_code: int | None, error: str, refused: bool) -> str:
    with transaction.atomic():
        row = WebhookDelivery.objects.select_for_update().get(id=delivery.id)
        if row.status != DeliveryStatus.PENDING:
            return str(row.status)
        row.attempts += 1
        row.last_status_code, row.last_error = status_code, error
        if not error:
            row.status, row.delivered_at, row.next_attempt_at = DeliveryStatus.DELIVERED, timezone.now(), None
        elif refused or row.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            row.status, row.next_attempt_at = DeliveryStatus.FAILED, None
        else:
            delay = _backoff(row.attempts)
            row.next_attempt_at = timezone.now() + timedelta(seconds=delay)
            _send_on_commit(row.id, countdown=delay)
        row.save()
    log.info("integrations.webhook.attempt", extra={"delivery_id": str(row.id), "status": row.status,
                                                     "attempt": row.attempts, "error": error})
    return str(row.status)
