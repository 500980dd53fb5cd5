"""Deployment hardening from the environment: `check --deploy` clean, HSTS / secure cookies / SSL redirect
on in a deployment, a Content-Security-Policy on pages, and error pages that never print connection URLs."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.test import Client, RequestFactory

from tests.conftest import ROOT

DEPLOYMENT = {"DATABASE_URL": "postgres://orch:db-sekrit@db.internal:5432/orch",
              "REDIS_URL": "redis://:redis-sekrit@redis.internal:6379/0",
              "DJANGO_SECRET_KEY": "k" * 20 + "-not-a-real-deployment-secret-but-long-and-varied-0123456789",
              "DJANGO_ALLOWED_HOSTS": "api.example.com", "DJANGO_BEHIND_PROXY": "1",
              "MEMORY_ENCRYPTION_KEYS": "tVn0ZBXMPw8ynJx1vQ4f7k3oRk8zJYbqkQ3yJ4v9H8A=",
              "MEMORY_BLIND_INDEX_KEY": "a-long-random-blind-index-key-for-the-test"}


def _deployed(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ORCH_EMBEDDED", "DJANGO_DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE")}  # the browser tests set it
    return subprocess.run([sys.executable, *args], cwd=ROOT, env={**env, **DEPLOYMENT}, capture_output=True,
                          text=True, timeout=120)


def test_check_deploy_is_clean_in_deployment_mode() -> None:
    result = _deployed("manage.py", "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout + result.stderr


def test_a_deployment_turns_on_https_only_settings() -> None:
    names = ["DEBUG", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
             "SECURE_PROXY_SSL_HEADER"]
    code = ("import django; django.setup(); from django.conf import settings as s; "
            f"print(repr([getattr(s, n) for n in {names!r}]))")

    result = _deployed("-c", f"import os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; {code}")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr([False, True, 31_536_000, True, True, ("HTTP_X_FORWARDED_PROTO", "https")])


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy_without_inline_scripts() -> None:
    response = Client().get("/accounts/login/")

    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy + ";"
    assert "frame-ancestors 'none'" in policy


@pytest.mark.django_db
def test_the_debug_page_never_prints_connection_urls(settings: Any) -> None:
    from django.views.debug import technical_500_response

    settings.DEBUG = True
    request = RequestFactory().get("/boom", HTTP_X_SECRET_URL=settings.DATABASE_URL)
    request.META["DATABASE_URL"] = settings.DATABASE_URL  # as a server that copies the environment does
    request.META["REDIS_URL"] = settings.REDIS_URL
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        page = technical_500_response(request, *sys.exc_info()).content.decode()

    assert "boom" in page
    for secret in {settings.DATABASE_URL, settings.REDIS_URL, settings.CELERY_BROKER_URL,
                   settings.CACHES["default"]["LOCATION"]}:
        assert secret not in page
