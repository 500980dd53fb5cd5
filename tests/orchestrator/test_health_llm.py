"""/health says which provider and model each llm agent uses (issue 15), offline included."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_health_names_each_llm_agents_provider_and_model() -> None:
    body = Client().get("/health").json()  # 200 or 503 (workers): the llm part is there either way

    assert body["llm"]["query_analyst"] == {"provider": "offline", "model": "gpt-4o-mini"}
    assert body["llm"]["planner"] == {"provider": "openai", "model": "fake-planner"}  # the tests' fake
    assert body["llm"]["claude"] == {"provider": "anthropic", "model": "fake-claude"}
    assert "echo" not in body["llm"]  # python agents use no model
