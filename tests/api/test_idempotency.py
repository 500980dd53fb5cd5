"""``Idempotency-Key`` on creates: one plan per key, the first answer replayed, a different body a 422."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from orchestrator.models import Plan
from tests.conftest import api_client

BODY = {"request": "Why is the sky blue?", "template": "research"}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/plans/", "/orchestrate"])
def test_a_repeated_key_gives_one_plan_and_the_first_answer(user: Any, path: str) -> None:
    api = api_client(user)

    first = api.post(path, BODY, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    again = api.post(path, BODY, format="json", HTTP_IDEMPOTENCY_KEY="order-42")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Plan.objects.count() == 1


@pytest.mark.django_db
def test_the_same_key_with_a_different_body_is_a_422(user: Any) -> None:
    api = api_client(user)
    api.post("/api/plans/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    response = api.post("/api/plans/", {**BODY, "request": "Another"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency.key_reused"
    assert Plan.objects.count() == 1


@pytest.mark.django_db
def test_keys_belong_to_their_user(user: Any, django_user_model: Any) -> None:
    other = django_user_model.objects.create_user(username="other", password="pw-for-tests")

    mine = api_client(user).post("/api/plans/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="same")
    theirs = api_client(other).post("/api/plans/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="same")

    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


@pytest.mark.django_db
def test_a_refused_create_is_not_remembered(user: Any) -> None:
    api = api_client(user)
    bad = {"request": "x", "template": "no-such-template"}

    first = api.post("/api/plans/", bad, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    again = api.post("/api/plans/", bad, format="json", HTTP_IDEMPOTENCY_KEY="k2")

    assert first.status_code == again.status_code == 400
    assert "Idempotent-Replayed" not in again


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\tkey"])
def test_a_malformed_key_is_a_400(user: Any, key: str) -> None:
    response = api_client(user).post("/api/plans/", BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency.bad_key"
    assert not Plan.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_racing_requests_with_one_key_create_one_plan(user: Any) -> None:
    from django.db import connection

    barrier = threading.Barrier(4)
    statuses: list[int] = []
    clients = [api_client(user) for _ in range(1)] * 4

    def post(client: Any) -> None:
        barrier.wait()
        try:
            statuses.append(client.post("/api/plans/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="race").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert Plan.objects.count() == 1
    assert sorted(statuses)[0] == 201 and set(statuses) <= {201, 409}
