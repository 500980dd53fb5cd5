"""OpenAPI post-processing (drf-spectacular): every operation documents the errors it can answer, in the
one envelope ``{"error": {"code", "message"}}``, so that a client (and schemathesis) knows every status."""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        },
    },
    "required": ["error"],
}

_ALWAYS = {400: "Bad input (a code says what)", 401: "Not authenticated (see WWW-Authenticate)",
           403: "Not allowed", 404: "Not found, or not yours", 406: "Not acceptable",
           429: "Throttled (see Retry-After)"}
_WITH_BODY = {409: "Conflict with the current state", 413: "Request body too large",
              415: "Unsupported media type", 422: "Idempotency-Key reused with a different body"}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for methods in result.get("paths", {}).values():
        for method, operation in methods.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            errors = dict(_ALWAYS)
            if method in ("post", "put", "patch"):
                errors.update(_WITH_BODY)
            for status, description in errors.items():
                operation["responses"].setdefault(str(status), {"description": description, "content": ref})
    return result
