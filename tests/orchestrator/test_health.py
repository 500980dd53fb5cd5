from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.usefixtures("celery_worker")
def test_health_is_200_when_database_redis_and_a_worker_answer() -> None:
    response = Client().get("/health")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": True, "redis": True, "workers": True}


def test_health_is_503_when_redis_is_unreachable(settings: object) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # type: ignore[attr-defined]

    response = Client().get("/health")

    assert response.status_code == 503
    assert response.json()["checks"]["redis"] is False
