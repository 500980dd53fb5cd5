"""Webhooks: registered through the API (through the SSRF guard), emitted when a plan ends, signed, retried
with backoff, logged, and refused for loopback and metadata addresses."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import transaction

from integrations import webhooks
from integrations.models import WebhookDelivery, WebhookEndpoint
from orchestrator import services
from tests.conftest import api_client

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Any:
    """A token client for ``user``, reusing its token (a user has one)."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


class Receiver:
    """A real HTTP receiver on loopback that answers with the scripted statuses, then 200, and keeps what
    it received (headers and raw body)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append((dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver([500])
    yield found
    found.close()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data/",
                                 "http://[::ffff:127.0.0.1]/hook", "http://[64:ff9b::a9fe:a9fe]/hook",
                                 "http://localhost/hook", "ftp://example.com/hook"])
def test_a_webhook_to_a_loopback_or_metadata_address_is_refused(user: Any, url: str) -> None:
    response = api_client(user).post("/api/webhooks/", {"url": url, "events": ["plan.completed"]})

    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("webhook.refused_address", "invalid")
    assert not WebhookEndpoint.objects.exists()


def _register(user: Any, url: str, settings: Any) -> dict[str, Any]:
    settings.WEBHOOK_PRIVATE_NETWORKS = ["127.0.0.1/32"]  # the test receiver is on loopback
    response = _client(user).post("/api/webhooks/", {"url": url, "events": ["plan.cancelled"]})
    assert response.status_code == 201, response.content
    return dict(response.json())


def _cancelled_plan(user: Any, capture: Any) -> Any:
    plan = services.plan_create(owner=user, request="x", steps=[{"key": "a", "agent": "held"}])
    with capture(execute=True):
        with transaction.atomic():
            services.plan_cancel(plan_id=plan.id, actor=user)
    return plan


def test_a_webhook_is_signed_retried_after_a_failure_and_logged(
        user: Any, receiver: Receiver, settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    endpoint = _register(user, receiver.url, settings)
    plan = _cancelled_plan(user, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()

    first = webhooks.webhook_deliver(delivery_id=delivery.id)
    after_first = WebhookDelivery.objects.get()
    second = webhooks.webhook_deliver(delivery_id=delivery.id)

    assert (first, after_first.attempts, after_first.last_status_code) == ("pending", 1, 500)
    assert after_first.next_attempt_at is not None  # retried with backoff
    assert second == "delivered"
    (h1, b1), (h2, b2) = receiver.received
    assert h1["Webhook-Id"] == h2["Webhook-Id"] == str(delivery.id)  # one id to dedupe on
    body = json.loads(b2)
    assert (body["type"], body["plan_id"], body["id"]) == ("plan.cancelled", str(plan.id), str(delivery.id))
    assert webhooks.verify(endpoint["secret"], h2, b2)
    assert not webhooks.verify(endpoint["secret"], h2, b2.replace(b"cancelled", b"completed"))
    assert not webhooks.verify("whsec_wrong", h2, b2)
    log = _client(user).get(f"/api/webhooks/{endpoint['id']}/deliveries/").json()
    assert [(d["status"], d["attempts"]) for d in log] == [("delivered", 2)]


def test_a_delivery_to_a_refused_address_fails_at_once(user: Any, receiver: Receiver,
                                                       django_capture_on_commit_callbacks: Any) -> None:
    WebhookEndpoint.objects.create(owner=user, url=receiver.url, events=["plan.cancelled"], secret="s")
    _cancelled_plan(user, django_capture_on_commit_callbacks)  # no WEBHOOK_PRIVATE_NETWORKS: loopback refused

    outcome = webhooks.webhook_deliver(delivery_id=WebhookDelivery.objects.get().id)

    delivery = WebhookDelivery.objects.get()
    assert (outcome, delivery.attempts) == ("failed", 1)
    assert "loopback" in delivery.last_error and receiver.received == []


def test_another_users_webhooks_are_not_found(user: Any, django_user_model: Any, receiver: Receiver,
                                              settings: Any) -> None:
    endpoint = _register(user, receiver.url, settings)
    other = api_client(django_user_model.objects.create_user(username="other", password="pw-for-tests"))

    assert other.get("/api/webhooks/").json()["results"] == []
    assert other.get(f"/api/webhooks/{endpoint['id']}/").status_code == 404
    assert other.get(f"/api/webhooks/{endpoint['id']}/deliveries/").status_code == 404
    assert other.delete(f"/api/webhooks/{endpoint['id']}/").status_code == 404
    assert WebhookEndpoint.objects.count() == 1


def test_only_subscribed_events_are_sent(user: Any, receiver: Receiver, settings: Any,
                                         django_capture_on_commit_callbacks: Any) -> None:
    settings.WEBHOOK_PRIVATE_NETWORKS = ["127.0.0.1/32"]
    api_client(user).post("/api/webhooks/", {"url": receiver.url, "events": ["plan.completed"]})

    _cancelled_plan(user, django_capture_on_commit_callbacks)

    assert not WebhookDelivery.objects.exists()
