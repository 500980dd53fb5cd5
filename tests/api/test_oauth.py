"""OAuth 2.0 client credentials (django-oauth-toolkit) beside DRF tokens, with scopes."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.test import Client
from oauth2_provider.models import Application
from rest_framework.test import APIClient

from orchestrator.models import Plan

pytestmark = pytest.mark.django_db

BODY = {"request": "x", "steps": [{"key": "a", "agent": "held"}]}
SECRET = "client-secret-for-tests"


def _token(user: Any, scope: str) -> str:
    app = Application.objects.create(user=user, name="integration", client_type=Application.CLIENT_CONFIDENTIAL,
                                     authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
                                     client_secret=SECRET)
    basic = base64.b64encode(f"{app.client_id}:{SECRET}".encode()).decode()
    response = Client().post("/o/token/", {"grant_type": "client_credentials", "scope": scope},
                             HTTP_AUTHORIZATION=f"Basic {basic}")
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == scope
    return str(response.json()["access_token"])


def _bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_read_only_client_reads_but_cannot_create(user: Any) -> None:
    api = _bearer(_token(user, "plans:read"))

    listed = api.get("/api/plans/")
    created = api.post("/api/plans/", BODY, format="json")

    assert listed.status_code == 200
    assert created.status_code == 403
    assert created.json()["error"]["code"] == "permission_denied"
    assert not Plan.objects.exists()


def test_a_client_with_plans_write_creates_as_its_applications_user(user: Any) -> None:
    api = _bearer(_token(user, "plans:read plans:write"))

    created = api.post("/api/plans/", BODY, format="json")

    assert created.status_code == 201
    assert Plan.objects.get().owner == user


def test_deciding_an_approval_needs_approvals_decide(user: Any) -> None:
    api = _bearer(_token(user, "plans:read plans:write"))

    response = api.post(f"/api/approvals/{'1' * 8}-1111-1111-1111-{'1' * 12}/approve/", {}, format="json")

    assert response.status_code == 403


def test_a_bad_bearer_token_is_a_401() -> None:
    response = _bearer("not-a-token").get("/api/plans/")

    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("not_authenticated", "authentication_failed")
