"""Every cause of a 500 that a hostile integrator found answers a JSON 4xx with a code (common/edge.py,
common/middleware.py, common/api.py), and agent output that Postgres cannot hold is stored escaped."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from orchestrator import services
from orchestrator.models import Plan, Step
from orchestrator.states import PlanStatus
from tests.conftest import api_client, wait_for_plan
from tests.fakes import FakeServer

pytestmark = pytest.mark.django_db

NOT_A_UUID = "zzzzzzzz-0000-0000-0000-000000000000"[:36].replace("z", "a").replace("a", "g", 1)


def _error(response: Any) -> dict[str, str]:
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    return dict(response.json()["error"])


def _post_raw(user: Any, path: str, raw: str | bytes) -> Any:
    return api_client(user).generic("POST", path, raw, content_type="application/json")


@pytest.mark.parametrize("path", ["/api/plans/{id}/", "/api/plans/{id}/cancel/", "/api/approvals/{id}/",
                                  "/api/plans/{id}/snapshot/"])
@pytest.mark.parametrize("bad_id", [NOT_A_UUID, "0" * 36, "-" * 36])
def test_a_36_character_id_that_is_not_a_uuid_is_a_json_404(user: Any, path: str, bad_id: str) -> None:
    client = api_client(user)
    url = path.format(id=bad_id)

    response = client.post(url) if url.endswith("cancel/") else client.get(url)

    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


@pytest.mark.parametrize("raw", ['{"request": "a\\u0000b", "template": "research"}',
                                 '{"request": "a\\ud800b", "template": "research"}',
                                 '{"request": "x", "template": "research", "inputs": {"k\\u0000": 1}}',
                                 '{"request": "x", "steps": [{"key": "a", "agent": "held", '
                                 '"input": {"v": "\\udfff"}}]}'])
def test_text_postgres_cannot_hold_is_refused_at_the_edge(user: Any, raw: str) -> None:
    response = _post_raw(user, "/api/plans/", raw)

    assert response.status_code == 400
    assert _error(response)["code"] == "request.unstorable_text"
    assert not Plan.objects.exists()


def test_an_edited_input_with_u0000_is_refused(user: Any) -> None:
    response = _post_raw(user, f"/api/approvals/{'1' * 8}-1111-1111-1111-{'1' * 12}/approve/",
                         '{"edited_input": {"q": "\\u0000"}}')

    assert response.status_code == 400
    assert _error(response)["code"] == "request.unstorable_text"


@pytest.mark.parametrize("query", ["status=%00", "status=a%00b", "plan=%00"])
def test_a_query_parameter_with_u0000_is_refused(user: Any, query: str) -> None:
    response = api_client(user).get(f"/api/plans/?{query}")

    assert response.status_code == 400
    assert _error(response)["code"] == "request.unstorable_text"


@pytest.mark.parametrize("field", ["budget_tokens", "cap_tokens"])
@pytest.mark.parametrize("value", [2**63, 2**64 + 1, 10**30, 2**63 - 1])
def test_integers_too_big_for_the_database_are_a_400(user: Any, field: str, value: int) -> None:
    raw = json.dumps({"request": "x", "template": "research", field: value})

    response = _post_raw(user, "/api/plans/", raw)

    assert response.status_code == 400
    assert _error(response)["code"] in ("invalid", "request.number_out_of_range")


@pytest.mark.parametrize("raw", ['{"request": "x", "template": "research", "inputs": {"n": 1e999}}',
                                 '{"request": "x", "template": "research", "inputs": {"n": NaN}}'])
def test_numbers_json_cannot_store_are_a_400(user: Any, raw: str) -> None:
    response = _post_raw(user, "/api/plans/", raw)

    assert response.status_code == 400
    assert _error(response)["code"] == "request.number_out_of_range"


@pytest.mark.parametrize("query", ["limit=99999999999999999999", "limit=9223372036854775808&offset=0"])
def test_a_huge_page_size_is_clamped(user: Any, query: str) -> None:
    response = api_client(user).get(f"/api/plans/?{query}")

    assert response.status_code == 200


@pytest.mark.parametrize("offset", ["9223372036854775808", "99999999999999999999"])
def test_a_huge_offset_is_a_400(user: Any, offset: str) -> None:
    response = api_client(user).get(f"/api/plans/?offset={offset}")

    assert response.status_code == 400
    assert _error(response)["code"] == "invalid"


@pytest.mark.parametrize("depth", [1000, 10_000, 100_000])
def test_deeply_nested_json_is_a_400(user: Any, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    raw = '{"request": "x", "steps": [{"key": "a", "agent": "held", "input": {"v": ' + nested + '}}]}'

    response = _post_raw(user, "/api/plans/", raw)

    assert response.status_code == 400
    assert _error(response)["code"] == "request.too_deep"


def test_a_body_over_the_limit_is_a_json_413(user: Any, settings: Any) -> None:
    raw = json.dumps({"request": "x" * (settings.API_MAX_BODY_BYTES + 10)})

    response = _post_raw(user, "/api/plans/", raw)

    assert response.status_code == 413
    assert _error(response)["code"] == "request.too_large"


def test_malformed_json_is_a_400(user: Any) -> None:
    response = _post_raw(user, "/api/plans/", '{"request": ')

    assert response.status_code == 400
    assert _error(response)["code"] == "parse_error"


def test_the_docs_page_answers_with_a_bad_token() -> None:
    response = Client().get("/api/docs/", HTTP_AUTHORIZATION="Token not-a-real-token")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_an_unknown_api_url_is_a_json_404(user: Any) -> None:
    response = api_client(user).get("/api/nothing-here/")

    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_a_wrong_method_is_a_json_405(user: Any) -> None:
    response = api_client(user).delete("/api/plans/")

    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize("auth", [None, "Token not-a-real-token"])
def test_a_401_carries_www_authenticate(auth: str | None) -> None:
    client = APIClient()
    if auth:
        client.credentials(HTTP_AUTHORIZATION=auth)

    response = client.get("/api/plans/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert _error(response)["code"] in ("not_authenticated", "authentication_failed")


def test_api_data_is_never_cached(user: Any) -> None:
    response = api_client(user).get("/api/plans/")

    assert response["Cache-Control"] == "no-store"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("idle_worker")
def test_agent_output_with_u0000_is_stored_escaped_and_the_agent_is_called_once(
        user: Any, fake_server: FakeServer) -> None:
    plan = services.plan_create(owner=user, request="x", steps=[
        {"key": "nul", "agent": "remote", "input": {"unstorable": True}}])

    plan = wait_for_plan(plan.id)

    step = Step.objects.get(plan=plan)
    assert plan.status == PlanStatus.SUCCEEDED, (step.error_code, step.error_message)
    assert step.output["answer"] == "handled nul\\u0000 and \\ud800"
    assert fake_server.call_count(str(step.id)) == 1
