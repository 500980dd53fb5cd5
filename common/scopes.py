"""OAuth 2.0 scopes (django-oauth-toolkit, client credentials) beside DRF tokens.

A request authenticated with an OAuth2 access token may do only what its scopes allow:

* ``plans:read``: read plans, their events, agents, approvals, webhooks;
* ``plans:write``: create and cancel plans, register webhooks;
* ``approvals:decide``: approve or reject (``/api/approvals/{id}/approve|reject/``, ``/workflow/{id}/approve``);
* ``memory``: the memory endpoints (none are exposed over REST yet).

A DRF token or a session is a person's own credential and keeps full access (within what the user may do).
The token's user is the OAuth application's user: the integration acts as that user.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from oauth2_provider.models import AccessToken
from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission

SCOPES = {
    "plans:read": "Read plans, events, agents, approvals and webhooks",
    "plans:write": "Create and cancel plans; register webhooks",
    "approvals:decide": "Approve or reject waiting steps",
    "memory": "Read and write the memory store",
}
_DECIDE = re.compile(r"^/(?:api/approvals/[^/]+/(?:approve|reject)/|workflow/[^/]+/approve)$")


def required_scope(method: str, path: str) -> str:
    if _DECIDE.match(path):
        return "approvals:decide"
    if path.startswith("/api/memory"):
        return "memory"
    return "plans:read" if method in SAFE_METHODS else "plans:write"


class OAuth2ClientAuthentication(OAuth2Authentication):
    """django-oauth-toolkit's bearer authentication; a client-credentials token (which has no user) acts as
    its application's user, who must be active."""

    def authenticate(self, request: Any) -> tuple[Any, AccessToken] | None:
        found = super().authenticate(request)
        if found is None:
            return None
        user, token = found
        if user is None and token.application is not None:
            user = token.application.user
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed("the OAuth application has no active user to act as")
        return user, token


class OAuthScopes(BasePermission):
    """With an OAuth2 access token: the scope the request needs (``required_scope``); otherwise: allow."""

    message = "The access token's scopes do not allow this request."

    def has_permission(self, request: Any, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, AccessToken):
            return True
        return bool(token.is_valid([required_scope(request.method.upper(), request.path)]))


class OAuth2ClientScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """The OpenAPI security scheme of ``OAuth2ClientAuthentication`` (client credentials at /o/token/)."""

    target_class = "common.scopes.OAuth2ClientAuthentication"
    name = "oauth2"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "/o/token/", "scopes": SCOPES}}}

