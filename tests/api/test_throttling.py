"""Throttling shared through Redis by every web process, and login lockout (django-axes)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from tests.api.servers import web_processes
from tests.conftest import throttle_reset


@pytest.mark.django_db(transaction=True)
def test_two_web_processes_share_one_users_limit_and_answer_429_with_retry_after(user: Any,
                                                                                  test_agents: str) -> None:
    headers = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    with web_processes(2, {"API_THROTTLE_USER": "10/min"}, test_agents) as (first, second):
        throttle_reset()
        answers = [httpx.get(f"{(first, second)[i % 2]}/api/plans/", headers=headers, timeout=10)
                   for i in range(14)]

    statuses = [a.status_code for a in answers]
    assert statuses == [200] * 10 + [429] * 4
    refused = answers[-1]
    assert refused.json()["error"]["code"] == "throttled"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert {a.url.port for a in answers[10:]} == {httpx.URL(first).port, httpx.URL(second).port}


@pytest.mark.django_db
def test_another_user_is_not_throttled_by_the_first(user: Any, django_user_model: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from common.throttling import UserThrottle
    from tests.conftest import api_client

    monkeypatch.setattr(UserThrottle, "THROTTLE_RATES", {"user": "3/min"})
    other = django_user_model.objects.create_user(username="other", password="pw-for-tests")
    mine = api_client(user)

    statuses = [mine.get("/api/plans/").status_code for _ in range(4)]
    theirs = api_client(other).get("/api/plans/").status_code

    assert statuses == [200, 200, 200, 429]
    assert theirs == 200


@pytest.mark.django_db
def test_repeated_wrong_passwords_lock_the_account_out(user: Any, settings: Any) -> None:
    client = Client()
    wrong = [client.post("/accounts/login/", {"username": user.username, "password": "wrong"}).status_code
             for _ in range(settings.AXES_FAILURE_LIMIT)]

    right = client.post("/accounts/login/", {"username": user.username, "password": "pw-for-tests"})
    admin = Client().post("/admin/login/", {"username": user.username, "password": "pw-for-tests"})

    assert wrong[:-1] == [200] * (settings.AXES_FAILURE_LIMIT - 1)  # the form again, with its error
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    assert admin.status_code == 429


@pytest.mark.django_db
def test_a_right_password_before_the_limit_signs_in(user: Any) -> None:
    client = Client()
    client.post("/accounts/login/", {"username": user.username, "password": "wrong"})

    response = client.post("/accounts/login/", {"username": user.username, "password": "pw-for-tests"})

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


@pytest.mark.django_db
def test_an_organisations_members_share_its_limit_and_other_organisations_do_not(
        user: Any, django_user_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from common.throttling import OrganisationThrottle
    from organisations import services as organisations
    from tests.conftest import api_client

    monkeypatch.setattr(OrganisationThrottle, "THROTTLE_RATES", {"organisation": "3/min"})
    team, rival = (organisations.organisation_create(name=n, slug=n) for n in ("team", "rival"))
    people = [django_user_model.objects.create_user(username=f"m{i}", password="pw-for-tests") for i in range(3)]
    for person, organisation in zip(people, (team, team, rival), strict=True):
        organisations.member_set(user=person, organisation=organisation)
    first, second, outsider = (api_client(person) for person in people)

    statuses = [client.get("/api/plans/").status_code for client in (first, second, first, second)]
    refused = second.get("/api/plans/")

    assert statuses == [200, 200, 200, 429]  # two members, one limit
    assert refused.json()["error"]["code"] == "throttled" and int(refused["Retry-After"]) > 0
    assert outsider.get("/api/plans/").status_code == 200
    default = api_client(user)  # the default organisation has no shared limit: its users keep their own
    assert [default.get("/api/plans/").status_code for _ in range(5)] == [200] * 5
